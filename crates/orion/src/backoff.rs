//! Exponential backoff shared by every supervisor (stream, workers, MQTT):
//! 1 s doubling to a 30 s cap by default, reset after a success; each wait is
//! [`jittered`] by its user, so that many clients do not retry in lock-step.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    start: Duration,
    cap: Duration,
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(Duration::from_secs(1), Duration::from_secs(30))
    }
}

impl Backoff {
    pub fn new(start: Duration, cap: Duration) -> Self {
        Self {
            start,
            cap,
            next: start,
        }
    }

    /// The delay to wait now; the one after it doubles, up to the cap.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.cap);
        delay
    }

    /// The delay [`Backoff::next_delay`] will return, without advancing.
    pub fn peek(&self) -> Duration {
        self.next
    }

    pub fn reset(&mut self) {
        self.next = self.start;
    }
}

/// `d` scaled by a random factor in 0.75..1.25, so that many clients that
/// lost the same server do not retry in lock-step.
pub fn jittered(d: Duration) -> Duration {
    d.mul_f64(0.75 + fastrand::f64() * 0.5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_cap_and_resets() {
        let mut b = Backoff::default();
        let secs: Vec<u64> = (0..7).map(|_| b.next_delay().as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 30, 30]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_secs(1));
    }

    #[test]
    fn jitter_spreads_within_a_quarter() {
        let d = Duration::from_secs(4);
        let spread: Vec<Duration> = (0..200).map(|_| jittered(d)).collect();
        assert!(spread.iter().all(|j| (3.0..5.0).contains(&j.as_secs_f64())));
        let (min, max) = (spread.iter().min(), spread.iter().max());
        assert!(max > min, "not all the same");
    }
}

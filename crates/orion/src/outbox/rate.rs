//! The event rate limit of one camera: a token bucket of
//! `outbox.max_events_per_minute` events, refilled continuously, so that a
//! runaway model (thousands of boxes that come and go) cannot fill the outbox
//! and push real events out of it. Ordinary visits never reach it: a burst of
//! a minute's worth passes at once.
//!
//! Pure logic: no I/O and no clock of its own (every call carries the time).

use std::time::Instant;

/// One camera's event budget.
#[derive(Debug)]
pub struct EventRate {
    per_minute: f64,
    tokens: f64,
    last: Option<Instant>,
    /// Events refused since the bucket was last full.
    suppressed: u64,
}

impl EventRate {
    pub fn new(per_minute: u32) -> Self {
        let per_minute = f64::from(per_minute.max(1));
        Self {
            per_minute,
            tokens: per_minute,
            last: None,
            suppressed: 0,
        }
    }

    fn refill(&mut self, now: Instant) {
        if let Some(last) = self.last {
            let s = now.saturating_duration_since(last).as_secs_f64();
            self.tokens = (self.tokens + s * self.per_minute / 60.0).min(self.per_minute);
        }
        self.last = Some(now);
    }

    /// Whether one more event may be stored at `now`; one that may not is
    /// counted.
    pub fn allow(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            self.suppressed += 1;
            false
        }
    }

    /// Events refused in the current flood; 0 once the bucket has filled up
    /// again (the flood is over).
    pub fn flooding(&mut self, now: Instant) -> u64 {
        self.refill(now);
        if self.tokens >= self.per_minute {
            self.suppressed = 0;
        }
        self.suppressed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_passes_a_flood_is_held_to_the_rate_and_ends_when_it_stops() {
        let t0 = Instant::now();
        let mut rate = EventRate::new(60);
        let burst = (0..60).filter(|_| rate.allow(t0)).count();
        assert_eq!(burst, 60, "a minute's worth at once");
        assert!(!rate.allow(t0));
        assert_eq!(rate.flooding(t0), 1);
        // 10 events a second for 10 s: about one a second passes.
        let mut passed = 0;
        for i in 1..=100 {
            if rate.allow(t0 + Duration::from_millis(100 * i)) {
                passed += 1;
            }
        }
        assert!((9..=11).contains(&passed), "{passed}");
        let t = t0 + Duration::from_secs(10);
        assert!(rate.flooding(t) > 80);
        // Quiet until the bucket is full again: the flood is over.
        assert!(rate.flooding(t + Duration::from_secs(30)) > 0);
        assert_eq!(rate.flooding(t + Duration::from_secs(61)), 0);
        assert!(rate.allow(t + Duration::from_secs(61)));
    }
}

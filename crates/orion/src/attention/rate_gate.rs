//! Timestamp-based rate gate.
//!
//! Accepts a frame when it is due; then schedules the next one an interval later
//! (keeping the cadence, so that the long-run rate is what was asked even when frame
//! times jitter), or an interval after this frame when the stream fell behind (so a
//! gap does not cause a burst). Changing the rate takes effect for the next frame.

use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct RateGate {
    interval: Duration,
    next_due: Option<Instant>,
    /// Fraction of an interval to wait after the first frame before the first
    /// accept (0 = accept the first frame).
    phase: f64,
}

impl RateGate {
    /// `rate_hz` must be positive (validated by the config and command layers).
    pub fn new(rate_hz: f64) -> Self {
        Self::with_phase(rate_hz, 0.0)
    }

    /// A gate whose cadence is shifted by `phase` (0..1) of an interval: the cameras
    /// of one daemon all finish their warm-up at the same moment, and without a
    /// shift every camera's frame would reach the shared workers at the same
    /// instant, each round (a burst that makes the last of them wait for the others).
    /// Camera `i` of `k` gets phase `i / k`, which spreads them over the interval.
    pub fn with_phase(rate_hz: f64, phase: f64) -> Self {
        Self {
            interval: interval_of(rate_hz),
            next_due: None,
            phase: if phase.is_finite() {
                phase.clamp(0.0, 1.0)
            } else {
                0.0
            },
        }
    }

    pub fn rate_hz(&self) -> f64 {
        1.0 / self.interval.as_secs_f64()
    }

    /// Applies a new rate from the next frame on, without a restart.
    pub fn set_rate(&mut self, rate_hz: f64) {
        let new = interval_of(rate_hz);
        if let Some(due) = self.next_due {
            // Re-anchor the pending deadline to the new interval.
            self.next_due = Some(due.checked_sub(self.interval).unwrap_or(due) + new);
        }
        self.interval = new;
    }

    /// Decides for a frame captured at `t`.
    pub fn accept(&mut self, t: Instant) -> bool {
        match self.next_due {
            Some(due) if t < due => false,
            Some(due) => {
                let late = t.saturating_duration_since(due);
                self.next_due = Some(if late < self.interval {
                    due + self.interval
                } else {
                    t + self.interval
                });
                true
            }
            None if self.phase > 0.0 => {
                self.next_due = Some(t + self.interval.mul_f64(self.phase));
                false
            }
            None => {
                self.next_due = Some(t + self.interval);
                true
            }
        }
    }
}

fn interval_of(rate_hz: f64) -> Duration {
    Duration::from_secs_f64(1.0 / rate_hz.clamp(0.001, 1000.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(gate: &mut RateGate, start: Instant, fps: f64, seconds: f64) -> usize {
        let frames = (fps * seconds) as usize;
        (0..frames)
            .filter(|i| gate.accept(start + Duration::from_secs_f64(*i as f64 / fps)))
            .count()
    }

    #[test]
    fn passes_the_asked_rate_from_a_faster_stream() {
        let start = Instant::now();
        let mut gate = RateGate::new(2.0);
        assert_eq!(run(&mut gate, start, 15.0, 10.0), 20);
        let mut gate = RateGate::new(5.0);
        assert_eq!(run(&mut gate, start, 30.0, 10.0), 50);
    }

    #[test]
    fn keeps_cadence_when_rate_does_not_divide_fps() {
        // 15 fps -> 4 Hz: a naive "every ceil(15/4)=4th frame" gives 3.75 Hz.
        let start = Instant::now();
        let mut gate = RateGate::new(4.0);
        let n = run(&mut gate, start, 15.0, 30.0);
        assert!((119..=121).contains(&n), "got {n} frames in 30 s at 4 Hz");
    }

    #[test]
    fn passes_every_frame_when_rate_exceeds_fps() {
        let start = Instant::now();
        let mut gate = RateGate::new(30.0);
        assert_eq!(run(&mut gate, start, 10.0, 5.0), 50);
    }

    #[test]
    fn no_burst_after_a_gap() {
        let start = Instant::now();
        let mut gate = RateGate::new(2.0);
        assert!(gate.accept(start));
        // 10 s without frames, then a 30 fps burst for 1 s: at most 2-3 accepted.
        let after = start + Duration::from_secs(10);
        let n = (0..30)
            .filter(|i| gate.accept(after + Duration::from_millis(i * 33)))
            .count();
        assert!((2..=3).contains(&n), "accepted {n}");
    }

    #[test]
    fn rate_change_applies_within_one_interval() {
        let start = Instant::now();
        let mut gate = RateGate::new(0.5);
        assert!(gate.accept(start));
        gate.set_rate(10.0);
        // The old schedule would wait 2 s; the new one takes the frame at 100 ms.
        assert!(!gate.accept(start + Duration::from_millis(50)));
        assert!(gate.accept(start + Duration::from_millis(100)));
        assert!((gate.rate_hz() - 10.0).abs() < 1e-9);
    }

    #[test]
    fn a_phase_shifts_the_cadence_without_changing_the_rate() {
        let start = Instant::now();
        let accepted = |phase: f64| -> Vec<u128> {
            let mut gate = RateGate::with_phase(2.0, phase);
            (0..60)
                .map(|i| start + Duration::from_millis(i * 50))
                .filter(|t| gate.accept(*t))
                .map(|t| t.duration_since(start).as_millis())
                .collect()
        };
        assert_eq!(accepted(0.0), vec![0, 500, 1000, 1500, 2000, 2500]);
        assert_eq!(accepted(0.5), vec![250, 750, 1250, 1750, 2250, 2750]);
        assert_eq!(accepted(f64::NAN), accepted(0.0));
    }
}

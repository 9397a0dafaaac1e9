//! The event rate limit of one camera: a token bucket of
//! `outbox.max_events_per_minute` events, refilled continuously, so that a
//! runaway model (thousands of boxes that come and go) cannot fill the outbox
//! and push real events out of it. Ordinary visits never reach it: a burst of
//! a minute's worth passes at once.
//!
//! Only what opens something is refused (`person_entered`, `zone_entered`):
//! what closes it (`person_left`, `zone_left`) goes wherever its opening went,
//! so a consumer never sees a visit that does not end, nor an end without its
//! visit. Occupancy changes always go (they have their own hysteresis).
//!
//! Pure logic: no I/O and no clock of its own (every call carries the time).

use std::collections::BTreeSet;
use std::time::Instant;

/// One camera's event budget.
#[derive(Debug)]
pub struct EventRate {
    per_minute: f64,
    tokens: f64,
    last: Option<Instant>,
    /// Events refused since the bucket was last full.
    suppressed: u64,
    /// Openings refused: a track's entry (`None`) or its entry into a zone,
    /// whose closing is refused too. At most the live tracks and their zones.
    refused: BTreeSet<(u64, Option<String>)>,
}

impl EventRate {
    pub fn new(per_minute: u32) -> Self {
        let per_minute = f64::from(per_minute.max(1));
        Self {
            per_minute,
            tokens: per_minute,
            last: None,
            suppressed: 0,
            refused: BTreeSet::new(),
        }
    }

    /// Whether an event may be stored at `now` (see the module doc); one that
    /// may not is counted.
    pub fn admit(
        &mut self,
        now: Instant,
        kind: &str,
        track: Option<u64>,
        zone: Option<&str>,
    ) -> bool {
        let Some(track) = track else {
            self.take(now);
            return true;
        };
        let entry_refused = self.refused.contains(&(track, None));
        let zone_key = (track, zone.map(str::to_string));
        let admitted = match kind {
            "person_entered" | "zone_entered" if entry_refused => false,
            "person_entered" | "zone_entered" => {
                let ok = self.allow(now);
                if !ok {
                    self.refused.insert(zone_key);
                }
                return ok;
            }
            "zone_left" => !entry_refused && !self.refused.remove(&zone_key),
            "person_left" => {
                self.refused.retain(|(t, _)| *t != track);
                !entry_refused
            }
            _ => true,
        };
        if admitted {
            self.take(now);
        } else {
            self.suppressed += 1;
        }
        admitted
    }

    /// Takes a token if there is one (an event that goes anyway).
    fn take(&mut self, now: Instant) {
        self.refill(now);
        self.tokens = (self.tokens - 1.0).max(0.0);
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
    fn allow(&mut self, now: Instant) -> bool {
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

    #[test]
    fn what_closes_goes_wherever_its_opening_went() {
        let t = Instant::now();
        let mut rate = EventRate::new(10);
        // Track 1 enters, then a minute's worth of zones; the rest are refused.
        assert!(rate.admit(t, "person_entered", Some(1), None));
        for z in 0..10 {
            let zone = format!("z{z}");
            let expect = z < 9;
            assert_eq!(
                rate.admit(t, "zone_entered", Some(1), Some(&zone)),
                expect,
                "{zone}"
            );
        }
        // Track 2's entry is refused: none of its events go.
        assert!(!rate.admit(t, "person_entered", Some(2), None));
        assert!(!rate.admit(t, "zone_entered", Some(2), Some("bed")));
        assert!(!rate.admit(t, "zone_left", Some(2), Some("bed")));
        assert!(!rate.admit(t, "person_left", Some(2), None));
        // Track 1's exits go without tokens, except from the zone it was
        // refused entry to.
        assert!(rate.admit(t, "zone_left", Some(1), Some("z0")));
        assert!(!rate.admit(t, "zone_left", Some(1), Some("z9")));
        assert!(rate.admit(t, "person_left", Some(1), None));
        assert!(rate.admit(t, "occupancy_changed", None, None), "always");
        // A new track 2 later (ids are never reused, but the set is clean).
        assert!(rate.refused.is_empty(), "{:?}", rate.refused);
    }
}

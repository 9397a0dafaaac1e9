//! Falls and people down, per present person, and the room's active alerts.
//!
//! A *fall*: someone who stood (or was seen going down) is down within
//! [`FALL_WITHIN`] (lying, or low: much shorter than they stood, or far
//! below where they stood) and stays down for `confirm`, outside rest zones;
//! or is lost by the detector right after going down (or down), away from
//! exits and rest zones, for `confirm`. A person *down*: down outside rest
//! zones for `down_after` without a fall having been seen (slid out of bed at
//! night). Either raises an alert that stays active until the person is seen
//! up again (standing or sitting, not low) through [`UP_FOR`], leaves, or an
//! operator acknowledges it; an active alert is announced again every
//! `repeat`. An acknowledged person raises no new alert until seen up the
//! same way.
//!
//! Pure logic: it is told what the room knows of each person, and the time,
//! and returns what happened; the room turns that into events and the
//! retained alert state. It never reads a clock and never publishes.
//! Bounded: one entry per present person (forgotten when their track ends),
//! at most one alert each.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use super::posture::Posture;

/// Standing (or a descent) at most this long before being down: a fall.
pub const FALL_WITHIN: Duration = Duration::from_secs(5);
/// Up for this long ends an alert.
pub const UP_FOR: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, PartialEq)]
pub struct FallSettings {
    pub enabled: bool,
    /// Down (or lost after a descent) this long: a fall.
    pub confirm: Duration,
    /// Down this long without a fall seen: a person down.
    pub down_after: Duration,
    /// An active alert is announced again this often (zero: never).
    pub repeat: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    Fall,
    Down,
}

/// An active alert.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub alert_id: String,
    pub kind: AlertKind,
    pub track_id: u64,
    /// When it was raised.
    pub since: Instant,
    pub since_wall: SystemTime,
    /// How often it was announced (1 when raised).
    pub announced: u32,
    pub last_announced: Instant,
    pub last_announced_wall: SystemTime,
}

/// Why an alert ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Ended {
    /// The person was seen up again.
    Up,
    /// They left through an exit.
    Left,
    /// Their visit ended unseen (`presence.unseen_timeout_s`).
    NotSeen,
    /// An ignore zone now covers where they were.
    Ignored,
    /// An operator acknowledged it.
    Acknowledged,
    /// Falls are no longer watched (a restart with `falls.enabled: false`).
    Disabled,
}

/// How a fall was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum How {
    /// Lying after standing.
    Lying,
    /// Much shorter than they stood: on the floor.
    ToTheFloor,
    /// Lost by the detector right after going down, away from exits.
    LostAfterDescent,
    /// Down for `down_after` (a person down, no fall seen).
    #[serde(rename = "down")]
    DownLong,
}

/// What happened.
#[derive(Debug, Clone, PartialEq)]
pub enum Signal {
    Raised { alert: Alert, how: How },
    Ended { alert: Alert, reason: Ended },
}

/// What one result shows of a seen person.
#[derive(Debug, Clone, Copy)]
pub struct Seen {
    pub posture: Option<Posture>,
    pub low: bool,
    /// Going down (the box's top dropping fast).
    pub descending: bool,
}

/// What the room knows of a present person at a check.
#[derive(Debug, Clone, Copy)]
pub struct Present {
    pub track_id: u64,
    pub last_seen: Instant,
    /// In a rest zone (bed, armchair): lying there is no fall.
    pub resting: bool,
    /// At an exit (a person lost there has left, or will).
    pub at_exit: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Standing {
    /// No alert.
    #[default]
    Clear,
    /// An alert is active.
    Alerted,
    /// Its alert was acknowledged; no new one until the person is up.
    Acknowledged,
}

#[derive(Debug, Clone, Default)]
struct Watch {
    last_standing: Option<Instant>,
    last_descent: Option<Instant>,
    /// Down (lying or low) outside rest zones since.
    down_since: Option<Instant>,
    /// How the current down began, when it began as a fall.
    fall: Option<How>,
    /// Seen up (standing or sitting, not low) in every result since, and
    /// last so.
    up_since: Option<Instant>,
    last_up: Option<Instant>,
    standing: Standing,
}

impl Watch {
    /// Seen up through [`UP_FOR`].
    fn up_long(&self) -> bool {
        match (self.up_since, self.last_up) {
            (Some(since), Some(last)) => last.saturating_duration_since(since) >= UP_FOR,
            _ => false,
        }
    }
}

/// The falls of one room.
#[derive(Debug)]
pub struct Falls {
    settings: FallSettings,
    /// Prefix of alert ids (instance and start time).
    prefix: String,
    next: u64,
    watches: HashMap<u64, Watch>,
    /// Active alerts, oldest first.
    alerts: Vec<Alert>,
}

fn within(t: Option<Instant>, of: Instant, span: Duration) -> bool {
    t.is_some_and(|t| t + span >= of)
}

impl Falls {
    pub fn new(settings: FallSettings, prefix: &str) -> Self {
        Self {
            settings,
            prefix: prefix.to_string(),
            next: 1,
            watches: HashMap::new(),
            alerts: Vec::new(),
        }
    }

    pub fn alerts(&self) -> &[Alert] {
        &self.alerts
    }

    /// Track `id` seen in a result at `now`, outside rest zones or not.
    pub fn observe(&mut self, id: u64, seen: Seen, resting: bool, now: Instant) {
        if !self.settings.enabled {
            return;
        }
        let w = self.watches.entry(id).or_default();
        let up = !seen.low && matches!(seen.posture, Some(Posture::Standing | Posture::Sitting));
        if seen.posture == Some(Posture::Standing) && !seen.low {
            w.last_standing = Some(now);
        }
        if seen.descending {
            w.last_descent = Some(now);
        }
        let down = !resting && (seen.posture == Some(Posture::Lying) || seen.low);
        if !up {
            w.up_since = None;
            w.last_up = None;
        }
        if down {
            if w.down_since.is_none() {
                w.down_since = Some(now);
                let quick = within(w.last_standing, now, FALL_WITHIN)
                    || within(w.last_descent, now, FALL_WITHIN);
                w.fall = quick.then_some(if seen.posture == Some(Posture::Lying) {
                    How::Lying
                } else {
                    How::ToTheFloor
                });
            }
        } else if up || resting {
            w.down_since = None;
            w.fall = None;
        }
        if up {
            w.up_since.get_or_insert(now);
            w.last_up = Some(now);
            if w.standing == Standing::Acknowledged && w.up_long() {
                w.standing = Standing::Clear;
            }
        }
    }

    /// Track `id` was not seen in a result: being up starts anew when they
    /// are seen again (up "through" [`UP_FOR`] means in every result).
    pub fn missed(&mut self, id: u64) {
        if let Some(w) = self.watches.get_mut(&id) {
            w.up_since = None;
            w.last_up = None;
        }
    }

    /// Decides at `now` for the present people: alerts raised, and alerts
    /// ended because the person was seen up again.
    pub fn check(&mut self, people: &[Present], now: Instant, wall: SystemTime) -> Vec<Signal> {
        let mut out = Vec::new();
        if !self.settings.enabled {
            return out;
        }
        for p in people {
            let Some(w) = self.watches.get_mut(&p.track_id) else {
                continue;
            };
            match w.standing {
                Standing::Alerted => {
                    if w.up_long() {
                        w.standing = Standing::Clear;
                        if let Some(alert) = self.take_alert(p.track_id) {
                            out.push(Signal::Ended {
                                alert,
                                reason: Ended::Up,
                            });
                        }
                    }
                    continue;
                }
                Standing::Acknowledged => continue,
                Standing::Clear => {}
            }
            let confirm = self.settings.confirm;
            let lost = now.saturating_duration_since(p.last_seen);
            // Lost for `confirm` at an exit or in a rest zone, someone has
            // left (or lies down to rest), whatever they did before.
            let away = !p.resting && !p.at_exit;
            let how = match w.down_since {
                Some(since) if lost < confirm || away => {
                    let down_for = now.saturating_duration_since(since);
                    match w.fall {
                        Some(how) if down_for >= confirm => Some(how),
                        _ if down_for >= self.settings.down_after => Some(How::DownLong),
                        _ => None,
                    }
                }
                None if away
                    && lost >= confirm
                    && within(w.last_descent, p.last_seen, FALL_WITHIN) =>
                {
                    Some(How::LostAfterDescent)
                }
                _ => None,
            };
            if let Some(how) = how {
                w.standing = Standing::Alerted;
                w.up_since = None;
                w.last_up = None;
                let kind = if how == How::DownLong {
                    AlertKind::Down
                } else {
                    AlertKind::Fall
                };
                let alert = Alert {
                    alert_id: format!("{}-a{}", self.prefix, self.next),
                    kind,
                    track_id: p.track_id,
                    since: now,
                    since_wall: wall,
                    announced: 1,
                    last_announced: now,
                    last_announced_wall: wall,
                };
                self.next += 1;
                self.alerts.push(alert.clone());
                out.push(Signal::Raised { alert, how });
            }
        }
        out
    }

    /// Announces again the alerts due at `now` (their count raised).
    pub fn repeat_due(&mut self, now: Instant, wall: SystemTime) {
        let every = self.settings.repeat;
        if every.is_zero() {
            return;
        }
        for a in &mut self.alerts {
            if now.saturating_duration_since(a.last_announced) >= every {
                a.announced += 1;
                a.last_announced = now;
                a.last_announced_wall = wall;
            }
        }
    }

    fn take_alert(&mut self, track_id: u64) -> Option<Alert> {
        let i = self.alerts.iter().position(|a| a.track_id == track_id)?;
        Some(self.alerts.remove(i))
    }

    /// An operator acknowledged `alert_id` (every active alert with `None`):
    /// the alerts end; no new one for those people until they are up.
    pub fn acknowledge(&mut self, alert_id: Option<&str>) -> Vec<Signal> {
        let (acked, kept): (Vec<Alert>, Vec<Alert>) = std::mem::take(&mut self.alerts)
            .into_iter()
            .partition(|a| alert_id.is_none_or(|id| a.alert_id == id));
        self.alerts = kept;
        acked
            .into_iter()
            .map(|alert| {
                if let Some(w) = self.watches.get_mut(&alert.track_id) {
                    w.standing = Standing::Acknowledged;
                }
                Signal::Ended {
                    alert,
                    reason: Ended::Acknowledged,
                }
            })
            .collect()
    }

    /// Track `id` ended (`reason`: why): its alert ends too.
    pub fn forget(&mut self, id: u64, reason: Ended) -> Option<Signal> {
        self.watches.remove(&id);
        let alert = self.take_alert(id)?;
        Some(Signal::Ended { alert, reason })
    }

    /// The people whose alert was acknowledged and who have not been up
    /// since (kept across a restart).
    pub fn acknowledged(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self
            .watches
            .iter()
            .filter(|(_, w)| w.standing == Standing::Acknowledged)
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Track `id`'s alert was acknowledged in the last run, and they have
    /// not been up since.
    pub fn restore_acknowledged(&mut self, id: u64) {
        if self.settings.enabled {
            self.watches.entry(id).or_default().standing = Standing::Acknowledged;
        }
    }

    /// Takes back an alert of the last run (its person taken back too);
    /// with falls no longer watched it ends at once.
    pub fn restore(&mut self, alert: Alert) -> Option<Signal> {
        if !self.settings.enabled {
            return Some(Signal::Ended {
                alert,
                reason: Ended::Disabled,
            });
        }
        let w = self.watches.entry(alert.track_id).or_default();
        w.standing = Standing::Alerted;
        self.alerts.retain(|a| a.track_id != alert.track_id);
        self.alerts.push(alert);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn falls() -> Falls {
        Falls::new(
            FallSettings {
                enabled: true,
                confirm: Duration::from_secs(2),
                down_after: Duration::from_secs(30),
                repeat: Duration::from_secs(60),
            },
            "cam-1",
        )
    }

    fn seen(posture: Posture) -> Seen {
        Seen {
            posture: Some(posture),
            low: false,
            descending: false,
        }
    }

    fn present(at: Instant) -> Present {
        Present {
            track_id: 1,
            last_seen: at,
            resting: false,
            at_exit: false,
        }
    }

    /// Seen every half second from `from` for `secs` as `s`; the signals.
    fn run(
        f: &mut Falls,
        t0: Instant,
        from: f64,
        secs: f64,
        s: Seen,
        resting: bool,
    ) -> Vec<Signal> {
        let mut out = Vec::new();
        let mut t = from;
        while t < from + secs {
            let now = t0 + Duration::from_secs_f64(t);
            f.observe(1, s, resting, now);
            let mut p = present(now);
            p.resting = resting;
            out.extend(f.check(&[p], now, SystemTime::now()));
            t += 0.5;
        }
        out
    }

    #[test]
    fn standing_then_lying_is_a_fall_after_confirm_and_up_again_ends_it() {
        let mut f = falls();
        let t0 = Instant::now();
        assert!(run(&mut f, t0, 0.0, 5.0, seen(Posture::Standing), false).is_empty());
        let lying = run(&mut f, t0, 5.0, 10.0, seen(Posture::Lying), false);
        assert_eq!(lying.len(), 1, "{lying:?}");
        let Signal::Raised { alert, how } = &lying[0] else {
            panic!("{lying:?}")
        };
        assert_eq!((alert.kind, *how), (AlertKind::Fall, How::Lying));
        assert_eq!(
            alert.since,
            t0 + Duration::from_secs(7),
            "confirmed 2 s after lying"
        );
        assert_eq!(f.alerts().len(), 1);
        // Announced again every minute.
        f.repeat_due(t0 + Duration::from_secs(60), SystemTime::now());
        assert_eq!(f.alerts()[0].announced, 1);
        f.repeat_due(t0 + Duration::from_secs(67), SystemTime::now());
        assert_eq!(f.alerts()[0].announced, 2);
        // Up again: ended after 3 s of standing.
        let up = run(&mut f, t0, 15.0, 5.0, seen(Posture::Standing), false);
        assert!(
            matches!(
                &up[..],
                [Signal::Ended {
                    reason: Ended::Up,
                    ..
                }]
            ),
            "{up:?}"
        );
        assert!(f.alerts().is_empty());
    }

    #[test]
    fn lying_down_slowly_or_on_a_bed_is_no_fall_but_long_on_the_floor_is_a_person_down() {
        let mut f = falls();
        let t0 = Instant::now();
        run(&mut f, t0, 0.0, 2.0, seen(Posture::Standing), false);
        // Sits for 10 s, then lies down on the floor: not a fall.
        assert!(run(&mut f, t0, 2.0, 10.0, seen(Posture::Sitting), false).is_empty());
        let down = run(&mut f, t0, 12.0, 40.0, seen(Posture::Lying), false);
        assert_eq!(down.len(), 1, "{down:?}");
        assert!(
            matches!(&down[0], Signal::Raised { alert, how: How::DownLong } if alert.kind == AlertKind::Down && alert.since == t0 + Duration::from_secs(42))
        );
        // On a bed (rest zone), lying after standing is nothing at all.
        let mut bed = falls();
        run(&mut bed, t0, 0.0, 2.0, seen(Posture::Standing), true);
        assert!(run(&mut bed, t0, 2.0, 60.0, seen(Posture::Lying), true).is_empty());
    }

    #[test]
    fn bending_down_briefly_is_no_fall() {
        let mut f = falls();
        let t0 = Instant::now();
        run(&mut f, t0, 0.0, 3.0, seen(Posture::Standing), false);
        let low = Seen {
            posture: Some(Posture::Lying),
            low: true,
            descending: true,
        };
        assert!(run(&mut f, t0, 3.0, 1.5, low, false).is_empty());
        assert!(run(&mut f, t0, 4.5, 10.0, seen(Posture::Standing), false).is_empty());
    }

    #[test]
    fn lost_right_after_going_down_is_a_fall_but_not_at_an_exit() {
        let t0 = Instant::now();
        for at_exit in [false, true] {
            let mut f = falls();
            run(&mut f, t0, 0.0, 3.0, seen(Posture::Standing), false);
            let going = Seen {
                posture: Some(Posture::Standing),
                low: false,
                descending: true,
            };
            let last = t0 + Duration::from_secs(3);
            f.observe(1, going, false, last);
            let mut p = present(last);
            p.at_exit = at_exit;
            let later = last + Duration::from_millis(1500);
            assert!(f.check(&[p], later, SystemTime::now()).is_empty());
            let out = f.check(&[p], last + Duration::from_secs(2), SystemTime::now());
            if at_exit {
                assert!(out.is_empty(), "{out:?}");
            } else {
                assert!(
                    matches!(
                        &out[..],
                        [Signal::Raised {
                            how: How::LostAfterDescent,
                            ..
                        }]
                    ),
                    "{out:?}"
                );
            }
        }
    }

    #[test]
    fn an_acknowledged_alert_ends_and_no_new_one_comes_until_the_person_is_up() {
        let mut f = falls();
        let t0 = Instant::now();
        run(&mut f, t0, 0.0, 2.0, seen(Posture::Standing), false);
        let raised = run(&mut f, t0, 2.0, 4.0, seen(Posture::Lying), false);
        let Some(Signal::Raised { alert, .. }) = raised.first() else {
            panic!("{raised:?}")
        };
        assert!(f.acknowledge(Some("no-such-alert")).is_empty());
        let acked = f.acknowledge(Some(&alert.alert_id));
        assert!(matches!(
            &acked[..],
            [Signal::Ended {
                reason: Ended::Acknowledged,
                ..
            }]
        ));
        assert!(run(&mut f, t0, 6.0, 60.0, seen(Posture::Lying), false).is_empty());
        // Up, then down again after a stand: a new fall.
        run(&mut f, t0, 66.0, 4.0, seen(Posture::Standing), false);
        let again = run(&mut f, t0, 70.0, 4.0, seen(Posture::Lying), false);
        assert!(matches!(&again[..], [Signal::Raised { .. }]), "{again:?}");
        // A track that ends takes its alert with it: `left` at an exit.
        assert!(matches!(
            f.forget(1, Ended::Left),
            Some(Signal::Ended {
                reason: Ended::Left,
                ..
            })
        ));
        assert!(f.alerts().is_empty());
    }

    #[test]
    fn one_upright_glimpse_then_out_of_sight_does_not_end_an_alert() {
        let mut f = falls();
        let t0 = Instant::now();
        run(&mut f, t0, 0.0, 2.0, seen(Posture::Standing), false);
        assert_eq!(
            run(&mut f, t0, 2.0, 4.0, seen(Posture::Lying), false).len(),
            1
        );
        // One frame up (a carer's legs?), then nobody seen for a minute.
        let glimpse = t0 + Duration::from_secs(6);
        f.observe(1, seen(Posture::Standing), false, glimpse);
        f.missed(1);
        let later = glimpse + Duration::from_secs(60);
        assert!(
            f.check(&[present(glimpse)], later, SystemTime::now())
                .is_empty()
        );
        assert_eq!(f.alerts().len(), 1, "still active");
        // Acknowledged, then one frame up: no re-arm; a new fall only after
        // being seen up through 3 s.
        f.acknowledge(None);
        f.observe(1, seen(Posture::Standing), false, later);
        f.missed(1);
        let again = run(&mut f, t0, 66.5, 4.0, seen(Posture::Lying), false);
        assert!(again.is_empty(), "{again:?}");
    }

    #[test]
    fn crouching_in_a_doorway_and_stepping_out_is_no_fall() {
        let mut f = falls();
        let t0 = Instant::now();
        run(&mut f, t0, 0.0, 3.0, seen(Posture::Standing), false);
        let crouch = Seen {
            posture: Some(Posture::Sitting),
            low: true,
            descending: true,
        };
        let last = t0 + Duration::from_secs(3);
        f.observe(1, crouch, false, last);
        let mut p = present(last);
        p.at_exit = true;
        for ms in [500, 1500, 2500, 4000, 10_000] {
            let out = f.check(&[p], last + Duration::from_millis(ms), SystemTime::now());
            assert!(out.is_empty(), "at +{ms} ms: {out:?}");
        }
    }

    #[test]
    fn disabled_it_says_nothing() {
        let mut f = falls();
        f.settings.enabled = false;
        let t0 = Instant::now();
        run(&mut f, t0, 0.0, 2.0, seen(Posture::Standing), false);
        assert!(run(&mut f, t0, 2.0, 60.0, seen(Posture::Lying), false).is_empty());
    }
}

//! What a camera's room keeps across a restart: the people present when it
//! was saved (their track, last box, zones, whether they were seen), so that
//! a restart neither forgets a sleeping resident nor leaves a visit open.
//!
//! Owns the snapshot's shape and its checks. Reading and writing the file is
//! the camera's business; this module never touches a disk.

use std::time::SystemTime;

use orion_protocol::BBox;
use serde::{Deserialize, Serialize};

use super::falls::AlertKind;
use super::posture::Posture;
use super::tracker::MAX_TRACKS;

/// The present people of one camera, as saved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    /// When it was saved (RFC 3339).
    pub saved_at: String,
    /// Track ids below it were given out: a restart never gives them again.
    pub next_track_id: u64,
    /// Since when the room has been occupied, when it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occupied_since: Option<String>,
    pub people: Vec<SavedPerson>,
    /// The active alerts (each of a person in `people`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alerts: Vec<SavedAlert>,
    /// The people whose alert was acknowledged and who have not been up
    /// since (no new alert for them until they are).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acknowledged: Vec<u64>,
}

/// An active alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedAlert {
    pub alert_id: String,
    pub alert: AlertKind,
    pub track_id: u64,
    /// When it was raised (RFC 3339).
    pub since: String,
    pub announced: u32,
}

/// One present person.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedPerson {
    pub track_id: u64,
    /// The last box (full-frame pixels).
    pub bbox: BBox,
    pub first_seen: String,
    pub last_seen: String,
    /// Detected when saved (else unseen).
    pub seen: bool,
    /// How long they had been unseen when saved.
    pub unseen_for_s: f64,
    /// The zones they were in.
    pub zones: Vec<String>,
    /// Their posture, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub posture: Option<Posture>,
}

fn parse(t: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(t).ok()
}

impl Snapshot {
    pub fn saved_at(&self) -> Option<SystemTime> {
        parse(&self.saved_at)
    }

    /// Parses a saved snapshot, refusing what no save writes: too many
    /// people, a person twice, boxes or durations that are not numbers or
    /// out of bounds, times that are not times.
    pub fn from_json(bytes: &[u8]) -> Result<Self, String> {
        let s: Snapshot = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if s.people.len() > MAX_TRACKS {
            return Err(format!("{} people; at most {MAX_TRACKS}", s.people.len()));
        }
        if s.saved_at().is_none() {
            return Err(format!("saved_at `{}` is not an RFC 3339 time", s.saved_at));
        }
        if s.next_track_id > MAX_TRACK_ID {
            return Err(format!("next_track_id {} is too large", s.next_track_id));
        }
        if s.occupied_since
            .as_deref()
            .is_some_and(|t| parse(t).is_none())
        {
            return Err("occupied_since is not an RFC 3339 time".into());
        }
        for (i, p) in s.people.iter().enumerate() {
            p.check(s.next_track_id)
                .map_err(|e| format!("people[{i}]: {e}"))?;
            if s.people[..i].iter().any(|o| o.track_id == p.track_id) {
                return Err(format!("people[{i}]: track {} twice", p.track_id));
            }
        }
        if s.acknowledged.len() > MAX_TRACKS {
            return Err(format!(
                "{} acknowledged; at most {MAX_TRACKS}",
                s.acknowledged.len()
            ));
        }
        for (i, a) in s.alerts.iter().enumerate() {
            let ok = s.people.iter().any(|p| p.track_id == a.track_id)
                && parse(&a.since).is_some()
                && !a.alert_id.is_empty()
                && a.alert_id.len() <= 128
                && s.alerts[..i].iter().all(|o| o.track_id != a.track_id);
            if !ok {
                return Err(format!(
                    "alerts[{i}]: an alert of a present person (once), with an id and an RFC 3339 `since`"
                ));
            }
        }
        Ok(s)
    }
}

/// Track ids stay below it (exact in JSON numbers, and far from overflow).
const MAX_TRACK_ID: u64 = 1 << 53;
/// The longest anyone is unseen in a saved snapshot (the longest
/// `presence.unseen_timeout_s`).
const MAX_UNSEEN_S: f64 = 7.0 * 86400.0;
/// Boxes are within this many pixels of the frame (the largest frame is far
/// smaller).
const MAX_PIXELS: f64 = 100_000.0;

impl SavedPerson {
    fn check(&self, next_track_id: u64) -> Result<(), String> {
        let b = &self.bbox;
        let in_bounds = [b.x, b.y, b.width, b.height]
            .iter()
            .all(|v| v.is_finite() && v.abs() <= MAX_PIXELS);
        if !in_bounds || b.width <= 0.0 || b.height <= 0.0 {
            return Err("the box is not a box".into());
        }
        if !(0.0..=MAX_UNSEEN_S).contains(&self.unseen_for_s) {
            return Err(format!(
                "unseen_for_s {} is outside 0..={MAX_UNSEEN_S}",
                self.unseen_for_s
            ));
        }
        if self.track_id == 0 || self.track_id >= next_track_id {
            return Err(format!("track_id {} was never given out", self.track_id));
        }
        if self.first_seen().is_none() || self.last_seen().is_none() {
            return Err("first_seen and last_seen must be RFC 3339 times".into());
        }
        if self.zones.len() > crate::tracking::zones::MAX_ZONES {
            return Err("in too many zones".into());
        }
        Ok(())
    }
}

impl Snapshot {
    /// The same people, in the same zones, seen or not (when saved and where
    /// exactly aside).
    pub fn same_people(&self, other: &Snapshot) -> bool {
        let key = |s: &Snapshot| -> Vec<(u64, bool, Vec<String>)> {
            s.people
                .iter()
                .map(|p| (p.track_id, p.seen, p.zones.clone()))
                .collect()
        };
        self.occupied_since == other.occupied_since
            && key(self) == key(other)
            && self.alerts == other.alerts
            && self.acknowledged == other.acknowledged
    }
}

impl SavedAlert {
    pub fn since(&self) -> Option<SystemTime> {
        parse(&self.since)
    }
}

impl SavedPerson {
    pub fn first_seen(&self) -> Option<SystemTime> {
        parse(&self.first_seen)
    }

    pub fn last_seen(&self) -> Option<SystemTime> {
        parse(&self.last_seen)
    }
}

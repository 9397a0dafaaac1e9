//! The room of one camera (`RoomTracker`): turns its person detections into tracks (the
//! [`Tracker`]), visits into events (`person_entered`, `person_left`,
//! `zone_entered`, `zone_left`, `occupancy_changed`), and the tracks into
//! occupancy with hysteresis, for the room and each zone.
//!
//! Zones: a confirmed track is in a zone once its anchor point (the bottom centre
//! of its box by default: where the person stands or lies) has been inside for
//! `min_frames` results in a row, and out of it once outside for as many; a
//! track that ends leaves its zones.
//!
//! Occupancy: occupied as soon as a confirmed track exists; empty only after no
//! confirmed track for `empty_after` (so one missed detection never flips it).
//! After a start the state is *unknown* until it is decided (the first
//! confirmation, or `empty_after` of results without one), so no value from
//! before a restart is ever repeated as current.
//!
//! Pure logic like the tracker: it returns what to publish; the camera's result handler
//! publishes it. Times come with every call (monotonic for ages, wall clock for
//! the messages).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant, SystemTime};

use orion_protocol::BBox;
use serde::Serialize;

use super::tracker::{Change, Track, Tracker, TrackerSettings};
use super::zones::Zone;
use crate::tracking::zones::ZoneAnchor;

/// When something happened: monotonic for ages, wall clock for messages.
#[derive(Debug, Clone, Copy)]
pub struct Stamp {
    pub mono: Instant,
    pub wall: SystemTime,
}

impl Stamp {
    pub fn now() -> Self {
        Self {
            mono: Instant::now(),
            wall: SystemTime::now(),
        }
    }

    /// The wall-clock time of an earlier monotonic instant.
    fn wall_of(&self, t: Instant) -> SystemTime {
        self.wall - self.mono.saturating_duration_since(t)
    }
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// A point in normalized frame coordinates (0..1).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Point {
    pub x: f64,
    pub y: f64,
}

/// What the tracking and occupancy of a camera are tuned with.
#[derive(Debug, Clone)]
pub struct RoomSettings {
    pub tracker: TrackerSettings,
    /// No confirmed track for this long: the room is empty.
    pub empty_after: Duration,
    pub zones: Vec<Zone>,
    /// Results in a row inside (outside) a zone before a track is in (out of) it.
    pub zone_min_frames: u32,
    /// Someone in a zone is out of it only beyond this distance from its
    /// outline (normalized): standing on the edge, or a jittering box, is no
    /// exit.
    pub zone_margin: f64,
    pub anchor: ZoneAnchor,
}

/// One event, published on `care/events/{instance_id}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub instance_id: String,
    pub room_id: String,
    /// Unique and stable: `{instance_id}-{daemon start ms}-{n}`.
    pub event_id: String,
    /// When it happened (RFC 3339, UTC).
    pub timestamp: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub track_id: Option<u64>,
    #[serde(flatten)]
    pub detail: Detail,
}

/// The fields of each event type.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Detail {
    Entered {
        first_seen: String,
        /// Bottom centre of the first box (where the person stood), normalized.
        position: Point,
    },
    Left {
        first_seen: String,
        last_seen: String,
        duration_s: f64,
        /// Bottom centre of the last box, normalized.
        position: Point,
    },
    Zone {
        zone: String,
        /// The track's anchor point when it entered or left, normalized.
        position: Point,
        /// Why a track left: `walked_out`, `track_ended` (not seen for
        /// `tracking.max_missing_s`) or `zone_changed` (the zones were replaced).
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<&'static str>,
    },
    Occupancy {
        occupied: bool,
        count: usize,
    },
}

/// The retained occupancy of a camera, on `care/occupancy/{instance_id}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Occupancy {
    pub occupied: bool,
    /// Confirmed people in view now.
    pub count: usize,
    /// Since when `occupied` has had this value.
    pub since: String,
    /// Each zone: whether a person is in it and how many.
    pub zones: BTreeMap<String, ZoneOccupancy>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ZoneOccupancy {
    pub occupied: bool,
    pub count: usize,
}

/// One track's standing with one zone.
#[derive(Debug, Clone, Default)]
struct InZone {
    inside_run: u32,
    outside_run: u32,
    inside: bool,
    /// The anchor point last seen.
    at: Option<Point>,
}

/// What one call produced.
#[derive(Debug, Default)]
pub struct Output {
    /// The track of each detection, in the order given (results only).
    pub track_ids: Vec<u64>,
    pub events: Vec<Event>,
    /// The occupancy to publish (retained) when it changed.
    pub occupancy: Option<Occupancy>,
}

pub struct RoomTracker {
    instance_id: String,
    room_id: String,
    width: f64,
    height: f64,
    settings: RoomSettings,
    tracker: Tracker,
    /// Prefix of event ids (instance and start time).
    id_prefix: String,
    next_event: u64,
    /// The last published state: `None` until decided.
    occupied: Option<bool>,
    count: usize,
    since: String,
    /// When the last confirmed track was last seen (or the start).
    last_person: Instant,
    /// (track id, zone name) -> standing.
    in_zones: HashMap<(u64, String), InZone>,
    /// The zones of the last published occupancy.
    zone_counts: BTreeMap<String, ZoneOccupancy>,
}

impl RoomTracker {
    pub fn new(
        instance_id: &str,
        room_id: &str,
        width: u32,
        height: u32,
        settings: RoomSettings,
    ) -> Self {
        let start = Stamp::now();
        let start_ms = start
            .wall
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        Self {
            instance_id: instance_id.to_string(),
            room_id: room_id.to_string(),
            width: f64::from(width.max(1)),
            height: f64::from(height.max(1)),
            tracker: Tracker::new(settings.tracker.clone()),
            settings,
            id_prefix: format!("{instance_id}-{start_ms}"),
            next_event: 1,
            occupied: None,
            count: 0,
            since: rfc3339(start.wall),
            last_person: start.mono,
            in_zones: HashMap::new(),
            zone_counts: BTreeMap::new(),
        }
    }

    pub fn zones(&self) -> &[Zone] {
        &self.settings.zones
    }

    /// Replaces the zones: tracks in a zone that changed or went away leave it
    /// (`reason: zone_changed`); the new zones start empty.
    pub fn set_zones(&mut self, zones: Vec<Zone>, now: Stamp) -> Output {
        let mut out = Output::default();
        let kept: Vec<String> = zones
            .iter()
            .filter(|z| self.settings.zones.contains(z))
            .map(|z| z.name.clone())
            .collect();
        let mut leaving: Vec<(u64, String, Option<Point>)> = self
            .in_zones
            .iter()
            .filter(|((_, zone), st)| st.inside && !kept.contains(zone))
            .map(|((id, zone), st)| (*id, zone.clone(), st.at))
            .collect();
        leaving.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        for (id, zone, at) in leaving {
            let detail = Detail::Zone {
                zone,
                position: at.unwrap_or(Point { x: 0.0, y: 0.0 }),
                reason: Some("zone_changed"),
            };
            out.events
                .push(self.event("zone_left", now.wall, Some(id), detail));
        }
        self.in_zones.retain(|(_, zone), _| kept.contains(zone));
        self.settings.zones = zones;
        self.occupancy(now, &mut out);
        out
    }

    /// Whether `b`'s anchor falls in an ignore zone.
    fn ignored(&self, b: &BBox) -> bool {
        let at = self.anchor(b);
        self.settings
            .zones
            .iter()
            .any(|z| z.ignore && z.contains(at.x, at.y))
    }

    fn anchor(&self, b: &BBox) -> Point {
        match self.settings.anchor {
            ZoneAnchor::BottomCenter => self.bottom_centre(b),
            ZoneAnchor::Center => Point {
                x: ((b.x + b.width / 2.0) / self.width).clamp(0.0, 1.0),
                y: ((b.y + b.height / 2.0) / self.height).clamp(0.0, 1.0),
            },
        }
    }

    /// Each zone's people: the confirmed tracks in it.
    fn zone_occupancy(&self) -> BTreeMap<String, ZoneOccupancy> {
        self.settings
            .zones
            .iter()
            .filter(|z| !z.ignore)
            .map(|z| {
                let count = self
                    .in_zones
                    .iter()
                    .filter(|((_, zone), st)| zone == &z.name && st.inside)
                    .count();
                let occupancy = ZoneOccupancy {
                    occupied: count > 0,
                    count,
                };
                (z.name.clone(), occupancy)
            })
            .collect()
    }

    /// Zone standing of the confirmed tracks seen in this result.
    fn update_zones(&mut self, seen: &[u64], now: Stamp, out: &mut Output) {
        if self.settings.zones.is_empty() {
            return;
        }
        let min = self.settings.zone_min_frames.max(1);
        let tracks: Vec<(u64, Point)> = self
            .tracker
            .confirmed()
            .filter(|t| seen.contains(&t.id))
            .map(|t| (t.id, self.anchor(&t.bbox)))
            .collect();
        let zones: Vec<Zone> = self
            .settings
            .zones
            .iter()
            .filter(|z| !z.ignore)
            .cloned()
            .collect();
        for (id, at) in tracks {
            for zone in &zones {
                let st = self.in_zones.entry((id, zone.name.clone())).or_default();
                st.at = Some(at);
                let inside = zone.contains(at.x, at.y)
                    || st.inside && zone.distance(at.x, at.y) <= self.settings.zone_margin;
                if inside {
                    st.inside_run += 1;
                    st.outside_run = 0;
                } else {
                    st.outside_run += 1;
                    st.inside_run = 0;
                }
                let kind = if !st.inside && st.inside_run >= min {
                    st.inside = true;
                    "zone_entered"
                } else if st.inside && st.outside_run >= min {
                    st.inside = false;
                    "zone_left"
                } else {
                    continue;
                };
                let detail = Detail::Zone {
                    zone: zone.name.clone(),
                    position: at,
                    reason: (kind == "zone_left").then_some("walked_out"),
                };
                out.events
                    .push(self.event(kind, now.wall, Some(id), detail));
            }
        }
    }

    /// A track that ended leaves every zone it was in.
    fn leave_zones(&mut self, track: &Track, at: SystemTime, out: &mut Output) {
        let mut left: Vec<(String, InZone)> = Vec::new();
        self.in_zones.retain(|(id, zone), st| {
            if *id != track.id {
                return true;
            }
            if st.inside {
                left.push((zone.clone(), st.clone()));
            }
            false
        });
        left.sort_by(|a, b| a.0.cmp(&b.0));
        for (zone, st) in left {
            let detail = Detail::Zone {
                zone,
                position: st.at.unwrap_or_else(|| self.anchor(&track.bbox)),
                reason: Some("track_ended"),
            };
            out.events
                .push(self.event("zone_left", at, Some(track.id), detail));
        }
    }

    /// The live confirmed tracks (for metrics).
    pub fn active_tracks(&self) -> usize {
        self.tracker.confirmed().count()
    }

    fn bottom_centre(&self, b: &BBox) -> Point {
        Point {
            x: ((b.x + b.width / 2.0) / self.width).clamp(0.0, 1.0),
            y: ((b.y + b.height) / self.height).clamp(0.0, 1.0),
        }
    }

    fn event(
        &mut self,
        kind: &'static str,
        at: SystemTime,
        track_id: Option<u64>,
        detail: Detail,
    ) -> Event {
        let event_id = format!("{}-{}", self.id_prefix, self.next_event);
        self.next_event += 1;
        Event {
            kind,
            instance_id: self.instance_id.clone(),
            room_id: self.room_id.clone(),
            event_id,
            timestamp: rfc3339(at),
            track_id,
            detail,
        }
    }

    /// One person-detection result of a frame captured at `captured`, seen at `now`.
    pub fn on_result(&mut self, captured: Stamp, boxes: &[BBox], now: Stamp) -> Output {
        // What an ignore zone holds never reaches the tracker.
        let counted: Vec<bool> = boxes.iter().map(|b| !self.ignored(b)).collect();
        let kept: Vec<BBox> = boxes
            .iter()
            .zip(&counted)
            .filter(|(_, c)| **c)
            .map(|(b, _)| *b)
            .collect();
        let update = self.tracker.update(captured.mono, &kept);
        let mut ids = update.track_ids.into_iter();
        let track_ids = counted
            .iter()
            .map(|c| if *c { ids.next().unwrap_or(0) } else { 0 })
            .collect();
        let mut out = Output {
            track_ids,
            ..Output::default()
        };
        let seen = out.track_ids.clone();
        self.apply(update.changes, now, &mut out, &seen);
        out
    }

    /// Time passing without results (a paused camera, a stream outage): visits
    /// end and the room empties on time.
    pub fn on_tick(&mut self, now: Stamp) -> Output {
        let changes = self.tracker.expire(now.mono);
        let mut out = Output::default();
        self.apply(changes, now, &mut out, &[]);
        out
    }

    fn apply(&mut self, changes: Vec<Change>, now: Stamp, out: &mut Output, seen: &[u64]) {
        for change in changes {
            match change {
                Change::Confirmed(t) => {
                    let detail = Detail::Entered {
                        first_seen: rfc3339(now.wall_of(t.first_seen)),
                        position: self.bottom_centre(&t.first_bbox),
                    };
                    let at = now.wall_of(t.last_seen);
                    out.events
                        .push(self.event("person_entered", at, Some(t.id), detail));
                }
                Change::Ended(t) => {
                    let at = now.wall_of(t.last_seen + self.settings.tracker.max_missing);
                    self.leave_zones(&t, at, out);
                    let detail = self.left(&t, now);
                    out.events
                        .push(self.event("person_left", at, Some(t.id), detail));
                }
            }
        }
        self.update_zones(seen, now, out);
        self.occupancy(now, out);
    }

    fn left(&self, t: &Track, now: Stamp) -> Detail {
        Detail::Left {
            first_seen: rfc3339(now.wall_of(t.first_seen)),
            last_seen: rfc3339(now.wall_of(t.last_seen)),
            duration_s: t
                .last_seen
                .saturating_duration_since(t.first_seen)
                .as_secs_f64(),
            position: self.bottom_centre(&t.bbox),
        }
    }

    /// Decides occupancy with hysteresis; publishes a change (and an
    /// `occupancy_changed` event) only when the state or the count changes.
    fn occupancy(&mut self, now: Stamp, out: &mut Output) {
        let count = self.tracker.confirmed().count();
        if let Some(last) = self.tracker.confirmed().map(|t| t.last_seen).max() {
            self.last_person = self.last_person.max(last);
        }
        let occupied = if count > 0 {
            Some(true)
        } else if now.mono.saturating_duration_since(self.last_person) >= self.settings.empty_after
        {
            Some(false)
        } else {
            // Nobody confirmed, not yet long enough: keep what was said (or
            // stay undecided after a start).
            self.occupied
        };
        let Some(occupied) = occupied else {
            return;
        };
        let shown_count = if occupied { count.max(1) } else { 0 };
        let zones = self.zone_occupancy();
        let zones_changed = zones != self.zone_counts;
        self.zone_counts = zones.clone();
        if self.occupied == Some(occupied) && self.count == shown_count {
            if zones_changed {
                out.occupancy = Some(Occupancy {
                    occupied,
                    count: shown_count,
                    since: self.since.clone(),
                    zones,
                });
            }
            return;
        }
        if self.occupied != Some(occupied) {
            self.since = rfc3339(now.wall);
        }
        self.occupied = Some(occupied);
        self.count = shown_count;
        let detail = Detail::Occupancy {
            occupied,
            count: shown_count,
        };
        out.events
            .push(self.event("occupancy_changed", now.wall, None, detail));
        out.occupancy = Some(Occupancy {
            occupied,
            count: shown_count,
            since: self.since.clone(),
            zones,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> RoomSettings {
        RoomSettings {
            tracker: TrackerSettings::default(),
            empty_after: Duration::from_secs(10),
            zones: Vec::new(),
            zone_min_frames: 2,
            zone_margin: 0.0,
            anchor: ZoneAnchor::BottomCenter,
        }
    }

    /// A 640x480 camera's room.
    fn room(settings: RoomSettings) -> RoomTracker {
        RoomTracker::new("room-1", "101", 640, 480, settings)
    }

    fn person(x: f64) -> BBox {
        BBox {
            x,
            y: 100.0,
            width: 80.0,
            height: 200.0,
        }
    }

    fn at(base: Stamp, s: f64) -> Stamp {
        let d = Duration::from_secs_f64(s);
        Stamp {
            mono: base.mono + d,
            wall: base.wall + d,
        }
    }

    /// Feeds one result per 0.5 s from `from` s; returns every event and occupancy.
    fn feed(
        sig: &mut RoomTracker,
        base: Stamp,
        from: f64,
        results: &[Vec<BBox>],
    ) -> (Vec<Event>, Vec<Occupancy>) {
        let (mut events, mut occ) = (Vec::new(), Vec::new());
        for (i, boxes) in results.iter().enumerate() {
            let t = at(base, from + i as f64 * 0.5);
            let out = sig.on_result(t, boxes, t);
            assert_eq!(out.track_ids.len(), boxes.len());
            events.extend(out.events);
            occ.extend(out.occupancy);
        }
        (events, occ)
    }

    fn kinds(events: &[Event]) -> Vec<&'static str> {
        events.iter().map(|e| e.kind).collect()
    }

    #[test]
    fn a_visit_is_one_entered_one_left_and_occupancy_follows_with_hysteresis() {
        let base = Stamp::now();
        let mut sig = room(settings());
        // Nobody for 3 s: still undecided (empty only after 10 s).
        let (events, occ) = feed(&mut sig, base, 0.0, &vec![vec![]; 6]);
        assert!(events.is_empty() && occ.is_empty());
        // A person for 5 s, one missed result in the middle.
        let mut visit: Vec<Vec<BBox>> = (0..10)
            .map(|i| vec![person(100.0 + 10.0 * i as f64)])
            .collect();
        visit[5].clear();
        let (events, occ) = feed(&mut sig, base, 3.0, &visit);
        assert_eq!(kinds(&events), vec!["person_entered", "occupancy_changed"]);
        assert_eq!(events[0].track_id, Some(1));
        assert_eq!(occ.len(), 1);
        assert!(occ[0].occupied && occ[0].count == 1);
        let json = serde_json::to_value(&events[0]).unwrap();
        assert_eq!(json["type"], "person_entered");
        assert_eq!(json["instance_id"], "room-1");
        assert_eq!(json["room_id"], "101");
        assert!(
            (json["position"]["x"].as_f64().unwrap() - 140.0 / 640.0).abs() < 1e-9,
            "{json}"
        );
        assert!(
            (json["position"]["y"].as_f64().unwrap() - 300.0 / 480.0).abs() < 1e-9,
            "{json}"
        );
        // Gone: the visit ends after max_missing, the room empties 10 s after
        // the person was last seen, not before.
        let (events, occ) = feed(&mut sig, base, 8.0, &vec![vec![]; 19]);
        assert_eq!(kinds(&events), vec!["person_left"]);
        assert!(occ.is_empty(), "not empty before 10 s");
        let json = serde_json::to_value(&events[0]).unwrap();
        assert_eq!(json["track_id"], 1);
        assert!(
            (json["duration_s"].as_f64().unwrap() - 4.5).abs() < 1e-6,
            "{json}"
        );
        let out = sig.on_tick(at(base, 17.6));
        let occ = out.occupancy.expect("empty now");
        assert!(!occ.occupied && occ.count == 0);
        assert_eq!(kinds(&out.events), vec!["occupancy_changed"]);
        assert!(sig.on_tick(at(base, 30.0)).events.is_empty(), "said once");
        // Event ids are unique.
        assert_ne!(events[0].event_id, out.events[0].event_id);
    }

    #[test]
    fn an_empty_room_is_decided_after_empty_after_and_two_people_count_two() {
        let base = Stamp::now();
        let mut sig = room(settings());
        let (_, occ) = feed(&mut sig, base, 0.0, &vec![vec![]; 22]);
        assert_eq!(occ.len(), 1, "decided once: {occ:?}");
        assert!(!occ[0].occupied);
        let two = vec![vec![person(50.0), person(450.0)]; 4];
        let (events, occ) = feed(&mut sig, base, 11.0, &two);
        assert_eq!(
            kinds(&events)
                .iter()
                .filter(|k| **k == "person_entered")
                .count(),
            2
        );
        assert_eq!(occ.last().map(|o| (o.occupied, o.count)), Some((true, 2)));
    }

    #[test]
    fn standing_on_a_zone_edge_is_no_exit_until_clearly_out() {
        let base = Stamp::now();
        let bed = vec![crate::tracking::zones::rect("bed", 0.0, 0.5, 0.5, 0.5)];
        let mut sig = room(RoomSettings {
            zones: bed,
            zone_margin: 0.03,
            ..settings()
        });
        // Bottom centre x = (x + 40) / 640 against the edge at 0.5: in bed,
        // then a box jittering across the edge (0.48 .. 0.52), then out.
        let mut results = vec![vec![person(250.0)]; 4];
        for i in 0..12 {
            let x = if i % 2 == 0 { 267.0 } else { 293.0 };
            results.push(vec![person(x)]);
        }
        let kinds_on_edge = |events: &[Event]| -> Vec<&'static str> {
            events
                .iter()
                .filter(|e| e.kind.starts_with("zone_"))
                .map(|e| e.kind)
                .collect()
        };
        let (events, _) = feed(&mut sig, base, 0.0, &results);
        assert_eq!(kinds_on_edge(&events), ["zone_entered"], "{events:?}");
        let out: Vec<Vec<BBox>> = [330.0, 360.0, 390.0].map(|x| vec![person(x)]).to_vec();
        let (events, _) = feed(&mut sig, base, 8.0, &out);
        assert_eq!(kinds_on_edge(&events), ["zone_left"], "{events:?}");
        // Without a margin the same jitter is an exit and an entry, again and again.
        let mut flapping = room(RoomSettings {
            zones: vec![crate::tracking::zones::rect("bed", 0.0, 0.5, 0.5, 0.5)],
            zone_min_frames: 1,
            ..settings()
        });
        let (events, _) = feed(&mut flapping, base, 0.0, &results);
        assert!(kinds_on_edge(&events).len() > 4, "{events:?}");
    }

    #[test]
    fn what_an_ignore_zone_holds_never_counts() {
        let base = Stamp::now();
        // A poster on the right of the frame: its bottom centre lies in it.
        let mut poster = crate::tracking::zones::rect("poster", 0.6, 0.0, 0.4, 1.0);
        poster.ignore = true;
        let mut sig = room(RoomSettings {
            zones: vec![poster],
            ..settings()
        });
        let picture = person(500.0);
        let (events, occ) = feed(&mut sig, base, 0.0, &vec![vec![picture]; 8]);
        assert!(
            events.iter().all(|e| e.kind != "person_entered"),
            "{events:?}"
        );
        assert!(occ.iter().all(|o| !o.occupied), "{occ:?}");
        assert!(
            occ.iter().all(|o| !o.zones.contains_key("poster")),
            "no occupancy of its own"
        );
        // A person outside it, with the picture still there: one person, whose
        // track id lines up with their box.
        let resident = person(100.0);
        let (events, occ) = feed(&mut sig, base, 4.0, &vec![vec![picture, resident]; 4]);
        let entered: Vec<&Event> = events
            .iter()
            .filter(|e| e.kind == "person_entered")
            .collect();
        assert_eq!(entered.len(), 1, "{events:?}");
        assert_eq!(occ.last().map(|o| (o.occupied, o.count)), Some((true, 1)));
        let out = sig.on_result(at(base, 6.0), &[picture, resident], at(base, 6.0));
        assert_eq!(out.track_ids[0], 0, "the picture has no track");
        assert_eq!(Some(out.track_ids[1]), entered[0].track_id);
    }

    #[test]
    fn a_bed_exit_is_a_zone_left_after_min_frames_and_zones_count_in_occupancy() {
        let base = Stamp::now();
        let bed = vec![crate::tracking::zones::rect("bed", 0.0, 0.5, 0.5, 0.5)];
        let mut sig = room(RoomSettings {
            zones: bed,
            ..settings()
        });
        // In bed, one result just outside, back in, then out for good.
        // Bottom centre x = (x + 40) / 640: inside below 0.5.
        let inside = person(230.0);
        let outside = person(300.0);
        let mut results = vec![vec![inside]; 6];
        results.push(vec![outside]);
        results.push(vec![inside]);
        results.extend([300.0, 330.0, 360.0, 390.0].map(|x| vec![person(x)]));
        let (events, occ) = feed(&mut sig, base, 0.0, &results);
        let zone_events: Vec<(&str, String)> = events
            .iter()
            .filter(|e| e.kind.starts_with("zone_"))
            .map(|e| {
                let v = serde_json::to_value(e).unwrap();
                (e.kind, v["zone"].as_str().unwrap_or("").to_string())
            })
            .collect();
        assert_eq!(
            zone_events,
            vec![
                ("zone_entered", "bed".to_string()),
                ("zone_left", "bed".to_string())
            ],
            "one result outside is not an exit: {events:?}"
        );
        let left = events.iter().find(|e| e.kind == "zone_left").unwrap();
        let left = serde_json::to_value(left).unwrap();
        assert_eq!(left["reason"], "walked_out");
        assert_eq!(left["track_id"], 1);
        // Occupancy said the bed was occupied, then free.
        let bed_states: Vec<(bool, usize)> = occ
            .iter()
            .map(|o| (o.zones["bed"].occupied, o.zones["bed"].count))
            .collect();
        assert_eq!(bed_states.first(), Some(&(false, 0)));
        assert!(bed_states.contains(&(true, 1)), "{bed_states:?}");
        assert_eq!(bed_states.last(), Some(&(false, 0)));
        // Replacing the zones while someone is in one: they leave it.
        feed(&mut sig, base, 6.0, &vec![vec![inside]; 3]);
        let out = sig.set_zones(Vec::new(), at(base, 7.6));
        let json = serde_json::to_value(&out.events[0]).unwrap();
        assert_eq!(
            (json["type"].as_str(), json["reason"].as_str()),
            (Some("zone_left"), Some("zone_changed"))
        );
        assert!(sig.zones().is_empty());
    }
}

//! The room of one camera (`RoomTracker`): turns its person detections into tracks (the
//! [`Tracker`]), visits into events (`person_entered`, `person_left`,
//! `zone_entered`, `zone_left`, `occupancy_changed`), and the tracks into
//! occupancy with hysteresis, for the room and each zone.
//!
//! Presence holds: a person no longer detected away from an exit (the frame's
//! edges, zones marked `exit`) is *unseen*, still present, still in their
//! zones, until `unseen_timeout` of results without them. Detections above the
//! starting threshold start tracks; weaker ones (down to the keeping threshold)
//! only keep known people; a box touching the frame's edge (or standing in an
//! exit zone: a doorway) starts a track at the lower edge threshold (a person
//! half in view). Night (grayscale frames)
//! has thresholds of its own; the switch never starts or ends a visit.
//!
//! Zones: a confirmed track is in a zone once its anchor point (the bottom centre
//! of its box by default: where the person stands or lies) has been inside for
//! `min_frames` results in a row and `zone_min_time`, and out of it once
//! beyond `zone_margin` of it for as many and as long; a box cut by the frame or the ROI crop on its anchor's side
//! has its anchor estimated from the track's last whole box (or not used).
//! A track that ends leaves its zones.
//!
//! Occupancy: occupied while a confirmed track exists, seen or unseen; empty
//! only after none for `empty_after` of watching. While the camera does not
//! watch (paused, stream or workers down) its state says so and nothing ages.
//! After a start the state is *unknown* until it is decided (a person taken
//! back from before the restart, the first confirmation, or `empty_after` of
//! results without one), so no value from before a restart is ever repeated
//! as current.
//!
//! Pure logic like the tracker: it returns what to publish; the camera's result handler
//! publishes it. Times come with every call (monotonic for ages, wall clock for
//! the messages).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant, SystemTime};

use orion_protocol::{BBox, Keypoint};
use serde::Serialize;

use super::bodies::{Bodies, Cuts, Whole};
use super::falls::{Alert, AlertKind, Ended, FallSettings, Falls, How, Present, Seen, Signal};
use super::posture::{Posture, Postures, View};
use super::snapshot::{SavedAlert, SavedPerson, Snapshot};
use super::tracker::{Candidate, Change, EndReason, Track, Tracker, TrackerSettings};
use super::zones::{Zone, ZoneAnchor};

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

/// The confidences a detection is judged by.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// At or above: may start a track.
    pub start: f64,
    /// At or above, touching the frame's edge: may start a track (a person
    /// half in view scores lower).
    pub edge_start: f64,
    /// At or above: keeps a confirmed track (never starts one).
    pub keep: f64,
}

/// The thresholds of each model (its scores run its own way), day and night.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelThresholds {
    /// For a model not named below.
    pub default: (Thresholds, Thresholds),
    /// By catalog name (a result names its model).
    pub by_model: BTreeMap<String, (Thresholds, Thresholds)>,
}

impl ModelThresholds {
    /// The same for every model.
    pub fn same(day: Thresholds, night: Thresholds) -> Self {
        Self {
            default: (day, night),
            by_model: BTreeMap::new(),
        }
    }

    fn of(&self, model: &str, night: bool) -> Thresholds {
        let (d, n) = self.by_model.get(model).unwrap_or(&self.default);
        if night { *n } else { *d }
    }
}

/// Which frame edges are exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edges {
    pub left: bool,
    pub right: bool,
    pub top: bool,
    pub bottom: bool,
}

impl Edges {
    pub const ALL: Edges = Edges {
        left: true,
        right: true,
        top: true,
        bottom: true,
    };
}

/// A box this close to the frame's edge (fraction of the frame) touches it.
const EDGE: f64 = 0.02;
/// Sitting up this near a rest zone's side (share of its width): at its edge.
const EDGE_SHARE: f64 = 0.2;
/// Results in a row of the other kind (grayscale or colour) before night
/// begins or ends.
const LIGHT_RUN: u32 = 5;

/// What the tracking and occupancy of a camera are tuned with.
#[derive(Debug, Clone)]
pub struct RoomSettings {
    pub tracker: TrackerSettings,
    /// No confirmed track for this long: the room is empty.
    pub empty_after: Duration,
    pub zones: Vec<Zone>,
    /// Results in a row inside (outside) a zone before a track is in (out of) it.
    pub zone_min_frames: u32,
    /// And for at least this long (the same at any inference rate).
    pub zone_min_time: Duration,
    /// Someone in a zone is out of it only beyond this distance from its
    /// outline (normalized): standing on the edge, or a jittering box, is no
    /// exit.
    pub zone_margin: f64,
    pub anchor: ZoneAnchor,
    pub thresholds: ModelThresholds,
    /// The frame edges people leave by.
    pub exits: Edges,
    /// A person-shaped thing that has not moved for this long outside rest
    /// zones is pointed out as a candidate for an ignore zone (zero: never).
    pub ignore_hint_after: Duration,
    pub falls: FallSettings,
}

/// A person-shaped thing that has not moved for a long time outside rest
/// zones: perhaps a picture or a TV, for an operator to check (never ignored
/// by itself: a sleeping person does not move either).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IgnoreCandidate {
    pub track_id: u64,
    /// Its box, normalized: ready for an ignore zone's rect.
    pub rect: NormBox,
    pub still_for_s: f64,
}

/// A box in normalized frame coordinates.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct NormBox {
    pub x: f64,
    pub y: f64,
    pub width: f64,
    pub height: f64,
}

/// Whether the camera watches the room now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Watching {
    /// Frames are inferred: what is seen is what is there.
    #[default]
    Yes,
    /// Paused by an operator.
    Paused,
    /// The stream or the workers are down (or not up yet).
    Unknown,
}

impl Watching {
    pub fn as_str(self) -> &'static str {
        match self {
            Watching::Yes => "watching",
            Watching::Paused => "paused",
            Watching::Unknown => "unknown",
        }
    }
}

/// What one result saw: its detections, and how.
#[derive(Debug, Clone, Copy)]
pub struct Sight<'a> {
    /// Boxes (full-frame pixels) and their confidences.
    pub detections: &'a [(BBox, f64)],
    /// Each detection's keypoints (pose models), in the same order; empty
    /// when the model gives none.
    pub keypoints: &'a [Option<&'a [Keypoint]>],
    /// The crop the model looked at (full-frame pixels).
    pub crop: BBox,
    /// The frame had no colour (an infrared camera at night).
    pub grayscale: bool,
    /// The model that looked (its catalog name): its thresholds apply.
    pub model: &'a str,
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
        /// `exit` (last seen at an exit) or `not_seen` (unseen for
        /// `presence.unseen_timeout_s`).
        reason: &'static str,
    },
    Zone {
        zone: String,
        /// The track's anchor point when it entered or left, normalized.
        position: Point,
        /// Why a track left: `walked_out`, `track_ended` (the person left)
        /// or `zone_changed` (the zones were replaced).
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<&'static str>,
    },
    Occupancy {
        occupied: bool,
        count: usize,
    },
    Posture {
        posture: Posture,
        previous: Posture,
        /// The anchor point, normalized.
        position: Point,
    },
    /// `fall_detected`, `person_down`.
    Alert {
        alert_id: String,
        /// `fall` or `down`.
        alert: AlertKind,
        /// How it was seen: `lying`, `to_the_floor`, `lost_after_descent`,
        /// `down` (down for `falls.down_after_s`).
        how: How,
        /// Where the person is (the anchor point), normalized.
        position: Point,
    },
    /// `fall_cleared`, `alert_acknowledged`.
    AlertEnded {
        alert_id: String,
        alert: AlertKind,
        /// `up`, `left`, `not_seen`, `ignored`, `disabled` or
        /// `acknowledged`.
        reason: Ended,
        /// How long the alert was active.
        duration_s: f64,
    },
}

/// The retained alert state of a camera, on `care/alerts/{instance_id}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertState {
    pub instance_id: String,
    pub room_id: String,
    /// Whether any alert is active.
    pub active: bool,
    pub alerts: Vec<AlertView>,
}

/// One active alert as published.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertView {
    pub alert_id: String,
    /// `fall` or `down`.
    pub alert: AlertKind,
    pub track_id: u64,
    /// When it was raised.
    pub since: String,
    /// Where the person is (the anchor point), normalized.
    pub position: Point,
    /// How often it was announced (every `falls.repeat_s`).
    pub announced: u32,
    pub last_announced: String,
}

/// The retained occupancy of a camera, on `care/occupancy/{instance_id}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Occupancy {
    /// `watching`, `paused` or `unknown` (stream or workers down): only while
    /// watching is the rest current; otherwise it is the last known.
    pub state: &'static str,
    pub occupied: bool,
    /// People present: `seen + unseen`.
    pub count: usize,
    /// People detected now.
    pub seen: usize,
    /// People present but not detected now (asleep under a blanket, on the
    /// floor behind the bed), away from any exit.
    pub unseen: usize,
    /// Since when `occupied` has had this value.
    pub since: String,
    /// Each zone: whether a person is in it and how many.
    pub zones: BTreeMap<String, ZoneOccupancy>,
    /// Where and when each unseen person was last seen.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unseen_people: Vec<UnseenPerson>,
    /// The posture that matters most among the present people (`lying`
    /// before `sitting` before `standing`), when any is known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub posture: Option<Posture>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ZoneOccupancy {
    pub occupied: bool,
    pub count: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UnseenPerson {
    pub track_id: u64,
    pub last_seen: String,
    /// The anchor point of their last box, normalized.
    pub position: Point,
}

/// One track's standing with one zone.
#[derive(Debug, Clone, Default)]
struct InZone {
    inside_run: u32,
    outside_run: u32,
    /// When the current run (inside or outside) began.
    run_since: Option<Instant>,
    inside: bool,
    /// The anchor point last seen.
    at: Option<Point>,
}

/// How a result's detection is judged.
#[derive(Debug, Clone, Copy)]
enum Judged {
    /// Offered to the tracker (its index among the candidates).
    Candidate(usize),
    /// In an ignore zone: reported (without a track) when it would have
    /// started one.
    Ignored { shown: bool },
    /// Below the keeping threshold: nothing.
    Below,
}

/// What one call produced.
#[derive(Debug, Default)]
pub struct Output {
    /// The track of each detection, in the order given (results only); 0 for
    /// none.
    pub track_ids: Vec<u64>,
    /// Whether each detection is reported (results only): a start-worthy one,
    /// or a weaker one that kept a track.
    pub shown: Vec<bool>,
    /// Whether each reported detection is a person who counts (not one in an
    /// ignore zone).
    pub counted: Vec<bool>,
    pub events: Vec<Event>,
    /// The occupancy to publish (retained) when it changed.
    pub occupancy: Option<Occupancy>,
    /// Night began (`Some(true)`) or ended.
    pub night: Option<bool>,
    /// Each detection's posture (results only), in the order given: that of
    /// the person it is.
    pub postures: Vec<Option<Posture>>,
    /// The alert state to publish (retained) when it changed.
    pub alerts: Option<AlertState>,
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
    /// The last published occupancy.
    published: Option<Occupancy>,
    since: String,
    /// When the last confirmed track was last seen (or the start).
    last_person: Instant,
    /// (track id, zone name) -> standing.
    in_zones: HashMap<(u64, String), InZone>,
    /// What is known of each present person's body.
    bodies: Bodies,
    postures: Postures,
    falls: Falls,
    /// The last published alert state.
    alerts_published: Option<AlertState>,
    watching: Watching,
    night: bool,
    /// Results in a row of the other light.
    light_run: u32,
}

/// Which sides of box `b` lie on the edge of `crop` (pixels), within 1 % of
/// the frame: left, right, top, bottom.
fn cut_sides(b: &BBox, crop: &BBox, width: f64, height: f64) -> [bool; 4] {
    let (ex, ey) = (0.01 * width, 0.01 * height);
    [
        b.x <= crop.x + ex,
        b.x + b.width >= crop.x + crop.width - ex,
        b.y <= crop.y + ey,
        b.y + b.height >= crop.y + crop.height - ey,
    ]
}

/// The anchor point of box `b`, normalized: inside the frame, a hair short
/// of its far edges (a person lying at the frame's bottom edge is in a zone
/// that reaches it).
fn anchor_point(anchor: ZoneAnchor, b: &BBox, width: f64, height: f64) -> Point {
    const INSIDE: f64 = 1.0 - 1e-9;
    let x = (b.x + b.width / 2.0) / width;
    let y = match anchor {
        ZoneAnchor::BottomCenter => (b.y + b.height) / height,
        ZoneAnchor::Center => (b.y + b.height / 2.0) / height,
    };
    Point {
        x: x.clamp(0.0, INSIDE),
        y: y.clamp(0.0, INSIDE),
    }
}

/// An alert of the last run, active again from `now` (announced anew at once).
fn saved_alert(a: &SavedAlert, now: Stamp) -> Alert {
    let since_wall = a.since().unwrap_or(now.wall);
    let ago = now
        .wall
        .duration_since(since_wall)
        .unwrap_or(Duration::ZERO);
    Alert {
        alert_id: a.alert_id.clone(),
        kind: a.alert,
        track_id: a.track_id,
        since: now.mono.checked_sub(ago).unwrap_or(now.mono),
        since_wall,
        announced: a.announced.saturating_add(1),
        last_announced: now.mono,
        last_announced_wall: now.wall,
    }
}

/// Whether zones of kind `kind` hold `at`.
fn in_zone_kind(zones: &[Zone], at: Point, kind: impl Fn(&Zone) -> bool) -> bool {
    zones.iter().any(|z| kind(z) && z.contains(at.x, at.y))
}

impl RoomTracker {
    pub fn new(
        instance_id: &str,
        room_id: &str,
        width: u32,
        height: u32,
        settings: RoomSettings,
        start: Stamp,
    ) -> Self {
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
            falls: Falls::new(settings.falls.clone(), &format!("{instance_id}-{start_ms}")),
            settings,
            id_prefix: format!("{instance_id}-{start_ms}"),
            next_event: 1,
            occupied: None,
            published: None,
            since: rfc3339(start.wall),
            last_person: start.mono,
            in_zones: HashMap::new(),
            bodies: Bodies::default(),
            postures: Postures::default(),
            alerts_published: None,
            watching: Watching::Yes,
            night: false,
            light_run: 0,
        }
    }

    pub fn zones(&self) -> &[Zone] {
        &self.settings.zones
    }

    /// Night: the frames have been grayscale for a while.
    pub fn night(&self) -> bool {
        self.night
    }

    /// Replaces the zones: tracks in a zone that changed or went away leave it
    /// (`reason: zone_changed`); the new zones start empty; people in a new
    /// ignore zone leave the room.
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
        self.end_ignored(now, &mut out);
        self.occupancy(now, &mut out);
        out
    }

    /// People whose place is in an ignore zone now (one was drawn over a
    /// picture that had been counted) leave (`person_left`, `ignored`).
    fn end_ignored(&mut self, now: Stamp, out: &mut Output) {
        let ignored: Vec<(u64, bool)> = self
            .tracker
            .tracks()
            .iter()
            .filter(|t| self.ignored(&t.bbox))
            .map(|t| (t.id, t.confirmed))
            .collect();
        for (id, confirmed) in ignored {
            let Some(t) = self.tracker.end(id) else {
                continue;
            };
            if confirmed {
                self.apply(vec![Change::Ended(t, EndReason::Ignored)], now, out);
            }
        }
    }

    fn anchor(&self, b: &BBox) -> Point {
        anchor_point(self.settings.anchor, b, self.width, self.height)
    }

    /// Whether a person last seen with box `b` has left when no longer seen:
    /// `b` touches a frame edge that is an exit, or its anchor is in an exit
    /// zone; never in a rest zone.
    fn at_exit(settings: &RoomSettings, b: &BBox, width: f64, height: f64) -> bool {
        let at = anchor_point(settings.anchor, b, width, height);
        if in_zone_kind(&settings.zones, at, |z| z.rest) {
            return false;
        }
        let e = settings.exits;
        let edge = (e.left && b.x <= EDGE * width)
            || (e.right && b.x + b.width >= (1.0 - EDGE) * width)
            || (e.top && b.y <= EDGE * height)
            || (e.bottom && b.y + b.height >= (1.0 - EDGE) * height);
        edge || in_zone_kind(&settings.zones, at, |z| z.exit)
    }

    /// Whether `b` is cut by the frame's edge like a person half in view: it
    /// touches an edge, but not two opposite ones (a box across the whole
    /// frame is a model's mistake, not a person at a door).
    fn half_in_view(&self, b: &BBox) -> bool {
        let frame = BBox {
            x: 0.0,
            y: 0.0,
            width: self.width,
            height: self.height,
        };
        let [left, right, top, bottom] = cut_sides(b, &frame, self.width, self.height);
        (left || right || top || bottom) && !(left && right) && !(top && bottom)
    }

    /// The anchor of track `id`'s box `b` seen through `crop` at `now` (and
    /// what its body tells): where a side is cut, estimated from the person's
    /// whole size; `None` when a side that places the anchor is cut by the ROI
    /// crop and nothing tells how far the person goes on.
    fn observed_anchor(
        &mut self,
        id: u64,
        b: &BBox,
        crop: &BBox,
        now: Instant,
    ) -> (Option<Point>, Whole, bool) {
        let (w, h) = (self.width, self.height);
        let sides = cut_sides(b, crop, w, h);
        let inside_frame = |edge: f64, limit: f64| edge > 0.01 * limit && edge < 0.99 * limit;
        let inside = [
            inside_frame(crop.x, w),
            inside_frame(crop.x + crop.width, w),
            inside_frame(crop.y, h),
            inside_frame(crop.y + crop.height, h),
        ];
        let whole = self.bodies.observe(id, b, Cuts { sides, inside }, now);
        let [left, right, top, bottom] = whole.unknown;
        let unknown = match self.settings.anchor {
            ZoneAnchor::BottomCenter => left || right || bottom,
            ZoneAnchor::Center => left || right || top || bottom,
        };
        let cut = sides.iter().any(|s| *s);
        ((!unknown).then(|| self.anchor(&whole.bbox)), whole, cut)
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

    /// Zone standing of the confirmed tracks seen in this result (unseen
    /// people stay where they were); returns their whole boxes (and whether
    /// cut) for the postures.
    fn update_zones(
        &mut self,
        seen: &[u64],
        crop: &BBox,
        now: Stamp,
        out: &mut Output,
    ) -> HashMap<u64, (Whole, bool)> {
        let tracks: Vec<(u64, BBox)> = self
            .tracker
            .confirmed()
            .filter(|t| t.seen && seen.contains(&t.id))
            .map(|t| (t.id, t.bbox))
            .collect();
        let mut anchors = Vec::new();
        let mut wholes = HashMap::new();
        for (id, bbox) in tracks {
            // For every seen track, zones or not: the bodies learn.
            let (at, whole, cut) = self.observed_anchor(id, &bbox, crop, now.mono);
            wholes.insert(id, (whole, cut));
            if let Some(at) = at {
                anchors.push((id, at));
            }
        }
        let min = self.settings.zone_min_frames.max(1);
        let zones: Vec<Zone> = self
            .settings
            .zones
            .iter()
            .filter(|z| !z.ignore)
            .cloned()
            .collect();
        for (id, at) in anchors {
            for zone in &zones {
                let st = self.in_zones.entry((id, zone.name.clone())).or_default();
                st.at = Some(at);
                let inside = zone.contains(at.x, at.y)
                    || st.inside && zone.distance(at.x, at.y) <= self.settings.zone_margin;
                let run = if inside {
                    st.outside_run = 0;
                    &mut st.inside_run
                } else {
                    st.inside_run = 0;
                    &mut st.outside_run
                };
                if *run == 0 {
                    st.run_since = Some(now.mono);
                }
                *run += 1;
                let long = st.run_since.is_none_or(|t| {
                    now.mono.saturating_duration_since(t) >= self.settings.zone_min_time
                });
                let kind = if !st.inside && st.inside_run >= min && long {
                    st.inside = true;
                    "zone_entered"
                } else if st.inside && st.outside_run >= min && long {
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
        wholes
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
        self.bodies.forget(track.id);
        self.postures.forget(track.id);
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

    /// The live confirmed tracks, seen and unseen (for metrics).
    pub fn active_tracks(&self) -> usize {
        self.tracker.confirmed().count()
    }

    fn bottom_centre(&self, b: &BBox) -> Point {
        anchor_point(ZoneAnchor::BottomCenter, b, self.width, self.height)
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

    /// Day or night after one more result (grayscale or not).
    fn light(&mut self, grayscale: bool, out: &mut Output) {
        if grayscale == self.night {
            self.light_run = 0;
            return;
        }
        self.light_run += 1;
        if self.light_run >= LIGHT_RUN {
            self.night = grayscale;
            self.light_run = 0;
            out.night = Some(grayscale);
        }
    }

    /// How each of `detections` is judged: a candidate for the tracker (its
    /// index among the candidates), in an ignore zone (reported if it would
    /// have started a track), or below the keeping threshold.
    fn judge(&self, detections: &[(BBox, f64)], model: &str) -> (Vec<Candidate>, Vec<Judged>) {
        let t = self.settings.thresholds.of(model, self.night);
        let mut candidates = Vec::new();
        let judged = detections
            .iter()
            .map(|(b, confidence)| {
                let at = self.anchor(b);
                let doorway = in_zone_kind(&self.settings.zones, at, |z| z.exit);
                let start = if self.half_in_view(b) || doorway {
                    t.start.min(t.edge_start)
                } else {
                    t.start
                };
                if in_zone_kind(&self.settings.zones, at, |z| z.ignore) {
                    return Judged::Ignored {
                        shown: *confidence >= start,
                    };
                }
                if *confidence < t.keep {
                    return Judged::Below;
                }
                candidates.push(Candidate {
                    bbox: *b,
                    strong: *confidence >= start,
                });
                Judged::Candidate(candidates.len() - 1)
            })
            .collect();
        (candidates, judged)
    }

    /// One person-detection result of a frame captured at `captured`, seen at `now`.
    pub fn on_result(&mut self, captured: Stamp, sight: Sight<'_>, now: Stamp) -> Output {
        let mut out = Output::default();
        self.light(sight.grayscale, &mut out);
        let (candidates, judged) = self.judge(sight.detections, sight.model);
        let (settings, width, height) = (&self.settings, self.width, self.height);
        let bodies = &self.bodies;
        let at_exit = |b: &BBox| Self::at_exit(settings, b, width, height);
        // People leave on their feet: someone lying, or last seen going down,
        // at an exit has fallen there, not left.
        let postures = &self.postures;
        let left = |t: &Track| {
            at_exit(&t.bbox)
                && bodies.upright(t.id, &t.bbox)
                && !bodies.going_down(t.id)
                && postures.posture(t.id) != Some(Posture::Lying)
        };
        let update = self
            .tracker
            .update(captured.mono, &candidates, at_exit, left);
        for j in &judged {
            let (id, shown) = match *j {
                Judged::Candidate(c) => {
                    let id = update.track_ids[c];
                    (id, candidates[c].strong || id != 0)
                }
                Judged::Ignored { shown } => (0, shown),
                Judged::Below => (0, false),
            };
            out.track_ids.push(id);
            out.shown.push(shown);
            out.counted
                .push(shown && !matches!(j, Judged::Ignored { .. }));
        }
        let seen = out.track_ids.clone();
        self.apply(update.changes, now, &mut out);
        let wholes = self.update_zones(&seen, &sight.crop, now, &mut out);
        self.observe_postures(&sight, &wholes, captured.mono, now, &mut out);
        let missed: Vec<u64> = self
            .tracker
            .confirmed()
            .filter(|t| !seen.contains(&t.id))
            .map(|t| t.id)
            .collect();
        for id in missed {
            self.falls.missed(id);
        }
        self.check_falls(now, &mut out);
        self.occupancy(now, &mut out);
        out
    }

    /// Each seen person's posture from this result (keypoints, else the
    /// shape of their whole box): `posture_changed` and `bed_exit_warning`
    /// events, what the falls watch sees.
    fn observe_postures(
        &mut self,
        sight: &Sight<'_>,
        wholes: &HashMap<u64, (Whole, bool)>,
        captured: Instant,
        now: Stamp,
        out: &mut Output,
    ) {
        out.postures = vec![None; out.track_ids.len()];
        for (i, id) in out.track_ids.clone().into_iter().enumerate() {
            let Some((whole, cut)) = wholes.get(&id) else {
                continue;
            };
            let view = View {
                whole: whole.bbox,
                cut: *cut,
                keypoints: sight.keypoints.get(i).copied().flatten(),
            };
            let (guess, changed) = self.postures.observe(id, view, captured);
            let held = self.postures.posture(id);
            out.postures[i] = held;
            let at = self.anchor(&whole.bbox);
            // The same box as the falls check's (`present`): the track's.
            let resting = sight.detections.get(i).is_some_and(|(b, _)| {
                in_zone_kind(&self.settings.zones, self.anchor(b), |z| z.rest)
            });
            let seen = Seen {
                posture: held,
                low: guess.low,
                descending: self.bodies.going_down(id),
            };
            self.falls.observe(id, seen, resting, captured);
            let Some(change) = changed else {
                continue;
            };
            let Some(previous) = change.from else {
                continue;
            };
            let detail = Detail::Posture {
                posture: change.to,
                previous,
                position: at,
            };
            out.events
                .push(self.event("posture_changed", now.wall, Some(id), detail));
            if previous == Posture::Lying {
                self.bed_exit(id, &whole.bbox, now, out);
            }
        }
    }

    /// Someone lying in a rest zone sat or stood up at its edge (legs over
    /// the side): `bed_exit_warning`, before they leave it.
    fn bed_exit(&mut self, id: u64, b: &BBox, now: Stamp, out: &mut Output) {
        let (x0, x1) = (b.x / self.width, (b.x + b.width) / self.width);
        let at = self.anchor(b);
        let zone = self.settings.zones.iter().find(|z| {
            let left = z.polygon.iter().map(|p| p[0]).fold(f64::INFINITY, f64::min);
            let right = z
                .polygon
                .iter()
                .map(|p| p[0])
                .fold(f64::NEG_INFINITY, f64::max);
            let edge = EDGE_SHARE * (right - left);
            z.rest
                && self
                    .in_zones
                    .get(&(id, z.name.clone()))
                    .is_some_and(|s| s.inside)
                && (x0 <= left + edge || x1 >= right - edge)
        });
        if let Some(zone) = zone {
            let detail = Detail::Zone {
                zone: zone.name.clone(),
                position: at,
                reason: None,
            };
            out.events
                .push(self.event("bed_exit_warning", now.wall, Some(id), detail));
        }
    }

    /// The present people as the falls watch needs them.
    fn present(&self) -> Vec<Present> {
        self.tracker
            .confirmed()
            .map(|t| Present {
                track_id: t.id,
                last_seen: t.last_seen,
                resting: in_zone_kind(&self.settings.zones, self.anchor(&t.bbox), |z| z.rest),
                at_exit: Self::at_exit(&self.settings, &t.bbox, self.width, self.height),
            })
            .collect()
    }

    /// Falls and people down decided at `now`; alerts announced again when
    /// due; the alert state when it changed.
    fn check_falls(&mut self, now: Stamp, out: &mut Output) {
        let present = self.present();
        let signals = self.falls.check(&present, now.mono, now.wall);
        self.signal(signals, now, out);
        self.falls.repeat_due(now.mono, now.wall);
        self.publish_alerts(out);
    }

    /// Events for what the falls watch decided.
    fn signal(&mut self, signals: Vec<Signal>, now: Stamp, out: &mut Output) {
        for s in signals {
            let (kind, track, detail) = match s {
                Signal::Raised { alert, how } => {
                    let kind = match alert.kind {
                        AlertKind::Fall => "fall_detected",
                        AlertKind::Down => "person_down",
                    };
                    let detail = Detail::Alert {
                        position: self.position_of(alert.track_id),
                        alert_id: alert.alert_id,
                        alert: alert.kind,
                        how,
                    };
                    (kind, alert.track_id, detail)
                }
                Signal::Ended { alert, reason } => {
                    let kind = if reason == Ended::Acknowledged {
                        "alert_acknowledged"
                    } else {
                        "fall_cleared"
                    };
                    let detail = Detail::AlertEnded {
                        duration_s: now
                            .mono
                            .saturating_duration_since(alert.since)
                            .as_secs_f64(),
                        alert_id: alert.alert_id,
                        alert: alert.kind,
                        reason,
                    };
                    (kind, alert.track_id, detail)
                }
            };
            out.events
                .push(self.event(kind, now.wall, Some(track), detail));
        }
    }

    /// Where track `id` is (its anchor point), normalized and rounded to
    /// 0.02 (a box's jitter does not change the alert state); the origin if
    /// gone.
    fn alert_position(&self, id: u64) -> Point {
        let p = self.position_of(id);
        let round = |v: f64| (v * 50.0).round() / 50.0;
        Point {
            x: round(p.x),
            y: round(p.y),
        }
    }

    /// Where track `id` is (its anchor point), normalized; the origin if gone.
    fn position_of(&self, id: u64) -> Point {
        self.tracker
            .tracks()
            .iter()
            .find(|t| t.id == id)
            .map_or(Point { x: 0.0, y: 0.0 }, |t| self.anchor(&t.bbox))
    }

    /// The alert state, published when it changed.
    fn publish_alerts(&mut self, out: &mut Output) {
        let alerts: Vec<AlertView> = self
            .falls
            .alerts()
            .iter()
            .map(|a| AlertView {
                alert_id: a.alert_id.clone(),
                alert: a.kind,
                track_id: a.track_id,
                since: rfc3339(a.since_wall),
                position: self.alert_position(a.track_id),
                announced: a.announced,
                last_announced: rfc3339(a.last_announced_wall),
            })
            .collect();
        let state = AlertState {
            instance_id: self.instance_id.clone(),
            room_id: self.room_id.clone(),
            active: !alerts.is_empty(),
            alerts,
        };
        if self.alerts_published.as_ref() == Some(&state) {
            return;
        }
        self.alerts_published = Some(state.clone());
        out.alerts = Some(state);
    }

    /// An operator acknowledged `alert_id` (every active alert with `None`):
    /// `alert_acknowledged` for each, the alert state. Err when there is no
    /// such alert.
    pub fn acknowledge(&mut self, alert_id: Option<&str>, now: Stamp) -> Result<Output, String> {
        let signals = self.falls.acknowledge(alert_id);
        if signals.is_empty() {
            return Err(match alert_id {
                Some(id) => format!("no active alert `{}`", crate::logging::cut(id, 64)),
                None => "no active alert".into(),
            });
        }
        let mut out = Output::default();
        self.signal(signals, now, &mut out);
        self.publish_alerts(&mut out);
        Ok(out)
    }

    /// The alert state now (for a status reply).
    pub fn alerts(&self) -> Option<&AlertState> {
        self.alerts_published.as_ref()
    }

    /// The candidates for an ignore zone at `now` (see [`IgnoreCandidate`]).
    pub fn ignore_candidates(&self, now: Instant) -> Vec<IgnoreCandidate> {
        let after = self.settings.ignore_hint_after;
        if after.is_zero() {
            return Vec::new();
        }
        let mut out: Vec<IgnoreCandidate> = self
            .tracker
            .confirmed()
            .filter(|t| t.seen)
            .filter_map(|t| {
                let (b, since) = self.bodies.still(t.id)?;
                let still = now.saturating_duration_since(since);
                let resting = in_zone_kind(&self.settings.zones, self.anchor(&b), |z| z.rest);
                (still >= after && !resting).then(|| IgnoreCandidate {
                    track_id: t.id,
                    rect: NormBox {
                        x: b.x / self.width,
                        y: b.y / self.height,
                        width: b.width / self.width,
                        height: b.height / self.height,
                    },
                    still_for_s: still.as_secs_f64().round(),
                })
            })
            .collect();
        out.sort_by_key(|c| c.track_id);
        out
    }

    /// Time passing, and whether the camera watches: no visit ends and the
    /// room does not empty while it does not.
    pub fn on_tick(&mut self, now: Stamp, watching: Watching) -> Output {
        let mut out = Output::default();
        self.set_watching(watching, now);
        if watching == Watching::Yes {
            self.check_falls(now, &mut out);
        } else {
            // Nothing new is known; active alerts are still announced.
            self.falls.repeat_due(now.mono, now.wall);
            self.publish_alerts(&mut out);
        }
        self.occupancy(now, &mut out);
        out
    }

    /// Whether the camera watches now (published with the next occupancy).
    pub fn set_watching(&mut self, watching: Watching, now: Stamp) {
        if watching != self.watching {
            if watching == Watching::Yes {
                // A full `empty_after` of watching before the room is empty.
                self.last_person = self.last_person.max(now.mono);
            }
            self.watching = watching;
        }
    }

    fn apply(&mut self, changes: Vec<Change>, now: Stamp, out: &mut Output) {
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
                Change::Ended(t, reason) => {
                    // Missed while seen: over `max_missing` after the last
                    // sighting. Unseen or ignored: present until now, and the
                    // room empties `empty_after` from here.
                    let missed = t.seen && reason != EndReason::Ignored;
                    let at = if missed {
                        now.wall_of(t.last_seen + self.settings.tracker.max_missing)
                    } else {
                        self.last_person = self.last_person.max(now.mono);
                        now.wall
                    };
                    self.leave_zones(&t, at, out);
                    let detail = self.left(&t, reason, now);
                    out.events
                        .push(self.event("person_left", at, Some(t.id), detail));
                    let why = match reason {
                        EndReason::Exit => Ended::Left,
                        EndReason::NotSeen => Ended::NotSeen,
                        EndReason::Ignored => Ended::Ignored,
                    };
                    let ended = self.falls.forget(t.id, why);
                    self.signal(ended.into_iter().collect(), now, out);
                }
                Change::Unseen(_) | Change::Seen(_) => {}
            }
        }
    }

    fn left(&self, t: &Track, reason: EndReason, now: Stamp) -> Detail {
        Detail::Left {
            first_seen: rfc3339(now.wall_of(t.first_seen)),
            last_seen: rfc3339(now.wall_of(t.last_seen)),
            duration_s: t
                .last_seen
                .saturating_duration_since(t.first_seen)
                .as_secs_f64(),
            position: self.bottom_centre(&t.bbox),
            reason: reason.as_str(),
        }
    }

    /// Decides occupancy with hysteresis; publishes it when anything in it
    /// changes, with an `occupancy_changed` event when the state or the count
    /// does.
    fn occupancy(&mut self, now: Stamp, out: &mut Output) {
        self.decide(now, out, true);
    }

    /// [`RoomTracker::occupancy`], with the `occupancy_changed` event only
    /// when `announce`.
    fn decide(&mut self, now: Stamp, out: &mut Output, announce: bool) {
        let people: Vec<&Track> = self.tracker.confirmed().collect();
        let count = people.len();
        let seen = people.iter().filter(|t| t.seen).count();
        if let Some(last) = people.iter().filter(|t| t.seen).map(|t| t.last_seen).max() {
            self.last_person = self.last_person.max(last);
        }
        let watching = self.watching == Watching::Yes;
        let empty_for = now.mono.saturating_duration_since(self.last_person);
        let occupied = if count > 0 {
            Some(true)
        } else if watching && empty_for >= self.settings.empty_after {
            Some(false)
        } else {
            // Nobody confirmed, not yet long enough (or not watching): keep
            // what was said (or stay undecided after a start).
            self.occupied
        };
        let Some(occupied) = occupied else {
            return;
        };
        let mut unseen_people: Vec<UnseenPerson> = people
            .iter()
            .filter(|t| !t.seen)
            .map(|t| UnseenPerson {
                track_id: t.id,
                last_seen: rfc3339(now.wall_of(t.last_seen)),
                position: self.anchor(&t.bbox),
            })
            .collect();
        unseen_people.sort_by_key(|p| p.track_id);
        let shown_count = if occupied { count.max(1) } else { 0 };
        let changed = self.occupied != Some(occupied)
            || self.published.as_ref().map(|p| p.count) != Some(shown_count);
        if self.occupied != Some(occupied) {
            self.since = rfc3339(now.wall);
        }
        let occupancy = Occupancy {
            state: self.watching.as_str(),
            occupied,
            count: shown_count,
            seen,
            unseen: count - seen,
            since: self.since.clone(),
            zones: self.zone_occupancy(),
            unseen_people,
            posture: people
                .iter()
                .filter_map(|t| self.postures.posture(t.id))
                .max(),
        };
        if self.published.as_ref() == Some(&occupancy) {
            return;
        }
        self.occupied = Some(occupied);
        if changed && announce {
            let detail = Detail::Occupancy {
                occupied,
                count: shown_count,
            };
            out.events
                .push(self.event("occupancy_changed", now.wall, None, detail));
        }
        self.published = Some(occupancy.clone());
        out.occupancy = Some(occupancy);
    }

    /// What a restart needs to take the present people back.
    pub fn snapshot(&self, now: Stamp) -> Snapshot {
        let people = self
            .tracker
            .confirmed()
            .map(|t| SavedPerson {
                track_id: t.id,
                bbox: t.bbox,
                first_seen: rfc3339(now.wall_of(t.first_seen)),
                last_seen: rfc3339(now.wall_of(t.last_seen)),
                seen: t.seen,
                unseen_for_s: t.unseen_for.as_secs_f64(),
                zones: self.zones_of(t.id),
                posture: self.postures.posture(t.id),
            })
            .collect();
        let alerts = self
            .falls
            .alerts()
            .iter()
            .map(|a| SavedAlert {
                alert_id: a.alert_id.clone(),
                alert: a.kind,
                track_id: a.track_id,
                since: rfc3339(a.since_wall),
                announced: a.announced,
            })
            .collect();
        Snapshot {
            saved_at: rfc3339(now.wall),
            next_track_id: self.tracker.next_id(),
            occupied_since: self.occupied.filter(|o| *o).map(|_| self.since.clone()),
            people,
            alerts,
            acknowledged: self.falls.acknowledged(),
        }
    }

    /// The zones track `id` is in, by name.
    fn zones_of(&self, id: u64) -> Vec<String> {
        let mut zones: Vec<String> = self
            .in_zones
            .iter()
            .filter(|((t, _), st)| *t == id && st.inside)
            .map(|((_, zone), _)| zone.clone())
            .collect();
        zones.sort();
        zones
    }

    /// Takes back the people of an earlier run's snapshot: a visit resumes
    /// (the same track, in the same zones, seen or unseen as saved) unless the
    /// person has not been seen for `unseen_timeout` counting the time the
    /// daemon was down, or stands in an ignore zone now; then it is closed
    /// (`person_left`).
    pub fn restore(&mut self, snapshot: &Snapshot, now: Stamp) -> Output {
        let mut out = Output::default();
        let down = snapshot.saved_at().map_or(Duration::ZERO, |t| {
            now.wall.duration_since(t).unwrap_or(Duration::ZERO)
        });
        let timeout = self.settings.tracker.unseen_timeout;
        self.tracker.reserve_ids(snapshot.next_track_id);
        let mut taken = Vec::new();
        for p in &snapshot.people {
            let (track, unseen_for) = self.saved_track(p, down, now);
            let why = if !timeout.is_zero() && unseen_for >= timeout {
                Some(EndReason::NotSeen)
            } else if self.ignored(&track.bbox) {
                Some(EndReason::Ignored)
            } else {
                None
            };
            if let Some(why) = why {
                let detail = self.left(&track, why, now);
                out.events
                    .push(self.event("person_left", now.wall, Some(track.id), detail));
                self.restore_care(snapshot, p, Some(why), now, &mut out);
                continue;
            }
            self.rejoin_zones(&track, &p.zones);
            self.restore_care(snapshot, p, None, now, &mut out);
            taken.push(track);
        }
        if !taken.is_empty() {
            // The room was occupied before the restart and still is: decided
            // already (no `occupancy_changed`), published anew below.
            self.occupied = Some(true);
            if let Some(since) = &snapshot.occupied_since {
                self.since = since.clone();
            }
        }
        let announce = taken.is_empty();
        self.tracker.restore(taken);
        self.decide(now, &mut out, announce);
        self.publish_alerts(&mut out);
        out
    }

    /// A saved person's posture and alert: taken back with them, or, when
    /// their visit was closed at the restart (`closed`), the alert ended.
    fn restore_care(
        &mut self,
        snapshot: &Snapshot,
        p: &SavedPerson,
        closed: Option<EndReason>,
        now: Stamp,
        out: &mut Output,
    ) {
        let alerts = snapshot.alerts.iter().filter(|a| a.track_id == p.track_id);
        let mut ended = Vec::new();
        for a in alerts {
            let alert = saved_alert(a, now);
            match closed {
                Some(why) => ended.push(Signal::Ended {
                    alert,
                    reason: match why {
                        EndReason::Ignored => Ended::Ignored,
                        _ => Ended::NotSeen,
                    },
                }),
                None => ended.extend(self.falls.restore(alert)),
            }
        }
        self.signal(ended, now, out);
        if closed.is_some() {
            return;
        }
        if let Some(posture) = p.posture {
            self.postures.restore(p.track_id, posture);
        }
        if snapshot.acknowledged.contains(&p.track_id) {
            self.falls.restore_acknowledged(p.track_id);
        }
    }

    /// A saved person as a track of this run, and how long they have been
    /// unseen counting the `down` time.
    fn saved_track(&self, p: &SavedPerson, down: Duration, now: Stamp) -> (Track, Duration) {
        let mono_of = |wall: Option<SystemTime>| {
            wall.and_then(|w| now.wall.duration_since(w).ok())
                .and_then(|ago| now.mono.checked_sub(ago))
                .unwrap_or(now.mono)
        };
        // Checked when read: finite, at most a week.
        let saved = Duration::try_from_secs_f64(p.unseen_for_s).unwrap_or(Duration::ZERO);
        let unseen_for = saved.saturating_add(down);
        let track = Track {
            id: p.track_id,
            bbox: p.bbox,
            first_bbox: p.bbox,
            velocity: (0.0, 0.0),
            hits: self.settings.tracker.min_hits,
            confirmed: true,
            first_seen: mono_of(p.first_seen()),
            last_seen: if p.seen {
                now.mono
            } else {
                mono_of(p.last_seen())
            },
            misses: 0,
            seen: p.seen,
            missing_for: Duration::ZERO,
            unseen_for: if p.seen { Duration::ZERO } else { unseen_for },
        };
        (track, unseen_for)
    }

    /// A track taken back is in the zones it was in (those that still exist).
    fn rejoin_zones(&mut self, track: &Track, zones: &[String]) {
        for zone in zones {
            let exists = self
                .settings
                .zones
                .iter()
                .any(|z| &z.name == zone && !z.ignore);
            if exists {
                let st = InZone {
                    inside: true,
                    at: Some(self.anchor(&track.bbox)),
                    ..InZone::default()
                };
                self.in_zones.insert((track.id, zone.clone()), st);
            }
        }
    }

    /// Whether `b`'s anchor falls in an ignore zone.
    fn ignored(&self, b: &BBox) -> bool {
        in_zone_kind(&self.settings.zones, self.anchor(b), |z| z.ignore)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracking::snapshot::Snapshot;

    const DAY: Thresholds = Thresholds {
        start: 0.5,
        edge_start: 0.35,
        keep: 0.3,
    };

    /// Presence as before unseen people: a person not detected leaves
    /// wherever they were.
    fn settings() -> RoomSettings {
        RoomSettings {
            tracker: TrackerSettings {
                unseen_timeout: Duration::ZERO,
                ..TrackerSettings::default()
            },
            empty_after: Duration::from_secs(10),
            zones: Vec::new(),
            zone_min_frames: 2,
            zone_min_time: Duration::ZERO,
            zone_margin: 0.0,
            anchor: ZoneAnchor::BottomCenter,
            thresholds: ModelThresholds::same(
                DAY,
                Thresholds {
                    start: 0.4,
                    edge_start: 0.3,
                    keep: 0.25,
                },
            ),
            exits: Edges::ALL,
            ignore_hint_after: Duration::from_secs(60),
            falls: FallSettings {
                enabled: true,
                confirm: Duration::from_secs(2),
                down_after: Duration::from_secs(60),
                repeat: Duration::from_secs(60),
            },
        }
    }

    /// Presence that holds (the defaults): people missed away from exits
    /// are unseen for 12 h.
    fn holding() -> RoomSettings {
        RoomSettings {
            tracker: TrackerSettings::default(),
            ..settings()
        }
    }

    const FRAME: BBox = BBox {
        x: 0.0,
        y: 0.0,
        width: 640.0,
        height: 480.0,
    };

    /// A result of confident detections of the whole frame, in daylight.
    fn seen(sig: &mut RoomTracker, t: Stamp, boxes: &[BBox]) -> Output {
        let detections: Vec<(BBox, f64)> = boxes.iter().map(|b| (*b, 0.9)).collect();
        scored(sig, t, &detections, false)
    }

    fn scored(sig: &mut RoomTracker, t: Stamp, detections: &[(BBox, f64)], gray: bool) -> Output {
        let sight = Sight {
            detections,
            keypoints: &[],
            crop: FRAME,
            grayscale: gray,
            model: "ssdlite",
        };
        sig.on_result(t, sight, t)
    }

    /// A 640x480 camera's room.
    fn room(settings: RoomSettings) -> RoomTracker {
        RoomTracker::new("room-1", "101", 640, 480, settings, Stamp::now())
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
            let out = seen(sig, t, boxes);
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
        assert!(
            occ.iter()
                .all(|o| o.occupied && o.count == 1 && o.seen == 0),
            "not empty before 10 s: {occ:?}"
        );
        let json = serde_json::to_value(&events[0]).unwrap();
        assert_eq!(json["track_id"], 1);
        assert!(
            (json["duration_s"].as_f64().unwrap() - 4.5).abs() < 1e-6,
            "{json}"
        );
        let out = sig.on_tick(at(base, 17.6), Watching::Yes);
        let occ = out.occupancy.expect("empty now");
        assert!(!occ.occupied && occ.count == 0);
        assert_eq!(kinds(&out.events), vec!["occupancy_changed"]);
        assert!(
            sig.on_tick(at(base, 30.0), Watching::Yes).events.is_empty(),
            "said once"
        );
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
        let out = seen(&mut sig, at(base, 6.0), &[picture, resident]);
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

    fn left_reason(events: &[Event]) -> Vec<String> {
        events
            .iter()
            .filter(|e| e.kind == "person_left")
            .map(|e| serde_json::to_value(e).unwrap()["reason"].to_string())
            .collect()
    }

    #[test]
    fn a_person_no_longer_detected_mid_room_is_unseen_not_gone_and_comes_back_as_the_same_track() {
        let base = Stamp::now();
        let mut sig = room(holding());
        let (events, _) = feed(&mut sig, base, 0.0, &vec![vec![person(300.0)]; 4]);
        assert_eq!(kinds(&events), ["person_entered", "occupancy_changed"]);
        // Fallen, not detected for a minute.
        let (events, occ) = feed(&mut sig, base, 2.0, &vec![vec![]; 120]);
        assert!(events.is_empty(), "{events:?}");
        let last = occ.last().expect("occupancy says unseen");
        assert_eq!(
            (last.occupied, last.count, last.seen, last.unseen),
            (true, 1, 0, 1)
        );
        assert_eq!(last.unseen_people[0].track_id, 1);
        let json = serde_json::to_value(last).unwrap();
        assert_eq!(json["state"], "watching");
        assert!(json["unseen_people"][0]["last_seen"].is_string(), "{json}");
        // Found again near where they were: the same visit.
        let out = seen(&mut sig, at(base, 62.5), &[person(320.0)]);
        assert_eq!(out.track_ids, vec![1]);
        assert!(out.events.is_empty(), "{:?}", out.events);
        let occ = out.occupancy.expect("seen again");
        assert_eq!((occ.seen, occ.unseen), (1, 0));
    }

    #[test]
    fn a_person_last_seen_at_an_exit_has_left() {
        let base = Stamp::now();
        let mut sig = room(holding());
        // Walking out at the right edge (the box reaches x = 640).
        let walk: Vec<Vec<BBox>> = [400.0, 460.0, 520.0, 560.0]
            .map(|x| vec![person(x)])
            .to_vec();
        feed(&mut sig, base, 0.0, &walk);
        let (events, _) = feed(&mut sig, base, 2.0, &vec![vec![]; 10]);
        assert_eq!(kinds(&events), ["person_left"]);
        assert_eq!(left_reason(&events), ["\"exit\""]);
        // A door zone is an exit too; a bed by the frame's edge is not.
        let door = crate::tracking::zones::Zone {
            exit: true,
            ..crate::tracking::zones::rect("door", 0.4, 0.5, 0.2, 0.5)
        };
        let bed = crate::tracking::zones::Zone {
            rest: true,
            ..crate::tracking::zones::rect("bed", 0.0, 0.5, 0.3, 0.5)
        };
        let mut sig = room(RoomSettings {
            zones: vec![door, bed],
            ..holding()
        });
        let at_door = person(260.0); // bottom centre (0.47, 0.625)
        let in_bed = BBox {
            x: 0.0,
            y: 400.0,
            width: 180.0,
            height: 80.0,
        };
        feed(&mut sig, base, 0.0, &vec![vec![at_door, in_bed]; 4]);
        let (events, occ) = feed(&mut sig, base, 2.0, &vec![vec![]; 10]);
        assert_eq!(
            kinds(&events),
            ["zone_left", "person_left", "occupancy_changed"],
            "{events:?}"
        );
        assert_eq!(events[1].track_id, Some(1), "the one at the door left");
        let last = occ.last().expect("occupancy");
        assert_eq!((last.count, last.unseen), (1, 1), "the one in bed is here");
        assert!(last.zones["bed"].occupied);
    }

    #[test]
    fn not_watching_is_not_empty_and_ages_nobody() {
        let base = Stamp::now();
        let mut sig = room(settings());
        feed(&mut sig, base, 0.0, &vec![vec![person(300.0)]; 4]);
        let out = sig.on_tick(at(base, 2.0), Watching::Paused);
        let occ = out.occupancy.expect("the state changed");
        assert_eq!((occ.state, occ.occupied, occ.count), ("paused", true, 1));
        assert!(out.events.is_empty(), "{:?}", out.events);
        // A minute paused: no result, no end, no empty room.
        for s in 3..60 {
            let out = sig.on_tick(at(base, f64::from(s)), Watching::Paused);
            assert!(out.events.is_empty() && out.occupancy.is_none());
        }
        let out = sig.on_tick(at(base, 60.0), Watching::Unknown);
        assert_eq!(out.occupancy.map(|o| o.state), Some("unknown"));
        // Back: the person is still there, the same visit goes on.
        let out = sig.on_tick(at(base, 61.0), Watching::Yes);
        assert_eq!(out.occupancy.map(|o| o.state), Some("watching"));
        let (events, _) = feed(&mut sig, base, 61.5, &vec![vec![person(305.0)]; 4]);
        assert!(events.is_empty(), "{events:?}");
    }

    #[test]
    fn weak_detections_keep_a_person_but_never_start_one() {
        let base = Stamp::now();
        let mut sig = room(holding());
        let lying = BBox {
            x: 250.0,
            y: 250.0,
            width: 200.0,
            height: 90.0,
        };
        // Weak alone: nobody, and not reported.
        for i in 0..6 {
            let out = scored(
                &mut sig,
                at(base, f64::from(i) * 0.5),
                &[(lying, 0.35)],
                false,
            );
            assert_eq!((out.track_ids[0], out.shown[0]), (0, false));
            assert!(out.events.is_empty());
        }
        // Standing (strong), then lying down (weak): one track, reported;
        // down on the floor at once after standing, it is a fall.
        feed(&mut sig, base, 3.0, &vec![vec![person(300.0)]; 3]);
        let mut events = Vec::new();
        for i in 0..20 {
            let t = at(base, 4.5 + f64::from(i) * 0.5);
            let out = scored(&mut sig, t, &[(lying, 0.32)], false);
            assert_eq!((out.track_ids[0], out.shown[0]), (1, true), "result {i}");
            events.extend(out.events.into_iter().map(|e| e.kind));
        }
        assert_eq!(events, ["posture_changed", "fall_detected"]);
        assert_eq!(sig.active_tracks(), 1);
        // Below the keeping threshold is nothing at all.
        let out = scored(&mut sig, at(base, 15.0), &[(lying, 0.2)], false);
        assert_eq!((out.track_ids[0], out.shown[0]), (0, false));
    }

    #[test]
    fn half_in_view_at_the_edge_counts_at_the_edge_threshold_only_there() {
        let base = Stamp::now();
        let mut sig = room(holding());
        let half = BBox {
            x: 0.0,
            y: 100.0,
            width: 45.0,
            height: 220.0,
        };
        let mid = person(300.0);
        let mut entered = Vec::new();
        for i in 0..4 {
            let out = scored(
                &mut sig,
                at(base, f64::from(i) * 0.5),
                &[(half, 0.4), (mid, 0.4)],
                false,
            );
            entered.extend(
                out.events
                    .iter()
                    .filter(|e| e.kind == "person_entered")
                    .map(|e| e.track_id),
            );
        }
        assert_eq!(entered, [Some(1)], "only the one at the edge");
    }

    #[test]
    fn night_has_its_thresholds_and_the_switch_starts_or_ends_no_visit() {
        let base = Stamp::now();
        let mut sig = room(holding());
        feed(&mut sig, base, 0.0, &vec![vec![person(300.0)]; 4]);
        // Lights off: grayscale frames, the person scores 0.45.
        let mut nights = Vec::new();
        let mut events = Vec::new();
        for i in 0..10 {
            let out = scored(
                &mut sig,
                at(base, 2.0 + f64::from(i) * 0.5),
                &[(person(300.0), 0.45)],
                true,
            );
            nights.extend(out.night);
            events.extend(out.events);
        }
        assert_eq!(nights, [true]);
        assert!(sig.night());
        assert!(events.is_empty(), "{events:?}");
        // At night 0.45 starts a track; by day it would not.
        let mut entered = 0;
        for i in 0..4 {
            let out = scored(
                &mut sig,
                at(base, 7.0 + f64::from(i) * 0.5),
                &[(person(300.0), 0.45), (person(20.0), 0.45)],
                true,
            );
            entered += out
                .events
                .iter()
                .filter(|e| e.kind == "person_entered")
                .count();
        }
        assert_eq!(entered, 1);
        let mut day = room(holding());
        let mut entered = 0;
        for i in 0..4 {
            let out = scored(
                &mut day,
                at(base, f64::from(i) * 0.5),
                &[(person(20.0), 0.45)],
                false,
            );
            entered += out
                .events
                .iter()
                .filter(|e| e.kind == "person_entered")
                .count();
        }
        assert_eq!(entered, 0);
    }

    #[test]
    fn a_restart_takes_the_present_people_back_in_their_zones() {
        let base = Stamp::now();
        let bed = crate::tracking::zones::Zone {
            rest: true,
            ..crate::tracking::zones::rect("bed", 0.3, 0.4, 0.5, 0.6)
        };
        let with_bed = || RoomSettings {
            zones: vec![bed.clone()],
            ..holding()
        };
        let mut sig = room(with_bed());
        feed(&mut sig, base, 0.0, &vec![vec![person(300.0)]; 4]);
        feed(&mut sig, base, 2.0, &vec![vec![]; 20]); // asleep, unseen
        let snapshot = sig.snapshot(at(base, 12.0));
        let json = serde_json::to_vec(&snapshot).unwrap();
        let snapshot = Snapshot::from_json(&json).expect("round trip");
        assert_eq!(snapshot.people[0].zones, ["bed"]);
        // An hour later, a new run takes them back: occupied at once, in bed,
        // no new visit.
        let later = at(base, 3600.0);
        let mut next = room(with_bed());
        let out = next.restore(&snapshot, later);
        assert!(out.events.is_empty(), "{:?}", out.events);
        let occ = out.occupancy.expect("decided at once");
        assert_eq!((occ.occupied, occ.unseen), (true, 1));
        assert!(occ.zones["bed"].occupied);
        let (events, _) = feed(&mut next, later, 1.0, &vec![vec![person(310.0)]; 3]);
        assert!(events.is_empty(), "the same visit: {events:?}");
        let out = seen(&mut next, at(later, 3.0), &[person(310.0), person(20.0)]);
        assert_eq!(out.track_ids[0], 1);
        assert!(out.track_ids[1] > 1, "new ids never reuse old ones");
        // Down longer than unseen_timeout: the visit is closed, not resumed.
        let mut late = room(with_bed());
        let out = late.restore(&snapshot, at(base, 13.0 * 3600.0));
        assert_eq!(kinds(&out.events), ["person_left", "occupancy_changed"]);
        assert_eq!(left_reason(&out.events), ["\"not_seen\""]);
    }

    /// A person's box lying on the floor where `person(x)` stood.
    fn fallen(x: f64) -> BBox {
        BBox {
            x: x - 60.0,
            y: 230.0,
            width: 200.0,
            height: 70.0,
        }
    }

    #[test]
    fn a_fall_raises_an_alert_kept_across_a_restart_until_acknowledged() {
        let base = Stamp::now();
        let mut sig = room(holding());
        feed(&mut sig, base, 0.0, &vec![vec![person(300.0)]; 4]);
        let (events, _) = feed(&mut sig, base, 2.0, &vec![vec![fallen(300.0)]; 8]);
        assert_eq!(kinds(&events), ["posture_changed", "fall_detected"]);
        let alerts = sig.alerts().expect("alert state").clone();
        assert!(alerts.active);
        assert_eq!(alerts.alerts[0].alert, AlertKind::Fall);
        assert_eq!(alerts.alerts[0].track_id, 1);
        // Announced again after `repeat` (60 s), nothing new meanwhile.
        let out = sig.on_tick(at(base, 30.0), Watching::Yes);
        assert!(out.alerts.is_none() && out.events.is_empty());
        let out = sig.on_tick(at(base, 66.0), Watching::Yes);
        assert_eq!(out.alerts.expect("announced again").alerts[0].announced, 2);
        // A restart takes the person and the alert back, announced at once.
        let snapshot = sig.snapshot(at(base, 70.0));
        let json = serde_json::to_vec(&snapshot).unwrap();
        let snapshot = Snapshot::from_json(&json).expect("round trip");
        let mut next = room(holding());
        let out = next.restore(&snapshot, at(base, 100.0));
        let again = out.alerts.expect("alert state after the restart");
        assert!(again.active);
        assert_eq!(again.alerts[0].alert_id, alerts.alerts[0].alert_id);
        assert_eq!(again.alerts[0].announced, 3);
        assert!(
            !kinds(&out.events).contains(&"fall_detected"),
            "the same fall"
        );
        // Still lying: no second alert; acknowledged: it ends.
        let (events, _) = feed(
            &mut next,
            at(base, 100.0),
            0.5,
            &vec![vec![fallen(300.0)]; 6],
        );
        assert!(!kinds(&events).contains(&"fall_detected"), "{events:?}");
        assert!(next.acknowledge(Some("nope"), at(base, 104.0)).is_err());
        let out = next
            .acknowledge(None, at(base, 104.0))
            .expect("acknowledged");
        assert_eq!(kinds(&out.events), ["alert_acknowledged"]);
        assert!(!out.alerts.expect("alert state").active);
        assert!(
            next.acknowledge(None, at(base, 105.0)).is_err(),
            "none left"
        );
    }

    #[test]
    fn lost_right_after_going_down_mid_room_is_a_fall_and_the_person_stays() {
        let base = Stamp::now();
        let mut sig = room(holding());
        feed(&mut sig, base, 0.0, &vec![vec![person(300.0)]; 4]);
        // Going down: the box's top drops by 0.45 of the height in 0.5 s
        // (not yet low), then nothing (behind the bed).
        let going = BBox {
            y: 190.0,
            height: 115.0,
            ..person(300.0)
        };
        let (mut events, _) = feed(&mut sig, base, 2.0, &[vec![going]]);
        let (more, occ) = feed(&mut sig, base, 2.5, &vec![vec![]; 12]);
        events.extend(more);
        assert!(kinds(&events).contains(&"fall_detected"), "{events:?}");
        let fall = events.iter().find(|e| e.kind == "fall_detected").unwrap();
        assert!(matches!(
            fall.detail,
            Detail::Alert {
                how: How::LostAfterDescent,
                ..
            }
        ));
        assert!(!kinds(&events).contains(&"person_left"));
        assert!(occ.iter().all(|o| o.occupied), "never empty");
    }

    #[test]
    fn walking_about_raises_nothing() {
        let base = Stamp::now();
        let mut sig = room(holding());
        let path: Vec<Vec<BBox>> = (0..40)
            .map(|i| vec![person(100.0 + 10.0 * f64::from(i))])
            .collect();
        let (events, _) = feed(&mut sig, base, 0.0, &path);
        assert_eq!(kinds(&events), ["person_entered", "occupancy_changed"]);
        assert!(!sig.alerts().expect("decided").active);
    }

    #[test]
    fn a_box_cut_by_the_roi_does_not_walk_into_a_zone() {
        let base = Stamp::now();
        let mut sig = room(RoomSettings {
            zones: vec![crate::tracking::zones::rect("bed", 0.0, 0.85, 1.0, 0.15)],
            ..holding()
        });
        // Standing whole (feet at y = 0.78), then seen through a crop whose
        // bottom edge (y = 0.6) cuts the box: its bottom is the crop's.
        let whole = BBox {
            x: 300.0,
            y: 150.0,
            width: 80.0,
            height: 225.0,
        };
        feed(&mut sig, base, 0.0, &vec![vec![whole]; 3]);
        let crop = BBox {
            x: 0.0,
            y: 0.0,
            width: 640.0,
            height: 288.0,
        };
        let cut = BBox {
            height: 138.0,
            ..whole
        };
        let mut events = Vec::new();
        for i in 0..6 {
            let t = at(base, 1.5 + f64::from(i) * 0.5);
            let detections = [(cut, 0.9)];
            let sight = Sight {
                detections: &detections,
                keypoints: &[],
                crop,
                grayscale: false,
                model: "ssdlite",
            };
            events.extend(sig.on_result(t, sight, t).events);
        }
        assert!(events.is_empty(), "{events:?}");
    }

    #[test]
    fn a_thing_that_never_moves_outside_rest_zones_is_pointed_out_a_sleeper_in_bed_is_not() {
        let base = Stamp::now();
        let bed = crate::tracking::zones::Zone {
            rest: true,
            ..crate::tracking::zones::rect("bed", 0.5, 0.5, 0.5, 0.5)
        };
        let mut sig = room(RoomSettings {
            zones: vec![bed],
            ..holding()
        });
        // A poster (never moves) and a sleeper in bed (never moves either),
        // and someone walking about, for two minutes.
        let poster = person(40.0);
        let sleeper = BBox {
            x: 400.0,
            y: 380.0,
            width: 200.0,
            height: 80.0,
        };
        let mut candidates_at_30s = Vec::new();
        for i in 0..240 {
            let t = at(base, f64::from(i) * 0.5);
            let walker = person(200.0 + f64::from(i % 20) * 5.0);
            seen(&mut sig, t, &[poster, sleeper, walker]);
            if i == 60 {
                candidates_at_30s = sig.ignore_candidates(t.mono);
            }
        }
        assert!(
            candidates_at_30s.is_empty(),
            "not yet: {candidates_at_30s:?}"
        );
        let now = at(base, 119.5).mono;
        let candidates = sig.ignore_candidates(now);
        assert_eq!(candidates.len(), 1, "{candidates:?}");
        let c = &candidates[0];
        assert!(
            (c.rect.x - 40.0 / 640.0).abs() < 1e-9 && c.still_for_s >= 60.0,
            "{c:?}"
        );
        // Pointed out, never ignored by itself: it still counts.
        assert_eq!(sig.active_tracks(), 3);
    }

    #[test]
    fn a_zone_is_entered_only_after_its_minimum_time_at_any_rate() {
        let base = Stamp::now();
        let mut sig = room(RoomSettings {
            zones: vec![crate::tracking::zones::rect("bed", 0.0, 0.5, 0.5, 0.5)],
            zone_min_frames: 1,
            zone_min_time: Duration::from_secs(1),
            ..holding()
        });
        // At 5 Hz, a box whose anchor jumps across the edge every result:
        // never a second inside or outside, never an event.
        let (inside, outside) = (person(230.0), person(300.0));
        let mut events = Vec::new();
        for i in 0..20 {
            let b = if i % 2 == 0 { inside } else { outside };
            events.extend(seen(&mut sig, at(base, f64::from(i) * 0.2), &[b]).events);
        }
        let zone_events = |e: &[Event]| e.iter().filter(|e| e.kind.starts_with("zone_")).count();
        assert_eq!(zone_events(&events), 0, "{events:?}");
        // Inside for 1.2 s: entered once, a second after the run began.
        let mut entered_at = None;
        for i in 20..27 {
            let t = f64::from(i) * 0.2;
            let out = seen(&mut sig, at(base, t), &[inside]);
            if zone_events(&out.events) > 0 {
                entered_at.get_or_insert(t);
            }
        }
        assert_eq!(entered_at, Some(5.0), "a second after 4.0 s");
    }

    #[test]
    fn people_leave_on_their_feet_a_fall_at_the_frame_edge_is_no_exit() {
        let base = Stamp::now();
        // Standing with the feet at the frame's bottom edge, then the box's
        // top drops by two thirds of the height: a fall. Then nothing.
        let standing = BBox {
            x: 300.0,
            y: 200.0,
            width: 80.0,
            height: 280.0,
        };
        let down = BBox {
            x: 280.0,
            y: 380.0,
            width: 90.0,
            height: 100.0,
        };
        let mut sig = room(holding());
        let mut fall = vec![vec![standing]; 4];
        fall.push(vec![down]);
        fall.extend(vec![vec![]; 12]);
        let (events, occ) = feed(&mut sig, base, 0.0, &fall);
        assert!(left_reason(&events).is_empty(), "{events:?}");
        assert_eq!(occ.last().map(|o| o.unseen), Some(1));
        // Walking out under the camera: the frame cuts the box more and more
        // (the top drops a little each time): left.
        let mut sig = room(holding());
        let mut out = vec![vec![standing]; 3];
        for (y, h) in [
            (250.0, 230.0),
            (300.0, 180.0),
            (350.0, 130.0),
            (400.0, 80.0),
        ] {
            out.push(vec![BBox {
                y,
                height: h,
                ..standing
            }]);
        }
        out.extend(vec![vec![]; 10]);
        let (events, _) = feed(&mut sig, base, 0.0, &out);
        assert_eq!(left_reason(&events), ["\"exit\""], "{events:?}");
    }

    #[test]
    fn an_ignore_zone_drawn_over_a_counted_picture_ends_its_visit() {
        let base = Stamp::now();
        let mut sig = room(holding());
        let picture = person(500.0);
        feed(&mut sig, base, 0.0, &vec![vec![picture]; 4]);
        assert_eq!(sig.active_tracks(), 1);
        let mut zone = crate::tracking::zones::rect("picture", 0.7, 0.3, 0.3, 0.4);
        zone.ignore = true;
        let out = sig.set_zones(vec![zone.clone()], at(base, 2.0));
        assert_eq!(left_reason(&out.events), ["\"ignored\""]);
        assert_eq!(sig.active_tracks(), 0, "no unseen ghost of the picture");
        // The room empties `empty_after` later, the picture still there.
        let (_, occ) = feed(&mut sig, base, 2.5, &vec![vec![picture]; 30]);
        assert_eq!(occ.last().map(|o| o.occupied), Some(false), "{occ:?}");
        // A restart with the picture taken back closes it the same way.
        let mut before = room(holding());
        feed(&mut before, base, 0.0, &vec![vec![picture]; 4]);
        let snapshot = before.snapshot(at(base, 2.0));
        let mut next = room(RoomSettings {
            zones: vec![zone],
            ..holding()
        });
        let out = next.restore(&snapshot, at(base, 60.0));
        assert_eq!(left_reason(&out.events), ["\"ignored\""]);
        assert_eq!(next.active_tracks(), 0);
    }
}

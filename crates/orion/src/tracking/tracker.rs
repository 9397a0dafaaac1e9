//! The tracker of one camera: associates the detections of successive results
//! into tracks whose ids are unique for the daemon's lifetime and never reused.
//!
//! At 1-5 Hz a walking person moves far between results and boxes may not overlap,
//! so association does not use IoU: the cost of a pair is the distance from the
//! track's predicted centre (constant velocity, damped) to the detection's centre,
//! in units of the boxes' size, plus a penalty for a change of size. Pairs beyond
//! `max_distance` are never matched; among the rest, the Kuhn-Munkres algorithm of
//! the `pathfinding` crate finds the most matches at the least total cost.
//!
//! Two thresholds (the ByteTrack idea): a *strong* detection may start a track;
//! a *weak* one (a person lying, in the dark, half in view) only continues a
//! confirmed track, after the strong ones had their pick. A strong detection
//! that appears away from an exit near a person no longer seen is that person
//! (people come in through exits), within three times the usual distance.
//!
//! Lifecycle: a track is *confirmed* after `min_hits` results in which it was seen.
//! Missed in at least two results and for longer than `max_missing`, a tentative
//! track was noise and is forgotten; a confirmed one the caller says has left
//! (last seen at an exit, on their feet) ends, and any other becomes *unseen*:
//! it keeps its id and place, a detection there continues it, and it ends only
//! after `unseen_timeout` of results without it. Time counts only through
//! results, each gap at most two typical intervals: without results (a paused
//! or broken camera) no track ages.
//!
//! Bounded: at most [`MAX_TRACKS`] tracks live at once (a detection that would
//! start one more ends the person unseen the longest, or gets no track when
//! everyone is seen), and a result carries at most
//! `orion_protocol::MAX_DETECTIONS` detections, so association costs at most a
//! fixed square matrix whatever a model produces.
//!
//! Pure logic: no I/O and no clock of its own (every call carries the result's
//! capture time).

use std::time::{Duration, Instant};

use orion_protocol::BBox;
use pathfinding::prelude::{Matrix, kuhn_munkres_min};

/// Tracks alive at once, at most (far more people than a room or corridor
/// camera sees).
pub const MAX_TRACKS: usize = 64;

/// Results in a row without a track before it is missed (one missed result,
/// or a long gap between two results, is never enough).
const MIN_MISSES: u32 = 2;

/// How far (in `max_distance`s) a strong detection away from exits may be from
/// an unseen track and still continue it.
const REAPPEAR_REACH: f64 = 3.0;

/// A new box with this much of its area inside the box of someone seen in the
/// same result is a part of that person.
const PART_OF: f64 = 0.6;

/// How much of `b`'s area lies inside `o`.
fn inside_share(b: &BBox, o: &BBox) -> f64 {
    let w = (b.x + b.width).min(o.x + o.width) - b.x.max(o.x);
    let h = (b.y + b.height).min(o.y + o.height) - b.y.max(o.y);
    (w.max(0.0) * h.max(0.0)) / (b.width * b.height).max(1.0)
}

/// The time between two results counts at most this many typical intervals
/// (a longer gap is a camera that did not watch, not time passing).
const GAP_INTERVALS: u32 = 2;

/// How the tracker associates and ages tracks.
#[derive(Debug, Clone)]
pub struct TrackerSettings {
    /// Results a track must be seen in before it is confirmed.
    pub min_hits: u32,
    /// A track not seen for longer is missed: ended at an exit, else unseen.
    pub max_missing: Duration,
    /// Largest association cost (centre distance in box sizes, plus the size
    /// penalty) that still matches.
    pub max_distance: f64,
    /// An unseen track ends after this much time of results without it; zero:
    /// a missed track ends wherever it was.
    pub unseen_timeout: Duration,
}

impl Default for TrackerSettings {
    fn default() -> Self {
        Self {
            min_hits: 2,
            max_missing: Duration::from_secs(3),
            max_distance: 1.5,
            unseen_timeout: Duration::from_secs(12 * 3600),
        }
    }
}

/// One detection offered to the tracker.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    pub bbox: BBox,
    /// At or above the starting threshold: may start a track. Weak ones only
    /// continue confirmed tracks.
    pub strong: bool,
}

/// One person followed across results.
#[derive(Debug, Clone, PartialEq)]
pub struct Track {
    pub id: u64,
    /// The last box it was seen with (full-frame pixels).
    pub bbox: BBox,
    /// The box it was first seen with.
    pub first_bbox: BBox,
    /// Centre velocity, pixels per second.
    pub velocity: (f64, f64),
    /// Results it was seen in.
    pub hits: u32,
    pub confirmed: bool,
    pub first_seen: Instant,
    pub last_seen: Instant,
    /// Results in a row without it.
    pub misses: u32,
    /// Seen now; false once missed away from exits (unseen).
    pub seen: bool,
    /// Time of results it has been missed through (in a row).
    pub missing_for: Duration,
    /// Time of results it has been unseen through.
    pub unseen_for: Duration,
}

/// Why a confirmed track ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// Missed after it was last seen at an exit.
    Exit,
    /// Unseen for `unseen_timeout` (or missed, with no unseen state).
    NotSeen,
    /// What it was is ignored now (an ignore zone drawn over it).
    Ignored,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Exit => "exit",
            EndReason::NotSeen => "not_seen",
            EndReason::Ignored => "ignored",
        }
    }
}

/// What changed in a track's life.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Seen often enough to be a person: the visit starts.
    Confirmed(Track),
    /// Missed away from exits: still here, not seen.
    Unseen(Track),
    /// An unseen track seen again.
    Seen(Track),
    /// The visit ends (confirmed tracks only).
    Ended(Track, EndReason),
}

/// The outcome of one result.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Update {
    /// The track of each candidate, in the order given; 0 for none (a weak
    /// candidate that continued nothing, or more than [`MAX_TRACKS`] at
    /// once). Ids start at 1.
    pub track_ids: Vec<u64>,
    pub changes: Vec<Change>,
}

/// Costs are compared as integers (thousandths).
const SCALE: f64 = 1000.0;
/// The cost of a pair that must never match.
const FORBIDDEN: i64 = 1_000_000_000;
/// Velocity carries a prediction at most this far: a person who stopped behind
/// a wardrobe is looked for where they were, not a room away.
const MAX_PREDICTION: Duration = Duration::from_secs(1);
/// Weight of the newest velocity measurement.
const VELOCITY_ALPHA: f64 = 0.5;

#[derive(Debug)]
pub struct Tracker {
    settings: TrackerSettings,
    tracks: Vec<Track>,
    next_id: u64,
    /// The capture time of the newest result.
    last_update: Option<Instant>,
    /// The typical time between results (a moving average of the gaps up to
    /// `max_missing`).
    interval: Duration,
}

fn centre(b: &BBox) -> (f64, f64) {
    (b.x + b.width / 2.0, b.y + b.height / 2.0)
}

fn size(b: &BBox) -> f64 {
    ((b.width + b.height) / 2.0).max(1.0)
}

impl Tracker {
    pub fn new(settings: TrackerSettings) -> Self {
        Self {
            settings,
            tracks: Vec::new(),
            next_id: 1,
            last_update: None,
            interval: Duration::from_millis(500),
        }
    }

    pub fn settings(&self) -> &TrackerSettings {
        &self.settings
    }

    /// Every live track, tentative and confirmed.
    pub fn tracks(&self) -> &[Track] {
        &self.tracks
    }

    /// The live confirmed tracks, seen and unseen.
    pub fn confirmed(&self) -> impl Iterator<Item = &Track> {
        self.tracks.iter().filter(|t| t.confirmed)
    }

    /// Takes back confirmed tracks of an earlier run as they were saved (seen
    /// or unseen); new ids start above theirs.
    pub fn restore(&mut self, tracks: Vec<Track>) {
        for t in tracks {
            if self.tracks.len() >= MAX_TRACKS || self.tracks.iter().any(|o| o.id == t.id) {
                continue;
            }
            self.next_id = self.next_id.max(t.id + 1);
            self.tracks.push(t);
        }
    }

    /// Ends track `id` now (its caller says why); the track, if it lived.
    pub fn end(&mut self, id: u64) -> Option<Track> {
        let i = self.tracks.iter().position(|t| t.id == id)?;
        Some(self.tracks.remove(i))
    }

    /// Ids are never reused, across restarts too: the next one is at least `id`.
    pub fn reserve_ids(&mut self, id: u64) {
        self.next_id = self.next_id.max(id);
    }

    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    /// The association cost of `track` and a detection `det` at `now`.
    fn cost(track: &Track, det: &BBox, now: Instant) -> f64 {
        let dt = now
            .saturating_duration_since(track.last_seen)
            .min(MAX_PREDICTION)
            .as_secs_f64();
        let (cx, cy) = centre(&track.bbox);
        let (px, py) = (cx + track.velocity.0 * dt, cy + track.velocity.1 * dt);
        let (dx, dy) = centre(det);
        let scale = (size(&track.bbox) + size(det)) / 2.0;
        let distance = ((px - dx).powi(2) + (py - dy).powi(2)).sqrt() / scale;
        let area = |b: &BBox| (b.width * b.height).max(1.0);
        let size_change = (area(det) / area(&track.bbox)).ln().abs();
        let cost = distance + 0.5 * size_change;
        if cost.is_finite() { cost } else { f64::MAX }
    }

    /// The time since the previous result that counts for aging: at most
    /// [`GAP_INTERVALS`] typical intervals (a pause, an outage or a stall is
    /// not time the room was watched).
    fn step(&mut self, now: Instant) -> Duration {
        let gap = self
            .last_update
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        if !gap.is_zero() && gap <= self.settings.max_missing {
            self.interval = (self.interval * 4 + gap) / 5;
        }
        self.last_update = Some(self.last_update.map_or(now, |t| t.max(now)));
        gap.min(self.interval * GAP_INTERVALS)
    }

    /// Associates the candidates of a result captured at `now`, then ages the
    /// tracks it missed. `at_exit` says whether a box is at an exit; `left`
    /// whether a confirmed person last seen as a track, now missed, has left
    /// (at an exit, and leaving on their feet).
    pub fn update(
        &mut self,
        now: Instant,
        candidates: &[Candidate],
        at_exit: impl Fn(&BBox) -> bool,
        left: impl Fn(&Track) -> bool,
    ) -> Update {
        let mut update = Update {
            track_ids: vec![0; candidates.len()],
            changes: Vec::new(),
        };
        let step = self.step(now);
        let mut taken = vec![false; self.tracks.len()];
        let mut matched: Vec<Option<usize>> = vec![None; candidates.len()];
        let limit = self.settings.max_distance;
        // Strong detections with every track, then weak ones with the confirmed
        // tracks left, then strong ones away from exits with the unseen left.
        self.stage(now, candidates, &mut matched, &mut taken, limit, |c, _| {
            c.strong
        });
        self.stage(now, candidates, &mut matched, &mut taken, limit, |c, t| {
            !c.strong && t.confirmed
        });
        let reach = limit * REAPPEAR_REACH;
        self.stage(now, candidates, &mut matched, &mut taken, reach, |c, t| {
            c.strong && !t.seen && !at_exit(&c.bbox)
        });
        for (det, track) in matched.iter().enumerate() {
            if let Some(t) = *track {
                let bbox = candidates[det].bbox;
                update.track_ids[det] = self.tracks[t].id;
                self.continue_track(t, bbox, now, &mut update.changes);
            }
        }
        let mut people: Vec<BBox> = (0..candidates.len())
            .filter(|d| matched[*d].is_some())
            .map(|d| candidates[d].bbox)
            .collect();
        for (det, c) in candidates.iter().enumerate() {
            // A box mostly inside someone seen in this result (detections
            // come best first) is a part of them (legs found apart), never a
            // new person.
            let part = people.iter().any(|o| inside_share(&c.bbox, o) >= PART_OF);
            if matched[det].is_some() || !c.strong || part {
                continue;
            }
            if !self.make_room(&mut taken, &mut update) {
                continue;
            }
            update.track_ids[det] = self.start_track(c.bbox, now, &mut update.changes);
            taken.push(true);
            people.push(c.bbox);
        }
        self.age(step, &taken, &left, &mut update.changes);
        update
    }

    /// Room for one more track: when [`MAX_TRACKS`] live, the person unseen
    /// the longest (not seen in this result) leaves. False when none can.
    fn make_room(&mut self, taken: &mut Vec<bool>, update: &mut Update) -> bool {
        if self.tracks.len() < MAX_TRACKS {
            return true;
        }
        let oldest = (0..self.tracks.len())
            .filter(|i| !taken[*i] && !self.tracks[*i].seen)
            .max_by_key(|i| self.tracks[*i].unseen_for);
        let Some(i) = oldest else {
            return false;
        };
        let t = self.tracks.remove(i);
        taken.remove(i);
        update.changes.push(Change::Ended(t, EndReason::NotSeen));
        true
    }

    /// Matches the candidates not yet matched with the tracks not yet taken,
    /// among the pairs `pair` allows, within `limit`.
    fn stage(
        &self,
        now: Instant,
        candidates: &[Candidate],
        matched: &mut [Option<usize>],
        taken: &mut [bool],
        limit: f64,
        pair: impl Fn(&Candidate, &Track) -> bool,
    ) {
        let tracks: Vec<usize> = (0..self.tracks.len()).filter(|t| !taken[*t]).collect();
        let dets: Vec<usize> = (0..candidates.len())
            .filter(|d| matched[*d].is_none())
            .collect();
        let found = Self::associate(&tracks, &dets, |t, d| {
            let (track, c) = (&self.tracks[t], &candidates[d]);
            if !pair(c, track) {
                return None;
            }
            let cost = Self::cost(track, &c.bbox, now);
            (cost <= limit).then_some(cost)
        });
        for (t, d) in found {
            matched[d] = Some(t);
            taken[t] = true;
        }
    }

    /// Track `t` was seen again with `bbox` at `now`.
    fn continue_track(&mut self, t: usize, bbox: BBox, now: Instant, changes: &mut Vec<Change>) {
        let min_hits = self.settings.min_hits;
        let track = &mut self.tracks[t];
        let dt = now.saturating_duration_since(track.last_seen).as_secs_f64();
        if dt > 0.0 && track.seen {
            let (ox, oy) = centre(&track.bbox);
            let (nx, ny) = centre(&bbox);
            let v = ((nx - ox) / dt, (ny - oy) / dt);
            track.velocity = (
                VELOCITY_ALPHA * v.0 + (1.0 - VELOCITY_ALPHA) * track.velocity.0,
                VELOCITY_ALPHA * v.1 + (1.0 - VELOCITY_ALPHA) * track.velocity.1,
            );
        }
        track.bbox = bbox;
        track.last_seen = track.last_seen.max(now);
        track.hits += 1;
        track.misses = 0;
        track.missing_for = Duration::ZERO;
        if !track.seen {
            track.seen = true;
            track.unseen_for = Duration::ZERO;
            changes.push(Change::Seen(track.clone()));
        }
        if !track.confirmed && track.hits >= min_hits {
            track.confirmed = true;
            changes.push(Change::Confirmed(track.clone()));
        }
    }

    /// A new track for `bbox`; its id.
    fn start_track(&mut self, bbox: BBox, now: Instant, changes: &mut Vec<Change>) -> u64 {
        let track = Track {
            id: self.next_id,
            bbox,
            first_bbox: bbox,
            velocity: (0.0, 0.0),
            hits: 1,
            confirmed: self.settings.min_hits <= 1,
            first_seen: now,
            last_seen: now,
            misses: 0,
            seen: true,
            missing_for: Duration::ZERO,
            unseen_for: Duration::ZERO,
        };
        self.next_id += 1;
        if track.confirmed {
            changes.push(Change::Confirmed(track.clone()));
        }
        let id = track.id;
        self.tracks.push(track);
        id
    }

    /// Ages the tracks this result missed (`taken[i]`: track `i` was seen),
    /// `step` being the time since the previous result that counts.
    fn age(
        &mut self,
        step: Duration,
        taken: &[bool],
        left: &impl Fn(&Track) -> bool,
        changes: &mut Vec<Change>,
    ) {
        let settings = &self.settings;
        let mut i = 0;
        self.tracks.retain_mut(|t| {
            let seen_now = taken.get(i).copied().unwrap_or(true);
            i += 1;
            if seen_now {
                return true;
            }
            t.misses = t.misses.saturating_add(1);
            t.missing_for += step;
            if !t.seen {
                t.unseen_for += step;
                if t.unseen_for >= settings.unseen_timeout {
                    changes.push(Change::Ended(t.clone(), EndReason::NotSeen));
                    return false;
                }
                return true;
            }
            let missed = t.misses >= MIN_MISSES && t.missing_for > settings.max_missing;
            if !missed {
                return true;
            }
            if !t.confirmed {
                return false;
            }
            if left(t) {
                changes.push(Change::Ended(t.clone(), EndReason::Exit));
                return false;
            }
            if settings.unseen_timeout.is_zero() {
                changes.push(Change::Ended(t.clone(), EndReason::NotSeen));
                return false;
            }
            t.seen = false;
            t.velocity = (0.0, 0.0);
            t.unseen_for = t.missing_for;
            changes.push(Change::Unseen(t.clone()));
            true
        });
    }

    /// The least-cost matching of `tracks` with `dets` (indices), among the
    /// pairs `cost` allows: (track, detection) pairs.
    fn associate(
        tracks: &[usize],
        dets: &[usize],
        cost: impl Fn(usize, usize) -> Option<f64>,
    ) -> Vec<(usize, usize)> {
        if tracks.is_empty() || dets.is_empty() {
            return Vec::new();
        }
        // Square: rows are tracks, columns detections; padding never matches.
        let n = tracks.len().max(dets.len());
        let mut weights = Matrix::new_square(n, FORBIDDEN);
        let mut any = false;
        for (row, t) in tracks.iter().enumerate() {
            for (col, d) in dets.iter().enumerate() {
                if let Some(c) = cost(*t, *d) {
                    weights[(row, col)] = (c * SCALE).round() as i64;
                    any = true;
                }
            }
        }
        if !any {
            return Vec::new();
        }
        let (_, columns) = kuhn_munkres_min(&weights);
        columns
            .into_iter()
            .enumerate()
            .filter(|(row, col)| {
                *row < tracks.len() && *col < dets.len() && weights[(*row, *col)] < FORBIDDEN
            })
            .map(|(row, col)| (tracks[row], dets[col]))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(x: f64, y: f64) -> BBox {
        BBox {
            x,
            y,
            width: 80.0,
            height: 200.0,
        }
    }

    fn strong(bbox: BBox) -> Candidate {
        Candidate { bbox, strong: true }
    }

    fn weak(bbox: BBox) -> Candidate {
        Candidate {
            bbox,
            strong: false,
        }
    }

    /// Settings where a missed track ends wherever it was (no unseen state).
    fn ending() -> TrackerSettings {
        TrackerSettings {
            unseen_timeout: Duration::ZERO,
            ..TrackerSettings::default()
        }
    }

    /// No exits anywhere.
    fn nowhere(_: &BBox) -> bool {
        false
    }

    /// Nobody leaves.
    fn never(_: &Track) -> bool {
        false
    }

    /// Feeds `frames` (strong boxes per result) at `hz`, with no exits;
    /// returns each result's track ids and every change.
    fn run(
        tracker: &mut Tracker,
        start: Instant,
        hz: f64,
        frames: &[Vec<BBox>],
    ) -> (Vec<Vec<u64>>, Vec<Change>) {
        let mut ids = Vec::new();
        let mut changes = Vec::new();
        for (i, dets) in frames.iter().enumerate() {
            let now = start + Duration::from_secs_f64(i as f64 / hz);
            let candidates: Vec<Candidate> = dets.iter().copied().map(strong).collect();
            let u = tracker.update(now, &candidates, nowhere, never);
            ids.push(u.track_ids);
            changes.extend(u.changes);
        }
        (ids, changes)
    }

    fn confirmed_ids(changes: &[Change]) -> Vec<u64> {
        changes
            .iter()
            .filter_map(|c| match c {
                Change::Confirmed(t) => Some(t.id),
                _ => None,
            })
            .collect()
    }

    fn ended_ids(changes: &[Change]) -> Vec<u64> {
        changes
            .iter()
            .filter_map(|c| match c {
                Change::Ended(t, _) => Some(t.id),
                _ => None,
            })
            .collect()
    }

    fn kinds(changes: &[Change]) -> Vec<&'static str> {
        changes
            .iter()
            .map(|c| match c {
                Change::Confirmed(_) => "confirmed",
                Change::Unseen(_) => "unseen",
                Change::Seen(_) => "seen",
                Change::Ended(_, EndReason::Exit) => "ended_exit",
                Change::Ended(_, EndReason::NotSeen) => "ended_not_seen",
                Change::Ended(_, EndReason::Ignored) => "ended_ignored",
            })
            .collect()
    }

    #[test]
    fn one_walk_is_one_track_confirmed_once_and_ended_once() {
        let mut tr = Tracker::new(ending());
        let start = Instant::now();
        // Walking right 60 px per result at 2 Hz (no overlap after two steps),
        // then gone: 10 empty results.
        let mut frames: Vec<Vec<BBox>> = (0..10)
            .map(|i| vec![b(20.0 + 60.0 * i as f64, 100.0)])
            .collect();
        frames.extend(vec![Vec::new(); 10]);
        let (ids, changes) = run(&mut tr, start, 2.0, &frames);
        assert!(ids[..10].iter().all(|r| r == &vec![1]), "{ids:?}");
        assert_eq!(confirmed_ids(&changes), vec![1]);
        assert_eq!(ended_ids(&changes), vec![1], "ended once");
        assert!(tr.tracks().is_empty());
    }

    #[test]
    fn a_single_missed_result_does_not_end_the_track() {
        let mut tr = Tracker::new(ending());
        let mut frames: Vec<Vec<BBox>> = (0..8)
            .map(|i| vec![b(100.0 + 20.0 * i as f64, 100.0)])
            .collect();
        frames[4].clear();
        let (ids, changes) = run(&mut tr, Instant::now(), 2.0, &frames);
        assert!(ids.iter().flatten().all(|id| *id == 1), "{ids:?}");
        assert!(ended_ids(&changes).is_empty());
    }

    #[test]
    fn an_occlusion_shorter_than_max_missing_keeps_the_track_a_longer_one_ends_it() {
        let mut tr = Tracker::new(ending());
        let start = Instant::now();
        let mut frames: Vec<Vec<BBox>> = vec![vec![b(200.0, 100.0)]; 4];
        frames.extend(vec![Vec::new(); 5]); // 2.5 s behind the wardrobe
        frames.extend(vec![vec![b(210.0, 100.0)]; 3]);
        let (ids, changes) = run(&mut tr, start, 2.0, &frames);
        assert!(ids.iter().flatten().all(|id| *id == 1), "{ids:?}");
        assert!(ended_ids(&changes).is_empty());
        // 4 s hidden: the visit ended, the person coming back is a new visit.
        let mut tr = Tracker::new(ending());
        let mut frames: Vec<Vec<BBox>> = vec![vec![b(200.0, 100.0)]; 4];
        frames.extend(vec![Vec::new(); 8]);
        frames.extend(vec![vec![b(210.0, 100.0)]; 3]);
        let (ids, changes) = run(&mut tr, start, 2.0, &frames);
        assert_eq!(ended_ids(&changes), vec![1]);
        assert_eq!(ids.last(), Some(&vec![2]));
        assert_eq!(confirmed_ids(&changes), vec![1, 2]);
    }

    #[test]
    fn no_result_ages_no_track() {
        // A camera that sends no results (paused, broken) for a minute: the
        // person is still tracked when results come back.
        let mut tr = Tracker::new(ending());
        let t0 = Instant::now();
        let (_, changes) = run(&mut tr, t0, 2.0, &vec![vec![b(200.0, 100.0)]; 4]);
        assert_eq!(confirmed_ids(&changes), vec![1]);
        let later = t0 + Duration::from_secs(60);
        let u = tr.update(later, &[strong(b(205.0, 100.0))], nowhere, never);
        assert_eq!(u.track_ids, vec![1]);
        assert!(u.changes.is_empty(), "{:?}", u.changes);
        // Two empty results after another long gap: the gap counts as two
        // typical intervals, not as the minute it lasted.
        let again = later + Duration::from_secs(60);
        for t in [again, again + Duration::from_millis(500)] {
            let u = tr.update(t, &[], nowhere, never);
            assert!(u.changes.is_empty(), "{:?}", u.changes);
        }
        assert!(
            tr.tracks()[0].seen,
            "still seen: not missed for 3 s of results"
        );
    }

    #[test]
    fn a_person_missed_away_from_exits_is_unseen_keeps_the_id_and_is_continued_there() {
        let mut tr = Tracker::new(TrackerSettings::default());
        let t0 = Instant::now();
        let mut frames: Vec<Vec<BBox>> = vec![vec![b(300.0, 150.0)]; 4];
        frames.extend(vec![Vec::new(); 40]); // 20 s on the floor, not detected
        frames.push(vec![b(310.0, 160.0)]);
        let (ids, changes) = run(&mut tr, t0, 2.0, &frames);
        assert_eq!(kinds(&changes), ["confirmed", "unseen", "seen"]);
        assert_eq!(ids.last(), Some(&vec![1]));
        assert!(tr.tracks()[0].seen);
    }

    #[test]
    fn a_person_missed_at_an_exit_has_left() {
        let mut tr = Tracker::new(TrackerSettings::default());
        let t0 = Instant::now();
        let at_left_edge = |b: &BBox| b.x <= 5.0;
        for i in 0..4 {
            let now = t0 + Duration::from_millis(500 * i);
            tr.update(now, &[strong(b(2.0, 150.0))], at_left_edge, |t| {
                at_left_edge(&t.bbox)
            });
        }
        let mut changes = Vec::new();
        for i in 4..14 {
            let now = t0 + Duration::from_millis(500 * i);
            let left = |t: &Track| at_left_edge(&t.bbox);
            changes.extend(tr.update(now, &[], at_left_edge, left).changes);
        }
        assert_eq!(kinds(&changes), ["ended_exit"]);
        assert!(tr.tracks().is_empty());
    }

    #[test]
    fn an_unseen_person_ends_after_unseen_timeout_of_results() {
        let settings = TrackerSettings {
            unseen_timeout: Duration::from_secs(20),
            ..TrackerSettings::default()
        };
        let mut tr = Tracker::new(settings);
        let t0 = Instant::now();
        let mut frames: Vec<Vec<BBox>> = vec![vec![b(300.0, 150.0)]; 4];
        frames.extend(vec![Vec::new(); 30]); // 15 s: unseen, not ended
        let (_, changes) = run(&mut tr, t0, 2.0, &frames);
        assert_eq!(kinds(&changes), ["confirmed", "unseen"]);
        // An hour without results counts nothing...
        let later = t0 + Duration::from_secs(3600);
        assert!(tr.update(later, &[], nowhere, never).changes.is_empty());
        // ... 10 s more of results does.
        let mut changes = Vec::new();
        for i in 1..=20 {
            let now = later + Duration::from_millis(500 * i);
            changes.extend(tr.update(now, &[], nowhere, never).changes);
        }
        assert_eq!(kinds(&changes), ["ended_not_seen"]);
    }

    #[test]
    fn weak_detections_continue_a_confirmed_track_but_never_start_one() {
        let mut tr = Tracker::new(TrackerSettings::default());
        let t0 = Instant::now();
        let at = |i: u64| t0 + Duration::from_millis(500 * i);
        // Weak boxes alone: nothing.
        for i in 0..4 {
            let u = tr.update(at(i), &[weak(b(100.0, 100.0))], nowhere, never);
            assert_eq!(u.track_ids, vec![0]);
        }
        assert!(tr.tracks().is_empty());
        // A person seen strongly, then only weakly (lying down): one track, seen.
        for i in 4..8 {
            tr.update(at(i), &[strong(b(300.0, 100.0))], nowhere, never);
        }
        let lying = BBox {
            x: 260.0,
            y: 230.0,
            width: 200.0,
            height: 80.0,
        };
        for i in 8..40 {
            let u = tr.update(at(i), &[weak(lying)], nowhere, never);
            assert_eq!(u.track_ids, vec![1], "result {i}");
            assert!(u.changes.is_empty(), "{:?}", u.changes);
        }
        assert!(tr.tracks()[0].seen);
    }

    #[test]
    fn someone_appearing_mid_room_near_an_unseen_person_is_that_person_at_an_exit_someone_else() {
        let mut tr = Tracker::new(TrackerSettings::default());
        let t0 = Instant::now();
        let mut frames: Vec<Vec<BBox>> = vec![vec![b(300.0, 150.0)]; 4];
        frames.extend(vec![Vec::new(); 10]);
        run(&mut tr, t0, 2.0, &frames);
        assert!(!tr.tracks()[0].seen);
        // Found again 2.5 box sizes away (got up from the floor and moved):
        // beyond the usual distance, within the reach for the unseen.
        let now = t0 + Duration::from_secs(8);
        let at_door = |b: &BBox| b.x >= 560.0;
        let u = tr.update(now, &[strong(b(300.0 + 350.0, 150.0))], at_door, never);
        assert_ne!(u.track_ids, vec![1], "at the door: someone coming in");
        let u = tr.update(
            now + Duration::from_millis(500),
            &[
                strong(b(650.0, 150.0)),
                strong(b(300.0 + 300.0 * 1.0, 150.0)),
            ],
            |b: &BBox| b.x >= 620.0,
            never,
        );
        assert_eq!(u.track_ids[1], 1, "mid-room: the unseen person");
    }

    #[test]
    fn a_jump_of_half_a_box_width_between_results_keeps_the_track() {
        let mut tr = Tracker::new(TrackerSettings::default());
        // 40 px = half the 80 px box width per result, changing direction.
        let xs = [100.0, 140.0, 180.0, 140.0, 100.0, 140.0];
        let frames: Vec<Vec<BBox>> = xs.iter().map(|x| vec![b(*x, 100.0)]).collect();
        let (ids, _) = run(&mut tr, Instant::now(), 2.0, &frames);
        assert!(ids.iter().flatten().all(|id| *id == 1), "{ids:?}");
    }

    #[test]
    fn two_people_crossing_keep_their_ids() {
        let mut tr = Tracker::new(TrackerSettings::default());
        // A walks right, B walks left on the same line; they pass each other.
        let frames: Vec<Vec<BBox>> = (0..12)
            .map(|i| {
                let i = i as f64;
                vec![b(40.0 + 50.0 * i, 100.0), b(590.0 - 50.0 * i, 110.0)]
            })
            .collect();
        let (ids, changes) = run(&mut tr, Instant::now(), 2.0, &frames);
        for (i, r) in ids.iter().enumerate() {
            assert_eq!(r, &vec![1, 2], "result {i}: {ids:?}");
        }
        assert_eq!(confirmed_ids(&changes), vec![1, 2]);
    }

    #[test]
    fn a_person_lying_still_keeps_one_track_and_ids_are_never_reused() {
        let mut tr = Tracker::new(TrackerSettings::default());
        let lying = BBox {
            x: 300.0,
            y: 300.0,
            width: 220.0,
            height: 70.0,
        };
        let frames: Vec<Vec<BBox>> = vec![vec![lying]; 600]; // 5 minutes at 2 Hz
        let (ids, changes) = run(&mut tr, Instant::now(), 2.0, &frames);
        assert!(ids.iter().flatten().all(|id| *id == 1));
        assert_eq!(changes.len(), 1, "confirmed once, never ended: {changes:?}");
        // A far-away detection is someone else, with a new id.
        let u = tr.update(
            Instant::now() + Duration::from_secs(301),
            &[strong(lying), strong(b(10.0, 10.0))],
            nowhere,
            never,
        );
        assert_eq!(u.track_ids, vec![1, 2]);
    }

    #[test]
    fn tracks_are_bounded_whatever_a_result_holds() {
        let mut tracker = Tracker::new(TrackerSettings::default());
        let t0 = Instant::now();
        let crowd: Vec<Candidate> = (0..200)
            .map(|i| strong(b(f64::from(i % 20) * 100.0, f64::from(i / 20) * 100.0)))
            .collect();
        let update = tracker.update(t0, &crowd, nowhere, never);
        assert_eq!(tracker.tracks().len(), MAX_TRACKS);
        let tracked = update.track_ids.iter().filter(|id| **id != 0).count();
        assert_eq!(tracked, MAX_TRACKS, "the rest get no track");
        tracker.update(t0 + Duration::from_millis(500), &crowd, nowhere, never);
        assert_eq!(tracker.tracks().len(), MAX_TRACKS);
    }

    #[test]
    fn when_every_slot_is_taken_the_person_unseen_the_longest_makes_room() {
        let mut tr = Tracker::new(TrackerSettings::default());
        let t0 = Instant::now();
        let crowd: Vec<Candidate> = (0..MAX_TRACKS)
            .map(|i| strong(b((i % 8) as f64 * 200.0, (i / 8) as f64 * 300.0)))
            .collect();
        for i in 0..3 {
            tr.update(t0 + Duration::from_millis(500 * i), &crowd, nowhere, never);
        }
        // All of them missed for a while: unseen, the first ones the longest
        // only by their order, so miss the rest once more.
        let mut at = t0 + Duration::from_secs(1);
        for _ in 0..10 {
            at += Duration::from_millis(500);
            tr.update(at, &[], nowhere, never);
        }
        assert!(tr.tracks().iter().all(|t| !t.seen));
        let newcomer = strong(b(5000.0, 5000.0));
        let u = tr.update(at + Duration::from_millis(500), &[newcomer], nowhere, never);
        assert_ne!(u.track_ids[0], 0, "a track for the newcomer");
        let ended: Vec<&Change> = u
            .changes
            .iter()
            .filter(|c| matches!(c, Change::Ended(_, EndReason::NotSeen)))
            .collect();
        assert_eq!(ended.len(), 1, "{:?}", u.changes);
        assert_eq!(tr.tracks().len(), MAX_TRACKS);
    }

    #[test]
    fn a_part_of_a_person_seen_beside_them_is_no_second_person() {
        let mut tr = Tracker::new(TrackerSettings::default());
        let t0 = Instant::now();
        let person = b(100.0, 100.0);
        // Legs across a bed: mostly inside the person's box.
        let legs = BBox {
            x: 90.0,
            y: 220.0,
            width: 110.0,
            height: 80.0,
        };
        for i in 0..6 {
            let u = tr.update(
                t0 + Duration::from_millis(500 * i),
                &[strong(person), strong(legs)],
                nowhere,
                never,
            );
            assert_eq!(u.track_ids[1], 0, "result {i}");
        }
        assert_eq!(tr.tracks().len(), 1);
    }

    #[test]
    fn noise_seen_once_never_becomes_a_visit() {
        let mut tr = Tracker::new(TrackerSettings::default());
        let start = Instant::now();
        let mut frames = vec![vec![b(10.0, 10.0)]];
        frames.extend(vec![Vec::new(); 10]);
        let (ids, changes) = run(&mut tr, start, 2.0, &frames);
        assert_eq!(ids[0], vec![1]);
        assert!(changes.is_empty(), "{changes:?}");
        assert!(tr.tracks().is_empty());
    }
}

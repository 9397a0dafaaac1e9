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
//! Lifecycle: a track is *confirmed* after `min_hits` results in which it was seen,
//! survives misses for `max_missing`, then ends. A confirmed track that ends was a
//! visit; a tentative one that ends was noise and is forgotten.
//!
//! Bounded: at most [`MAX_TRACKS`] tracks live at once (a detection that would
//! start one more gets no track), and a result carries at most
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

/// How the tracker associates and ages tracks.
#[derive(Debug, Clone)]
pub struct TrackerSettings {
    /// Results a track must be seen in before it is confirmed.
    pub min_hits: u32,
    /// A track not seen for longer ends.
    pub max_missing: Duration,
    /// Largest association cost (centre distance in box sizes, plus the size
    /// penalty) that still matches.
    pub max_distance: f64,
}

impl Default for TrackerSettings {
    fn default() -> Self {
        Self {
            min_hits: 2,
            max_missing: Duration::from_secs(3),
            max_distance: 1.5,
        }
    }
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
}

/// What changed in a track's life.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Seen often enough to be a person: the visit starts.
    Confirmed(Track),
    /// Not seen for `max_missing`: the visit ends (confirmed tracks only).
    Ended(Track),
}

/// The outcome of one result.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Update {
    /// The track of each detection, in the order given; 0 for none (more
    /// than [`MAX_TRACKS`] at once). Ids start at 1.
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
        }
    }

    /// Every live track, tentative and confirmed.
    pub fn tracks(&self) -> &[Track] {
        &self.tracks
    }

    /// The live confirmed tracks.
    pub fn confirmed(&self) -> impl Iterator<Item = &Track> {
        self.tracks.iter().filter(|t| t.confirmed)
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

    /// Associates the detections of a result captured at `now`, then ends the
    /// tracks not seen for `max_missing`.
    pub fn update(&mut self, now: Instant, detections: &[BBox]) -> Update {
        let mut update = Update {
            track_ids: vec![0; detections.len()],
            changes: Vec::new(),
        };
        let matched = self.associate(now, detections);
        let mut seen = vec![false; self.tracks.len()];
        for (det, track) in matched.iter().enumerate() {
            let Some(t) = *track else {
                continue;
            };
            seen[t] = true;
            let track = &mut self.tracks[t];
            let dt = now.saturating_duration_since(track.last_seen).as_secs_f64();
            if dt > 0.0 {
                let (ox, oy) = centre(&track.bbox);
                let (nx, ny) = centre(&detections[det]);
                let v = ((nx - ox) / dt, (ny - oy) / dt);
                track.velocity = (
                    VELOCITY_ALPHA * v.0 + (1.0 - VELOCITY_ALPHA) * track.velocity.0,
                    VELOCITY_ALPHA * v.1 + (1.0 - VELOCITY_ALPHA) * track.velocity.1,
                );
            }
            track.bbox = detections[det];
            track.last_seen = now;
            track.hits += 1;
            if !track.confirmed && track.hits >= self.settings.min_hits {
                track.confirmed = true;
                update.changes.push(Change::Confirmed(track.clone()));
            }
            update.track_ids[det] = track.id;
        }
        for (det, bbox) in detections.iter().enumerate() {
            if matched[det].is_some() || self.tracks.len() >= MAX_TRACKS {
                continue;
            }
            let track = Track {
                id: self.next_id,
                bbox: *bbox,
                first_bbox: *bbox,
                velocity: (0.0, 0.0),
                hits: 1,
                confirmed: self.settings.min_hits <= 1,
                first_seen: now,
                last_seen: now,
            };
            self.next_id += 1;
            update.track_ids[det] = track.id;
            if track.confirmed {
                update.changes.push(Change::Confirmed(track.clone()));
            }
            self.tracks.push(track);
        }
        update.changes.extend(self.expire(now));
        update
    }

    /// Ends the tracks not seen for longer than `max_missing` at `now` (also
    /// called without a result, so that a camera that went quiet ends its visits).
    pub fn expire(&mut self, now: Instant) -> Vec<Change> {
        let max = self.settings.max_missing;
        let mut ended = Vec::new();
        self.tracks.retain(|t| {
            let gone = now.saturating_duration_since(t.last_seen) > max;
            if gone && t.confirmed {
                ended.push(Change::Ended(t.clone()));
            }
            !gone
        });
        ended
    }

    /// For each detection, the index of the track it continues (if any).
    fn associate(&self, now: Instant, detections: &[BBox]) -> Vec<Option<usize>> {
        let (tracks, dets) = (self.tracks.len(), detections.len());
        let mut out = vec![None; dets];
        if tracks == 0 || dets == 0 {
            return out;
        }
        // Square: rows are tracks, columns detections; padding never matches.
        let n = tracks.max(dets);
        let mut weights = Matrix::new_square(n, FORBIDDEN);
        for (t, track) in self.tracks.iter().enumerate() {
            for (d, det) in detections.iter().enumerate() {
                let cost = Self::cost(track, det, now);
                if cost <= self.settings.max_distance {
                    weights[(t, d)] = (cost * SCALE).round() as i64;
                }
            }
        }
        let (_, columns) = kuhn_munkres_min(&weights);
        for (t, d) in columns.into_iter().enumerate() {
            if t < tracks && d < dets && weights[(t, d)] < FORBIDDEN {
                out[d] = Some(t);
            }
        }
        out
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

    /// Feeds `frames` (boxes per result) at `hz`; returns each result's track ids
    /// and every change.
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
            let u = tracker.update(now, dets);
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
                Change::Ended(t) => Some(t.id),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn one_walk_is_one_track_confirmed_once_and_ended_once() {
        let mut tr = Tracker::new(TrackerSettings::default());
        let start = Instant::now();
        // Walking right 60 px per result at 2 Hz (no overlap after two steps).
        let frames: Vec<Vec<BBox>> = (0..10)
            .map(|i| vec![b(20.0 + 60.0 * i as f64, 100.0)])
            .collect();
        let (ids, changes) = run(&mut tr, start, 2.0, &frames);
        assert!(ids.iter().all(|r| r == &vec![1]), "{ids:?}");
        assert_eq!(confirmed_ids(&changes), vec![1]);
        assert!(ended_ids(&changes).is_empty());
        // Gone: ends once max_missing after it was last seen.
        let last = start + Duration::from_secs_f64(4.5);
        assert!(
            tr.expire(last + Duration::from_secs(2)).is_empty(),
            "a 2 s gap is survived"
        );
        let ended = tr.expire(last + Duration::from_secs(4));
        assert_eq!(ended_ids(&ended), vec![1]);
        assert!(
            tr.expire(last + Duration::from_secs(5)).is_empty(),
            "ended once"
        );
    }

    #[test]
    fn a_single_missed_result_does_not_end_the_track() {
        let mut tr = Tracker::new(TrackerSettings::default());
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
        let mut tr = Tracker::new(TrackerSettings::default());
        let start = Instant::now();
        let mut frames: Vec<Vec<BBox>> = vec![vec![b(200.0, 100.0)]; 4];
        frames.extend(vec![Vec::new(); 5]); // 2.5 s behind the wardrobe
        frames.extend(vec![vec![b(210.0, 100.0)]; 3]);
        let (ids, changes) = run(&mut tr, start, 2.0, &frames);
        assert!(ids.iter().flatten().all(|id| *id == 1), "{ids:?}");
        assert!(ended_ids(&changes).is_empty());
        // 4 s hidden: the visit ended, the person coming back is a new visit.
        let mut tr = Tracker::new(TrackerSettings::default());
        let mut frames: Vec<Vec<BBox>> = vec![vec![b(200.0, 100.0)]; 4];
        frames.extend(vec![Vec::new(); 8]);
        frames.extend(vec![vec![b(210.0, 100.0)]; 3]);
        let (ids, changes) = run(&mut tr, start, 2.0, &frames);
        assert_eq!(ended_ids(&changes), vec![1]);
        assert_eq!(ids.last(), Some(&vec![2]));
        assert_eq!(confirmed_ids(&changes), vec![1, 2]);
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
            &[lying, b(10.0, 10.0)],
        );
        assert_eq!(u.track_ids, vec![1, 2]);
    }

    #[test]
    fn tracks_are_bounded_whatever_a_result_holds() {
        let mut tracker = Tracker::new(TrackerSettings::default());
        let t0 = Instant::now();
        let crowd: Vec<BBox> = (0..200)
            .map(|i| b(f64::from(i % 20) * 100.0, f64::from(i / 20) * 100.0))
            .collect();
        let update = tracker.update(t0, &crowd);
        assert_eq!(tracker.tracks().len(), MAX_TRACKS);
        let tracked = update.track_ids.iter().filter(|id| **id != 0).count();
        assert_eq!(tracked, MAX_TRACKS, "the rest get no track");
        tracker.update(t0 + Duration::from_millis(500), &crowd);
        assert_eq!(tracker.tracks().len(), MAX_TRACKS);
    }

    #[test]
    fn noise_seen_once_never_becomes_a_visit() {
        let mut tr = Tracker::new(TrackerSettings::default());
        let start = Instant::now();
        let (ids, changes) = run(
            &mut tr,
            start,
            2.0,
            &[vec![b(10.0, 10.0)], vec![], vec![], vec![]],
        );
        assert_eq!(ids[0], vec![1]);
        let later = tr.expire(start + Duration::from_secs(10));
        assert!(
            changes.is_empty() && later.is_empty(),
            "{changes:?} {later:?}"
        );
        assert!(tr.tracks().is_empty());
    }
}

//! What a room knows of each present person's body, from the boxes they were
//! seen with: their whole size (to place a box that the frame or the ROI crop
//! cuts), whether they were going down when last seen (a fall or sitting down,
//! not walking out), whether they stand upright, and since when they have not
//! moved (a picture, perhaps).
//!
//! Pure logic fed one box per person and result; it never decides an event.
//! Bounded by its owner: an entry lives while its track does ([`Bodies::forget`]).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use orion_protocol::BBox;

/// A box whose top went down by this much of the person's height within
/// [`FALL_WITHIN`] is a person going down (a fall takes about a second, over
/// one result or several).
const FALL_DROP: f64 = 0.4;
const FALL_WITHIN: Duration = Duration::from_secs(1);
/// Sightings kept for it (more than any rate gives in a second).
const TOPS_KEPT: usize = 32;
/// How far (in its own size) a box may move and still be "not moved".
const STILL: f64 = 0.02;

/// Which sides of a box (left, right, top, bottom) lie on the edge of what the
/// model saw, and which of those cuts are inside the frame (the ROI crop's
/// edge, not the frame's).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Cuts {
    pub sides: [bool; 4],
    pub inside: [bool; 4],
}

/// A box as the whole person would fill it: the cut sides moved out by the
/// person's whole size when it is known; `unknown` marks the cut sides whose
/// place nothing tells (cut inside the frame, size never seen).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Whole {
    pub bbox: BBox,
    pub unknown: [bool; 4],
}

#[derive(Debug, Clone)]
struct Body {
    width: Option<f64>,
    height: Option<f64>,
    /// The tallest box it was seen with (its height where the whole height
    /// was never seen).
    tallest: f64,
    /// The top of its box, and when, over the last [`FALL_WITHIN`].
    tops: std::collections::VecDeque<(f64, Instant)>,
    going_down: bool,
    /// The box when it last moved, and when.
    still: (BBox, Instant),
}

/// The bodies of one room's present people, by track id.
#[derive(Debug, Default)]
pub struct Bodies {
    by_track: HashMap<u64, Body>,
}

impl Bodies {
    /// Track `id` seen with box `b` (cut as `cuts`) at `now`: its whole box.
    pub fn observe(&mut self, id: u64, b: &BBox, cuts: Cuts, now: Instant) -> Whole {
        let body = self.by_track.entry(id).or_insert(Body {
            width: None,
            height: None,
            tallest: b.height,
            tops: std::collections::VecDeque::new(),
            going_down: false,
            still: (*b, now),
        });
        let [left, right, top, bottom] = cuts.sides;
        if !top && !bottom {
            body.height = Some(b.height);
        }
        if !left && !right {
            body.width = Some(b.width);
        }
        body.tallest = body.tallest.max(b.height);
        let tall = body.height.unwrap_or(body.tallest).max(1.0);
        body.tops
            .retain(|(_, t)| now.saturating_duration_since(*t) <= FALL_WITHIN);
        let highest = body
            .tops
            .iter()
            .map(|(y, _)| *y)
            .fold(f64::INFINITY, f64::min);
        body.going_down = !top && b.y - highest >= FALL_DROP * tall;
        if body.tops.len() >= TOPS_KEPT {
            body.tops.pop_front();
        }
        body.tops.push_back((b.y, now));
        let (s, _) = body.still;
        let size = ((s.width + s.height) / 2.0).max(1.0);
        let moved = [
            b.x - s.x,
            b.y - s.y,
            b.x + b.width - s.x - s.width,
            b.y + b.height - s.y - s.height,
        ]
        .iter()
        .any(|d| d.abs() > STILL * size);
        if moved {
            body.still = (*b, now);
        }
        whole(b, cuts, body.width, body.height)
    }

    /// Whether track `id`, last seen with box `b`, stands upright: its whole
    /// box at least as tall as wide.
    pub fn upright(&self, id: u64, b: &BBox) -> bool {
        let body = self.by_track.get(&id);
        let width = body.and_then(|w| w.width).unwrap_or(b.width);
        let height = body
            .map(|w| w.height.unwrap_or(w.tallest))
            .unwrap_or(b.height);
        height >= width
    }

    /// Whether track `id` was going down when last seen.
    pub fn going_down(&self, id: u64) -> bool {
        self.by_track.get(&id).is_some_and(|b| b.going_down)
    }

    /// Track `id`'s box when it last moved, and since when it has not.
    pub fn still(&self, id: u64) -> Option<(BBox, Instant)> {
        self.by_track.get(&id).map(|b| b.still)
    }

    /// Track `id` ended.
    pub fn forget(&mut self, id: u64) {
        self.by_track.remove(&id);
    }
}

/// Box `b` with its cut sides moved out to the whole `width` and `height`
/// where they are known (and larger than what is seen).
fn whole(b: &BBox, cuts: Cuts, width: Option<f64>, height: Option<f64>) -> Whole {
    let [left, right, top, bottom] = cuts.sides;
    let (mut x0, mut x1, mut y0, mut y1) = (b.x, b.x + b.width, b.y, b.y + b.height);
    let mut unknown = [false; 4];
    match (top, bottom, height) {
        (false, true, Some(h)) if h > b.height => y1 = y0 + h,
        (true, false, Some(h)) if h > b.height => y0 = y1 - h,
        (false, true, _) => unknown[3] = cuts.inside[3],
        (true, false, _) => unknown[2] = cuts.inside[2],
        _ => {}
    }
    match (left, right, width) {
        (false, true, Some(w)) if w > b.width => x1 = x0 + w,
        (true, false, Some(w)) if w > b.width => x0 = x1 - w,
        (false, true, _) => unknown[1] = cuts.inside[1],
        (true, false, _) => unknown[0] = cuts.inside[0],
        _ => {}
    }
    Whole {
        bbox: BBox {
            x: x0,
            y: y0,
            width: x1 - x0,
            height: y1 - y0,
        },
        unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bx(x: f64, y: f64, width: f64, height: f64) -> BBox {
        BBox {
            x,
            y,
            width,
            height,
        }
    }

    #[test]
    fn a_box_cut_at_the_bottom_is_as_tall_as_the_person_was() {
        let mut bodies = Bodies::default();
        let t0 = Instant::now();
        bodies.observe(1, &bx(100.0, 100.0, 80.0, 200.0), Cuts::default(), t0);
        let cut = Cuts {
            sides: [false, false, false, true],
            inside: [false, false, false, true],
        };
        let w = bodies.observe(1, &bx(100.0, 120.0, 80.0, 100.0), cut, t0);
        assert_eq!(w.bbox.height, 200.0);
        assert_eq!(w.unknown, [false; 4]);
        // Never seen whole, cut by the crop: the bottom is unknown.
        let w = bodies.observe(2, &bx(300.0, 120.0, 80.0, 100.0), cut, t0);
        assert_eq!(w.unknown, [false, false, false, true]);
        // Cut by the frame's own edge: what is seen is all there is.
        let at_frame = Cuts {
            sides: [false, false, false, true],
            inside: [false; 4],
        };
        let w = bodies.observe(3, &bx(500.0, 120.0, 80.0, 100.0), at_frame, t0);
        assert_eq!(w.unknown, [false; 4]);
    }

    #[test]
    fn going_down_is_a_fast_drop_of_the_top_and_walking_away_cut_is_still_upright() {
        let mut bodies = Bodies::default();
        let t0 = Instant::now();
        let half = Duration::from_millis(500);
        bodies.observe(1, &bx(300.0, 200.0, 80.0, 200.0), Cuts::default(), t0);
        bodies.observe(
            1,
            &bx(290.0, 330.0, 100.0, 90.0),
            Cuts::default(),
            t0 + half,
        );
        assert!(bodies.going_down(1), "the top dropped by 130 of 200 px");
        // The same fall seen over three results at 4 Hz.
        let quarter = Duration::from_millis(250);
        bodies.observe(3, &bx(300.0, 200.0, 80.0, 200.0), Cuts::default(), t0);
        bodies.observe(
            3,
            &bx(300.0, 250.0, 90.0, 170.0),
            Cuts::default(),
            t0 + quarter,
        );
        assert!(!bodies.going_down(3));
        bodies.observe(
            3,
            &bx(290.0, 300.0, 100.0, 130.0),
            Cuts::default(),
            t0 + quarter * 2,
        );
        bodies.observe(
            3,
            &bx(280.0, 330.0, 110.0, 90.0),
            Cuts::default(),
            t0 + quarter * 3,
        );
        assert!(bodies.going_down(3), "130 of 200 px within a second");
        assert!(!bodies.upright(1, &bx(290.0, 330.0, 100.0, 90.0)));
        // Walking out at the bottom: the box shrinks as the frame cuts it,
        // the top drops a little each time; the person stays upright.
        let bottom = Cuts {
            sides: [false, false, false, true],
            inside: [false; 4],
        };
        bodies.observe(2, &bx(300.0, 270.0, 80.0, 200.0), Cuts::default(), t0);
        let mut t = t0;
        for (y, h) in [
            (300.0, 180.0),
            (330.0, 150.0),
            (360.0, 120.0),
            (390.0, 90.0),
        ] {
            t += half;
            bodies.observe(2, &bx(300.0, y, 80.0, h), bottom, t);
            assert!(!bodies.going_down(2), "60 px of 200 a second is walking");
        }
        let sliver = bx(300.0, 420.0, 80.0, 60.0);
        bodies.observe(2, &sliver, bottom, t + half);
        assert!(bodies.upright(2, &sliver), "as tall as the whole person");
    }

    #[test]
    fn a_box_that_does_not_move_is_still_since_it_stopped() {
        let mut bodies = Bodies::default();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        bodies.observe(1, &bx(100.0, 100.0, 80.0, 200.0), Cuts::default(), at(0));
        bodies.observe(1, &bx(140.0, 100.0, 80.0, 200.0), Cuts::default(), at(1));
        for s in 2..10 {
            bodies.observe(1, &bx(141.0, 100.5, 80.0, 200.0), Cuts::default(), at(s));
        }
        assert_eq!(bodies.still(1).map(|(_, since)| since), Some(at(1)));
        bodies.forget(1);
        assert!(bodies.still(1).is_none());
    }
}

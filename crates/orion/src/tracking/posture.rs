//! Each present person's posture (`standing`, `sitting`, `lying`): guessed
//! from one result's view of them (their keypoints when the model gives them,
//! else the shape of their whole box) and held with hysteresis, so that one
//! odd frame changes nothing. Also whether they are *low*: much shorter than
//! they stood, or their top far below where it was when they stood (on the
//! floor, whatever the keypoints say: a person fallen towards the camera
//! shows an upright torso in a box that moved down the picture).
//!
//! Pure logic fed one view per person and result; it never decides an event
//! (the room does). Bounded by its owner: an entry lives while its track does
//! ([`Postures::forget`]).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use orion_protocol::{BBox, Keypoint};
use serde::{Deserialize, Serialize};

/// A body's posture, in the order of concern (`lying` matters most).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Posture {
    Standing,
    Sitting,
    Lying,
}

impl Posture {
    pub fn as_str(self) -> &'static str {
        match self {
            Posture::Standing => "standing",
            Posture::Sitting => "sitting",
            Posture::Lying => "lying",
        }
    }
}

/// Keypoints below this score are not used.
const KEYPOINT_MIN: f64 = 0.2;
/// Torso (hips to shoulders) at least this far from vertical: lying.
const LYING_DEG: f64 = 60.0;
/// At most this far: upright (standing or sitting). Between the two the
/// posture held stands.
const UPRIGHT_DEG: f64 = 40.0;
/// Thighs rising less than this share of the torso's length: sitting.
const THIGH_SITTING: f64 = 0.45;
/// A whole box at least this much wider than tall: lying (no keypoints).
const BOX_LYING: f64 = 1.2;
/// At least this much taller than wide: standing (no keypoints).
const BOX_STANDING: f64 = 1.8;
/// A body shorter than this share of its standing height is low...
const LOW: f64 = 0.55;
/// ...and so is one whose top is this share of its standing height below
/// where it was standing (sitting down on a chair: about 0.3; fallen: 0.7
/// and more on real footage).
const LOW_TOP: f64 = 0.55;
/// A new posture is held once guessed in this many results in a row...
const HOLD_RESULTS: u32 = 2;
/// ...over at least this long.
const HOLD_FOR: Duration = Duration::from_millis(400);

/// One result's view of a person.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    /// The whole box (cut sides completed where the body's size is known).
    pub whole: BBox,
    /// Whether the box is cut by the frame or the crop (its shape tells
    /// nothing then).
    pub cut: bool,
    pub keypoints: Option<&'a [Keypoint]>,
}

/// What one result says of a person's posture, and whether they are low.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Guess {
    pub posture: Option<Posture>,
    pub low: bool,
}

/// A posture that changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Changed {
    pub from: Option<Posture>,
    pub to: Posture,
}

#[derive(Debug, Clone, Default)]
struct State {
    held: Option<Posture>,
    /// The posture guessed in a row, how often, since when.
    run: Option<(Posture, u32, Instant)>,
    /// The whole box when last standing (uncut), pixels.
    standing: Option<BBox>,
    low: bool,
}

/// The postures of one room's present people, by track id.
#[derive(Debug, Default)]
pub struct Postures {
    by_track: HashMap<u64, State>,
}

fn point(kps: &[Keypoint], names: [&str; 2]) -> Option<(f64, f64)> {
    let (n, x, y) = kps
        .iter()
        .filter(|k| names.contains(&k.name.as_str()) && k.score >= KEYPOINT_MIN)
        .fold((0.0, 0.0, 0.0), |(n, x, y), k| (n + 1.0, x + k.x, y + k.y));
    (n > 0.0).then(|| (x / n, y / n))
}

/// The posture keypoints show: the torso's angle from vertical, then the
/// thighs (upright torso, thighs level: sitting). `None` when they do not
/// tell (too few sure keypoints, a torso half-way over).
pub fn from_keypoints(kps: &[Keypoint]) -> Option<Posture> {
    let shoulders = point(kps, ["left_shoulder", "right_shoulder"])?;
    let hips = point(kps, ["left_hip", "right_hip"])?;
    let (dx, dy) = (shoulders.0 - hips.0, shoulders.1 - hips.1);
    let torso = dx.hypot(dy);
    if torso < 1.0 {
        return None;
    }
    let angle = dx.abs().atan2(dy.abs()).to_degrees();
    if angle >= LYING_DEG {
        return Some(Posture::Lying);
    }
    if angle > UPRIGHT_DEG {
        return None;
    }
    let knees = point(kps, ["left_knee", "right_knee"])?;
    // Image y grows downwards: a standing thigh goes down from the hips.
    let thigh_drop = knees.1 - hips.1;
    Some(if thigh_drop < THIGH_SITTING * torso {
        Posture::Sitting
    } else {
        Posture::Standing
    })
}

/// The posture a whole, uncut box's shape suggests (no keypoints).
pub fn from_box(b: &BBox) -> Option<Posture> {
    if b.width <= 0.0 || b.height <= 0.0 {
        return None;
    }
    if b.width >= BOX_LYING * b.height {
        Some(Posture::Lying)
    } else if b.height >= BOX_STANDING * b.width {
        Some(Posture::Standing)
    } else {
        Some(Posture::Sitting)
    }
}

impl Postures {
    /// Track `id` seen as `view` at `now`: what this result says, and the
    /// held posture's change if it changed.
    pub fn observe(&mut self, id: u64, view: View<'_>, now: Instant) -> (Guess, Option<Changed>) {
        let st = self.by_track.entry(id).or_default();
        // Keypoints first; where they tell nothing (too faint, a torso half
        // way over), the shape of a whole box.
        let posture = view
            .keypoints
            .and_then(from_keypoints)
            .or_else(|| (!view.cut).then(|| from_box(&view.whole)).flatten());
        let b = view.whole;
        if posture == Some(Posture::Standing) && !view.cut {
            // The latest: someone walking away gets smaller, slowly.
            st.standing = Some(b);
        }
        // Only a posture seen tells: without one, low stays what it was.
        if posture.is_some() {
            st.low = posture != Some(Posture::Standing)
                && st
                    .standing
                    .is_some_and(|s| b.height < LOW * s.height || b.y - s.y > LOW_TOP * s.height);
        }
        let guess = Guess {
            posture,
            low: st.low,
        };
        let Some(p) = posture else {
            // Not "in a row" across results that tell nothing.
            st.run = None;
            return (guess, None);
        };
        let run = match st.run {
            Some((q, n, since)) if q == p => (p, n + 1, since),
            _ => (p, 1, now),
        };
        st.run = Some(run);
        let (_, n, since) = run;
        let held =
            st.held.is_none() || (n >= HOLD_RESULTS && now.duration_since(since) >= HOLD_FOR);
        if st.held == Some(p) || !held {
            return (guess, None);
        }
        let from = st.held.replace(p);
        (guess, Some(Changed { from, to: p }))
    }

    /// Track `id`'s posture held now.
    pub fn posture(&self, id: u64) -> Option<Posture> {
        self.by_track.get(&id).and_then(|s| s.held)
    }

    /// Whether track `id` was low when last seen.
    pub fn low(&self, id: u64) -> bool {
        self.by_track.get(&id).is_some_and(|s| s.low)
    }

    /// Sets track `id`'s posture (taken back after a restart).
    pub fn restore(&mut self, id: u64, posture: Posture) {
        self.by_track.entry(id).or_default().held = Some(posture);
    }

    /// Track `id` ended.
    pub fn forget(&mut self, id: u64) {
        self.by_track.remove(&id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body drawn from its joints: shoulders, hips, knees (x, y).
    fn body(shoulders: (f64, f64), hips: (f64, f64), knees: (f64, f64)) -> Vec<Keypoint> {
        let k = |name: &str, (x, y): (f64, f64)| Keypoint {
            name: name.into(),
            x,
            y,
            score: 0.6,
        };
        vec![
            k("left_shoulder", (shoulders.0 - 10.0, shoulders.1)),
            k("right_shoulder", (shoulders.0 + 10.0, shoulders.1)),
            k("left_hip", (hips.0 - 8.0, hips.1)),
            k("right_hip", (hips.0 + 8.0, hips.1)),
            k("left_knee", (knees.0 - 8.0, knees.1)),
            k("right_knee", (knees.0 + 8.0, knees.1)),
        ]
    }

    fn bx(width: f64, height: f64) -> BBox {
        BBox {
            x: 100.0,
            y: 100.0,
            width,
            height,
        }
    }

    #[test]
    fn keypoints_tell_standing_sitting_and_lying() {
        let standing = body((100.0, 100.0), (100.0, 200.0), (100.0, 290.0));
        let sitting = body((100.0, 100.0), (100.0, 200.0), (170.0, 215.0));
        let lying = body((100.0, 300.0), (200.0, 310.0), (290.0, 312.0));
        assert_eq!(from_keypoints(&standing), Some(Posture::Standing));
        assert_eq!(from_keypoints(&sitting), Some(Posture::Sitting));
        assert_eq!(from_keypoints(&lying), Some(Posture::Lying));
        // Half-way over (50 degrees): no opinion.
        let leaning = body((100.0, 100.0), (180.0, 167.0), (180.0, 260.0));
        assert_eq!(from_keypoints(&leaning), None);
        // Unsure keypoints are not used.
        let mut faint = standing.clone();
        faint.iter_mut().for_each(|k| k.score = 0.1);
        assert_eq!(from_keypoints(&faint), None);
        // No knees: upright, but standing or sitting is not known.
        assert_eq!(from_keypoints(&standing[..4]), None);
    }

    #[test]
    fn a_box_alone_tells_by_its_shape() {
        assert_eq!(from_box(&bx(80.0, 220.0)), Some(Posture::Standing));
        assert_eq!(from_box(&bx(120.0, 150.0)), Some(Posture::Sitting));
        assert_eq!(from_box(&bx(240.0, 90.0)), Some(Posture::Lying));
        assert_eq!(from_box(&bx(0.0, 90.0)), None);
    }

    #[test]
    fn a_posture_is_held_after_two_results_and_one_odd_result_changes_nothing() {
        let mut p = Postures::default();
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let standing = body((100.0, 100.0), (100.0, 200.0), (100.0, 290.0));
        let lying = body((100.0, 300.0), (200.0, 310.0), (290.0, 312.0));
        let view = |kps| View {
            whole: bx(80.0, 220.0),
            cut: false,
            keypoints: Some(kps),
        };
        // The first guess is held at once.
        let (_, c) = p.observe(1, view(&standing), at(0));
        assert_eq!(
            c,
            Some(Changed {
                from: None,
                to: Posture::Standing
            })
        );
        // One odd result: nothing.
        assert_eq!(p.observe(1, view(&lying), at(500)).1, None);
        assert_eq!(p.observe(1, view(&standing), at(1000)).1, None);
        // Two in a row, but within 400 ms: not yet.
        assert_eq!(p.observe(1, view(&lying), at(1500)).1, None);
        assert_eq!(p.observe(1, view(&lying), at(1700)).1, None);
        assert_eq!(p.posture(1), Some(Posture::Standing));
        let (_, c) = p.observe(1, view(&lying), at(2000));
        assert_eq!(
            c,
            Some(Changed {
                from: Some(Posture::Standing),
                to: Posture::Lying
            })
        );
        p.forget(1);
        assert_eq!(p.posture(1), None);
    }

    #[test]
    fn a_body_much_shorter_than_it_stood_is_low_unless_it_stands() {
        let mut p = Postures::default();
        let t0 = Instant::now();
        let upright = body((100.0, 100.0), (100.0, 200.0), (100.0, 290.0));
        let stand = View {
            whole: bx(80.0, 300.0),
            cut: false,
            keypoints: Some(&upright),
        };
        assert!(!p.observe(1, stand, t0).0.low);
        // Fallen towards the camera: the torso looks upright, the thighs
        // level, the body a third of its height.
        let towards = body((100.0, 300.0), (100.0, 350.0), (130.0, 355.0));
        let fallen = View {
            whole: bx(110.0, 100.0),
            cut: false,
            keypoints: Some(&towards),
        };
        let (g, _) = p.observe(1, fallen, t0 + Duration::from_secs(1));
        assert!(g.low && g.posture == Some(Posture::Sitting));
        assert!(p.low(1));
        // Fallen towards the camera: nearly as tall (0.7), but the top far
        // below where it stood.
        let p2 = &mut Postures::default();
        p2.observe(2, stand, t0);
        let forward = View {
            whole: BBox {
                x: 90.0,
                y: 310.0,
                width: 170.0,
                height: 210.0,
            },
            cut: false,
            keypoints: Some(&towards),
        };
        assert!(p2.observe(2, forward, t0 + Duration::from_secs(1)).0.low);
        // Sitting down on a chair (top 0.3 lower, 0.7 as tall) is not low.
        let chair = View {
            whole: BBox {
                x: 100.0,
                y: 190.0,
                width: 90.0,
                height: 210.0,
            },
            cut: false,
            keypoints: Some(&towards),
        };
        assert!(!p2.observe(2, chair, t0 + Duration::from_secs(2)).0.low);
        // Someone far away standing is small but not low: they stand.
        let small = View {
            whole: bx(30.0, 100.0),
            cut: false,
            keypoints: Some(&upright),
        };
        assert!(!p.observe(1, small, t0 + Duration::from_secs(2)).0.low);
    }
}

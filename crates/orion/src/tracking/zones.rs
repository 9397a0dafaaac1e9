//! Zones: named regions of a camera's view (`bed`, `door`, `bathroom_door`) as
//! normalized polygons, from the config or the `set_zones` command.
//!
//! Owns their shape and validation (both sources go through [`validate`], so a
//! refused command and a refused config say the same thing) and the
//! point-in-polygon test. Which track is in which zone is the signals' business.

use serde::{Deserialize, Serialize};

/// Which point of a person's box decides the zone they are in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ZoneAnchor {
    /// Where the person stands or lies (the bottom centre of the box).
    #[default]
    BottomCenter,
    /// The centre of the box.
    Center,
}

/// The most zones per camera.
pub const MAX_ZONES: usize = 16;
/// The most corners of one polygon.
pub const MAX_POINTS: usize = 32;

/// A zone as written in the config or a command: a polygon or a rectangle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneSpec {
    pub name: String,
    /// Corners `[x, y]`, normalized 0..1, in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub polygon: Option<Vec<[f64; 2]>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rect: Option<ZoneRect>,
    /// People-shaped things here never count (a poster, a TV, a mirror).
    #[serde(default, skip_serializing_if = "is_false")]
    pub ignore: bool,
    /// Where people lie (a bed, an armchair): looked at turned by 90 degrees
    /// too, and never an exit.
    #[serde(default, skip_serializing_if = "is_false")]
    pub rest: bool,
    /// Where people leave the room (a door): a person last seen here and no
    /// longer seen has left.
    #[serde(default, skip_serializing_if = "is_false")]
    pub exit: bool,
}

fn is_false(v: &bool) -> bool {
    !v
}

/// A rectangle in normalized coordinates.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneRect {
    pub x: f64,
    pub y: f64,
    pub width: f64,
    pub height: f64,
}

/// A validated zone: a name, a polygon, and whether it is an ignore zone.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Zone {
    pub name: String,
    pub polygon: Vec<[f64; 2]>,
    /// A detection whose anchor is here never counts: no track, no event, no
    /// occupancy; the zone itself has no occupancy.
    #[serde(skip_serializing_if = "is_false")]
    pub ignore: bool,
    /// A rest place (bed, armchair): people lie here.
    #[serde(skip_serializing_if = "is_false")]
    pub rest: bool,
    /// An exit (door): someone last seen here has left.
    #[serde(skip_serializing_if = "is_false")]
    pub exit: bool,
}

impl Zone {
    /// Whether `(x, y)` (normalized) is inside (even-odd rule; a point on the
    /// edge may fall either way).
    pub fn contains(&self, x: f64, y: f64) -> bool {
        let p = &self.polygon;
        let mut inside = false;
        let mut j = p.len() - 1;
        for i in 0..p.len() {
            let ([xi, yi], [xj, yj]) = (p[i], p[j]);
            if (yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi {
                inside = !inside;
            }
            j = i;
        }
        inside
    }
}

impl Zone {
    /// The smallest rectangle around it: (x0, y0, x1, y1), normalized.
    pub fn bounds(&self) -> (f64, f64, f64, f64) {
        self.polygon.iter().fold(
            (
                f64::INFINITY,
                f64::INFINITY,
                f64::NEG_INFINITY,
                f64::NEG_INFINITY,
            ),
            |(x0, y0, x1, y1), [x, y]| (x0.min(*x), y0.min(*y), x1.max(*x), y1.max(*y)),
        )
    }

    /// How far `(x, y)` (normalized) is from the zone's outline.
    pub fn distance(&self, x: f64, y: f64) -> f64 {
        let p = &self.polygon;
        (0..p.len())
            .map(|i| segment_distance([x, y], p[i], p[(i + 1) % p.len()]))
            .fold(f64::INFINITY, f64::min)
    }
}

/// Distance from `p` to the segment `a`-`b`.
fn segment_distance(p: [f64; 2], a: [f64; 2], b: [f64; 2]) -> f64 {
    let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
    let length2 = dx * dx + dy * dy;
    let t = if length2 > 0.0 {
        (((p[0] - a[0]) * dx + (p[1] - a[1]) * dy) / length2).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let (cx, cy) = (a[0] + t * dx, a[1] + t * dy);
    ((p[0] - cx).powi(2) + (p[1] - cy).powi(2)).sqrt()
}

/// Where a person detector looks besides its crop, from the zones: rest
/// zones turned a quarter both ways (people lie there), exit zones upright as
/// squares of their own (people stand half in view in a doorway, and a closer
/// look finds them). Normalized rects inside the frame.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LookAreas {
    pub rest: Vec<orion_protocol::NormRect>,
    pub exits: Vec<orion_protocol::NormRect>,
}

/// How far around a rest zone a lying person is looked for (fraction of the
/// zone's size, each side): people lie across the edge of a bed.
const REST_AREA_MARGIN: f64 = 0.15;

impl LookAreas {
    /// The look areas of `zones` on a `width` x `height` frame.
    pub fn of(zones: &[Zone], width: u32, height: u32) -> Self {
        let (w, h) = (f64::from(width.max(1)), f64::from(height.max(1)));
        let rect = |x0: f64, y0: f64, x1: f64, y1: f64| {
            let (x0, y0) = (x0.max(0.0), y0.max(0.0));
            let (x1, y1) = (x1.min(1.0), y1.min(1.0));
            orion_protocol::NormRect {
                x: x0,
                y: y0,
                width: x1 - x0,
                height: y1 - y0,
            }
        };
        let rest = zones
            .iter()
            .filter(|z| z.rest)
            .map(|z| {
                let (x0, y0, x1, y1) = z.bounds();
                let (mx, my) = ((x1 - x0) * REST_AREA_MARGIN, (y1 - y0) * REST_AREA_MARGIN);
                rect(x0 - mx, y0 - my, x1 + mx, y1 + my)
            })
            .collect();
        let exits = zones
            .iter()
            .filter(|z| z.exit)
            .map(|z| {
                // A square (in pixels) around the zone, moved inside the frame.
                let (x0, y0, x1, y1) = z.bounds();
                let side = ((x1 - x0) * w).max((y1 - y0) * h).min(w.min(h));
                let (cx, cy) = ((x0 + x1) / 2.0 * w, (y0 + y1) / 2.0 * h);
                let left = (cx - side / 2.0).clamp(0.0, w - side);
                let top = (cy - side / 2.0).clamp(0.0, h - side);
                rect(left / w, top / h, (left + side) / w, (top + side) / h)
            })
            .collect();
        Self { rest, exits }
    }
}

fn in_unit(v: f64) -> bool {
    v.is_finite() && (0.0..=1.0).contains(&v)
}

/// The first limit a normalized rectangle breaks, with the value that
/// breaks it (`x + width must be <= 1 (got 1.2)`); None when it fits.
fn rect_outside(r: &ZoneRect) -> Option<String> {
    let checks = [
        (r.x, in_unit(r.x), "x must be in 0..1"),
        (r.y, in_unit(r.y), "y must be in 0..1"),
        (
            r.width,
            r.width.is_finite() && r.width > 0.0,
            "width must be > 0",
        ),
        (
            r.height,
            r.height.is_finite() && r.height > 0.0,
            "height must be > 0",
        ),
        (
            r.x + r.width,
            r.x + r.width <= 1.0 + 1e-9,
            "x + width must be <= 1",
        ),
        (
            r.y + r.height,
            r.y + r.height <= 1.0 + 1e-9,
            "y + height must be <= 1",
        ),
    ];
    checks
        .iter()
        .find(|(_, ok, _)| !ok)
        .map(|(value, _, limit)| format!("{limit} (got {value})"))
}

/// Twice the signed area of a polygon.
fn area2(p: &[[f64; 2]]) -> f64 {
    let n = p.len();
    (0..n)
        .map(|i| {
            let ([x0, y0], [x1, y1]) = (p[i], p[(i + 1) % n]);
            x0 * y1 - x1 * y0
        })
        .sum()
}

/// A name as an identifier: lower case, `-` and `.` as `_` (Home Assistant's
/// entity ids, for one). Two zones (or two cameras of one daemon) must differ
/// in it, not just in their names.
pub fn identifier(name: &str) -> String {
    name.to_ascii_lowercase().replace(['.', '-'], "_")
}

/// Checks `specs` (at most [`MAX_ZONES`], names of 1-32 `A-Z a-z 0-9 - _ .`
/// unique also as [`identifier`]s,
/// a polygon of 3 to [`MAX_POINTS`] corners inside the frame, or a rectangle
/// inside the frame); all or nothing.
pub fn validate(specs: &[ZoneSpec]) -> Result<Vec<Zone>, String> {
    if specs.len() > MAX_ZONES {
        return Err(format!(
            "{} zones; at most {MAX_ZONES} per camera",
            specs.len()
        ));
    }
    let mut zones: Vec<Zone> = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        check_name(i, &spec.name, &zones)?;
        let polygon = shape(i, spec)?;
        if area2(&polygon).abs() < 1e-9 {
            return Err(format!(
                "zones[{i}] ({}): the polygon has no area",
                spec.name
            ));
        }
        let kinds = [
            (spec.ignore, "ignore"),
            (spec.rest, "rest"),
            (spec.exit, "exit"),
        ];
        let set: Vec<&str> = kinds
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, k)| *k)
            .collect();
        if set.len() > 1 {
            return Err(format!(
                "zones[{i}] ({}): a zone is at most one of ignore, rest and exit; got {}",
                spec.name,
                set.join(" and ")
            ));
        }
        zones.push(Zone {
            name: spec.name.clone(),
            polygon,
            ignore: spec.ignore,
            rest: spec.rest,
            exit: spec.exit,
        });
    }
    Ok(zones)
}

/// Zone `i`'s name: allowed characters, and not the same as (or the same
/// identifier as) a zone before it.
fn check_name(i: usize, name: &str, before: &[Zone]) -> Result<(), String> {
    let name_ok = !name.is_empty()
        && name.len() <= 32
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    if !name_ok {
        return Err(format!(
            "zones[{i}].name `{}` is not allowed; use 1 to 32 characters from A-Z a-z 0-9 - _ .",
            name.chars().take(40).collect::<String>()
        ));
    }
    if before.iter().any(|z| z.name == name) {
        return Err(format!("zones[{i}].name `{name}` is used twice"));
    }
    let id = identifier(name);
    if let Some(other) = before.iter().find(|z| identifier(&z.name) == id) {
        return Err(format!(
            "zones[{i}].name `{name}` and `{}` are the same identifier `{id}` (case, `-`, `.` and `_` are not told apart, e.g. in Home Assistant); rename one",
            other.name
        ));
    }
    Ok(())
}

/// Zone `i`'s polygon: its corners, or its rectangle's, inside the frame.
fn shape(i: usize, spec: &ZoneSpec) -> Result<Vec<[f64; 2]>, String> {
    let name = &spec.name;
    match (&spec.polygon, &spec.rect) {
        (Some(p), None) => {
            if p.len() < 3 || p.len() > MAX_POINTS {
                return Err(format!(
                    "zones[{i}] ({name}): a polygon needs 3 to {MAX_POINTS} corners, got {}",
                    p.len()
                ));
            }
            if let Some(bad) = p.iter().find(|[x, y]| !in_unit(*x) || !in_unit(*y)) {
                return Err(format!(
                    "zones[{i}] ({name}): corner [{}, {}] is outside the frame; corners are normalized 0..1",
                    bad[0], bad[1]
                ));
            }
            Ok(p.clone())
        }
        (None, Some(r)) => {
            if let Some(limit) = rect_outside(r) {
                return Err(format!(
                    "zones[{i}] ({name}): rect must lie inside the frame: {limit}"
                ));
            }
            Ok(vec![
                [r.x, r.y],
                [r.x + r.width, r.y],
                [r.x + r.width, r.y + r.height],
                [r.x, r.y + r.height],
            ])
        }
        _ => Err(format!(
            "zones[{i}] ({name}): give exactly one of polygon: [[x, y], ...] or rect: {{x, y, width, height}}"
        )),
    }
}

/// A valid rectangular zone (for tests of what uses zones).
#[cfg(test)]
pub(crate) fn rect(name: &str, x: f64, y: f64, width: f64, height: f64) -> Zone {
    let spec = ZoneSpec {
        name: name.into(),
        polygon: None,
        rect: Some(ZoneRect {
            x,
            y,
            width,
            height,
        }),
        ignore: false,
        rest: false,
        exit: false,
    };
    validate(&[spec]).expect("a valid test zone").remove(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> Vec<ZoneSpec> {
        serde_json::from_str(json).expect("zone JSON")
    }

    #[test]
    fn rectangles_and_polygons_contain_what_they_should() {
        let zones = validate(&spec(
            r#"[{"name": "bed", "rect": {"x": 0.1, "y": 0.5, "width": 0.4, "height": 0.4}},
                {"name": "door", "polygon": [[0.7, 0.2], [0.95, 0.2], [0.95, 0.9]]}]"#,
        ))
        .expect("valid");
        assert!(zones[0].contains(0.3, 0.7));
        assert!(!zones[0].contains(0.6, 0.7));
        assert!(zones[1].contains(0.9, 0.5), "inside the triangle");
        assert!(!zones[1].contains(0.75, 0.8), "left of its diagonal");
    }

    #[test]
    fn rest_zones_are_looked_at_widened_and_exits_as_squares_inside_the_frame() {
        let zones = validate(&spec(
            r#"[{"name": "bed", "rect": {"x": 0.1, "y": 0.5, "width": 0.4, "height": 0.4}, "rest": true},
                {"name": "door", "rect": {"x": 0.0, "y": 0.3, "width": 0.2, "height": 0.7}, "exit": true},
                {"name": "tv", "rect": {"x": 0.7, "y": 0.1, "width": 0.2, "height": 0.2}, "ignore": true}]"#,
        ))
        .expect("valid");
        let looks = LookAreas::of(&zones, 640, 480);
        assert_eq!(looks.rest.len(), 1);
        let r = looks.rest[0];
        assert!(
            (r.x - 0.04).abs() < 1e-9 && (r.width - 0.52).abs() < 1e-9,
            "{r:?}"
        );
        assert!(
            (r.y - 0.44).abs() < 1e-9 && (r.y + r.height - 0.96).abs() < 1e-9,
            "{r:?}"
        );
        // The door: 0.7 of 480 px tall = 336 px square, at the frame's left
        // edge, its bottom at the door's.
        let e = looks.exits[0];
        assert!(
            (e.x - 0.0).abs() < 1e-9 && (e.width * 640.0 - 336.0).abs() < 1e-6,
            "{e:?}"
        );
        assert!(
            (e.height * 480.0 - 336.0).abs() < 1e-6 && (e.y + e.height - 1.0).abs() < 1e-9,
            "{e:?}"
        );
    }

    #[test]
    fn bad_zones_are_refused_with_the_reason() {
        for (json, fragment) in [
            (
                r#"[{"name": "", "rect": {"x": 0, "y": 0, "width": 1, "height": 1}}]"#,
                "not allowed",
            ),
            (
                r#"[{"name": "a", "rect": {"x": 0.5, "y": 0, "width": 0.7, "height": 1}}]"#,
                "rect must lie inside the frame: x + width must be <= 1 (got 1.2)",
            ),
            (
                r#"[{"name": "a", "rect": {"x": 0, "y": -0.1, "width": 0.5, "height": 1}}]"#,
                "y must be in 0..1 (got -0.1)",
            ),
            (
                r#"[{"name": "a", "rect": {"x": 0, "y": 0, "width": 0, "height": 1}}]"#,
                "width must be > 0 (got 0)",
            ),
            (r#"[{"name": "a", "polygon": [[0, 0], [1, 1]]}]"#, "3 to 32"),
            (
                r#"[{"name": "a", "polygon": [[0, 0], [1.5, 1], [0, 1]]}]"#,
                "outside the frame",
            ),
            (
                r#"[{"name": "a", "polygon": [[0, 0], [0.5, 0.5], [1, 1]]}]"#,
                "no area",
            ),
            (r#"[{"name": "a"}]"#, "exactly one of"),
            (
                r#"[{"name": "a", "rect": {"x": 0, "y": 0, "width": 1, "height": 1}, "rest": true, "exit": true}]"#,
                "at most one of ignore, rest and exit; got rest and exit",
            ),
            (
                r#"[{"name": "a", "rect": {"x": 0, "y": 0, "width": 1, "height": 1}},
                    {"name": "a", "rect": {"x": 0, "y": 0, "width": 1, "height": 1}}]"#,
                "used twice",
            ),
            (
                r#"[{"name": "bed-1", "rect": {"x": 0, "y": 0, "width": 1, "height": 1}},
                    {"name": "bed.1", "rect": {"x": 0, "y": 0, "width": 1, "height": 1}}]"#,
                "same identifier `bed_1`",
            ),
            (
                r#"[{"name": "Bed", "rect": {"x": 0, "y": 0, "width": 1, "height": 1}},
                    {"name": "bed", "rect": {"x": 0, "y": 0, "width": 1, "height": 1}}]"#,
                "same identifier `bed`",
            ),
        ] {
            let err = validate(&spec(json)).expect_err(json);
            assert!(err.contains(fragment), "{json} -> {err}");
        }
        let many: Vec<ZoneSpec> = (0..17)
            .map(|i| ZoneSpec {
                name: format!("z{i}"),
                polygon: None,
                rect: Some(ZoneRect {
                    x: 0.0,
                    y: 0.0,
                    width: 0.5,
                    height: 0.5,
                }),
                ignore: false,
                rest: false,
                exit: false,
            })
            .collect();
        assert!(
            validate(&many)
                .expect_err("too many")
                .contains("at most 16")
        );
    }
}

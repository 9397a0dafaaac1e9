//! Presence that holds, end to end with real parts: scenes made from a real
//! photo of a person (`scene_video.py`) through the real worker and model.
//! A person asleep in bed (by day and in the dark) keeps the room occupied and
//! makes one visit with the bed entered, a warning when they get up at its
//! side, and the bed left; a person half in view in a
//! doorway is found; a paused camera is not an empty room; a restart takes
//! the sleeping person back as the same visit.

mod common;

use std::time::{Duration, Instant};

use common::{Daemon, Mosquitto, Subscriber, collect_until};
use serde_json::Value;

/// A zone from a scene's normalized rect, with `kind: true` (`rest`, `exit`).
fn zone(name: &str, rect: &Value, kind: &str) -> serde_norway::Value {
    let text = format!(
        "{{ name: {name}, {kind}: true, rect: {{ x: {}, y: {}, width: {}, height: {} }} }}",
        rect["x"], rect["y"], rect["width"], rect["height"]
    );
    serde_norway::from_str(&text).expect("zone")
}

/// A scene camera: its video, a broker, and the config of a daemon on it with its zones, 4 Hz, and an empty room
/// decided 2 s after the last person (so a wrong "empty" would show fast).
/// Its daemons keep their present people in the scene's directory.
struct Scene {
    _dir: tempfile::TempDir,
    broker: Mosquitto,
    config: String,
}

impl Scene {
    fn new(
        instance: &str,
        args: &[&str],
        zones: impl FnOnce(&Value) -> Vec<serde_norway::Value>,
    ) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let (video, info) = common::scene_video(dir.path(), "scene.mp4", args);
        let broker = Mosquitto::start();
        let presence = dir.path().join("presence");
        let config = common::config(instance, &broker.url(), |c| {
            common::set(c, "camera.path", video.to_string_lossy().into_owned());
            common::set(c, "models.person_detector.max_inference_rate_hz", 4.0);
            common::set(c, "occupancy.empty_after_s", 2.0);
            common::set(
                c,
                "zones.regions",
                serde_norway::Value::Sequence(zones(&info)),
            );
            common::set(c, "presence.path", presence.to_string_lossy().into_owned());
        });
        Scene {
            _dir: dir,
            broker,
            config,
        }
    }

    /// Everything the camera `instance` publishes from now on.
    fn subscribe(&self, instance: &str) -> Subscriber {
        Subscriber::connect(self.broker.port, &format!("care/+/{instance}/#"))
    }
}

fn events<'a>(got: &'a [(String, Value)], kind: &str) -> Vec<&'a Value> {
    got.iter()
        .filter(|(t, v)| t.starts_with("care/events/") && v["type"] == kind)
        .map(|(_, v)| v)
        .collect()
}

/// Position of the first event of `kind` in `got`.
fn first(got: &[(String, Value)], kind: &str) -> Option<usize> {
    got.iter()
        .position(|(t, v)| t.starts_with("care/events/") && v["type"] == kind)
}

/// Of the person-detection results in `got[range]`, how many found someone,
/// and how many there were.
fn found(got: &[(String, Value)], range: std::ops::Range<usize>) -> (usize, usize) {
    let results: Vec<&Value> = got[range]
        .iter()
        .filter(|(t, _)| t.starts_with("care/inferences/"))
        .map(|(_, v)| v)
        .collect();
    let with = results
        .iter()
        .filter(|v| v["data"]["count"].as_u64().unwrap_or(0) >= 1)
        .count();
    (with, results.len())
}

/// Checks one visit to the bed: one person, never an empty room while they
/// are there, the bed entered and left, and found in nearly every result
/// while lying.
fn one_visit_to_the_bed(got: &[(String, Value)]) {
    let entered = events(got, "person_entered");
    assert_eq!(entered.len(), 1, "one person, one visit: {got:#?}");
    let left = events(got, "person_left");
    assert_eq!(left[0]["reason"], "exit", "walked out: {:?}", left[0]);
    assert_eq!(left[0]["track_id"], entered[0]["track_id"]);
    let (start, end) = (
        first(got, "person_entered").expect("entered"),
        first(got, "person_left").expect("left"),
    );
    for (t, v) in &got[start..end] {
        if t.starts_with("care/occupancy/") {
            assert_eq!(v["occupied"], true, "empty with someone in the room: {v}");
        }
    }
    let zones: Vec<(&str, &str)> = got
        .iter()
        .filter(|(t, v)| t.starts_with("care/events/") && v["zone"] == "bed")
        .map(|(_, v)| {
            (
                v["type"].as_str().unwrap_or(""),
                v["reason"].as_str().unwrap_or(""),
            )
        })
        .collect();
    // Getting up at the bed's side warns before the bed is left.
    assert_eq!(
        zones,
        [
            ("zone_entered", ""),
            ("bed_exit_warning", ""),
            ("zone_left", "walked_out")
        ],
        "{got:#?}"
    );
    let (in_bed, out_of_bed) = (
        first(got, "zone_entered").expect("in bed"),
        first(got, "zone_left").expect("out of bed"),
    );
    let (with, all) = found(got, in_bed..out_of_bed);
    assert!(
        all >= 20 && with * 10 >= all * 9,
        "lying in bed, found in {with} of {all} results"
    );
}

fn asleep_in_bed(instance: &str, night: bool) -> (Vec<(String, Value)>, Daemon) {
    let mut args = vec!["bed", "--lying-s", "14"];
    if night {
        args.push("--night");
    }
    let scene = Scene::new(instance, &args, |i| vec![zone("bed", &i["bed"], "rest")]);
    let sub = scene.subscribe(instance);
    let daemon = Daemon::start(&scene.config);
    let got = collect_until(&sub, Duration::from_secs(120), |got| {
        first(got, "person_left").is_some()
    });
    (got, daemon)
}

#[test]
fn asleep_in_bed_the_room_is_never_empty_and_the_bed_is_entered_and_left() {
    let (got, _daemon) = asleep_in_bed("bed-day", false);
    one_visit_to_the_bed(&got);
}

#[test]
fn asleep_in_bed_in_the_dark_the_same() {
    let (got, daemon) = asleep_in_bed("bed-night", true);
    one_visit_to_the_bed(&got);
    assert!(
        daemon.log().contains("night: the frames turned grayscale"),
        "night was recognised"
    );
}

#[test]
fn a_person_half_in_view_in_a_doorway_is_found() {
    let scene = Scene::new("door", &["edge"], |i| {
        vec![zone("door", &i["door"], "exit")]
    });
    let sub = scene.subscribe("door");
    let _daemon = Daemon::start(&scene.config);
    let got = collect_until(&sub, Duration::from_secs(90), |got| {
        first(got, "person_left").is_some()
    });
    let entered = events(&got, "person_entered");
    assert_eq!(entered.len(), 1, "{got:#?}");
    let left = events(&got, "person_left");
    assert_eq!(left[0]["reason"], "exit");
    // While in view: from the visit's start to the last result that found
    // them (then `tracking.max_missing_s` passes before they have left).
    let start = first(&got, "person_entered").expect("entered");
    let end = got
        .iter()
        .rposition(|(t, v)| {
            t.starts_with("care/inferences/") && v["data"]["count"].as_u64() >= Some(1)
        })
        .expect("found at all");
    let (with, all) = found(&got, start..end + 1);
    assert!(
        all >= 20 && with * 10 >= all * 9,
        "60 % in view, found in {with} of {all} results"
    );
}

#[test]
fn a_paused_camera_is_not_an_empty_room_and_the_visit_goes_on() {
    let asleep = ["bed", "--asleep", "--lying-s", "60"];
    let scene = Scene::new("paused", &asleep, |i| vec![zone("bed", &i["bed"], "rest")]);
    let sub = scene.subscribe("paused");
    let _daemon = Daemon::start(&scene.config);
    let got = collect_until(&sub, Duration::from_secs(60), |got| {
        first(got, "zone_entered").is_some()
    });
    let track = events(&got, "person_entered")[0]["track_id"].clone();
    let ctl = |cmd: &str| {
        let out = common::orionctl(&scene.broker.url(), "paused")
            .arg(cmd)
            .output()
            .expect("orionctl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    ctl("pause");
    let mut paused = collect_until(&sub, Duration::from_secs(20), |got| {
        got.iter()
            .any(|(t, v)| t.starts_with("care/occupancy/") && v["state"] == "paused")
    });
    let said = paused.pop().expect("the paused occupancy");
    assert_eq!(said.1["occupied"], true, "{:?}", said.1);
    // Paused for 5 s (twice `occupancy.empty_after_s`, and more than
    // `tracking.max_missing_s`): nothing ends, nothing empties.
    let until = Instant::now() + Duration::from_secs(5);
    let mut during = vec![said];
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        if let Ok((topic, payload)) = sub.rx.recv_timeout(left) {
            during.push((
                topic,
                serde_json::from_slice(&payload).unwrap_or(Value::Null),
            ));
        }
    }
    for (t, v) in &during {
        if t.starts_with("care/occupancy/") {
            assert_eq!(v["occupied"], true, "paused is not empty: {v}");
            assert_eq!(v["state"], "paused", "{v}");
        }
        assert!(
            !matches!(v["type"].as_str(), Some("person_left" | "zone_left")),
            "nothing ends while paused: {v}"
        );
    }
    ctl("resume");
    // Watching again: the same person, the same visit.
    let after = collect_until(&sub, Duration::from_secs(30), |got| {
        let watching = got
            .iter()
            .position(|(t, v)| t.starts_with("care/occupancy/") && v["state"] == "watching");
        watching.is_some_and(|i| {
            got[i..].iter().any(|(t, v)| {
                t.starts_with("care/inferences/") && v["data"]["detections"][0]["track_id"] == track
            })
        })
    });
    assert!(events(&after, "person_entered").is_empty(), "{after:#?}");
}

#[test]
fn a_restart_takes_the_sleeping_person_back_as_the_same_visit() {
    let asleep = ["bed", "--asleep", "--lying-s", "60"];
    let scene = Scene::new("restart-bed", &asleep, |i| {
        vec![zone("bed", &i["bed"], "rest")]
    });
    let sub = scene.subscribe("restart-bed");
    let mut first_run = Daemon::start(&scene.config);
    let got = collect_until(&sub, Duration::from_secs(60), |got| {
        first(got, "zone_entered").is_some()
    });
    let track = events(&got, "person_entered")[0]["track_id"].clone();
    first_run.signal(libc::SIGTERM);
    assert!(first_run.wait_exit(Duration::from_secs(20)).is_some());
    // The next run: occupied from its first word, the same track, no new visit.
    let sub = scene.subscribe("restart-bed");
    let _second_run = Daemon::start(&scene.config);
    let got = collect_until(&sub, Duration::from_secs(60), |got| {
        got.iter().any(|(t, v)| {
            t.starts_with("care/inferences/") && v["data"]["detections"][0]["track_id"] == track
        })
    });
    let occupancy: Vec<&Value> = got
        .iter()
        .filter(|(t, v)| t.starts_with("care/occupancy/") && v.is_object())
        .map(|(_, v)| v)
        .collect();
    assert!(!occupancy.is_empty(), "{got:#?}");
    assert!(
        occupancy.iter().all(|v| v["occupied"] == true),
        "never empty across the restart: {occupancy:?}"
    );
    assert!(
        occupancy
            .iter()
            .all(|v| v["zones"]["bed"]["occupied"] == true),
        "still in bed: {occupancy:?}"
    );
    assert!(events(&got, "person_entered").is_empty(), "{got:#?}");
    assert!(events(&got, "person_left").is_empty(), "{got:#?}");
}

#[test]
fn something_that_never_moves_is_pointed_out_never_ignored_by_itself() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Someone standing still for 40 s (a picture would never move at all).
    let (video, _) = common::make_video(dir.path(), &["1", "1", "40", "1", "1"]);
    let broker = Mosquitto::start();
    let sub = Subscriber::connect(broker.port, "care/+/still/#");
    let config = common::config("still", &broker.url(), |c| {
        common::set(c, "camera.path", video.to_string_lossy().into_owned());
        common::set(c, "presence.ignore_hint_after_s", 4.0);
    });
    let control = Subscriber::connect(broker.port, "care/health/still");
    let _daemon = Daemon::start(&config);
    collect_until(&sub, Duration::from_secs(60), |got| {
        first(got, "person_entered").is_some()
    });
    let candidate = common::wait_until("an ignore candidate", Duration::from_secs(30), || {
        let status = control.command("still", serde_json::json!({"command": "get_status"}));
        let c = status["data"]["presence"]["ignore_candidates"][0].clone();
        c.is_object().then_some((c, status))
    });
    let (c, status) = candidate;
    assert!(c["still_for_s"].as_f64().expect("seconds") >= 4.0, "{c}");
    let r = &c["rect"];
    assert!(
        r["x"].as_f64().expect("x") > 0.2 && r["width"].as_f64().expect("w") > 0.2,
        "the person's box: {c}"
    );
    assert_eq!(status["data"]["presence"]["night"], false);
    // Still a person: the room is occupied.
    let occupied = sub.wait_for(Duration::from_secs(10), |t, p| {
        let v: Value = serde_json::from_slice(p).ok()?;
        t.starts_with("care/occupancy/").then_some(v)
    });
    assert_eq!(occupied["occupied"], true, "{occupied}");
}

#[test]
fn a_picture_on_the_wall_in_an_ignore_zone_is_nobody() {
    let scene = Scene::new("picture", &["picture"], |i| {
        vec![zone("picture", &i["picture"], "ignore")]
    });
    let sub = scene.subscribe("picture");
    let _daemon = Daemon::start(&scene.config);
    // The resident comes and goes; the room is empty again after them, the
    // picture still on the wall.
    let got = collect_until(&sub, Duration::from_secs(90), |got| {
        first(got, "person_left").is_some_and(|i| {
            got[i..]
                .iter()
                .any(|(t, v)| t.starts_with("care/occupancy/") && v["occupied"] == false)
        })
    });
    assert_eq!(events(&got, "person_entered").len(), 1, "{got:#?}");
    for (t, v) in &got {
        if t.starts_with("care/occupancy/") && v.is_object() {
            assert!(v["count"].as_u64() <= Some(1), "the picture counted: {v}");
        }
    }
    // The picture is still seen by the model, listed without a track.
    let untracked = got.iter().any(|(t, v)| {
        t.starts_with("care/inferences/")
            && v["data"]["detections"]
                .as_array()
                .is_some_and(|d| d.iter().any(|d| d.get("track_id").is_none()))
    });
    assert!(untracked, "the picture is in the results, without a track");
}

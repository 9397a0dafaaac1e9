//! Care signals end to end with real parts: a video made by the test (an empty
//! room, a person walks in, stands on a spot, walks out) through the real
//! detector gives one visit (one `person_entered`, one `person_left`, one track),
//! a zone event pair on the spot, and occupancy that turns empty on time; a
//! restart never leaves a stale occupancy behind.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{Daemon, Mosquitto, Subscriber};
use serde_json::Value;

/// Makes the visit video; returns its path and timings.
fn visit_video(dir: &std::path::Path) -> (std::path::PathBuf, Value) {
    let path = dir.join("visit.mp4");
    let out = Command::new(common::venv_python())
        .arg(common::repo_root().join("crates/orion/tests/visit_video.py"))
        .arg(&path)
        .args(["4", "3", "6", "3", "10"])
        .output()
        .expect("run visit_video.py");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info: Value = serde_json::from_slice(&out.stdout).expect("timings JSON");
    (path, info)
}

/// Everything received on `sub` until `done` says so (bounded by `timeout`).
fn collect_until(
    sub: &Subscriber,
    timeout: Duration,
    mut done: impl FnMut(&[(String, Value)]) -> bool,
) -> Vec<(String, Value)> {
    let until = Instant::now() + timeout;
    let mut got = Vec::new();
    while !done(&got) {
        let left = until
            .checked_duration_since(Instant::now())
            .unwrap_or_else(|| panic!("timed out; received: {got:#?}"));
        let Ok((topic, payload)) = sub.rx.recv_timeout(left) else {
            continue;
        };
        let v = serde_json::from_slice(&payload).unwrap_or(Value::Null);
        got.push((topic, v));
    }
    got
}

#[test]
fn a_visit_is_one_track_one_entered_one_left_a_zone_pair_and_occupancy_on_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (video, info) = visit_video(dir.path());
    let broker = Mosquitto::start();
    let sub = Subscriber::connect(broker.port, "care/+/visit/#");
    let config = common::config("visit", &broker.url(), |c| {
        common::set(c, "camera.path", video.to_string_lossy().into_owned());
        common::set(c, "models.person_detector.max_inference_rate_hz", 2.0);
        common::set(c, "occupancy.empty_after_s", 3.0);
        let spot = &info["spot"];
        let zone = format!(
            "{{ name: spot, rect: {{ x: {}, y: {}, width: 0.3, height: 0.2 }} }}",
            spot["x"].as_f64().unwrap() - 0.15,
            spot["y"].as_f64().unwrap() - 0.15,
        );
        common::set(
            c,
            "zones.regions",
            serde_yaml::Value::Sequence(vec![serde_yaml::from_str(&zone).unwrap()]),
        );
    });
    let _daemon = Daemon::start(&config);
    // One visit: until the room is empty again after someone left.
    let got = collect_until(&sub, Duration::from_secs(90), |got| {
        let left = got.iter().position(|(_, v)| v["type"] == "person_left");
        left.is_some_and(|i| {
            got[i..]
                .iter()
                .any(|(t, v)| t.starts_with("care/occupancy/") && v["occupied"] == false)
        })
    });
    let events: Vec<&Value> = got
        .iter()
        .filter(|(t, _)| t.starts_with("care/events/"))
        .map(|(_, v)| v)
        .collect();
    let of = |kind: &str| -> Vec<&Value> {
        events
            .iter()
            .copied()
            .filter(|e| e["type"] == kind)
            .collect()
    };
    let entered = of("person_entered");
    let left = of("person_left");
    assert_eq!((entered.len(), left.len()), (1, 1), "{events:#?}");
    let track = entered[0]["track_id"].as_u64().expect("track_id");
    assert_eq!(left[0]["track_id"], track);
    for e in &events {
        for key in ["type", "instance_id", "room_id", "event_id", "timestamp"] {
            assert!(e.get(key).is_some(), "{key} missing: {e}");
        }
        assert_eq!(e["instance_id"], "visit");
    }
    let ids: std::collections::HashSet<&str> = events
        .iter()
        .filter_map(|e| e["event_id"].as_str())
        .collect();
    assert_eq!(ids.len(), events.len(), "event ids are unique");
    // The person stood about `stand` seconds and walked: the visit lasted that long.
    let duration = left[0]["duration_s"].as_f64().expect("duration_s");
    assert!((6.0..=14.0).contains(&duration), "{duration}");
    // The zone on the standing spot: entered and left once, by the same track.
    let (zin, zout) = (of("zone_entered"), of("zone_left"));
    assert_eq!((zin.len(), zout.len()), (1, 1), "{events:#?}");
    assert_eq!(
        (&zin[0]["zone"], &zin[0]["track_id"]),
        (&Value::from("spot"), &Value::from(track))
    );
    assert_eq!(zout[0]["reason"], "walked_out");
    // Every detection between entering and leaving carries the visit's track.
    let first = got
        .iter()
        .position(|(_, v)| v["type"] == "person_entered")
        .unwrap();
    let last = got
        .iter()
        .position(|(_, v)| v["type"] == "person_left")
        .unwrap();
    let detections: Vec<&Value> = got[first..last]
        .iter()
        .filter(|(t, _)| t.starts_with("care/inferences/"))
        .flat_map(|(_, v)| v["data"]["detections"].as_array().into_iter().flatten())
        .collect();
    let with_track = detections.iter().filter(|d| d["track_id"] == track).count();
    assert!(detections.len() >= 10, "{} detections", detections.len());
    assert!(
        with_track * 10 >= detections.len() * 9,
        "{with_track} of {} detections carry track {track}",
        detections.len()
    );
    // Occupancy: occupied during the visit, empty after it, with the zone.
    let occupancy: Vec<&Value> = got
        .iter()
        .filter(|(t, v)| t.starts_with("care/occupancy/") && !v.is_null())
        .map(|(_, v)| v)
        .collect();
    assert!(
        occupancy
            .iter()
            .any(|o| o["occupied"] == true && o["count"] == 1)
    );
    assert!(
        occupancy
            .iter()
            .any(|o| o["zones"]["spot"]["occupied"] == true)
    );
    let empty = occupancy.last().expect("occupancy");
    assert_eq!(
        (&empty["occupied"], &empty["count"]),
        (&Value::from(false), &Value::from(0))
    );
    let empty_at = common::timestamp_s(empty, "since");
    let last_seen = common::timestamp_s(left[0], "last_seen");
    assert!(
        empty_at - last_seen >= 2.9,
        "empty only after empty_after_s: {:.2} s",
        empty_at - last_seen
    );
    // Metrics count the events.
    let (_, page) = _daemon.http_get("/metrics").expect("metrics");
    assert!(
        page.contains("orion_events_total{camera=\"visit\",type=\"person_entered\"} 1"),
        "{page}"
    );
}

#[test]
fn a_restart_never_repeats_a_stale_occupancy() {
    let broker = Mosquitto::start();
    // What a previous run left: someone present.
    let sub = Subscriber::connect(broker.port, "care/occupancy/restart");
    sub.client_publish_retained(
        "care/occupancy/restart",
        br#"{"occupied": true, "count": 1, "since": "2020-01-01T00:00:00Z", "zones": {}}"#.to_vec(),
    );
    sub.wait_for(Duration::from_secs(10), |_, p| {
        (!p.is_empty()).then_some(())
    });
    // The room is empty now (the test source shows no one).
    let config = common::config("restart", &broker.url(), |c| {
        common::set(c, "camera.source", "test");
        common::set(c, "occupancy.empty_after_s", 2.0);
    });
    let _daemon = Daemon::start(&config);
    // The stale value is removed (empty retained payload), then the truth.
    let mut got: Vec<Vec<u8>> = Vec::new();
    sub.wait_for(Duration::from_secs(60), |_, p| {
        got.push(p.to_vec());
        let v: Value = serde_json::from_slice(p).ok()?;
        (v["occupied"] == false).then_some(())
    });
    assert_eq!(
        got.first().map(Vec::is_empty),
        Some(true),
        "the stale value is removed first: {got:?}"
    );
    let stale: Vec<&Vec<u8>> = got
        .iter()
        .filter(|p| p.windows(4).any(|w| w == b"true"))
        .collect();
    assert!(
        stale.is_empty(),
        "the stale state was never repeated: {got:?}"
    );
    // A consumer connecting now sees only the truth.
    let late = Subscriber::connect(broker.port, "care/occupancy/restart");
    let v: Value = late.wait_for(Duration::from_secs(10), |_, p| {
        serde_json::from_slice(p).ok()
    });
    assert_eq!(v["occupied"], false, "{v}");
}

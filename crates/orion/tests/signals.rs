//! Care signals end to end with real parts: a video made by the test (an empty
//! room, a person walks in, stands on a spot, walks out) through the real
//! detector gives one visit (one `person_entered`, one `person_left`, one track),
//! a zone event pair on the spot, and occupancy that turns empty on time; a
//! restart never leaves a stale occupancy behind; what an ignore zone holds
//! makes no visit.

mod common;

use std::time::{Duration, Instant};

use common::{Daemon, Mosquitto, Subscriber, collect_until};
use serde_json::Value;

/// Makes the visit video; returns its path and timings.
fn visit_video(dir: &std::path::Path) -> (std::path::PathBuf, Value) {
    // Walking out over 5 s: at least two results outside the spot before the
    // person is gone, even on a loaded machine.
    common::make_video(dir, &["4", "3", "6", "5", "10"])
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
            serde_norway::Value::Sequence(vec![serde_norway::from_str(&zone).unwrap()]),
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
    assert!((6.0..=16.0).contains(&duration), "{duration}");
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

/// Retained messages under `filter` as they stand now: topic -> payload (an
/// empty payload deletes a retained message, so it removes the topic).
fn retained(
    port: u16,
    filter: &str,
    quiet: Duration,
) -> std::collections::BTreeMap<String, Vec<u8>> {
    let sub = Subscriber::connect(port, filter);
    let mut got = std::collections::BTreeMap::new();
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until
        && let Ok((topic, payload)) = sub.rx.recv_timeout(quiet)
    {
        got.insert(topic, payload);
    }
    got.retain(|_, p| !p.is_empty());
    got
}

#[test]
fn home_assistant_discovery_follows_zones_and_cameras() {
    let broker = Mosquitto::start();
    let discovery = Subscriber::connect(broker.port, "homeassistant/#");
    let config_for = |cameras: &str| {
        common::config("unused", &broker.url(), |c| {
            let map = c.as_mapping_mut().expect("mapping");
            for key in ["instance_id", "room_id", "camera"] {
                map.remove(key);
            }
            map.insert("cameras".into(), serde_norway::from_str(cameras).unwrap());
            common::set(c, "homeassistant.enabled", true);
            common::set(c, "occupancy.empty_after_s", 1.0);
        })
    };
    let two = r#"
- { instance_id: ha-a, room_id: "A", camera: { source: test },
    zones: { regions: [ { name: bed, rect: { x: 0, y: 0.5, width: 0.5, height: 0.5 } } ] } }
- { instance_id: ha-b, room_id: "B", camera: { source: test } }
"#;
    let daemon = Daemon::start(&config_for(two));
    let path = daemon.dir.path().join("orion.yaml");
    // Nineteen entities: occupancy, count, posture, fall and its acknowledge
    // button, the inference and privacy switches, camera state and rate for
    // each camera, the bed of ha-a.
    let mut seen = std::collections::BTreeMap::new();
    let mut sent = std::collections::BTreeMap::<String, usize>::new();
    discovery.wait_for(Duration::from_secs(60), |topic, payload| {
        seen.insert(topic.to_string(), payload.to_vec());
        *sent.entry(topic.to_string()).or_default() += 1;
        (seen.len() == 19).then_some(())
    });
    let bed = "homeassistant/binary_sensor/orion_ha_a/zone_bed/config";
    let v: Value = serde_json::from_slice(&seen[bed]).expect("discovery JSON");
    for key in [
        "name",
        "unique_id",
        "state_topic",
        "availability",
        "device",
        "value_template",
        "device_class",
    ] {
        assert!(v.get(key).is_some(), "{key} missing: {v}");
    }
    assert_eq!(v["unique_id"], "orion_ha_a_zone_bed");
    assert_eq!(v["device"]["name"], "Room A");
    // The state topic really carries what the templates read.
    let state_topic = v["state_topic"].as_str().unwrap().to_string();
    let state = Subscriber::connect(broker.port, &state_topic);
    let occ: Value = state.wait_for(Duration::from_secs(30), |_, p| {
        serde_json::from_slice(p).ok()
    });
    assert_eq!(occ["occupied"], false, "{occ}");
    assert_eq!(occ["zones"]["bed"]["occupied"], false, "{occ}");
    assert!(occ["count"].is_u64(), "{occ}");
    let availability: Value = retained(broker.port, "care/status/ha-a", Duration::from_millis(800))
        .values()
        .next()
        .and_then(|p| serde_json::from_slice(p).ok())
        .expect("presence");
    assert_eq!(availability["state"], "online");
    // Each discovery message once (the previous run's were read meanwhile).
    while let Ok((topic, _)) = discovery.rx.try_recv() {
        *sent.entry(topic).or_default() += 1;
    }
    assert!(sent.values().all(|n| *n == 1), "{sent:#?}");
    assert_eq!(v["default_entity_id"], "binary_sensor.orion_ha_a_zone_bed");
    assert!(v.get("object_id").is_none(), "deprecated: {v}");
    // Zones that would be one entity are refused.
    let replies = Subscriber::connect(broker.port, "care/health/ha-a");
    let r = replies.command(
        "ha-a",
        serde_json::json!({"command": "set_zones", "params": {"zones": [
            {"name": "bed-1", "rect": {"x": 0.0, "y": 0.5, "width": 0.5, "height": 0.5}},
            {"name": "bed_1", "rect": {"x": 0.5, "y": 0.5, "width": 0.5, "height": 0.5}}]}}),
    );
    assert_eq!(r["success"], false, "{r}");
    assert!(
        r["message"]
            .as_str()
            .is_some_and(|m| m.contains("same identifier `bed_1`")),
        "{r}"
    );
    // A zone replaced at run time: its entity goes, the new one comes.
    let r = replies.command(
        "ha-a",
        serde_json::json!({"command": "set_zones", "params": {"zones": [
            {"name": "door", "rect": {"x": 0.8, "y": 0.2, "width": 0.2, "height": 0.7}}]}}),
    );
    assert_eq!(r["success"], true, "{r}");
    let door = "homeassistant/binary_sensor/orion_ha_a/zone_door/config";
    common::wait_until("the zone entities follow", Duration::from_secs(10), || {
        let now = retained(broker.port, "homeassistant/#", Duration::from_millis(500));
        (now.contains_key(door) && !now.contains_key(bed) && now.len() == 19).then_some(())
    });
    // A reload without ha-b removes its entities, occupancy, alerts and presence.
    // (The running file has its health port filled in: keep it.)
    let running = std::fs::read_to_string(&path).unwrap();
    let mut v: serde_norway::Value = serde_norway::from_str(&running).unwrap();
    let one: String = two
        .lines()
        .filter(|l| !l.contains("ha-b"))
        .collect::<Vec<_>>()
        .join("\n");
    v["cameras"] = serde_norway::from_str(&one).unwrap();
    std::fs::write(&path, serde_norway::to_string(&v).unwrap()).unwrap();
    daemon.signal(libc::SIGHUP);
    let _log_on_failure = LogOnPanic(&daemon);
    common::wait_until("ha-b goes away for good", Duration::from_secs(30), || {
        let quiet = Duration::from_millis(500);
        let mut left = retained(broker.port, "homeassistant/#", quiet);
        left.extend(retained(broker.port, "care/status/#", quiet));
        left.extend(retained(broker.port, "care/occupancy/#", quiet));
        left.extend(retained(broker.port, "care/alerts/#", quiet));
        let b_gone = !left
            .keys()
            .any(|t| t.contains("ha-b") || t.contains("ha_b"));
        let a_kept = left.contains_key("homeassistant/binary_sensor/orion_ha_a/occupancy/config");
        (b_gone && a_kept).then_some(())
    });
    // ha-a's config did not change: it ran on, with the door it was given at
    // run time (nothing of it was republished or removed).
    let now = retained(broker.port, "homeassistant/#", Duration::from_millis(500));
    assert!(
        now.contains_key(door) && !now.contains_key(bed) && now.len() == 10,
        "{:?}",
        now.keys()
    );
    // A change of ha-a restarts it with the config's bed; the door it only had
    // at run time is cleaned up, not left behind.
    let mut v: serde_norway::Value =
        serde_norway::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    v["cameras"][0]["room_id"] = "A2".into();
    std::fs::write(&path, serde_norway::to_string(&v).unwrap()).unwrap();
    daemon.signal(libc::SIGHUP);
    common::wait_until(
        "ha-a's entities are the config's",
        Duration::from_secs(30),
        || {
            let now = retained(broker.port, "homeassistant/#", Duration::from_millis(500));
            (now.contains_key(bed) && !now.contains_key(door) && now.len() == 10).then_some(())
        },
    );
}

#[test]
fn home_assistant_switches_pause_inference_and_turn_privacy_on_through_the_control_handler() {
    let broker = Mosquitto::start();
    let config = common::config("ha-panel", &broker.url(), |c| {
        common::set(c, "homeassistant.enabled", true);
        common::set(c, "models.person_detector.max_inference_rate_hz", 2.0);
    });
    let daemon = Daemon::start(&config);
    let _log_on_failure = LogOnPanic(&daemon);
    let discovery = |object: &str| -> Value {
        let topic = format!("homeassistant/{object}/config");
        let sub = Subscriber::connect(broker.port, &topic);
        sub.wait_for(Duration::from_secs(60), |_, p| {
            serde_json::from_slice(p).ok()
        })
    };
    let inference = discovery("switch/orion_ha_panel/inference");
    let privacy = discovery("switch/orion_ha_panel/privacy");
    let camera = discovery("sensor/orion_ha_panel/camera");
    let rate = discovery("sensor/orion_ha_panel/inference_rate");
    // Every panel entity reads the presence topic.
    let state_topic = inference["state_topic"]
        .as_str()
        .expect("state topic")
        .to_string();
    for entity in [&privacy, &camera, &rate] {
        assert_eq!(entity["state_topic"], state_topic.as_str(), "{entity}");
    }
    assert_eq!(camera["value_template"], "{{ value_json.camera }}");
    assert!(
        rate["value_template"]
            .as_str()
            .is_some_and(|t| t.starts_with("{{ value_json.rate_hz if")),
        "{rate}"
    );
    assert_eq!(rate["unit_of_measurement"], "Hz");
    let presence = Subscriber::connect(broker.port, &state_topic);
    // The presence message for which `pred` holds.
    let state_where = |pred: &dyn Fn(&Value) -> bool| -> Value {
        presence.wait_for(Duration::from_secs(30), |_, p| {
            let v: Value = serde_json::from_slice(p).ok()?;
            pred(&v).then_some(v)
        })
    };
    let running = state_where(&|v| v["camera"] == "streaming" && v["inference"] == "running");
    assert_eq!(running["privacy"], false, "{running}");
    assert_eq!(running["rate_hz"], 2.0, "the effective rate: {running}");

    // Home Assistant turns the switches by publishing their payloads on
    // their command topic: the camera's control topic.
    let replies = Subscriber::connect(broker.port, "care/health/ha-panel");
    let press = |switch: &Value, key: &str| {
        let topic = switch["command_topic"].as_str().expect("command topic");
        let payload = switch[key].as_str().expect("payload").as_bytes().to_vec();
        replies.publish(topic, payload);
        replies.wait_for(Duration::from_secs(10), |_, p| {
            let v: Value = serde_json::from_slice(p).ok()?;
            (v["type"] == "command_ack").then_some(v)
        })
    };
    let r = press(&inference, "payload_off");
    assert_eq!(r["success"], true, "{r}");
    assert_eq!(r["command"], "pause_inference", "{r}");
    state_where(&|v| v["inference"] == "paused");
    let r = press(&inference, "payload_on");
    assert_eq!(r["command"], "resume_inference", "{r}");
    state_where(&|v| v["inference"] == "running");
    let r = press(&privacy, "payload_on");
    assert_eq!(r["success"], true, "{r}");
    state_where(&|v| v["privacy"] == true);
    let status = replies.command("ha-panel", serde_json::json!({"command": "get_status"}));
    assert_eq!(status["data"]["privacy"], true, "{status}");
    let r = press(&privacy, "payload_off");
    assert_eq!(r["command"], "disable_privacy", "{r}");
    state_where(&|v| v["privacy"] == false);
    // The rate sensor follows the rate, whoever sets it.
    let r = replies.command(
        "ha-panel",
        serde_json::json!({"command": "set_inference_rate", "params": {"rate_hz": 1.0}}),
    );
    assert_eq!(r["success"], true, "{r}");
    state_where(&|v| v["rate_hz"] == 1.0);
}

/// Prints the daemon's log when the test fails.
struct LogOnPanic<'a>(&'a Daemon);

impl Drop for LogOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("daemon log:\n{}", self.0.log());
        }
    }
}

#[test]
fn auto_focus_on_the_demo_keeps_the_one_person_without_duplicates() {
    let broker = Mosquitto::start();
    let results = Subscriber::connect(broker.port, "care/inferences/af-demo/person_detection");
    let config = common::config("af-demo", &broker.url(), |c| {
        common::set(c, "models.person_detector.max_inference_rate_hz", 4.0);
        common::set(c, "rois.auto_focus.enabled", true);
    });
    let _daemon = Daemon::start(&config);
    let mut counts = Vec::new();
    let mut cropped = 0;
    results.wait_for(Duration::from_secs(120), |_, payload| {
        let v: Value = serde_json::from_slice(payload).ok()?;
        counts.push(v["data"]["detections"].as_array().map_or(0, Vec::len));
        cropped += usize::from(v["roi"]["source"] == "auto_focus");
        (counts.len() >= 80).then_some(())
    });
    let one = counts.iter().filter(|n| **n == 1).count();
    let many = counts.iter().filter(|n| **n > 1).count();
    assert!(cropped >= 20, "auto-focus cropped {cropped} of 80 frames");
    assert!(
        one * 100 >= 95 * counts.len(),
        "one person in {one} of {}: {counts:?}",
        counts.len()
    );
    assert!(
        many * 100 <= 2 * counts.len(),
        "duplicates in {many} of {}: {counts:?}",
        counts.len()
    );
}

#[test]
fn two_people_count_two_and_make_two_visits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (video, _) = common::make_video(dir.path(), &["--two"]);
    let broker = Mosquitto::start();
    let sub = Subscriber::connect(broker.port, "care/+/two/#");
    let config = common::config("two", &broker.url(), |c| {
        common::set(c, "camera.path", video.to_string_lossy().into_owned());
        common::set(c, "models.person_detector.max_inference_rate_hz", 2.0);
        common::set(c, "occupancy.empty_after_s", 2.0);
        // The two vanish from the middle of the frame (no one does): without
        // the unseen state they leave when no longer detected.
        common::set(c, "presence.unseen_timeout_s", 0.0);
    });
    let _daemon = Daemon::start(&config);
    let got = collect_until(&sub, Duration::from_secs(90), |got| {
        got.iter()
            .filter(|(_, v)| v["type"] == "person_left")
            .count()
            >= 2
    });
    let entered: Vec<&Value> = got
        .iter()
        .filter(|(_, v)| v["type"] == "person_entered")
        .map(|(_, v)| v)
        .collect();
    assert_eq!(entered.len(), 2, "{got:#?}");
    assert_ne!(entered[0]["track_id"], entered[1]["track_id"]);
    let counts: Vec<u64> = got
        .iter()
        .filter(|(t, v)| t.starts_with("care/occupancy/") && !v.is_null())
        .filter_map(|(_, v)| v["count"].as_u64())
        .collect();
    assert!(counts.contains(&2), "occupancy counted two: {counts:?}");
}

/// A picture of a person, as the daemon sees it: an ignore zone over the
/// whole view. The detector still finds the person walking in (the results
/// list them, without a track), and nothing counts: no event, no occupancy.
#[test]
fn what_an_ignore_zone_holds_makes_no_visit_through_the_daemon() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (video, _) = visit_video(dir.path());
    let broker = Mosquitto::start();
    let sub = Subscriber::connect(broker.port, "care/+/ignored/#");
    let config = common::config("ignored", &broker.url(), |c| {
        common::set(c, "camera.path", video.to_string_lossy().into_owned());
        common::set(c, "models.person_detector.max_inference_rate_hz", 2.0);
        let zone = "{ name: wall, rect: { x: 0, y: 0, width: 1, height: 1 }, ignore: true }";
        common::set(
            c,
            "zones.regions",
            serde_norway::Value::Sequence(vec![serde_norway::from_str(zone).unwrap()]),
        );
    });
    let _daemon = Daemon::start(&config);
    let with_person = |v: &Value| {
        v["data"]["detections"]
            .as_array()
            .is_some_and(|d| !d.is_empty())
    };
    // Long enough for a visit to have been confirmed: 6 results with the person.
    let got = collect_until(&sub, Duration::from_secs(90), |got| {
        got.iter()
            .filter(|(t, v)| t.starts_with("care/inferences/") && with_person(v))
            .count()
            >= 6
    });
    for (topic, v) in &got {
        if topic.starts_with("care/inferences/") && with_person(v) {
            let detections = v["data"]["detections"].as_array().expect("detections");
            assert!(
                detections.iter().all(|d| d.get("track_id").is_none()),
                "no track in an ignore zone: {v}"
            );
            assert_eq!(v["data"]["count"], 0, "listed, not counted: {v}");
        }
        assert!(
            !topic.starts_with("care/events/")
                || v["type"] == "occupancy_changed" && v["occupied"] == false,
            "{topic}: {v}"
        );
        // An empty retained message first: the previous run's state removed.
        if topic.starts_with("care/occupancy/") && !v.is_null() {
            assert_eq!(v["occupied"], false, "{v}");
        }
    }
}

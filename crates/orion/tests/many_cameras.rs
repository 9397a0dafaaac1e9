//! One daemon, many cameras, with real parts: three cameras of three kinds (a
//! file, the test source, an RTSP camera) share one pool of real person detectors
//! and one pool of real scene brightness workers; each camera keeps its own
//! topics, control, presence and health; a camera outage never delays another
//! camera; a killed daemon leaves every camera `offline`. A scripted slow worker
//! shows that a pool too small for every camera shares itself equally.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{Daemon, Mosquitto, RtspServer, Subscriber};
use serde_json::{Value, json};
use serde_norway::Value as Yaml;

/// The test config with the single-camera keys replaced by `cameras`.
fn cameras_config(broker: &str, cameras: Yaml, edit: impl FnOnce(&mut Yaml)) -> String {
    common::config("unused", broker, |c| {
        let map = c.as_mapping_mut().expect("mapping");
        for key in ["instance_id", "room_id", "camera"] {
            map.remove(key);
        }
        map.insert("cameras".into(), cameras);
        edit(c);
    })
}

fn yaml(text: &str) -> Yaml {
    serde_norway::from_str(text).expect("test YAML parses")
}

/// Parses an inference message: (instance_id, inference_type, captured_at s, message).
fn inference(topic: &str, payload: &[u8]) -> Option<(String, String, f64, Value)> {
    let v: Value = serde_json::from_slice(payload).ok()?;
    let mut parts = topic.split('/').skip(2);
    let (id, ty) = (parts.next()?.to_string(), parts.next()?.to_string());
    assert_eq!(v["instance_id"], id.as_str(), "{topic}: {v}");
    assert_eq!(v["inference_type"], ty.as_str(), "{topic}: {v}");
    Some((id, ty, common::timestamp_s(&v, "captured_at"), v))
}

/// Capture times of every result received for `window`, by camera and type.
fn collect(sub: &Subscriber, window: Duration) -> HashMap<(String, String), Vec<f64>> {
    let mut seen: HashMap<(String, String), Vec<f64>> = HashMap::new();
    let until = Instant::now() + window;
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        let Ok((topic, payload)) = sub.rx.recv_timeout(left) else {
            break;
        };
        if let Some((id, ty, at, _)) = inference(&topic, &payload) {
            seen.entry((id, ty)).or_default().push(at);
        }
    }
    seen
}

fn largest_gap(times: &[f64]) -> f64 {
    times.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max)
}

#[test]
fn three_cameras_share_the_pools_and_keep_their_own_contract() {
    let rtsp_port = common::free_port();
    let camera = RtspServer::start(rtsp_port, &[]);
    let broker = Mosquitto::start();
    let results = Subscriber::connect(broker.port, "care/inferences/#");
    let replies = Subscriber::connect(broker.port, "care/health/+");
    let root = common::repo_root();
    let cameras = yaml(&format!(
        r#"
- instance_id: room-file
  room_id: "101"
  camera: {{ source: file, path: "{video}" }}
- instance_id: room-test
  room_id: "102"
  camera: {{ source: test }}
  stream: {{ fps: 10 }}
- instance_id: room-rtsp
  room_id: "103"
  camera: {{ source: rtsp, rtsp_url: "rtsp://127.0.0.1:{rtsp_port}/cam", reconnect_backoff_max_s: 1 }}
"#,
        video = root.join("assets/walking.mp4").display(),
    ));
    let config = cameras_config(&broker.url(), cameras, |c| {
        common::set(c, "models.person_detector.max_inference_rate_hz", 2.0);
        // A second catalog entry (the same file) to swap the shared pool to.
        common::set(
            c,
            "models.person_detector.catalog.copy",
            yaml(&format!(
                "{{ path: \"{}\", format: ssd }}",
                common::model_path()
            )),
        );
        common::set(
            c,
            "workers.scene_brightness.command",
            Yaml::Sequence(vec![
                common::venv_python().into(),
                "-m".into(),
                "orion_worker.scene_brightness".into(),
            ]),
        );
    });
    let mut daemon = Daemon::start(&config);

    // Every camera gets results of both types, each on its own topics.
    let ids = ["room-file", "room-test", "room-rtsp"];
    let mut missing: Vec<(String, String)> = ids
        .iter()
        .flat_map(|id| {
            ["person_detection", "scene_brightness"].map(|ty| (id.to_string(), ty.to_string()))
        })
        .collect();
    let started = Instant::now();
    while !missing.is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "no results yet for {missing:?}"
        );
        let Ok((topic, payload)) = results.rx.recv_timeout(Duration::from_secs(5)) else {
            continue;
        };
        let Some((id, ty, _, v)) = inference(&topic, &payload) else {
            continue;
        };
        let room = match id.as_str() {
            "room-file" => "101",
            "room-test" => "102",
            _ => "103",
        };
        assert_eq!(v["room_id"], room, "{v}");
        if ty == "scene_brightness" {
            let b = v["data"]["brightness"].as_f64().expect("brightness");
            assert!((0.0..=255.0).contains(&b), "{v}");
            assert!(v["data"].get("detections").is_none(), "{v}");
        } else {
            assert!(v["data"]["detections"].is_array(), "{v}");
        }
        missing.retain(|m| m != &(id.clone(), ty.clone()));
    }

    // Health and metrics per camera; the workers are shared, listed once.
    let (_, body) = daemon.http_get("/readiness").expect("readiness");
    let report: Value = serde_json::from_str(&body).expect("JSON");
    let listed: Vec<&str> = report["cameras"]
        .as_array()
        .expect("cameras")
        .iter()
        .filter_map(|c| c["instance_id"].as_str())
        .collect();
    assert_eq!(listed, ids, "{body}");
    assert_eq!(
        report["workers"].as_array().map(Vec::len),
        Some(2),
        "{body}"
    );
    let (_, metrics) = daemon.http_get("/metrics").expect("metrics");
    for id in ids {
        assert!(
            metrics.contains(&format!("orion_frames_captured_total{{camera=\"{id}\"}}")),
            "{metrics}"
        );
    }
    assert!(metrics.contains("orion_workers 2\n"), "{metrics}");
    common::prometheus_families(&metrics);

    // get_status answers for its own camera, and names the cameras sharing the pool.
    let status = replies.command("room-test", json!({"command": "get_status"}));
    assert_eq!(status["data"]["instance_id"], "room-test", "{status}");
    assert_eq!(status["data"]["stream"]["source"], "test", "{status}");
    assert_eq!(
        status["data"]["inference"]["shared_with"],
        json!(ids),
        "{status}"
    );

    // A model swap from one camera acts on the shared pool: the reply names every
    // camera, and another camera's status shows the new model.
    let swapped = replies.command(
        "room-rtsp",
        json!({"command": "set_model_size", "params": {"size": "copy"}}),
    );
    assert_eq!(swapped["success"], true, "{swapped}");
    assert_eq!(swapped["data"]["cameras"], json!(ids), "{swapped}");
    let message = swapped["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("shared by 3 cameras: room-file, room-test, room-rtsp"),
        "{message}"
    );
    let other = replies.command("room-file", json!({"command": "get_status"}));
    assert_eq!(other["data"]["inference"]["model"], "copy", "{other}");
    results.wait_for(Duration::from_secs(30), |topic, payload| {
        let (id, _, _, v) = inference(topic, payload)?;
        (id == "room-test" && v["model"]["name"] == "copy").then_some(())
    });

    // Pausing one camera pauses that camera alone.
    let paused = replies.command("room-file", json!({"command": "pause_inference"}));
    assert_eq!(paused["success"], true, "{paused}");
    let after_pause = common::now_s() + 0.5;
    results.drain();
    let seen = collect(&results, Duration::from_secs(4));
    let file_after: Vec<f64> = seen
        .iter()
        .filter(|((id, _), _)| id == "room-file")
        .flat_map(|(_, t)| t.iter().copied())
        .filter(|t| *t > after_pause)
        .collect();
    assert!(
        file_after.is_empty(),
        "paused camera still inferred: {file_after:?}"
    );
    for id in ["room-test", "room-rtsp"] {
        let n = seen
            .get(&(id.to_string(), "person_detection".to_string()))
            .map_or(0, Vec::len);
        assert!(
            n >= 4,
            "{id} went on while room-file was paused: {n} results"
        );
    }
    let resumed = replies.command("room-file", json!({"command": "resume_inference"}));
    assert_eq!(resumed["success"], true, "{resumed}");

    // The RTSP camera goes away for 10 s: the other two never wait for it.
    results.drain();
    camera.kill();
    let seen = collect(&results, Duration::from_secs(10));
    for id in ["room-file", "room-test"] {
        let times = seen
            .get(&(id.to_string(), "person_detection".to_string()))
            .cloned()
            .unwrap_or_default();
        assert!(
            times.len() >= 14,
            "{id}: {} results in 10 s at 2 Hz",
            times.len()
        );
        let gap = largest_gap(&times);
        eprintln!("{id}: {} results, largest gap {gap:.2} s", times.len());
        assert!(
            gap < 1.2,
            "{id} waited {gap:.2} s during the other camera's outage"
        );
    }
    let down = replies.command("room-rtsp", json!({"command": "get_status"}));
    assert_eq!(down["data"]["stream"]["connected"], false, "{down}");
    let _camera = RtspServer::start(rtsp_port, &[]);
    let back = common::now_s();
    results.wait_for(Duration::from_secs(60), |topic, payload| {
        let (id, _, at, _) = inference(topic, payload)?;
        (id == "room-rtsp" && at > back).then_some(())
    });

    // A killed daemon: every camera's last will says offline.
    daemon.signal(libc::SIGKILL);
    daemon.wait_exit(Duration::from_secs(10)).expect("killed");
    let mut offline: Vec<String> = Vec::new();
    let status = Subscriber::connect(broker.port, "care/status/+");
    let until = Instant::now() + Duration::from_secs(30);
    while offline.len() < ids.len() {
        let left = until
            .checked_duration_since(Instant::now())
            .expect("three offline presences within 30 s");
        let Ok((topic, payload)) = status.rx.recv_timeout(left) else {
            continue;
        };
        let v: Value = serde_json::from_slice(&payload).expect("presence JSON");
        let id = topic.rsplit('/').next().unwrap_or_default().to_string();
        if v["state"] == "offline" && !offline.contains(&id) {
            assert_eq!(v["instance_id"], id.as_str(), "{v}");
            offline.push(id);
        }
    }
    offline.sort();
    assert_eq!(offline, ["room-file", "room-rtsp", "room-test"]);
}

#[test]
fn a_pool_too_small_for_every_camera_shares_itself_equally() {
    // Six cameras ask for 2 Hz each (12 frames/s); one worker takes 1/6 s per
    // frame (6 frames/s): every camera gets half its rate, the same half.
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Mosquitto::start();
    let results = Subscriber::connect(broker.port, "care/inferences/#");
    let ids: Vec<String> = (1..=6).map(|i| format!("fair-{i}")).collect();
    let cameras = Yaml::Sequence(
        ids.iter()
            .map(|id| {
                yaml(&format!(
                    "{{ instance_id: {id}, camera: {{ source: test }} }}"
                ))
            })
            .collect(),
    );
    let config = cameras_config(&broker.url(), cameras, |c| {
        common::use_fake_worker(c, "slow-166", &dir.path().join("pids"));
        common::set(c, "models.person_detector.max_inference_rate_hz", 2.0);
        common::set(c, "stream.width", 160);
        common::set(c, "stream.height", 120);
        common::set(c, "stream.fps", 10);
    });
    let daemon = Daemon::start(&config);
    // Wait until every camera has been served once, then count for 20 s.
    let mut first: Vec<String> = Vec::new();
    while first.len() < ids.len() {
        results.wait_for(Duration::from_secs(60), |topic, payload| {
            let (id, _, _, _) = inference(topic, payload)?;
            (!first.contains(&id)).then(|| first.push(id))
        });
    }
    let seen = collect(&results, Duration::from_secs(20));
    let counts: Vec<usize> = ids
        .iter()
        .map(|id| {
            seen.get(&(id.clone(), "fake_detection".to_string()))
                .map_or(0, Vec::len)
        })
        .collect();
    let mean = counts.iter().sum::<usize>() as f64 / counts.len() as f64;
    eprintln!("results per camera in 20 s: {counts:?}");
    assert!(mean >= 10.0, "the pool works at its capacity: {counts:?}");
    for (id, n) in ids.iter().zip(&counts) {
        let off = (*n as f64 - mean).abs() / mean;
        assert!(
            off <= 0.15,
            "{id} got {n} results, mean {mean:.1}: {counts:?}"
        );
        // What a camera could not get is counted as its own drops.
        let (_, page) = daemon.http_get("/metrics").expect("metrics");
        let series = format!("orion_framebus_frames_dropped_total{{camera=\"{id}\",");
        let dropped: f64 = page
            .lines()
            .find(|l| l.starts_with(&series))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0.0);
        assert!(dropped >= 1.0, "{id}: drops counted per camera");
    }
}

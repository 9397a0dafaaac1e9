//! SIGHUP with a config that changes only cameras: the real daemon, real
//! Mosquitto, real workers. The cameras the new config leaves as they were keep
//! running (same session, frame numbers going on, results all along); a changed
//! camera restarts, a new one starts, a removed one goes for good.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{Daemon, Mosquitto, Subscriber};
use serde_json::Value;

/// A corridor config of `cameras` (YAML list), keeping the running file's
/// health port.
fn corridor(base: &str, cameras: &str) -> String {
    let mut v: serde_norway::Value = serde_norway::from_str(base).expect("config");
    let map = v.as_mapping_mut().expect("mapping");
    for key in ["instance_id", "room_id", "camera"] {
        map.remove(key);
    }
    v["cameras"] = serde_norway::from_str(cameras).expect("cameras");
    serde_norway::to_string(&v).expect("serializes")
}

/// The retained presences now, by instance id.
fn presences(port: u16) -> BTreeMap<String, Value> {
    let sub = Subscriber::connect(port, "care/status/#");
    let mut got = BTreeMap::new();
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until
        && let Ok((_, payload)) = sub.rx.recv_timeout(Duration::from_millis(500))
    {
        if let Ok(v) = serde_json::from_slice::<Value>(&payload)
            && let Some(id) = v["instance_id"].as_str()
        {
            got.insert(id.to_string(), v);
        }
    }
    got
}

fn result(payload: &[u8]) -> Option<(String, String, u64)> {
    let v: Value = serde_json::from_slice(payload).ok()?;
    Some((
        v["instance_id"].as_str()?.to_string(),
        v["room_id"].as_str()?.to_string(),
        v["frame_seq"].as_u64()?,
    ))
}

#[test]
fn a_reload_restarts_only_the_cameras_it_changes() {
    let broker = Mosquitto::start();
    let results = Subscriber::connect(broker.port, "care/inferences/+/person_detection");
    let first = "[ { instance_id: hup-a, room_id: A, camera: { source: test } },
                   { instance_id: hup-b, room_id: B, camera: { source: test } } ]";
    let base = common::config("unused", &broker.url(), |_| {});
    let daemon = Daemon::start(&corridor(&base, first));
    let path = daemon.dir.path().join("orion.yaml");
    let running = std::fs::read_to_string(&path).expect("running config");
    let mut seen = BTreeMap::new();
    results.wait_for(Duration::from_secs(60), |_, p| {
        let (id, _, _) = result(p)?;
        seen.insert(id, ());
        (seen.len() == 2).then_some(())
    });
    let before = common::wait_until("both presences", Duration::from_secs(20), || {
        let p = presences(broker.port);
        (p.len() == 2 && p.values().all(|v| v["state"] == "online")).then_some(p)
    });
    let workers = common::children_of(daemon.pid());

    // hup-b moves to another room: it restarts, hup-a runs on.
    let second = first.replace("room_id: B", "room_id: B2");
    std::fs::write(&path, corridor(&running, &second)).expect("write config");
    results.drain();
    daemon.signal(libc::SIGHUP);
    let mut a_seqs = Vec::new();
    results.wait_for(Duration::from_secs(60), |_, p| {
        let (id, room, seq) = result(p)?;
        if id == "hup-a" {
            a_seqs.push(seq);
        }
        (id == "hup-b" && room == "B2").then_some(())
    });
    assert!(
        !a_seqs.is_empty(),
        "hup-a's results go on while hup-b restarts\n{}",
        daemon.log()
    );
    assert!(
        a_seqs.windows(2).all(|w| w[0] < w[1]),
        "hup-a's stream was not restarted (its frame numbers go on): {a_seqs:?}"
    );
    let after = presences(broker.port);
    assert_eq!(
        after["hup-a"]["session"], before["hup-a"]["session"],
        "hup-a kept running"
    );
    assert_ne!(
        after["hup-b"]["session"], before["hup-b"]["session"],
        "hup-b restarted"
    );
    assert!(daemon.log().contains("SIGHUP: config is valid"));

    // hup-b goes, hup-c comes: hup-a still runs on.
    let third = "[ { instance_id: hup-a, room_id: A, camera: { source: test } },
                   { instance_id: hup-c, room_id: C, camera: { source: test } } ]";
    std::fs::write(&path, corridor(&running, third)).expect("write config");
    daemon.signal(libc::SIGHUP);
    results.wait_for(Duration::from_secs(60), |_, p| {
        (result(p)?.0 == "hup-c").then_some(())
    });
    let last = common::wait_until("hup-b's presence removed", Duration::from_secs(20), || {
        let p = presences(broker.port);
        (!p.contains_key("hup-b") && p.contains_key("hup-c")).then_some(p)
    });
    assert_eq!(last["hup-a"]["session"], before["hup-a"]["session"]);
    assert_eq!(last["hup-c"]["state"], "online");
    // hup-b left nothing behind: not in health, metrics or the shared pool.
    let (_, body) = daemon.http_get("/readiness").expect("readiness");
    let health: Value = serde_json::from_str(&body).expect("JSON");
    let listed: Vec<&str> = health["cameras"]
        .as_array()
        .expect("cameras")
        .iter()
        .filter_map(|c| c["instance_id"].as_str())
        .collect();
    assert_eq!(listed, ["hup-a", "hup-c"], "{body}");
    let (_, metrics) = daemon.http_get("/metrics").expect("metrics");
    assert!(!metrics.contains("camera=\"hup-b\""), "{metrics}");
    assert!(metrics.contains("orion_frames_captured_total{camera=\"hup-c\"}"));
    let replies = Subscriber::connect(broker.port, "care/health/hup-a");
    let status = replies.command("hup-a", serde_json::json!({"command": "get_status"}));
    assert_eq!(
        status["data"]["inference"]["shared_with"],
        serde_json::json!(["hup-a", "hup-c"]),
        "{status}"
    );
    assert!(common::alive(daemon.pid()));
    // The same worker process: the pools were not restarted.
    assert_eq!(common::children_of(daemon.pid()), workers);
}

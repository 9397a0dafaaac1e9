//! The worker contract as an outside implementer meets it, through the real
//! daemon: a worker written from docs/worker-protocol.md alone (no SDK) works
//! inline and through shared memory, swaps its model and publishes its own data;
//! scripted workers that break the contract are held to it: a late answer to a
//! command never changes state, invalid results and results of another type are
//! counted and never published, and a command handled on the worker's main loop
//! does not get it killed as hung.

mod common;

use std::time::{Duration, Instant};

use common::{Daemon, Mosquitto, Subscriber};
use serde_json::{Value, json};

fn pids(path: &std::path::Path) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .count()
}

fn worker_counter(daemon: &Daemon, name: &str) -> f64 {
    daemon
        .series(&format!("{name}{{worker=\"person_detector-0\"}}"))
        .unwrap_or_else(|| panic!("{name} not in /metrics"))
}

/// Runs the conformance worker with shared memory on or off.
fn conformance(shared_memory: bool) {
    let instance = if shared_memory {
        "conform-shm"
    } else {
        "conform-inline"
    };
    let broker = Mosquitto::start();
    let results = Subscriber::connect(broker.port, &format!("care/inferences/{instance}/#"));
    let control = Subscriber::connect(broker.port, &format!("care/health/{instance}"));
    let dir = tempfile::tempdir().expect("tempdir");
    let alt = dir.path().join("alt.onnx");
    std::fs::write(&alt, b"not really a model").expect("write");
    let script = common::repo_root().join("crates/orion/tests/workers/conformance_worker.py");
    let _daemon = Daemon::start(&common::config(instance, &broker.url(), |c| {
        common::set(
            c,
            "workers.person_detector.command",
            serde_norway::to_value(vec![
                common::venv_python(),
                script.to_string_lossy().into_owned(),
            ])
            .expect("command"),
        );
        common::set(c, "workers.person_detector.shared_memory", shared_memory);
        common::catalog_entry(c, "alt", &alt);
    }));
    // Its own data, on the topic of the type it announced.
    let (topic, first) = results.wait_for(Duration::from_secs(60), |t, p| {
        Some((t.to_string(), serde_json::from_slice::<Value>(p).ok()?))
    });
    assert_eq!(topic, format!("care/inferences/{instance}/conformance"));
    let data = &first["data"];
    assert_eq!(
        data["via"],
        if shared_memory { "shm" } else { "inline" },
        "{first}"
    );
    assert!(
        data["mean_green"].as_f64().expect("mean_green") > 10.0,
        "it read real pixels: {first}"
    );
    assert_eq!(data["camera"], instance);
    assert!(
        first["data"].get("detections").is_none(),
        "data in place of detections"
    );
    // A model swap.
    let reply = control.command(
        instance,
        json!({"command": "set_model_size", "params": {"size": "alt"}}),
    );
    assert_eq!(reply["success"], true, "{reply}");
    results.wait_for(Duration::from_secs(20), |_, p| {
        let v: Value = serde_json::from_slice(p).ok()?;
        (v["model"]["name"] == "alt").then_some(())
    });
    let status = control.command(instance, json!({"command": "get_status"}));
    assert_eq!(status["data"]["inference"]["model"], "alt", "{status}");
}

#[test]
fn a_worker_written_from_the_doc_alone_works_inline() {
    conformance(false);
}

#[test]
fn a_worker_written_from_the_doc_alone_works_through_shared_memory() {
    conformance(true);
}

#[test]
fn a_command_answered_too_late_never_changes_state_and_the_worker_is_restarted() {
    let broker = Mosquitto::start();
    let results = Subscriber::connect(broker.port, "care/inferences/late/#");
    let control = Subscriber::connect(broker.port, "care/health/late");
    let dir = tempfile::tempdir().expect("tempdir");
    let good = dir.path().join("good.onnx");
    std::fs::write(&good, b"fake").expect("write");
    let pidfile = dir.path().join("pids");
    let daemon = Daemon::start(&common::config("late", &broker.url(), |c| {
        common::use_fake_worker(c, "slowswap", &pidfile);
        common::set(c, "workers.person_detector.startup_timeout_s", 3.0);
        common::catalog_entry(c, "good", &good);
    }));
    results.wait_for(Duration::from_secs(60), |_, _| Some(()));
    let started = Instant::now();
    // slowswap answers after 10 s: too late for 3 s.
    let reply = control.command(
        "late",
        json!({"command": "set_model_size", "params": {"size": "good"}}),
    );
    assert_eq!(reply["success"], false, "{reply}");
    let message = reply["message"].as_str().expect("message");
    assert!(message.contains("no answer within 3s"), "{message}");
    assert!(
        message.contains("ssdlite kept") || message.contains("model ssdlite"),
        "{message}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(9),
        "answered at the timeout, not at the late answer"
    );
    // The worker was restarted with the model the daemon has; results go on.
    common::wait_until("the worker restarted", Duration::from_secs(20), || {
        (pids(&pidfile) >= 2).then_some(())
    });
    results.drain();
    results.wait_for(Duration::from_secs(30), |_, _| Some(()));
    // Past the time the late answer would have come: nothing changed.
    std::thread::sleep(Duration::from_secs(10).saturating_sub(started.elapsed()));
    let status = control.command("late", json!({"command": "get_status"}));
    assert_eq!(status["data"]["inference"]["model"], "ssdlite", "{status}");
    let log = daemon.log();
    assert!(
        !log.contains("model swapped"),
        "a late answer changed state:\n{log}"
    );
    assert!(
        log.contains("no answer to command set_model within 3s"),
        "{log}"
    );
}

#[test]
fn a_command_handled_on_the_main_loop_is_not_a_hang() {
    let broker = Mosquitto::start();
    let results = Subscriber::connect(broker.port, "care/inferences/blocking/#");
    let control = Subscriber::connect(broker.port, "care/health/blocking");
    let dir = tempfile::tempdir().expect("tempdir");
    let good = dir.path().join("good.onnx");
    std::fs::write(&good, b"fake").expect("write");
    let pidfile = dir.path().join("pids");
    let daemon = Daemon::start(&common::config("blocking", &broker.url(), |c| {
        // Loads for 10 s on its main loop, frames waiting; the hang floor is 2 s.
        common::use_fake_worker(c, "slowswap", &pidfile);
        common::set(c, "workers.person_detector.startup_timeout_s", 15.0);
        common::set(c, "workers.person_detector.hang_timeout_floor_s", 2.0);
        common::catalog_entry(c, "good", &good);
    }));
    results.wait_for(Duration::from_secs(60), |_, _| Some(()));
    let reply = control.command(
        "blocking",
        json!({"command": "set_model_size", "params": {"size": "good"}}),
    );
    assert_eq!(reply["success"], true, "{reply}");
    assert_eq!(pids(&pidfile), 1, "not restarted");
    assert_eq!(worker_counter(&daemon, "orion_worker_hangs_total"), 0.0);
    results.drain();
    results.wait_for(Duration::from_secs(20), |_, _| Some(()));
}

#[test]
fn invalid_results_are_counted_and_never_published() {
    let broker = Mosquitto::start();
    let results = Subscriber::connect(broker.port, "care/inferences/invalid/#");
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start(&common::config("invalid", &broker.url(), |c| {
        common::use_fake_worker(c, "invalid", &dir.path().join("pids"));
    }));
    let until = Instant::now() + Duration::from_secs(60);
    let mut published = Vec::new();
    while published.len() < 6 && Instant::now() < until {
        if let Ok((_, p)) = results.rx.recv_timeout(Duration::from_secs(1)) {
            published.push(serde_json::from_slice::<Value>(&p).expect("json"));
        }
    }
    assert!(published.len() >= 6, "valid results still published");
    for r in &published {
        let d = &r["data"]["detections"];
        assert_eq!(d.as_array().map(Vec::len), Some(1), "{r}");
        assert_eq!(r["data"]["count"], 1, "{r}");
        assert!(
            d[0]["confidence"].as_f64().expect("confidence") <= 1.0,
            "{r}"
        );
        assert!(r["timing"]["total_ms"].as_f64().is_some(), "{r}");
        let x = d[0]["bbox"]["x"].as_f64().expect("x");
        assert!(x < 640.0, "{r}");
    }
    // Frames with an even sequence number broke the contract (which ones are
    // inferred depends on the gate): each is counted.
    common::wait_until("4 protocol errors counted", Duration::from_secs(30), || {
        (worker_counter(&daemon, "orion_worker_protocol_errors_total") >= 4.0).then_some(())
    });
    assert_eq!(
        worker_counter(&daemon, "orion_worker_restarts_total"),
        0.0,
        "the stream is fine: no restart"
    );
    let log = daemon.log();
    assert!(
        log.contains("worker protocol error: invalid result for frame"),
        "{log}"
    );
}

#[test]
fn a_result_of_another_type_is_not_published() {
    let broker = Mosquitto::start();
    let results = Subscriber::connect(broker.port, "care/inferences/othertype/#");
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start(&common::config("othertype", &broker.url(), |c| {
        common::use_fake_worker(c, "othertype", &dir.path().join("pids"));
    }));
    let mut topics = std::collections::BTreeSet::new();
    let until = Instant::now() + Duration::from_secs(60);
    let mut n = 0;
    while n < 6 && Instant::now() < until {
        if let Ok((t, _)) = results.rx.recv_timeout(Duration::from_secs(1)) {
            topics.insert(t);
            n += 1;
        }
    }
    assert!(n >= 6, "the announced type is still published");
    assert_eq!(
        topics.into_iter().collect::<Vec<_>>(),
        ["care/inferences/othertype/fake_detection"],
        "only the type announced in ready"
    );
    common::wait_until("3 protocol errors counted", Duration::from_secs(30), || {
        (worker_counter(&daemon, "orion_worker_protocol_errors_total") >= 3.0).then_some(())
    });
    assert!(
        daemon
            .log()
            .contains("inference_type `other_type` but the worker announced `fake_detection`")
    );
}

/// A model without NMS: 10,000 boxes a result, people coming and going in a
/// flood. Each result is published with the 100 most confident (counted as a
/// protocol error), the events are held to the camera's rate (the excess
/// counted, health says so), memory stays bounded and the daemon stops in time.
#[test]
fn a_runaway_model_is_held_to_the_detection_bound_and_the_event_rate() {
    let broker = Mosquitto::start();
    let results = Subscriber::connect(broker.port, "care/inferences/swarm/#");
    let dir = tempfile::tempdir().expect("tempdir");
    let started = Instant::now();
    let mut daemon = Daemon::start(&common::config("swarm", &broker.url(), |c| {
        common::use_fake_worker(c, "swarm", &dir.path().join("pids"));
        common::set(c, "outbox.max_events_per_minute", 60);
        common::set(c, "shutdown_timeout_s", 10.0);
    }));
    let until = Instant::now() + Duration::from_secs(60);
    let mut published = 0;
    while published < 6 && Instant::now() < until {
        if let Ok((_, p)) = results.rx.recv_timeout(Duration::from_secs(1)) {
            let r: Value = serde_json::from_slice(&p).expect("json");
            let n = r["data"]["detections"].as_array().map_or(0, Vec::len);
            assert_eq!(n, 100, "the most confident, at most 100");
            assert_eq!(r["data"]["count"], 100);
            let all_confident = r["data"]["detections"]
                .as_array()
                .is_some_and(|d| d.iter().all(|d| d["confidence"] == 0.9));
            assert!(all_confident, "the most confident are kept");
            published += 1;
        }
    }
    assert!(published >= 6, "results are published (each fits a packet)");
    assert!(worker_counter(&daemon, "orion_worker_protocol_errors_total") >= 6.0);
    let suppressed = "orion_events_suppressed_total{camera=\"swarm\"}";
    common::wait_until("events beyond the rate", Duration::from_secs(60), || {
        (daemon.series(suppressed)? > 0.0).then_some(())
    });
    let (_, readiness) = daemon.http_get("/readiness").expect("readiness");
    assert!(readiness.contains("event flood"), "{readiness}");
    // Stored: the burst of a minute's worth, then about one a second.
    let stored: f64 = ["person_entered", "person_left", "occupancy_changed"]
        .iter()
        .filter_map(|t| {
            daemon.series(&format!(
                "orion_events_total{{camera=\"swarm\",type=\"{t}\"}}"
            ))
        })
        .sum();
    let rss_mb = daemon.rss_kb() as f64 / 1024.0;
    eprintln!(
        "events stored {stored}, suppressed {:?}, RSS {rss_mb:.0} MB",
        daemon.series(suppressed)
    );
    assert!(rss_mb < 300.0, "memory bounded: {rss_mb:.0} MB");
    let allowed = 60.0 + started.elapsed().as_secs_f64() + 2.0;
    assert!(
        stored <= allowed,
        "{stored} events stored, at most {allowed}"
    );
    daemon.signal(libc::SIGTERM);
    let status = daemon
        .wait_exit(Duration::from_secs(15))
        .expect("stops in time");
    assert!(status.success(), "{status:?}");
}

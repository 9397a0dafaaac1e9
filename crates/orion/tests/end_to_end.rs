//! End to end with real parts: Mosquitto on an ephemeral port, `oriond` on the demo
//! video through GStreamer, the real Python worker and model; then SIGTERM.

mod common;

use std::time::Duration;

use common::{Daemon, Mosquitto, Subscriber};

#[test]
fn detections_flow_to_mqtt_and_sigterm_shuts_down_cleanly() {
    let broker = Mosquitto::start();
    let sub = Subscriber::connect(broker.port, "care/inferences/e2e-test/#");
    let mut daemon = Daemon::start(&common::config("e2e-test", &broker.url(), |_| {}));

    // A person detection with a sane box, within a bounded time.
    let msg: serde_json::Value = sub.wait_for(Duration::from_secs(60), |topic, payload| {
        assert_eq!(topic, "care/inferences/e2e-test/person_detection");
        let v: serde_json::Value =
            serde_json::from_slice(payload).expect("inference message is JSON");
        (v["data"]["count"].as_u64() >= Some(1)).then_some(v)
    });
    assert_eq!(msg["instance_id"], "e2e-test");
    assert_eq!(msg["room_id"], "test-room");
    assert_eq!(msg["inference_type"], "person_detection");
    assert_eq!(msg["roi"]["source"], "full_frame");
    assert!(msg["frame_seq"].as_u64() > Some(0));
    let det = &msg["data"]["detections"][0];
    assert_eq!(det["class"], "person");
    assert!(det["confidence"].as_f64().unwrap() >= 0.5);
    let b = &det["bbox"];
    let [x, y, w, h] = common::bbox(b);
    // The demo's person is 360 px tall standing on the floor of a 640x480 frame.
    assert!(
        x >= 0.0 && y >= 0.0 && x + w <= 640.0 + 1e-6 && y + h <= 480.0 + 1e-6,
        "{b}"
    );
    assert!(
        h > 200.0 && w > 100.0,
        "box too small for the demo person: {b}"
    );
    let e2e = msg["e2e_latency_ms"].as_f64().unwrap();
    let total = msg["timing"]["total_ms"].as_f64().unwrap();
    assert!(
        total > 0.0 && e2e >= total && e2e < 5_000.0,
        "e2e {e2e} total {total}"
    );

    // Health and metrics report what happened.
    let (code, body) = daemon.http_get("/readiness").expect("readiness answers");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"status\":\"healthy\""), "{body}");
    let (code, metrics) = daemon.http_get("/metrics").expect("metrics answer");
    assert_eq!(code, 200);
    let inferences: u64 = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix("orion_worker_inferences_total{worker=\"person_detector-0\"} ")
        })
        .and_then(|v| v.parse().ok())
        .expect("inference counter present");
    assert!(inferences >= 1, "{metrics}");
    assert!(
        metrics.contains("orion_frames_gated_total{camera=\"e2e-test\"} "),
        "every camera series carries its camera label: {metrics}"
    );
    // The fastest runtime on this machine runs the model (measured: any of
    // them may win), and every place says the same.
    let backend = msg["model"]["backend"].as_str().expect("backend named");
    common::runtime_option(backend);
    assert!(
        metrics.contains(&format!(
            "orion_worker_backend_info{{worker=\"person_detector-0\",backend=\"{backend}\"}} 1"
        )),
        "{metrics}"
    );
    // The page is real Prometheus exposition: the reference parser reads all of it.
    let parsed = common::prometheus_families(&metrics);
    for family in [
        "orion_frames_captured",
        "orion_framebus_frames_dropped",
        "orion_e2e_latency_seconds",
        "orion_inference_duration_seconds",
        "orion_worker_restarts",
        "orion_worker_backend_info",
    ] {
        assert!(
            parsed.contains(&family.to_string()),
            "{family} missing from {parsed:?}"
        );
    }

    let workers = common::children_of(daemon.pid());
    assert!(
        !workers.is_empty(),
        "a worker process runs under the daemon"
    );

    daemon.signal(libc::SIGTERM);
    let status = daemon
        .wait_exit(Duration::from_secs(5 + 2))
        .expect("oriond exits within shutdown_timeout_s");
    assert!(status.success(), "exit status {status:?}\n{}", daemon.log());
    for pid in workers {
        common::wait_until("worker process gone", Duration::from_secs(2), || {
            (!common::alive(pid)).then_some(())
        });
    }
    let log = daemon.log();
    assert!(log.contains("shutdown complete"), "{log}");
    assert!(log.contains(&format!("backend=\"{backend}\"")), "{log}");
    assert!(
        log.contains(&format!("runtime=\"{}: ", common::runtime_option(backend))),
        "the log says which runtime and why: {log}"
    );
    assert!(
        log.contains("shared_memory=true"),
        "the shipped worker takes frames from shared memory: {log}"
    );
}

#[test]
fn health_serves_during_warmup_and_test_source_reports_frames() {
    // The test source needs no file; a long warm-up keeps the daemon "not running"
    // so readiness must answer 503 while liveness answers 200.
    let broker = Mosquitto::start();
    let config = common::config("warmup-test", &broker.url(), |c| {
        common::set(c, "camera.source", "test");
        common::set(c, "stream.warmup_duration_s", 30);
    });
    let mut daemon = Daemon::start(&config);
    let (code, _) = common::wait_until("health endpoint", Duration::from_secs(20), || {
        daemon.http_get("/health")
    });
    assert_eq!(code, 200);
    let (code, body) = daemon.http_get("/readiness").expect("readiness");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("unhealthy"), "{body}");
    common::wait_until(
        "frames from the test source",
        Duration::from_secs(20),
        || {
            let n = daemon.metric("orion_frames_captured_total")?;
            (n > 5.0).then_some(())
        },
    );
    // The worker loads its model during the warm-up, not after it: it is up
    // while the daemon still warms up.
    common::wait_until(
        "the worker up during the warm-up",
        Duration::from_secs(25),
        || {
            let up = daemon.series("orion_worker_up{worker=\"person_detector-0\"}")?;
            (up == 1.0).then_some(())
        },
    );
    let (code, body) = daemon.http_get("/readiness").expect("readiness");
    assert_eq!(code, 503, "still warming up: {body}");
    assert!(!daemon.log().contains("warm-up done"), "{}", daemon.log());
    // Shutdown during warm-up is as orderly as any other.
    daemon.signal(libc::SIGINT);
    let status = daemon
        .wait_exit(Duration::from_secs(7))
        .expect("exits during warm-up");
    assert!(status.success(), "{status:?}\n{}", daemon.log());
}

#[test]
fn bad_config_exits_non_zero_with_the_problem() {
    let mut daemon = Daemon::start("stream: { width: 641 }\nhealth: { listen: \"{health}\" }\n");
    let status = daemon.wait_exit(Duration::from_secs(10)).expect("exits");
    assert!(!status.success());
    assert!(
        daemon
            .log()
            .contains("stream.width: 641 must be a multiple of 4"),
        "{}",
        daemon.log()
    );
}

#[test]
fn early_start_up_failures_exit_with_their_message_and_leave_nothing() {
    let broker = Mosquitto::start();
    // The health port taken by someone else.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let config = common::config("e2e-early", &broker.url(), |c| {
        common::set(c, "health.listen", format!("127.0.0.1:{port}"));
    });
    let mut daemon = Daemon::start(&config);
    let status = daemon.wait_exit(Duration::from_secs(15)).expect("exits");
    assert!(!status.success());
    assert!(
        daemon.log().contains(&format!(
            "cannot listen for health HTTP on 127.0.0.1:{port}: Address already in use"
        )),
        "{}",
        daemon.log()
    );
    // A CA file that is not PEM: refused when TLS is set up, after the health
    // server started; it goes with the process (its port is free again).
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "not a certificate").expect("write");
    let config = common::config("e2e-early", &broker.url(), |c| {
        common::set(c, "mqtt.tls.enabled", true);
        common::set(c, "mqtt.tls.ca_file", ca.to_string_lossy().into_owned());
    });
    let mut daemon = Daemon::start(&config);
    let status = daemon.wait_exit(Duration::from_secs(15)).expect("exits");
    assert!(!status.success());
    let log = daemon.log();
    assert!(log.contains("fatal: mqtt.tls"), "{log}");
    assert!(log.contains("health HTTP listening"), "{log}");
    std::net::TcpListener::bind(("127.0.0.1", daemon.health_port))
        .expect("the health port is free after the exit");
}

#[test]
fn two_workers_share_the_frames_without_duplicate_work() {
    let broker = Mosquitto::start();
    let sub = Subscriber::connect(broker.port, "care/inferences/e2e-two/#");
    let daemon = Daemon::start(&common::config("e2e-two", &broker.url(), |c| {
        common::set(c, "workers.person_detector.count", 2);
        // A paced file (as fast as the workers go): every decoded frame is offered
        // and taken, none dropped.
        common::set(c, "camera.realtime", false);
        common::set(c, "models.person_detector.max_inference_rate_hz", 1000);
    }));
    let mut seqs = std::collections::BTreeSet::new();
    let mut workers = std::collections::BTreeSet::new();
    while seqs.len() < 40 {
        let (seq, worker) = sub.wait_for(Duration::from_secs(60), |_, p| {
            let v: serde_json::Value = serde_json::from_slice(p).ok()?;
            Some((
                v["frame_seq"].as_u64()?,
                v["worker_id"].as_str()?.to_string(),
            ))
        });
        assert!(seqs.insert(seq), "frame {seq} was inferred twice");
        workers.insert(worker);
    }
    assert_eq!(workers.len(), 2, "both workers took frames: {workers:?}");
    // Paced: consecutive frames, none skipped between the first and the last.
    let (first, last) = (*seqs.first().unwrap(), *seqs.last().unwrap());
    assert!(
        last - first < seqs.len() as u64 + 2,
        "frames skipped: {first}..={last} for {} results",
        seqs.len()
    );
    // Never gated, however fast the frames come (workers take the next frame
    // well under a millisecond after the last).
    assert_eq!(daemon.metric("orion_frames_gated_total"), Some(0.0));
}

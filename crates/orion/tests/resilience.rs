//! Faults with real parts: workers that are killed, frozen, always crash or write
//! garbage; a broker that goes away and comes back; shutdown in the middle of it.
// Signals are syscalls.
#![allow(unsafe_code)]

mod common;

use std::time::Duration;

use common::{Daemon, Mosquitto, Subscriber};
use serde_json::Value;

fn result_after(results: &Subscriber, since: f64, timeout: Duration) -> Value {
    results.result_after(since, timeout, |_| true)
}

fn signal(pid: i32, sig: i32) {
    // SAFETY: kill(2) on a pid we just read from the daemon's children.
    assert_eq!(unsafe { libc::kill(pid, sig) }, 0, "kill({pid}, {sig})");
}

fn worker_pid(daemon: &Daemon) -> i32 {
    common::wait_until("a worker process", Duration::from_secs(30), || {
        common::children_of(daemon.pid()).into_iter().next()
    })
}

#[test]
fn killed_and_frozen_workers_are_replaced_and_results_resume() {
    let broker = Mosquitto::start();
    let results = Subscriber::connect(broker.port, "care/inferences/res-worker/#");
    // A cache of its own: the first worker measures the runtimes and
    // compiles the model; each restarted one reuses both.
    let cache = tempfile::tempdir().expect("cache dir");
    let cache_dir = cache.path().to_string_lossy().into_owned();
    let daemon = Daemon::start_with_env(
        &common::config("res-worker", &broker.url(), |c| {
            common::set(c, "workers.person_detector.hang_timeout_floor_s", 1.0);
            common::set(c, "workers.person_detector.restart_backoff_max_s", 1.0);
        }),
        &[("ORION_CACHE_DIR", &cache_dir)],
    );
    result_after(&results, 0.0, Duration::from_secs(60));
    let choices = |log: &str| -> Vec<String> {
        log.lines()
            .filter(|l| l.contains("worker runtime"))
            .map(str::to_string)
            .collect()
    };
    let first_choice = choices(&daemon.log());
    assert!(
        first_choice.len() == 1
            && first_choice[0].contains("fastest of")
            && first_choice[0].contains("(measured "),
        "{first_choice:?}"
    );
    assert!(cache.path().join("runtime-choice.json").is_file());
    let compiled = std::fs::read_dir(cache.path().join("openvino"))
        .expect("OpenVINO's model cache")
        .count();
    assert!(compiled >= 1, "compiled models are kept");

    // SIGKILL: noticed at once, restarted, results again.
    let first = worker_pid(&daemon);
    signal(first, libc::SIGKILL);
    let t = common::now_s();
    common::wait_until(
        "the killed worker restarted",
        Duration::from_secs(20),
        || (daemon.metric("orion_worker_restarts_total")? >= 1.0).then_some(()),
    );
    result_after(&results, t, Duration::from_secs(30));
    assert!(!common::alive(first));
    // The restarted worker took the remembered choice (nothing measured).
    let log = daemon.log();
    let again = choices(&log);
    assert!(
        again.len() == 2 && again[1].contains("(remembered from "),
        "{again:?}"
    );

    // SIGSTOP: a hung worker (alive, silent) is detected, killed and replaced.
    let second = worker_pid(&daemon);
    assert_ne!(first, second);
    signal(second, libc::SIGSTOP);
    let t = common::now_s();
    common::wait_until(
        "the frozen worker detected as hung",
        Duration::from_secs(20),
        || (daemon.metric("orion_worker_hangs_total")? >= 1.0).then_some(()),
    );
    result_after(&results, t, Duration::from_secs(30));
    common::wait_until("the frozen worker killed", Duration::from_secs(5), || {
        (!common::alive(second)).then_some(())
    });
}

#[test]
fn a_worker_that_always_crashes_stops_being_restarted_and_says_so() {
    let broker = Mosquitto::start();
    let health = Subscriber::connect(broker.port, "care/health/res-crash");
    let daemon = Daemon::start(&common::config("res-crash", &broker.url(), |c| {
        let cmd: Vec<serde_norway::Value> = [
            common::venv_python().as_str(),
            "-c",
            "import sys; print('[ERROR] cannot start', file=sys.stderr); sys.exit(3)",
        ]
        .iter()
        .map(|s| (*s).into())
        .collect();
        common::set(
            c,
            "workers.person_detector.command",
            serde_norway::Value::Sequence(cmd),
        );
        common::set(c, "workers.person_detector.max_restarts", 3);
        common::set(c, "workers.person_detector.restart_backoff_max_s", 1.0);
    }));
    let alert = health.wait_for(Duration::from_secs(60), |_, p| {
        let v: Value = serde_json::from_slice(p).ok()?;
        (v["type"] == "error").then_some(v)
    });
    assert_eq!(alert["source"], "worker");
    assert_eq!(alert["id"], "person_detector-0");
    assert!(
        alert["message"]
            .as_str()
            .unwrap()
            .contains("restarts stopped"),
        "{alert}"
    );
    // Its only worker failed for good: the daemon cannot do its job.
    let (code, body) = daemon.http_get("/readiness").unwrap();
    assert_eq!(code, 503, "{body}");
    assert!(
        body.contains("\"status\":\"unhealthy\"") && body.contains("failed (restarts stopped)"),
        "{body}"
    );
    assert_eq!(daemon.metric("orion_worker_failed"), Some(1.0));
    // No restart storm: the count stays where it stopped.
    let restarts = daemon.metric("orion_worker_restarts_total").unwrap();
    assert_eq!(restarts, 2.0, "3 failures = the first start and 2 restarts");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(daemon.metric("orion_worker_restarts_total"), Some(restarts));
    assert!(
        daemon.log().contains("cannot start"),
        "worker stderr reaches the log"
    );
    // The log counts restarts the way the metric does.
    let log = daemon.log();
    assert_eq!(log.matches("worker failed; restarting").count(), 2, "{log}");
    assert!(
        log.contains("restart=2") && log.contains("restarts stopped after 2 restart(s)"),
        "{log}"
    );
}

#[test]
fn garbage_on_worker_stdout_restarts_it_without_growing_memory() {
    for mode in ["garbage", "random", "truncated"] {
        let dir = tempfile::tempdir().unwrap();
        let pids = dir.path().join("pids");
        let broker = Mosquitto::start();
        let daemon = Daemon::start(&common::config(
            &format!("res-{mode}"),
            &broker.url(),
            |c| {
                common::use_fake_worker(c, mode, &pids);
                common::set(c, "workers.person_detector.max_restarts", 1000);
                common::set(c, "workers.person_detector.restart_backoff_max_s", 1.0);
                common::set(c, "workers.person_detector.hang_timeout_floor_s", 2.0);
            },
        ));
        let restarts = |n: f64| {
            common::wait_until(
                &format!("{mode}: {n} restarts"),
                Duration::from_secs(60),
                || (daemon.metric("orion_worker_restarts_total")? >= n).then_some(()),
            )
        };
        restarts(2.0);
        let before = daemon.rss_kb();
        restarts(6.0);
        let after = daemon.rss_kb();
        assert!(
            after < before + 10 * 1024,
            "{mode}: RSS grew from {before} KiB to {after} KiB over 4 restarts"
        );
        assert!(daemon.metric("orion_worker_errors_total") >= Some(6.0));
        let log = daemon.log();
        let expected = match mode {
            "garbage" => "exceeds the maximum",
            "truncated" => "closed its output",
            _ => "broke the protocol",
        };
        assert!(log.contains(expected), "{mode}: no `{expected}` in the log");
    }
}

#[test]
fn broker_outage_degrades_drops_and_recovers_with_bounded_memory() {
    let broker = Mosquitto::start();
    let port = broker.port;
    let results = Subscriber::connect(port, "care/inferences/res-broker/#");
    let daemon = Daemon::start(&common::config("res-broker", &broker.url(), |_| {}));
    result_after(&results, 0.0, Duration::from_secs(60));
    drop(results);
    let rss_before = daemon.rss_kb();

    broker.kill();
    common::wait_until(
        "degraded while the broker is away",
        Duration::from_secs(20),
        || {
            let (code, body) = daemon.http_get("/readiness")?;
            // A broker outage is degraded, still ready: results resume after it.
            (body.contains("mqtt disconnected") && body.contains("\"status\":\"degraded\""))
                .then(|| assert_eq!(code, 200, "{body}"))
        },
    );
    let dropped = daemon.metric("orion_mqtt_dropped_total").unwrap();
    common::wait_until(
        "results dropped and counted meanwhile",
        Duration::from_secs(20),
        || (daemon.metric("orion_mqtt_dropped_total")? >= dropped + 5.0).then_some(()),
    );
    // Capture and inference go on without the broker.
    let inferences = daemon.metric("orion_e2e_results_total").unwrap();
    common::wait_until("inference continues", Duration::from_secs(20), || {
        (daemon.metric("orion_e2e_results_total")? > inferences + 3.0).then_some(())
    });

    let _broker = Mosquitto::start_on(port, |_| "allow_anonymous true\n".to_string());
    let results = Subscriber::connect(port, "care/inferences/res-broker/#");
    let status = Subscriber::connect(port, "care/status/res-broker");
    result_after(&results, common::now_s(), Duration::from_secs(40));
    // Presence is published again after the reconnection.
    status.wait_for(Duration::from_secs(10), |_, p| {
        let v: Value = serde_json::from_slice(p).ok()?;
        (v["state"] == "online").then_some(())
    });
    let (code, body) = daemon.http_get("/readiness").unwrap();
    assert!(
        code == 200 && body.contains("\"status\":\"healthy\""),
        "{body}"
    );
    assert!(daemon.metric("orion_mqtt_reconnects_total") >= Some(1.0));
    let rss_after = daemon.rss_kb();
    assert!(
        rss_after < rss_before + 10 * 1024,
        "RSS grew from {rss_before} KiB to {rss_after} KiB across the outage"
    );
}

#[test]
fn sigterm_with_a_frozen_worker_still_exits_in_time_and_leaves_nothing() {
    let broker = Mosquitto::start();
    let results = Subscriber::connect(broker.port, "care/inferences/res-frozen/#");
    let mut daemon = Daemon::start(&common::config("res-frozen", &broker.url(), |_| {}));
    result_after(&results, 0.0, Duration::from_secs(60));
    let worker = worker_pid(&daemon);
    signal(worker, libc::SIGSTOP);
    daemon.signal(libc::SIGTERM);
    let status = daemon
        .wait_exit(Duration::from_secs(5 + 1))
        .expect("exits within shutdown_timeout_s");
    assert!(status.success(), "{status:?}\n{}", daemon.log());
    common::wait_until("the frozen worker is gone", Duration::from_secs(2), || {
        (!common::alive(worker)).then_some(())
    });
}

#[test]
fn sigterm_while_the_broker_is_down_still_exits_in_time() {
    let broker = Mosquitto::start();
    let results = Subscriber::connect(broker.port, "care/inferences/res-nobroker/#");
    let mut daemon = Daemon::start(&common::config("res-nobroker", &broker.url(), |_| {}));
    result_after(&results, 0.0, Duration::from_secs(60));
    let worker = worker_pid(&daemon);
    drop(results);
    broker.kill();
    common::wait_until("broker loss noticed", Duration::from_secs(20), || {
        (daemon.metric("orion_mqtt_connected")? == 0.0).then_some(())
    });
    daemon.signal(libc::SIGTERM);
    let status = daemon
        .wait_exit(Duration::from_secs(5 + 1))
        .expect("exits within shutdown_timeout_s");
    assert!(status.success(), "{status:?}\n{}", daemon.log());
    common::wait_until("the worker is gone", Duration::from_secs(2), || {
        (!common::alive(worker)).then_some(())
    });
}

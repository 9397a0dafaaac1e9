//! RTSP ingest with a real gst-rtsp-server camera: detections, credentials that
//! never leak, reconnection after an outage, stall detection, H.265.

mod common;

use std::time::Duration;

use common::{Daemon, Mosquitto, RtspServer, Subscriber};
use serde_json::{Value, json};

const CAM_USER: &str = "camuser";
const CAM_PASSWORD: &str = "campw-91c3-secret";

fn rtsp_config(instance: &str, broker: &str, url: &str, stall_s: f64) -> String {
    let url = url.to_string();
    common::config(instance, broker, move |c| {
        common::set(c, "camera.source", "rtsp");
        common::set(c, "camera.rtsp_url", url);
        common::set(c, "camera.reconnect_backoff_max_s", 2.0);
        common::set(c, "stream.stall_timeout_s", stall_s);
    })
}

fn person_after(results: &Subscriber, since: f64, timeout: Duration) -> Value {
    results.result_after(since, timeout, |v| v["data"]["count"].as_u64() >= Some(1))
}

fn camera_state(status: &Subscriber, wanted: &[&str], timeout: Duration) -> String {
    status.wait_for(timeout, |_, p| {
        let v: Value = serde_json::from_slice(p).ok()?;
        let camera = v["camera"].as_str()?;
        wanted.contains(&camera).then(|| camera.to_string())
    })
}

#[test]
fn rtsp_detections_survive_a_camera_outage_and_credentials_never_leak() {
    let port = common::free_port();
    let camera = RtspServer::start(port, &["--user", CAM_USER, "--password", CAM_PASSWORD]);
    let broker = Mosquitto::start();
    let results = Subscriber::connect(broker.port, "care/inferences/rtsp-out/#");
    let status = Subscriber::connect(broker.port, "care/status/rtsp-out");
    let replies = Subscriber::connect(broker.port, "care/health/rtsp-out");
    let url = format!("rtsp://{CAM_USER}:{CAM_PASSWORD}@127.0.0.1:{port}/cam");
    let daemon = Daemon::start(&rtsp_config("rtsp-out", &broker.url(), &url, 5.0));

    let r = person_after(&results, 0.0, Duration::from_secs(60));
    assert!(
        r["data"]["detections"][0]["confidence"].as_f64() >= Some(0.5),
        "{r}"
    );
    assert_eq!(
        camera_state(&status, &["streaming"], Duration::from_secs(10)),
        "streaming"
    );

    // The camera goes away until a reconnection has been refused.
    camera.kill();
    let state = camera_state(
        &status,
        &["reconnecting", "stalled"],
        Duration::from_secs(20),
    );
    let (code, body) = daemon.http_get("/readiness").expect("readiness");
    assert_eq!(code, 200);
    assert!(body.contains("\"status\":\"degraded\""), "{state}: {body}");
    // Why, in words: the reconnection attempts are refused.
    common::wait_until("a refused reconnection", Duration::from_secs(30), || {
        let down = replies.command("rtsp-out", json!({"command": "get_status"}));
        (down["data"]["stream"]["last_error"] == "connection refused").then_some(())
    });
    let back = common::now_s();
    let _camera = RtspServer::start(port, &["--user", CAM_USER, "--password", CAM_PASSWORD]);

    // The daemon reconnects by itself and detects again.
    person_after(&results, back, Duration::from_secs(40));
    camera_state(&status, &["streaming"], Duration::from_secs(10));
    assert!(daemon.metric("orion_stream_reconnects_total") >= Some(1.0));
    assert!(daemon.metric("orion_stream_input_bytes_total") > Some(0.0));

    // Credentials are nowhere: not in the status reply, the metrics or the log.
    let s = replies.command("rtsp-out", json!({"command": "get_status"}));
    assert_eq!(
        s["data"]["config"]["camera"]["rtsp_url"],
        format!("rtsp://***@127.0.0.1:{port}/cam")
    );
    assert!(s["data"]["stream"]["reconnects"].as_u64() >= Some(1));
    let all = format!(
        "{s}{}{}",
        daemon.http_get("/metrics").unwrap().1,
        daemon.log()
    );
    assert!(!all.contains(CAM_PASSWORD), "camera password leaked");
    assert!(
        !all.contains(&format!("{CAM_USER}:")),
        "camera credentials leaked"
    );
}

#[test]
fn a_camera_that_stops_sending_is_detected_as_stalled_and_reconnected() {
    let port = common::free_port();
    // Every session streams for 2 s, then keeps the connection open and goes quiet.
    let _camera = RtspServer::start(port, &["--stall-after", "2"]);
    let broker = Mosquitto::start();
    let results = Subscriber::connect(broker.port, "care/inferences/rtsp-stall/#");
    let status = Subscriber::connect(broker.port, "care/status/rtsp-stall");
    let url = format!("rtsp://127.0.0.1:{port}/cam");
    let daemon = Daemon::start(&rtsp_config("rtsp-stall", &broker.url(), &url, 2.0));
    person_after(&results, 0.0, Duration::from_secs(60));
    camera_state(&status, &["stalled"], Duration::from_secs(20));
    common::wait_until("a stall counted", Duration::from_secs(10), || {
        (daemon.metric("orion_stream_stalls_total")? >= 1.0).then_some(())
    });
    // Treated like a disconnect: a new session, frames (and people) again.
    let after_stall = common::now_s();
    person_after(&results, after_stall, Duration::from_secs(30));
    assert!(daemon.metric("orion_stream_reconnects_total") >= Some(1.0));
}

#[test]
fn h265_camera() {
    let port = common::free_port();
    let _camera = RtspServer::start(port, &["--codec", "h265"]);
    let broker = Mosquitto::start();
    let results = Subscriber::connect(broker.port, "care/inferences/rtsp-h265/#");
    let url = format!("rtsp://127.0.0.1:{port}/cam");
    let _daemon = Daemon::start(&rtsp_config("rtsp-h265", &broker.url(), &url, 10.0));
    let r = person_after(&results, 0.0, Duration::from_secs(60));
    let b = common::bbox(&r["data"]["detections"][0]["bbox"]);
    assert!(
        b[0] >= 0.0 && b[1] >= 0.0 && b[0] + b[2] <= 640.5 && b[1] + b[3] <= 480.5,
        "{r}"
    );
}

#[test]
fn wrong_camera_credentials_are_said_in_words() {
    let port = common::free_port();
    let _camera = RtspServer::start(port, &["--user", CAM_USER, "--password", CAM_PASSWORD]);
    let broker = Mosquitto::start();
    let status = Subscriber::connect(broker.port, "care/status/rtsp-401");
    let url = format!("rtsp://{CAM_USER}:not-the-password@127.0.0.1:{port}/cam");
    let _daemon = Daemon::start(&rtsp_config("rtsp-401", &broker.url(), &url, 5.0));
    camera_state(&status, &["reconnecting"], Duration::from_secs(60));
    let out = common::wait_until(
        "the reason in orionctl status",
        Duration::from_secs(30),
        || {
            let out = common::orionctl(&broker.url(), "rtsp-401")
                .arg("status")
                .output()
                .ok()?;
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.contains("last error: 401 unauthorized")
                .then_some(text)
        },
    );
    assert!(!out.contains("not-the-password"), "{out}");
}

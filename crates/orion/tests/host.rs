//! A real host: a system broker already on the embedded broker's address, and
//! something that is not a broker there.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Daemon, Mosquitto};

/// The embedded-broker config of the demo, listening on `port`.
fn embedded_on(instance: &str, port: u16) -> String {
    common::config(instance, "embedded", |v| {
        common::set(v, "mqtt.embedded_listen", format!("127.0.0.1:{port}"));
    })
}

#[test]
fn a_broker_already_on_the_embedded_address_is_used() {
    // Stands in for Debian's mosquitto service on 127.0.0.1:1883.
    let system_broker = Mosquitto::start();
    let daemon = Daemon::start(&embedded_on("host-join", system_broker.port));
    // What a user types: mosquitto_sub against that address.
    let out = Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &system_broker.port.to_string()])
        .args([
            "-t",
            "care/inferences/host-join/person_detection",
            "-C",
            "1",
            "-W",
            "60",
        ])
        .output()
        .expect("run mosquitto_sub");
    let line = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap_or_else(|e| {
        panic!(
            "no detection seen by mosquitto_sub ({e}): {line:?}\n{}",
            daemon.log()
        )
    });
    assert_eq!(v["instance_id"], "host-join");
    let log = daemon.log();
    assert_eq!(
        log.matches("an MQTT broker already listens on the embedded broker's address")
            .count(),
        1,
        "{log}"
    );
    assert!(!log.contains("embedded MQTT broker started"), "{log}");
}

#[test]
fn a_non_broker_on_the_embedded_address_is_a_clear_error() {
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = squatter.local_addr().expect("addr").port();
    // Accept and say nothing, like a service of another protocol that waits for
    // its client to speak first.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in squatter.incoming().flatten() {
            held.push(s);
        }
    });
    let mut daemon = Daemon::start(&embedded_on("host-squat", port));
    let status = daemon
        .wait_exit(Duration::from_secs(30))
        .expect("oriond exits when it cannot have its broker address");
    assert!(!status.success());
    let log = daemon.log();
    assert!(
        log.contains(&format!(
            "cannot start the embedded MQTT broker on 127.0.0.1:{port}: the address is in use by a program that does not answer as an MQTT broker"
        )),
        "{log}"
    );
}

#[test]
fn an_unplugged_usb_camera_is_an_outage_said_in_words() {
    let broker = Mosquitto::start();
    let device = "/dev/video-orion-test-absent";
    let daemon = Daemon::start(&common::config("host-v4l2", &broker.url(), |c| {
        common::set(c, "camera.source", "v4l2");
        common::set(c, "camera.device", device);
        common::set(c, "camera.reconnect_backoff_max_s", 1.0);
        common::set(c, "stream.stall_timeout_s", 2.0);
    }));
    // No frame for longer than the stall timeout: not ready, and why.
    let body = common::wait_until(
        "not ready without a camera",
        Duration::from_secs(30),
        || {
            let (code, body) = daemon.http_get("/readiness")?;
            (code == 503 && body.contains("no frame for")).then_some(body)
        },
    );
    assert!(
        body.contains(&format!("device {device} not found")),
        "{body}"
    );
    assert!(!body.contains("worker person_detector-0 down"), "{body}");
    // orionctl status: reconnects and the last error in words, on one line.
    let out = common::wait_until("reconnects counted", Duration::from_secs(20), || {
        let out = common::orionctl(&broker.url(), "host-v4l2")
            .arg("status")
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let stream = text.lines().find(|l| l.starts_with("stream "))?.to_string();
        (!stream.ends_with(" 0 reconnects")).then_some(text)
    });
    assert!(
        out.lines()
            .any(|l| l.trim() == format!("last error: device {device} not found")),
        "{out}"
    );
    assert!(out.contains("connected no"), "{out}");
    assert!(!out.contains("true") && !out.contains("false"), "{out}");
}

//! Broker authentication and TLS with a real Mosquitto: credentials from the
//! environment, TLS with a CA file, and secrets that never show in replies or logs.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{Daemon, Mosquitto, Subscriber};
use serde_json::{Value, json};

const USER: &str = "orion-sensor";
const PASSWORD: &str = "pw-5f8e2c-never-logged";
const RTSP_URL: &str = "rtsp://cam-user:rtsp-pw-91@127.0.0.1:9/stream";

fn broker_with_password() -> Mosquitto {
    Mosquitto::start_with(|dir: &Path| {
        let file = dir.join("passwd");
        let status = Command::new("mosquitto_passwd")
            .args(["-b", "-c"])
            .arg(&file)
            .args([USER, PASSWORD])
            .status()
            .expect("run mosquitto_passwd");
        assert!(status.success());
        format!("allow_anonymous false\npassword_file {}\n", file.display())
    })
}

fn authed_subscriber(port: u16, filter: &str) -> Subscriber {
    Subscriber::connect_as(port, filter, Some((USER, PASSWORD)))
}

#[test]
fn credentials_from_the_environment_and_no_secret_in_replies_or_logs() {
    let broker = broker_with_password();
    let replies = authed_subscriber(broker.port, "care/health/sec-auth");
    let results = authed_subscriber(broker.port, "care/inferences/sec-auth/#");
    let daemon = Daemon::start_with_env(
        &common::config("sec-auth", &broker.url(), |_| {}),
        &[
            ("ORION_MQTT_USERNAME", USER),
            ("ORION_MQTT_PASSWORD", PASSWORD),
            ("ORION_RTSP_URL", RTSP_URL),
        ],
    );
    results.wait_for(Duration::from_secs(60), |_, p| {
        serde_json::from_slice::<Value>(p).ok()
    });
    // The worker (which runs model code) starts with a minimal environment.
    let workers = common::children_of(daemon.pid());
    assert!(!workers.is_empty(), "no worker process");
    for pid in workers {
        let environ = std::fs::read(format!("/proc/{pid}/environ")).expect("worker environ");
        let vars: Vec<String> = environ
            .split(|b| *b == 0)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect();
        assert!(vars.iter().any(|v| v.starts_with("PATH=")), "{vars:?}");
        assert!(
            vars.iter()
                .all(|v| !v.starts_with("ORION_MQTT") && !v.starts_with("ORION_RTSP")),
            "daemon secrets in the worker's environment: {vars:?}"
        );
        let text = vars.join("\n");
        assert!(
            !text.contains(PASSWORD) && !text.contains("rtsp-pw-91"),
            "{text}"
        );
    }
    let status = replies.command("sec-auth", json!({"command": "get_status"}));
    assert_eq!(status["data"]["config"]["mqtt"]["username"], USER);
    assert_eq!(status["data"]["config"]["mqtt"]["password"], "***");
    assert!(
        !status.to_string().contains(PASSWORD),
        "password in the status reply"
    );
    let (_, metrics) = daemon.http_get("/metrics").expect("metrics");
    assert!(!metrics.contains(PASSWORD));
    assert!(!daemon.log().contains(PASSWORD), "password in the log");
}

#[test]
fn wrong_password_is_degraded_not_fatal_and_not_logged() {
    let broker = broker_with_password();
    let daemon = Daemon::start_with_env(
        &common::config("sec-wrong", &broker.url(), |_| {}),
        &[
            ("ORION_MQTT_USERNAME", USER),
            ("ORION_MQTT_PASSWORD", "wrong-pw-77aa"),
        ],
    );
    let body = common::wait_until("readiness after warm-up", Duration::from_secs(60), || {
        let (code, body) = daemon.http_get("/readiness")?;
        (code == 200).then_some(body)
    });
    assert!(
        body.contains("\"status\":\"degraded\"") && body.contains("mqtt disconnected"),
        "{body}"
    );
    common::wait_until(
        "a refused connection in the log",
        Duration::from_secs(20),
        || daemon.log().contains("MQTT connection lost").then_some(()),
    );
    assert!(!daemon.log().contains("wrong-pw-77aa"));
}

/// A CA and a server certificate for 127.0.0.1, made with openssl.
fn make_certs(dir: &Path) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=orion-test-ca",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ]);
}

#[test]
fn tls_with_a_ca_file() {
    let certs = tempfile::tempdir().unwrap();
    make_certs(certs.path());
    let ca = certs.path().join("ca.crt");
    let broker = Mosquitto::start_with(|_| {
        let d = certs.path();
        format!(
            "allow_anonymous true\ncafile {}\ncertfile {}\nkeyfile {}\n",
            d.join("ca.crt").display(),
            d.join("server.crt").display(),
            d.join("server.key").display()
        )
    });
    let ca_s = ca.to_string_lossy().into_owned();
    // mqtts:// implies TLS (no mqtt.tls.enabled needed).
    let tls_url = broker.url().replace("mqtt://", "mqtts://");
    let daemon = Daemon::start(&common::config("sec-tls", &tls_url, |c| {
        common::set(c, "mqtt.tls.ca_file", ca_s.clone());
    }));
    // orionctl over the same TLS listener: the daemon answers, so it is connected.
    let out = common::wait_until(
        "a TLS round trip through the daemon",
        Duration::from_secs(60),
        || {
            let out = common::orionctl(&broker.url(), "sec-tls")
                .args(["--ca-file", &ca_s, "--timeout", "3", "--json", "status"])
                .output()
                .ok()?;
            out.status.success().then_some(out)
        },
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON reply");
    assert_eq!(v["data"]["emitter"]["connected"], true);
    assert_eq!(v["data"]["config"]["mqtt"]["broker"], tls_url.as_str());
    // orionctl with an mqtts:// broker address.
    let out = common::orionctl(&tls_url, "sec-tls")
        .args(["--ca-file", &ca_s, "--timeout", "5", "--json", "status"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    common::wait_until(
        "inferences published over TLS",
        Duration::from_secs(30),
        || {
            let n = daemon.metric("orion_e2e_results_total")?;
            (n >= 2.0).then_some(())
        },
    );
    // Without the CA the broker's certificate is not trusted.
    let out = common::orionctl(&broker.url(), "sec-tls")
        .args(["--tls", "--timeout", "3", "status"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

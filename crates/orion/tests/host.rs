//! A real host: a system broker already on the embedded broker's address, and
//! something that is not a broker there.
// Signals are syscalls.
#![allow(unsafe_code)]

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

#[test]
fn two_daemons_with_one_instance_id_are_named_without_a_reconnect_storm() {
    let broker = Mosquitto::start();
    let results = common::Subscriber::connect(broker.port, "care/inferences/host-dup/#");
    let config = common::config("host-dup", &broker.url(), |_| {});
    let first = Daemon::start(&config);
    results.wait_for(Duration::from_secs(60), |_, _| Some(()));
    let second = Daemon::start(&config);
    let reason = "duplicate instance_id host-dup: another process took the MQTT client id";
    let mut daemons = [first, second];
    let stood_down = common::wait_until(
        "one daemon names the duplicate",
        Duration::from_secs(60),
        || {
            daemons.iter().position(|d| {
                d.http_get("/readiness")
                    .is_some_and(|(_, body)| body.contains(reason))
            })
        },
    );
    let kept = 1 - stood_down;
    let log = daemons[stood_down].log();
    assert_eq!(log.matches(reason).count(), 1, "one clear log line:\n{log}");
    assert_eq!(
        daemons[stood_down].metric("orion_mqtt_duplicate_instance"),
        Some(1.0)
    );
    assert_eq!(
        daemons[kept].metric("orion_mqtt_duplicate_instance"),
        Some(0.0)
    );

    // No storm: while the other one publishes results, nobody reconnects.
    let reconnects = |d: &Daemon| d.metric("orion_mqtt_reconnects_total").unwrap_or(-1.0);
    let before = [reconnects(&daemons[0]), reconnects(&daemons[1])];
    results.drain();
    let start = common::now_s();
    let mut seen = 0;
    while seen < 15 {
        results.wait_for(Duration::from_secs(20), |_, _| Some(()));
        seen += 1;
    }
    assert!(
        common::now_s() - start > 2.0,
        "15 results at 5 Hz take about 3 s"
    );
    assert_eq!(
        [reconnects(&daemons[0]), reconnects(&daemons[1])],
        before,
        "reconnects while both run"
    );
    let (code, body) = daemons[kept].http_get("/readiness").expect("readiness");
    assert!(
        code == 200 && body.contains("\"status\":\"healthy\""),
        "{body}"
    );

    // The one that kept the id stops: the other takes over and is healthy again.
    daemons[kept].signal(libc::SIGTERM);
    assert!(daemons[kept].wait_exit(Duration::from_secs(15)).is_some());
    common::wait_until("the other one takes over", Duration::from_secs(40), || {
        let (code, body) = daemons[stood_down].http_get("/readiness")?;
        (code == 200 && body.contains("\"status\":\"healthy\"")).then_some(())
    });
    results.drain();
    results.wait_for(Duration::from_secs(20), |_, _| Some(()));
}

#[test]
fn orionctl_list_shows_the_fleet_from_retained_presences() {
    let broker = Mosquitto::start();
    let publisher = common::Subscriber::connect(broker.port, "care/status/fleet-sync");
    // 30 sensors, published in scrambled order; every third one offline.
    let started = humantime::format_rfc3339_millis(
        std::time::SystemTime::now() - Duration::from_secs(3 * 3600 + 60),
    )
    .to_string();
    for i in (0..30).map(|i| (i * 7) % 30) {
        let online = i % 3 != 0;
        let msg = serde_json::json!({
            "instance_id": format!("room-{i:03}"), "room_id": format!("{}", 100 + i),
            "state": if online { "online" } else { "offline" },
            "camera": if online { "streaming" } else { "unknown" },
            "inference": if online { "running" } else { "stopped" },
            "reason": if online { serde_json::Value::Null } else { "shutdown".into() },
            "timestamp": "2026-11-28T07:00:00.000Z", "since": if online { "2026-11-28T06:00:00.000Z".into() } else { serde_json::Value::Null },
            "version": "0.1.0", "started_at": started, "session": format!("h/{i}/1"), "host": "h", "pid": i,
        });
        publisher.client_publish_retained(
            &format!("care/status/room-{i:03}"),
            serde_json::to_vec(&msg).unwrap(),
        );
    }
    // The last one sent is stored once this one comes back (QoS 1, in order).
    publisher.client_publish_retained("care/status/fleet-sync", b"not json".to_vec());
    publisher.wait_for(Duration::from_secs(10), |t, _| {
        (t == "care/status/fleet-sync").then_some(())
    });

    let out = common::orionctl(&broker.url(), "x")
        .args(["--json", "list"])
        .output()
        .expect("orionctl list");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("JSON list");
    assert_eq!(rows.len(), 30, "{rows:?}");
    let ids: Vec<&str> = rows
        .iter()
        .map(|r| r["instance_id"].as_str().unwrap())
        .collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    assert_eq!(ids, sorted);
    assert_eq!(rows[1]["state"], "online");
    assert_eq!(rows[1]["room_id"], "101");
    let uptime = rows[1]["uptime_s"]
        .as_u64()
        .expect("uptime of an online sensor");
    assert!(
        (3 * 3600 + 60..3 * 3600 + 120).contains(&uptime),
        "{uptime}"
    );
    assert_eq!(rows[0]["state"], "offline");
    assert!(rows[0]["uptime_s"].is_null());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("1 presence message(s) were not JSON"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = common::orionctl(&broker.url(), "x")
        .arg("list")
        .output()
        .expect("orionctl list");
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 31, "{text}");
    assert!(lines[0].starts_with("INSTANCE  ROOM"), "{text}");
    assert!(
        lines[2].starts_with("room-001  101   online ") && lines[2].contains("3h 1m"),
        "{text}"
    );
    assert!(lines[1].contains("offline (shutdown)"), "{text}");
}

#[test]
fn a_running_daemon_is_listed_with_its_version() {
    let broker = Mosquitto::start();
    let status = common::Subscriber::connect(broker.port, "care/status/host-listed");
    let _daemon = Daemon::start(&common::config("host-listed", &broker.url(), |_| {}));
    status.wait_for(Duration::from_secs(60), |_, p| {
        let v: serde_json::Value = serde_json::from_slice(p).ok()?;
        (v["state"] == "online").then_some(())
    });
    let out = common::orionctl(&broker.url(), "x")
        .args(["--json", "list"])
        .output()
        .expect("orionctl list");
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("JSON list");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["instance_id"], "host-listed");
    assert_eq!(rows[0]["room_id"], "test-room");
    assert_eq!(rows[0]["version"], env!("CARGO_PKG_VERSION"));
    assert!(rows[0]["uptime_s"].as_u64().is_some(), "{}", rows[0]);
    assert!(rows[0]["since"].as_str().is_some(), "{}", rows[0]);
}

#[test]
fn sighup_reloads_a_valid_config_and_keeps_running_on_an_invalid_one() {
    let broker = Mosquitto::start();
    let results = common::Subscriber::connect(broker.port, "care/inferences/host-hup/#");
    let daemon = Daemon::start(&common::config("host-hup", &broker.url(), |_| {}));
    results.wait_for(Duration::from_secs(60), |_, _| Some(()));
    let path = daemon.dir.path().join("orion.yaml");
    let original = std::fs::read_to_string(&path).expect("config");
    let health = format!("127.0.0.1:{}", daemon.health_port);

    // A valid change: the new room shows in the results after an ordered restart.
    let mut v: serde_norway::Value = serde_norway::from_str(&original).unwrap();
    common::set(&mut v, "room_id", "room-after-reload");
    common::set(&mut v, "health.listen", health.as_str());
    std::fs::write(&path, serde_norway::to_string(&v).unwrap()).unwrap();
    daemon.signal(libc::SIGHUP);
    results.wait_for(Duration::from_secs(60), |_, p| {
        let v: serde_json::Value = serde_json::from_slice(p).ok()?;
        (v["room_id"] == "room-after-reload").then_some(())
    });
    assert!(
        daemon.log().contains("SIGHUP: config is valid"),
        "{}",
        daemon.log()
    );
    assert!(common::alive(daemon.pid()));
    // One worker process, not two: the old one was stopped.
    common::wait_until("one worker", Duration::from_secs(10), || {
        (common::children_of(daemon.pid()).len() == 1).then_some(())
    });

    // An invalid change is reported and changes nothing.
    std::fs::write(&path, original.replace("width: 640", "width: 641")).unwrap();
    daemon.signal(libc::SIGHUP);
    common::wait_until("the refusal in the log", Duration::from_secs(10), || {
        daemon
            .log()
            .contains("the running config stays")
            .then_some(())
    });
    let log = daemon.log();
    let refusal = log
        .lines()
        .find(|l| l.contains("the running config stays"))
        .unwrap_or_default();
    assert!(
        refusal.contains("stream.width: 641 must be a multiple of 4") && !refusal.contains("\\n"),
        "the problems in the refusal's one line, readable: {refusal}"
    );
    results.drain();
    results.wait_for(Duration::from_secs(20), |_, p| {
        let v: serde_json::Value = serde_json::from_slice(p).ok()?;
        assert_eq!(v["room_id"], "room-after-reload");
        Some(())
    });
}

#[test]
fn the_service_install_lays_out_a_prefix_that_runs_and_a_unit_that_verifies() {
    let root = common::repo_root();
    let tmp = tempfile::tempdir().expect("tempdir");
    let prefix = tmp.path().join("opt/orion");
    let etc = tmp.path().join("etc/orion");
    let units = tmp.path().join("units");
    let install = || {
        let out = Command::new(root.join("packaging/install.sh"))
            .arg("--prefix")
            .arg(&prefix)
            .arg("--etc")
            .arg(&etc)
            .arg("--unit-dir")
            .arg(&units)
            .args([
                "--python",
                &common::venv_python(),
                "--no-user",
                "--no-systemctl",
            ])
            .output()
            .expect("run install.sh");
        assert!(
            out.status.success(),
            "install.sh: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    install();
    for f in [
        "bin/oriond",
        "bin/orionctl",
        "models/ssdlite_mobilenet_v2_coco.onnx",
        "share/demo.mp4",
        "docs/deploy.md",
    ] {
        assert!(prefix.join(f).is_file(), "{f} not installed");
    }
    use std::os::unix::fs::PermissionsExt as _;
    let env_mode = std::fs::metadata(etc.join("orion.env"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(env_mode & 0o777, 0o640, "secrets file mode");

    // The unit: no warning, no error from systemd's own checker.
    let unit = units.join("orion.service");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .expect("systemd-analyze");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&unit).unwrap();
    assert!(text.contains(&format!(
        "ExecStart={}/bin/oriond --config {}/orion.yaml",
        prefix.display(),
        etc.display()
    )));
    assert!(text.contains(&format!("EnvironmentFile=-{}/orion.env", etc.display())));

    // The installed daemon runs the installed config from anywhere (paths are
    // absolute), here against the test's broker.
    let broker = Mosquitto::start();
    let config = etc.join("orion.yaml");
    let mut v: serde_norway::Value =
        serde_norway::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    common::set(&mut v, "mqtt.broker", broker.url());
    common::set(
        &mut v,
        "health.listen",
        format!("127.0.0.1:{}", common::free_port()),
    );
    common::set(&mut v, "stream.warmup_duration_s", 1.0);
    common::set(&mut v, "instance_id", "host-installed");
    std::fs::write(&config, serde_norway::to_string(&v).unwrap()).unwrap();
    let results = common::Subscriber::connect(broker.port, "care/inferences/host-installed/#");
    let mut child = Command::new(prefix.join("bin/oriond"))
        .arg("--config")
        .arg(&config)
        .current_dir("/")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the installed oriond");
    let detection = results.wait_for(Duration::from_secs(60), |_, p| {
        let v: serde_json::Value = serde_json::from_slice(p).ok()?;
        (v["data"]["count"].as_u64() >= Some(1)).then_some(v)
    });
    assert_eq!(detection["instance_id"], "host-installed");
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();

    // An upgrade keeps the operator's config.
    install();
    assert!(
        std::fs::read_to_string(&config)
            .unwrap()
            .contains("host-installed")
    );
}

#[test]
fn the_demo_config_shows_every_care_signal_within_a_minute() {
    // The quick start's demo as shipped (video, bed zone, pose model, 2 Hz),
    // on the test's broker: someone enters, lies on the bed, gets up and
    // leaves, and the room is reported empty.
    let broker = Mosquitto::start();
    let shipped = std::fs::read_to_string(common::repo_root().join("config/orion.yaml")).unwrap();
    let mut v: serde_norway::Value = serde_norway::from_str(&shipped).unwrap();
    common::set(&mut v, "instance_id", "demo-signals");
    common::set(&mut v, "mqtt.broker", broker.url());
    common::set(&mut v, "health.listen", "{health}");
    let events = common::Subscriber::connect(broker.port, "care/events/demo-signals");
    let started = std::time::Instant::now();
    let _daemon = Daemon::start(&serde_norway::to_string(&v).unwrap());
    let mut seen: Vec<String> = Vec::new();
    events.wait_for(Duration::from_secs(75), |_, p| {
        let v: serde_json::Value = serde_json::from_slice(p).ok()?;
        let kind = v["type"].as_str()?.to_string();
        let what = match kind.as_str() {
            "zone_entered" | "zone_left" => format!("{kind} {}", v["zone"].as_str()?),
            "occupancy_changed" => format!("{kind} occupied={}", v["occupied"]),
            "posture_changed" => format!("{kind} {}", v["posture"].as_str()?),
            _ => kind,
        };
        seen.push(what);
        let after = |later: &str, earlier: &str| {
            let at = |s: &str| seen.iter().position(|x| x == s);
            matches!((at(earlier), at(later)), (Some(e), Some(l)) if e < l)
        };
        (after("zone_entered bed", "person_entered")
            && after("bed_exit_warning", "zone_entered bed")
            && after("posture_changed lying", "person_entered")
            && after("zone_left bed", "zone_entered bed")
            && after("person_left", "zone_left bed")
            && after("occupancy_changed occupied=false", "person_left"))
        .then_some(())
    });
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(60),
        "the demo's care signals took {took:?}: {seen:?}"
    );
}

#[test]
fn the_installer_s_help_lists_every_option_and_no_script_code() {
    let out = Command::new(common::repo_root().join("packaging/install.sh"))
        .arg("--help")
        .output()
        .expect("run install.sh --help");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for option in [
        "--prefix",
        "--etc",
        "--unit-dir",
        "--python",
        "--no-user",
        "--no-systemctl",
        "--enable",
    ] {
        assert!(help.contains(option), "{option} missing from:\n{help}");
    }
    for code in ["set -euo", "cd \"$(dirname", "PREFIX=/opt"] {
        assert!(!help.contains(code), "script code {code:?} in:\n{help}");
    }
    // Every option the installer takes is documented for operators too.
    let deploy = std::fs::read_to_string(common::repo_root().join("docs/deploy.md"))
        .expect("docs/deploy.md");
    for option in ["--no-user", "--no-systemctl", "--python PATH", "--enable"] {
        assert!(
            deploy.contains(&format!("`{option}")),
            "{option} not in docs/deploy.md"
        );
    }
}

//! Hostile input on the control topic, with a real Mosquitto and daemon: a flood
//! where every message is answered, answered busy or counted; forged log lines;
//! log volume under a flood of large messages.

mod common;

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Daemon, Mosquitto, Subscriber};
use serde_json::Value;

/// Publishes `lines` (one message each) at QoS 0 as fast as mosquitto_pub can.
fn flood(port: u16, topic: &str, lines: impl Iterator<Item = String>) {
    let mut child = Command::new("mosquitto_pub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-q",
            "0",
            "-l",
            "-t",
            topic,
        ])
        .stdin(Stdio::piped())
        .spawn()
        .expect("mosquitto_pub");
    {
        let mut stdin = child.stdin.take().expect("stdin");
        for line in lines {
            writeln!(stdin, "{line}").expect("write to mosquitto_pub");
        }
    }
    assert!(child.wait().expect("mosquitto_pub exits").success());
}

/// A broker that keeps every queued message for its clients (Mosquitto's default
/// drops beyond 1,000 a client): what the tests count is the daemon's doing.
fn roomy_broker() -> Mosquitto {
    Mosquitto::start_with(|_| "allow_anonymous true\nmax_queued_messages 1000000\n".into())
}

/// Starts a daemon and waits until it listens to its control topic.
fn start(broker: &Mosquitto, instance: &str) -> (Daemon, Subscriber) {
    let replies = Subscriber::connect(broker.port, &format!("care/health/{instance}"));
    let status = Subscriber::connect(broker.port, &format!("care/status/{instance}"));
    let daemon = Daemon::start(&common::config(instance, &broker.url(), |_| {}));
    status.wait_for(Duration::from_secs(60), |_, p| {
        let v: Value = serde_json::from_slice(p).ok()?;
        (v["state"] == "online").then_some(())
    });
    (daemon, replies)
}

fn counter(d: &Daemon, name: &str) -> f64 {
    d.metric(name)
        .unwrap_or_else(|| panic!("metric {name} missing"))
}

#[test]
fn a_flood_is_answered_answered_busy_or_counted() {
    let broker = roomy_broker();
    let (daemon, replies) = start(&broker, "hostile-flood");
    // Ready: one ordinary round trip.
    let first = replies.command(
        "hostile-flood",
        serde_json::json!({"command": "get_status"}),
    );
    assert_eq!(first["success"], true);
    replies.drain();
    let received0 = counter(&daemon, "orion_control_messages_total");
    let answered0 = counter(&daemon, "orion_control_commands_total")
        + counter(&daemon, "orion_control_rejected_total");

    const N: usize = 5000;
    flood(
        broker.port,
        "care/control/hostile-flood",
        (0..N).map(|i| format!(r#"{{"command":"get_status","request_id":"f-{i}"}}"#)),
    );
    // Every message that reached the daemon is accounted for once the queue
    // drains and nothing more arrives (the broker may still be delivering when
    // mosquitto_pub is done: the count must hold still for a second).
    let mut last_received = -1.0;
    let (received, answered, busy, dropped) =
        common::wait_until("the flood accounted for", Duration::from_secs(60), || {
            std::thread::sleep(Duration::from_secs(1));
            let received = counter(&daemon, "orion_control_messages_total") - received0;
            let still = received == last_received;
            last_received = received;
            if !still {
                return None;
            }
            let answered = counter(&daemon, "orion_control_commands_total")
                + counter(&daemon, "orion_control_rejected_total")
                - answered0;
            let busy = counter(&daemon, "orion_control_busy_total");
            let dropped = counter(&daemon, "orion_control_dropped_total");
            (received > 0.0 && received == answered + busy + dropped)
                .then_some((received, answered, busy, dropped))
        });
    eprintln!(
        "flood of {N}: {received} reached the daemon, {answered} answered, {busy} busy, {dropped} dropped"
    );
    assert!(received <= N as f64);
    assert!(
        busy >= 1.0,
        "the sender of a command not run was told busy ({received} received, {answered} answered, {dropped} dropped)"
    );
    // Every reply the daemon counted arrives, each request_id at most once, and
    // the busy ones say so with the request_id of the command not run.
    let expected = (answered + busy) as usize;
    let mut seen = std::collections::HashSet::new();
    let mut busy_seen = 0;
    while seen.len() < expected {
        let reply: Value = replies.wait_for(Duration::from_secs(30), |_, p| {
            serde_json::from_slice::<Value>(p).ok()
        });
        let id = reply["request_id"]
            .as_str()
            .expect("request_id echoed")
            .to_string();
        assert!(id.starts_with("f-"), "{reply}");
        if reply["data"]["busy"] == true {
            busy_seen += 1;
            assert_eq!(reply["success"], false);
            assert_eq!(reply["command"], "get_status");
        }
        assert!(seen.insert(id), "two replies for one request: {reply}");
    }
    assert_eq!(busy_seen as f64, busy);
    assert_eq!(
        daemon.metric("orion_control_replies_dropped_total"),
        Some(0.0)
    );
    // Bounded log: the "queue full" warning is rate-limited.
    let warnings = daemon.log().matches("control queue full").count();
    assert!(warnings <= 3, "{warnings} queue-full lines");
    // And the daemon still answers normally.
    let after = replies.command(
        "hostile-flood",
        serde_json::json!({"command": "get_status"}),
    );
    assert_eq!(after["success"], true);
}

#[test]
fn outside_text_never_forges_a_log_line_and_floods_stay_small() {
    let broker = roomy_broker();
    let (daemon, replies) = start(&broker, "hostile-log");
    let forged = "x\n2026-11-28T00:00:00.000000Z ERROR orion::worker: INJECTED fake";
    let r = replies.command("hostile-log", serde_json::json!({"command": forged}));
    assert_eq!(r["success"], false);
    assert_eq!(r["command"], forged, "the reply echoes what was sent");
    let log = daemon.log();
    assert!(
        !log.lines()
            .any(|l| l.starts_with("2026-11-28T00:00:00.000000Z")),
        "a forged line:\n{log}"
    );
    let line = log
        .lines()
        .find(|l| l.contains("INJECTED fake"))
        .expect("the command is logged");
    assert!(
        line.contains("control command") && line.contains("x\\n2026-11-28T00:00:00"),
        "{line}"
    );

    // 1,000 messages of 65 KB: the log grows by a bounded amount.
    let before = daemon.log().len();
    let big = format!(r#"{{"command":"{}"}}"#, "A".repeat(65_000));
    flood(
        broker.port,
        "care/control/hostile-log",
        std::iter::repeat_n(big, 1000),
    );
    common::wait_until("the flood handled", Duration::from_secs(60), || {
        let received = daemon.metric("orion_control_messages_total")?;
        let handled = daemon.metric("orion_control_rejected_total")?
            + daemon.metric("orion_control_commands_total")?
            + daemon.metric("orion_control_busy_total")?
            + daemon.metric("orion_control_dropped_total")?;
        (received >= 1001.0 && received == handled).then_some(())
    });
    let grown = daemon.log().len() - before;
    assert!(
        grown < 1_000_000,
        "the log grew by {grown} bytes for 1,000 messages"
    );
    assert!(
        daemon
            .log()
            .lines()
            .all(|l| l.len() <= orion::logging::MAX_LINE + 64),
        "a log line over the limit"
    );
}

#[test]
fn an_oversized_message_is_refused_without_losing_the_connection() {
    let broker = Mosquitto::start();
    let (daemon, replies) = start(&broker, "hostile-big");
    let reconnects = counter(&daemon, "orion_mqtt_reconnects_total");
    // 16 MiB, then an ordinary command right behind it: both are answered.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("big.json");
    std::fs::write(&file, vec![b'x'; 16 * 1024 * 1024]).expect("write");
    let status = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &broker.port.to_string(), "-q", "1"])
        .args(["-t", "care/control/hostile-big", "-f"])
        .arg(&file)
        .status()
        .expect("mosquitto_pub");
    assert!(status.success());
    let refusal: Value = replies.wait_for(Duration::from_secs(30), |_, p| {
        serde_json::from_slice::<Value>(p).ok()
    });
    assert_eq!(refusal["success"], false);
    assert_eq!(
        refusal["message"],
        "payload of 16777216 bytes exceeds the limit of 65536 bytes"
    );
    let after = replies.command("hostile-big", serde_json::json!({"command": "get_status"}));
    assert_eq!(after["success"], true);
    assert_eq!(
        counter(&daemon, "orion_mqtt_reconnects_total"),
        reconnects,
        "the connection was kept"
    );
    assert!(daemon.rss_kb() < 200 * 1024, "RSS {} KiB", daemon.rss_kb());
}

/// Sends `head` and then up to `body` bytes on a new connection to the health
/// server; returns the connection (kept open) and the status it was answered.
fn http_attempt(port: u16, head: &str, body: &[u8]) -> (std::net::TcpStream, Option<u16>) {
    use std::io::Read as _;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    s.set_write_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let sent = s.write_all(head.as_bytes());
    if sent.is_ok() {
        // The server may answer and close before taking it all: no matter.
        let _ = s.write_all(body);
    }
    let mut answer = [0u8; 64];
    let n = s.read(&mut answer).unwrap_or(0);
    let status = String::from_utf8_lossy(&answer[..n])
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok());
    (s, status)
}

/// Round three's attack: 150 connections at once, each announcing and sending
/// a 4 MiB body, on a route that takes none (`GET /health`) and on the control
/// call (which takes a command, at most 64 KiB): refused from the head alone,
/// and the daemon's memory stays within +50 MB while they are all open.
#[test]
fn an_http_body_flood_is_refused_from_the_head_and_memory_stays_bounded() {
    let broker = Mosquitto::start();
    let daemon = Daemon::start(&common::config("hostile-http", &broker.url(), |c| {
        common::set(c, "ui.enabled", true);
    }));
    common::wait_until("ready", Duration::from_secs(60), || {
        (daemon.http_get("/readiness")?.0 == 200).then_some(())
    });
    let before_kb = daemon.rss_kb();
    let port = daemon.health_port;
    let body = std::sync::Arc::new(vec![b'x'; 4 * 1024 * 1024]);
    let heads = [
        "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 4194304\r\n\r\n",
        "POST /api/command HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 4194304\r\n\r\n",
    ];
    let attempts: Vec<_> = (0..150)
        .map(|i| {
            let body = body.clone();
            let head = heads[i % 2];
            std::thread::spawn(move || http_attempt(port, head, &body))
        })
        .collect();
    let answered: Vec<(std::net::TcpStream, Option<u16>)> = attempts
        .into_iter()
        .map(|t| t.join().expect("attempt"))
        .collect();
    let during_kb = daemon.rss_kb();
    let grown_mb = (during_kb.saturating_sub(before_kb)) as f64 / 1024.0;
    eprintln!("RSS {before_kb} kB before, {during_kb} kB with 150 connections: +{grown_mb:.1} MB");
    let statuses: Vec<Option<u16>> = answered.iter().map(|(_, s)| *s).collect();
    assert!(
        statuses.iter().all(|s| *s == Some(413)),
        "every oversize body refused from its head: {statuses:?}"
    );
    assert!(grown_mb < 50.0, "+{grown_mb:.1} MB");
    drop(answered);
    let (code, _) = daemon.http_get("/readiness").expect("answers after");
    assert_eq!(code, 200);
}

//! The live view with real parts: a running daemon (the demo video, the real
//! detector, a real Mosquitto) and a real browser (Debian's chromium, headless,
//! driven by Playwright through `ui_browser.py`): frames and boxes drawn within
//! seconds, an ROI drawn with the mouse that the daemon then uses, the daemon's
//! own error for an invalid one, zones drawn and deleted, the camera picker; the
//! token on every request; JPEG encoded only while someone watches; privacy mode.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{Daemon, Mosquitto, Subscriber};
use serde_json::{Value, json};
use serde_norway::Value as Yaml;

const TOKEN: &str = "0123456789abcdef-live-view";

/// A config with the UI on: `room-a` (the demo video) and, with `second`,
/// `room-b` (a test pattern).
fn ui_config(broker: &str, second: bool, edit: impl FnOnce(&mut Yaml)) -> String {
    common::config("room-a", broker, |c| {
        common::set(c, "ui.enabled", true);
        common::set(c, "models.person_detector.max_inference_rate_hz", 2.0);
        if second {
            let map = c.as_mapping_mut().expect("mapping");
            let video = map
                .remove("camera")
                .expect("camera")
                .get("path")
                .cloned()
                .expect("path");
            map.remove("instance_id");
            map.remove("room_id");
            let cameras: Yaml = serde_norway::from_str(&format!(
                "[{{ instance_id: room-a, room_id: a, camera: {{ source: file, path: {} }} }},
                  {{ instance_id: room-b, room_id: b, camera: {{ source: test }} }}]",
                serde_json::to_string(&video).expect("path")
            ))
            .expect("cameras");
            map.insert("cameras".into(), cameras);
        }
        edit(c);
    })
}

/// One HTTP request to the daemon: (status, head, body).
fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).expect("send");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let code = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    (code, head.to_string(), body.to_string())
}

/// Reads a live-view stream for `seconds`; returns its event lines.
fn watch_live(port: u16, path: &str, headers: &[(&str, &str)], seconds: f64) -> Vec<String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect");
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).expect("send");
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let mut reader = BufReader::new(s);
    let mut lines = Vec::new();
    while Instant::now() < until {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) => break,
            Ok(_) => lines.push(line.trim_end().to_string()),
            Err(_) => {}
        }
    }
    lines
}

fn encoded(daemon: &Daemon, camera: &str) -> f64 {
    daemon
        .series(&format!(
            "orion_ui_frames_encoded_total{{camera=\"{camera}\"}}"
        ))
        .expect("encode counter")
}

/// The frame messages room-a's live stream sent in `seconds` (at least one).
fn live_frames(port: u16, seconds: f64) -> Vec<String> {
    let lines = watch_live(port, "/api/live?camera=room-a", &[], seconds);
    let frames: Vec<String> = lines
        .iter()
        .filter(|l| l.starts_with("data: {\"seq\""))
        .cloned()
        .collect();
    assert!(!frames.is_empty(), "no frame: {lines:?}");
    frames
}

fn wait_ready(daemon: &Daemon) {
    common::wait_until("the daemon ready", Duration::from_secs(60), || {
        let (code, body) = daemon.http_get("/readiness")?;
        (code == 200 && body.contains("\"status\":\"healthy\"")).then_some(())
    });
}

#[test]
fn the_page_shows_frames_and_boxes_and_its_roi_and_zones_reach_the_daemon() {
    let broker = Mosquitto::start();
    let daemon = Daemon::start(&ui_config(&broker.url(), true, |_| {}));
    let sub = Subscriber::connect(broker.port, "care/inferences/#");
    let control = Subscriber::connect(broker.port, "care/health/#");
    wait_ready(&daemon);
    let url = format!("http://127.0.0.1:{}/?camera=room-a", daemon.health_port);
    let seen = common::browser("view", &url, &[]);

    // A live frame within 5 s (the script's bounded wait), a real picture.
    assert!(
        seen["first_frame_ms"].as_f64().expect("ms") < 5000.0,
        "{seen}"
    );
    assert!(
        seen["pixel_spread"].as_f64().expect("spread") > 10.0,
        "a picture, not a blank: {seen}"
    );
    // A box over the person: the daemon's own detection for that frame.
    let b = &seen["box"];
    assert!(
        b["confidence"].as_f64().expect("confidence") >= 0.5,
        "{seen}"
    );
    assert!(
        b["width"].as_f64().expect("w") > 40.0 && b["height"].as_f64().expect("h") > 80.0,
        "person-sized: {seen}"
    );
    assert!(
        b["frame"].as_u64().expect("frame") <= b["shown"].as_u64().expect("shown"),
        "boxes never from a later frame: {seen}"
    );
    let status = seen["status_text"].as_str().expect("status");
    assert!(
        status.contains("ssdlite"),
        "the status panel names the model: {seen}"
    );
    assert!(
        status.contains("frames skipped") && !status.contains("frame bus"),
        "plain words for frames a busy worker never looked at: {status}"
    );

    // The room: the person in it, and the events that said so.
    let presence = seen["presence_text"].as_str().expect("presence");
    assert!(
        presence.starts_with("occupied: 1 person (1 seen, 0 not seen"),
        "{presence}"
    );
    let events = seen["events_text"].as_str().expect("events");
    assert!(events.contains("person_entered #"), "{events}");

    // The ROI drawn with the mouse is the daemon's now, and results use it.
    assert!(
        seen["roi_reply"]
            .as_str()
            .expect("reply")
            .contains("1 attention ROI(s) set"),
        "{seen}"
    );
    let rois = control.command("room-a", json!({"command": "get_attention_rois"}));
    let roi = &rois["data"]["rois"][0];
    for (key, want) in [("x", 0.2), ("y", 0.2), ("width", 0.5), ("height", 0.6)] {
        let got = roi[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} in {rois}"));
        assert!(
            (got - want).abs() < 0.02,
            "{key}: {got} (drawn {want}): {rois}"
        );
    }
    sub.drain();
    let used = sub.wait_for(Duration::from_secs(20), |t, p| {
        let v: Value = serde_json::from_slice(p).ok()?;
        (t == "care/inferences/room-a/person_detection" && v["roi"]["source"] == "external")
            .then_some(v)
    });
    let crop = &used["roi"]["crop_normalized"];
    assert!(
        (crop["x"].as_f64().expect("x") - 0.2).abs() < 0.03,
        "{used}"
    );
    assert!(
        (crop["width"].as_f64().expect("w") - 0.5).abs() < 0.03,
        "{used}"
    );
    // An invalid rectangle shows the daemon's message, and changes nothing.
    let invalid = seen["invalid_reply"].as_str().expect("reply");
    assert!(invalid.contains("x + width must be <= 1"), "{invalid}");
    let after = control.command("room-a", json!({"command": "get_attention_rois"}));
    assert_eq!(after["data"]["rois"], rois["data"]["rois"]);

    // Zones: drawn, seen over MQTT, deleted.
    assert!(
        seen["zone_reply"].as_str().expect("reply").starts_with('✓'),
        "{seen}"
    );
    assert_eq!(seen["zone_drawn"], true);
    assert_eq!(seen["zone_deleted"], true);
    let zones = control.command("room-a", json!({"command": "get_zones"}));
    assert_eq!(
        zones["data"]["zones"],
        json!([]),
        "deleted in the page: {zones}"
    );

    // The camera picker.
    assert_eq!(seen["cameras"], json!(["room-a", "room-b"]));
    assert_eq!(seen["switched_to"], "room-b");
}

#[test]
fn with_a_token_nothing_is_served_without_it() {
    let broker = Mosquitto::start();
    let daemon = Daemon::start(&ui_config(&broker.url(), false, |c| {
        common::set(c, "ui.token", TOKEN);
    }));
    wait_ready(&daemon);
    let port = daemon.health_port;
    // No token: 401 for the page, the stream (no frame), and control calls.
    assert_eq!(http(port, "GET", "/", &[], "").0, 401);
    let (code, _, body) = http(port, "GET", "/api/live?camera=room-a", &[], "");
    assert_eq!(code, 401);
    assert!(!body.contains("event: frame"), "{body}");
    let pause = r#"{"command":"pause_inference"}"#;
    let json_type = ("Content-Type", "application/json");
    assert_eq!(
        http(port, "POST", "/api/command", &[json_type], pause).0,
        401
    );
    let wrong = ("X-Orion-Token", "0123456789abcdef-live-vieW");
    assert_eq!(
        http(port, "POST", "/api/command", &[json_type, wrong], pause).0,
        401
    );
    // The cookie is for GETs only: a control call needs the header.
    let cookie = format!("orion_token={TOKEN}");
    assert_eq!(
        http(
            port,
            "POST",
            "/api/command",
            &[json_type, ("Cookie", &cookie)],
            pause
        )
        .0,
        401
    );
    assert_eq!(
        http(port, "GET", "/api/cameras", &[("Cookie", &cookie)], "").0,
        200
    );
    // The right token: the page sets the cookie, and the stream has frames.
    let (code, head, _) = http(port, "GET", &format!("/?token={TOKEN}"), &[], "");
    assert_eq!(code, 200);
    assert!(
        head.contains("Set-Cookie: orion_token=") && head.contains("HttpOnly"),
        "{head}"
    );
    let lines = watch_live(
        port,
        "/api/live?camera=room-a",
        &[("X-Orion-Token", TOKEN)],
        3.0,
    );
    assert!(lines.iter().any(|l| l == "event: frame"), "{lines:?}");
    // In a browser: opened with ?token=, frames, and the controls work.
    let seen = common::browser(
        "token",
        &format!("http://127.0.0.1:{port}/?token={TOKEN}"),
        &[],
    );
    assert!(
        seen["first_frame_ms"].as_f64().expect("ms") < 5000.0,
        "{seen}"
    );
    assert_eq!(
        seen["address_after"], "",
        "the token leaves the address bar"
    );
    assert!(
        seen["pause_reply"]
            .as_str()
            .expect("reply")
            .contains("inference paused"),
        "{seen}"
    );
    assert!(
        seen["resume_reply"]
            .as_str()
            .expect("reply")
            .contains("inference resumed"),
        "{seen}"
    );
    // Never in the log, nor in a status reply.
    assert!(!daemon.log().contains(TOKEN), "token in the log");
    let (_, _, status) = http(
        port,
        "GET",
        "/api/status?camera=room-a",
        &[("X-Orion-Token", TOKEN)],
        "",
    );
    assert!(!status.contains(TOKEN), "token in the status");
    let sub = Subscriber::connect(broker.port, "care/health/room-a");
    let reply = sub.command("room-a", json!({"command": "get_status"}));
    assert!(!reply.to_string().contains(TOKEN), "token in get_status");
    assert_eq!(reply["data"]["config"]["ui"]["token"], "***");
}

#[test]
fn without_a_token_only_loopback_hosts_are_answered() {
    let broker = Mosquitto::start();
    let daemon = Daemon::start(&ui_config(&broker.url(), false, |_| {}));
    wait_ready(&daemon);
    let port = daemon.health_port;
    assert_eq!(http(port, "GET", "/api/cameras", &[], "").0, 200);
    // A page elsewhere reaching the sensor by DNS rebinding names its own host.
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect");
    s.write_all(b"GET /api/cameras HTTP/1.1\r\nHost: evil.example:8080\r\n\r\n")
        .expect("send");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 401"), "{out}");
    // A form post (not JSON) is refused.
    assert_eq!(
        http(
            port,
            "POST",
            "/api/command",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            "command=shutdown"
        )
        .0,
        415
    );
}

#[test]
fn frames_are_encoded_only_while_someone_watches_at_most_max_fps() {
    let broker = Mosquitto::start();
    let daemon = Daemon::start(&ui_config(&broker.url(), false, |c| {
        common::set(c, "ui.max_fps", 5.0);
    }));
    wait_ready(&daemon);
    let idle_start = encoded(&daemon, "room-a");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        encoded(&daemon, "room-a"),
        idle_start,
        "nobody watches: nothing encoded"
    );
    assert_eq!(idle_start, 0.0);
    let started = Instant::now();
    let lines = watch_live(daemon.health_port, "/api/live?camera=room-a", &[], 4.0);
    let watched = started.elapsed().as_secs_f64();
    let during = encoded(&daemon, "room-a");
    let frames = lines.iter().filter(|l| *l == "event: frame").count();
    assert!(frames >= 10, "frames sent while watched: {frames}");
    assert!(
        during > 0.0 && during <= 5.0 * watched + 1.0,
        "{during} frames encoded in {watched:.1} s"
    );
    // The viewer gone, encoding stops.
    common::wait_until("the viewer counted gone", Duration::from_secs(5), || {
        let (_, body) = daemon.http_get("/metrics")?;
        body.contains("orion_ui_viewers{camera=\"room-a\"} 0\n")
            .then_some(())
    });
    // An encode begun for the last viewer may still finish (on a busy
    // machine it takes a while): then nothing more.
    let after = common::wait_until("the last encode done", Duration::from_secs(5), || {
        let n = encoded(&daemon, "room-a");
        std::thread::sleep(Duration::from_millis(500));
        (encoded(&daemon, "room-a") == n).then_some(n)
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        encoded(&daemon, "room-a"),
        after,
        "encoding stopped with the last viewer"
    );
}

#[test]
fn privacy_mode_sends_no_pixels_and_still_draws_boxes() {
    let broker = Mosquitto::start();
    let daemon = Daemon::start(&ui_config(&broker.url(), false, |c| {
        common::set(c, "ui.show_video", false);
    }));
    wait_ready(&daemon);
    let frames = live_frames(daemon.health_port, 3.0);
    assert!(
        frames.iter().all(|l| !l.contains("jpeg")),
        "no pixels: {frames:?}"
    );
    assert_eq!(encoded(&daemon, "room-a"), 0.0);
    let seen = common::browser(
        "privacy",
        &format!("http://127.0.0.1:{}/", daemon.health_port),
        &[],
    );
    assert_eq!(seen["privacy_badge"], true);
    assert!(
        seen["pixel_spread"].as_f64().expect("spread") < 1.0,
        "a neutral background: {seen}"
    );
    assert!(seen["box"]["width"].as_f64().expect("w") > 40.0, "{seen}");
    // Privacy the config sets is the installer's: no command turns the video on.
    let replies = common::Subscriber::connect(broker.port, "care/health/room-a");
    let r = replies.command("room-a", serde_json::json!({"command": "disable_privacy"}));
    assert_eq!(r["success"], false, "{r}");
    assert!(
        r["message"]
            .as_str()
            .is_some_and(|m| m.contains("ui.show_video: false")),
        "{r}"
    );
    let frames = live_frames(daemon.health_port, 2.0);
    assert!(frames.iter().all(|l| !l.contains("jpeg")), "{frames:?}");
    assert_eq!(encoded(&daemon, "room-a"), 0.0, "still nothing encoded");
}

#[test]
fn privacy_mode_turned_on_at_run_time_stops_the_pixels_and_a_pause_leaves_no_boxes() {
    let broker = Mosquitto::start();
    let daemon = Daemon::start(&ui_config(&broker.url(), false, |_| {}));
    wait_ready(&daemon);
    let seen = common::browser(
        "controls",
        &format!("http://127.0.0.1:{}/", daemon.health_port),
        &[],
    );
    assert!(
        seen["spread_before"].as_f64().expect("spread") > 5.0,
        "video first: {seen}"
    );
    assert!(
        seen["privacy_reply"]
            .as_str()
            .is_some_and(|r| r.contains("privacy mode on")),
        "{seen}"
    );
    assert!(
        seen["spread_privacy"].as_f64().expect("spread") < 1.0,
        "a neutral background once privacy is on: {seen}"
    );
    assert_eq!(seen["boxes_paused"], 0, "no old boxes while paused: {seen}");
    // Privacy on: nothing is encoded any more, whoever watches.
    let frames = live_frames(daemon.health_port, 2.0);
    assert!(
        frames
            .iter()
            .all(|l| !l.contains("jpeg") && l.contains("\"privacy\":true")),
        "no pixels: {frames:?}"
    );
}

#[test]
fn the_corridor_example_has_a_live_view_with_every_camera_in_its_picker() {
    let broker = Mosquitto::start();
    let shipped =
        std::fs::read_to_string(common::repo_root().join("config/corridor.yaml")).unwrap();
    let mut v: Yaml = serde_norway::from_str(&shipped).unwrap();
    assert_eq!(
        v["ui"]["enabled"],
        Yaml::Bool(true),
        "the corridor's live view is on"
    );
    assert!(
        v["health"]["listen"]
            .as_str()
            .is_some_and(|l| l.starts_with("127.0.0.1:")),
        "on loopback"
    );
    common::set(&mut v, "mqtt.broker", broker.url());
    common::set(&mut v, "health.listen", "{health}");
    common::set(&mut v, "stream.warmup_duration_s", 1.0);
    let daemon = Daemon::start(&serde_norway::to_string(&v).unwrap());
    wait_ready(&daemon);
    let seen = common::browser(
        "picker",
        &format!("http://127.0.0.1:{}/", daemon.health_port),
        &[],
    );
    let cameras: Vec<&str> = seen["cameras"]
        .as_array()
        .expect("cameras")
        .iter()
        .filter_map(|c| c.as_str())
        .collect();
    assert_eq!(cameras, ["room-101", "room-102", "room-103"], "{seen}");
    let shown = seen["shown"].as_array().expect("shown");
    assert_eq!(shown.len(), 3, "each camera's frames drawn: {seen}");
    // room-103 runs at 320x240: the picture follows the camera picked.
    assert_eq!(shown[2]["size"], serde_json::json!([320, 240]), "{seen}");
    assert_eq!(shown[0]["size"], serde_json::json!([640, 480]), "{seen}");
}

#[test]
fn a_ui_on_a_network_address_without_a_token_is_refused_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("ui.yaml");
    std::fs::write(
        &file,
        "ui: { enabled: true }\nhealth: { listen: \"0.0.0.0:8080\" }\n",
    )
    .expect("write");
    let out = common::oriond()
        .args(["validate", "--config"])
        .arg(&file)
        .env_remove("ORION_UI_TOKEN")
        .output()
        .expect("run oriond");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        text.contains("ui.token: required when the UI is on and health.listen (0.0.0.0:8080)"),
        "{text}"
    );
    // With the token from the environment it is accepted (as far as the UI goes).
    let out = common::oriond()
        .args(["validate", "--config"])
        .arg(&file)
        .env("ORION_UI_TOKEN", TOKEN)
        .output()
        .expect("run oriond");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("ui.token"), "{text}");
    assert!(!text.contains(TOKEN), "the token is never echoed: {text}");
}

//! Human-readable rendering of replies and watched messages.

use std::fmt::Write as _;

use serde_json::Value;

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if f.fract() != 0.0 => format!("{f:.2}"),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

/// `yes` / `no` for a boolean, `-` when absent.
fn yn(v: &Value) -> &'static str {
    match v.as_bool() {
        Some(true) => "yes",
        Some(false) => "no",
        None => "-",
    }
}

/// A reply as an operator reads it.
pub fn reply(command: &str, r: &Value) -> String {
    let mut out = String::new();
    let ok = r["success"].as_bool().unwrap_or(false);
    if !ok {
        let _ = writeln!(out, "error: {}", s(&r["message"]));
        return out;
    }
    let d = &r["data"];
    match command {
        "get_status" => status(&mut out, d),
        "get_zones" | "set_zones" => {
            let _ = writeln!(out, "ok: {}", s(&r["message"]));
            for zone in d["zones"].as_array().into_iter().flatten() {
                let corners: Vec<String> = zone["polygon"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| format!("({}, {})", s(&p[0]), s(&p[1])))
                    .collect();
                let kind = ["rest", "exit", "ignore"]
                    .into_iter()
                    .find(|k| zone[*k] == true)
                    .map(|k| format!(" ({k})"))
                    .unwrap_or_default();
                let _ = writeln!(out, "  {}{kind}: {}", s(&zone["name"]), corners.join(" "));
            }
        }
        "get_attention_rois" | "set_attention_rois" => {
            let _ = writeln!(out, "ok: {}", s(&r["message"]));
            for roi in d["rois"].as_array().into_iter().flatten() {
                let _ = writeln!(
                    out,
                    "  x={} y={} width={} height={}{}",
                    s(&roi["x"]),
                    s(&roi["y"]),
                    s(&roi["width"]),
                    s(&roi["height"]),
                    roi["name"]
                        .as_str()
                        .map(|n| format!(" ({n})"))
                        .unwrap_or_default()
                );
            }
        }
        _ => {
            let _ = writeln!(out, "ok: {}", s(&r["message"]));
            if let Value::Object(map) = d {
                for (k, v) in map {
                    let _ = writeln!(out, "  {k}: {}", s(v));
                }
            }
        }
    }
    out
}

fn status(out: &mut String, d: &Value) {
    let st = &d["stream"];
    let _ = writeln!(
        out,
        "instance   {} (room {})",
        s(&d["instance_id"]),
        s(&d["room_id"])
    );
    let _ = writeln!(
        out,
        "health     {}{}",
        s(&d["health"]),
        reasons(&d["reasons"])
    );
    let _ = writeln!(
        out,
        "state      {}, up {} s",
        s(&d["state"]),
        s(&d["uptime_s"])
    );
    let _ = writeln!(
        out,
        "stream     {} {}x{}, {} fps, {} frames, {} gated, connected {}, {} reconnects",
        s(&st["source"]),
        s(&st["width"]),
        s(&st["height"]),
        s(&st["fps"]),
        s(&st["frames"]),
        s(&st["frames_gated"]),
        yn(&st["connected"]),
        s(&st["reconnects"])
    );
    if let Some(e) = st["last_error"].as_str() {
        let _ = writeln!(out, "           last error: {e}");
    }
    let _ = writeln!(
        out,
        "inference  {} Hz, model {}",
        s(&d["inference"]["rate_hz"]),
        s(&d["inference"]["model"])
    );
    workers_and_bus(out, d);
    mqtt_and_attention(out, d);
}

/// The `worker` and `frame bus` lines of `status`.
fn workers_and_bus(out: &mut String, d: &Value) {
    for w in d["workers"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "worker     {}: up {}, {}, {} inferences, avg {} ms, {} restarts{}",
            s(&w["id"]),
            yn(&w["up"]),
            s(&w["backend"]),
            s(&w["inferences"]),
            s(&w["avg_latency_ms"]),
            s(&w["restarts"]),
            if w["failed"].as_bool() == Some(true) {
                ", failed (restarts stopped)"
            } else {
                ""
            }
        );
        if let Some(choice) = w["runtime_choice"].as_str() {
            let _ = writeln!(
                out,
                "           {} frames at once; {choice}",
                s(&w["parallel"])
            );
        }
    }
    for g in d["frame_bus"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "frame bus  {}: {} sent, {} dropped ({:.1} %)",
            s(&g["group"]),
            s(&g["sent"]),
            s(&g["dropped"]),
            g["drop_rate"].as_f64().unwrap_or(0.0) * 100.0
        );
    }
}

/// The `mqtt` and `attention` lines of `status`.
fn mqtt_and_attention(out: &mut String, d: &Value) {
    let e = &d["emitter"];
    let _ = writeln!(
        out,
        "mqtt       connected {}, {} published, {} dropped, {} reconnects",
        yn(&e["connected"]),
        s(&e["published"]),
        s(&e["dropped"]),
        s(&e["reconnects"])
    );
    let a = &d["attention"];
    let _ = writeln!(
        out,
        "attention  {} external ROI(s), auto-focus {} ({})",
        a["rois"].as_array().map_or(0, Vec::len),
        if a["auto_focus"]["enabled"].as_bool() == Some(true) {
            "on"
        } else {
            "off"
        },
        s(&a["auto_focus"]["strategy"])
    );
}

fn reasons(v: &Value) -> String {
    match v.as_array() {
        Some(a) if !a.is_empty() => {
            format!(" ({})", a.iter().map(s).collect::<Vec<_>>().join(", "))
        }
        _ => String::new(),
    }
}

/// The fleet table of `orionctl list`: one row per instance, already sorted.
pub fn fleet(rows: &[Value]) -> String {
    let header = [
        "INSTANCE",
        "ROOM",
        "STATE",
        "CAMERA",
        "INFERENCE",
        "VERSION",
        "UPTIME",
        "SINCE",
    ];
    let cells: Vec<[String; 8]> = rows
        .iter()
        .map(|r| {
            let state = match (r["state"].as_str(), r["reason"].as_str()) {
                (Some(st), Some(why)) if st != "online" => format!("{st} ({why})"),
                (Some(st), _) => st.to_string(),
                _ => "-".into(),
            };
            [
                s(&r["instance_id"]),
                s(&r["room_id"]),
                state,
                s(&r["camera"]),
                s(&r["inference"]),
                r["version"]
                    .as_str()
                    .filter(|v| !v.is_empty())
                    .unwrap_or("-")
                    .to_string(),
                r["uptime_s"].as_u64().map_or("-".into(), duration),
                // Online: when the daemon started. Offline: when it shut
                // down (the message's own time); a last will's time is when
                // that process connected, so it says nothing.
                match (r["state"].as_str(), r["reason"].as_str()) {
                    (Some("online"), _) => r["started_at"].as_str().map_or("-".into(), short_time),
                    (_, Some("connection_lost")) => "-".into(),
                    _ => r["timestamp"].as_str().map_or("-".into(), short_time),
                },
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cols: &[&str]| {
        let text: Vec<String> = cols
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", text.join("  ").trim_end());
    };
    line(&header);
    for row in &cells {
        line(&row.iter().map(String::as_str).collect::<Vec<_>>());
    }
    if rows.is_empty() {
        let _ = writeln!(
            out,
            "(no instance has published its presence on this broker)"
        );
    }
    out
}

/// `3d 4h`, `2h 5m`, `4m 10s`, `12s`.
fn duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m {s}s")
    } else {
        format!("{s}s")
    }
}

/// `2026-11-27T21:23:31.782Z` -> `2026-11-27 21:23:31Z`.
fn short_time(t: &str) -> String {
    match (t.get(..10), t.get(11..19)) {
        (Some(day), Some(time)) => format!("{day} {time}Z"),
        _ => t.to_string(),
    }
}

/// One line per watched message, led by its time: the message's own
/// `timestamp`, or for the retained states that have none (occupancy,
/// alerts) when it was `received`.
pub fn watch_line(topic: &str, payload: &[u8], received: std::time::SystemTime) -> String {
    let Ok(v) = serde_json::from_slice::<Value>(payload) else {
        return format!("{topic}: {} bytes (not JSON)", payload.len());
    };
    let received = humantime::format_rfc3339_millis(received).to_string();
    let time = v["timestamp"]
        .as_str()
        .and_then(|t| t.get(11..23))
        .or_else(|| received.get(11..23))
        .unwrap_or("--:--:--.---");
    if topic.contains("/inferences/") {
        format!("{time} {}", result_line(&v))
    } else if topic.starts_with("care/events/") {
        format!("{time} {}", event_line(&v))
    } else if topic.starts_with("care/occupancy/") {
        format!("{time} {}", occupancy_line(&v))
    } else if topic.starts_with("care/alerts/") {
        format!("{time} {}", alerts_line(&v))
    } else if topic.starts_with(crate::topics::STATUS_PREFIX) {
        format!(
            "{time} status {} camera={} inference={}{}",
            s(&v["state"]),
            s(&v["camera"]),
            s(&v["inference"]),
            v["reason"]
                .as_str()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        )
    } else {
        let outcome = if v["success"].as_bool() == Some(true) {
            "ok"
        } else {
            "error"
        };
        format!(
            "{time} reply {} {outcome}: {}",
            s(&v["command"]),
            s(&v["message"])
        )
    }
}

/// A result: its people (track, box, confidence), latency, model and ROI.
fn result_line(v: &Value) -> String {
    let boxes: Vec<String> = v["data"]["detections"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            let b = &d["bbox"];
            format!(
                "[{}{}{:.0},{:.0} {:.0}x{:.0} {:.2}]",
                d["track_id"]
                    .as_u64()
                    .map(|t| format!("#{t} "))
                    .unwrap_or_default(),
                d["posture"]
                    .as_str()
                    .map(|p| format!("{p} "))
                    .unwrap_or_default(),
                b["x"].as_f64().unwrap_or(0.0),
                b["y"].as_f64().unwrap_or(0.0),
                b["width"].as_f64().unwrap_or(0.0),
                b["height"].as_f64().unwrap_or(0.0),
                d["confidence"].as_f64().unwrap_or(0.0)
            )
        })
        .collect();
    format!(
        "{} {} person(s) {} e2e {:.0} ms, model {}/{}, roi {}",
        s(&v["inference_type"]),
        s(&v["data"]["count"]),
        boxes.join(" "),
        v["e2e_latency_ms"].as_f64().unwrap_or(0.0),
        s(&v["model"]["name"]),
        s(&v["model"]["input_size"]),
        s(&v["roi"]["source"])
    )
}

/// An event: its type and what it says.
fn event_line(v: &Value) -> String {
    let what = match v["type"].as_str() {
        Some("occupancy_changed") => {
            format!("occupied={} count={}", s(&v["occupied"]), s(&v["count"]))
        }
        Some("zone_entered" | "zone_left") => format!(
            "track #{} zone {}{}",
            s(&v["track_id"]),
            s(&v["zone"]),
            v["reason"]
                .as_str()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        ),
        Some("person_left") => format!(
            "track #{} after {:.1} s{}",
            s(&v["track_id"]),
            v["duration_s"].as_f64().unwrap_or(0.0),
            v["reason"]
                .as_str()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        ),
        Some("posture_changed") => format!(
            "track #{} {} -> {}",
            s(&v["track_id"]),
            s(&v["previous"]),
            s(&v["posture"])
        ),
        Some("bed_exit_warning") => format!("track #{} zone {}", s(&v["track_id"]), s(&v["zone"])),
        Some("fall_detected" | "person_down") => format!(
            "track #{} ALERT {} ({}) {}",
            s(&v["track_id"]),
            s(&v["alert"]),
            s(&v["how"]),
            s(&v["alert_id"])
        ),
        Some("fall_cleared" | "alert_acknowledged") => format!(
            "track #{} alert {} ended ({}) after {:.0} s",
            s(&v["track_id"]),
            s(&v["alert_id"]),
            s(&v["reason"]),
            v["duration_s"].as_f64().unwrap_or(0.0)
        ),
        _ => format!("track #{}", s(&v["track_id"])),
    };
    format!("event {} {what}", s(&v["type"]))
}

/// The retained alert state: the active alerts, or none.
fn alerts_line(v: &Value) -> String {
    let alerts: Vec<String> = v["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            format!(
                "{} track #{} since {} (announced {}x) {}",
                s(&a["alert"]),
                s(&a["track_id"]),
                a["since"]
                    .as_str()
                    .and_then(|t| t.get(11..19))
                    .unwrap_or("?"),
                s(&a["announced"]),
                s(&a["alert_id"])
            )
        })
        .collect();
    if alerts.is_empty() {
        "alerts none".into()
    } else {
        format!("ALERTS {}", alerts.join("; "))
    }
}

/// The retained occupancy: whether the camera watches, the room (people seen
/// and not seen) and its zones.
fn occupancy_line(v: &Value) -> String {
    let zones: Vec<String> = v["zones"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, z)| format!("{name}={}", s(&z["count"])))
        .collect();
    let unseen: Vec<String> = v["unseen_people"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| format!("#{} last seen {}", s(&p["track_id"]), s(&p["last_seen"])))
        .collect();
    let people = if v["seen"].is_null() {
        String::new()
    } else {
        format!(
            " (seen {}, not seen {}{})",
            s(&v["seen"]),
            s(&v["unseen"]),
            if unseen.is_empty() {
                String::new()
            } else {
                format!(": {}", unseen.join(", "))
            }
        )
    };
    format!(
        "occupancy {}occupied={} count={}{people} since {}{}",
        v["state"]
            .as_str()
            .filter(|st| *st != "watching")
            .map(|st| format!("[{st}: last known] "))
            .unwrap_or_default(),
        s(&v["occupied"]),
        s(&v["count"]),
        s(&v["since"]),
        if zones.is_empty() {
            String::new()
        } else {
            format!(" zones: {}", zones.join(" "))
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-29T08:00:05.250Z: when a test's message arrived.
    fn at() -> std::time::SystemTime {
        std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_795_939_205_250)
    }
    use serde_json::json;

    #[test]
    fn fleet_table_is_aligned_and_says_unknowns() {
        let rows = vec![
            json!({"instance_id": "room-101", "room_id": "101", "state": "online", "camera": "streaming",
                   "inference": "running", "version": "0.1.0", "uptime_s": 3725,
                   "started_at": "2026-11-28T06:57:55.000Z", "since": "2026-11-28T07:00:01.000Z",
                   "timestamp": "2026-11-28T08:00:00.000Z"}),
            json!({"instance_id": "room-2", "room_id": "2", "state": "offline", "reason": "connection_lost",
                   "camera": "unknown", "inference": "stopped", "version": "0.1.0", "uptime_s": null,
                   "timestamp": "2026-11-28T06:00:00.000Z"}),
        ];
        let out = fleet(&rows);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines,
            [
                "INSTANCE  ROOM  STATE                      CAMERA     INFERENCE  VERSION  UPTIME  SINCE",
                "room-101  101   online                     streaming  running    0.1.0    1h 2m   2026-11-28 06:57:55Z",
                "room-2    2     offline (connection_lost)  unknown    stopped    0.1.0    -       -",
            ]
        );
        assert!(fleet(&[]).contains("no instance"));
    }

    #[test]
    fn renders_errors_and_detections() {
        let r = json!({"success": false, "message": "inference is not paused"});
        assert_eq!(
            reply("resume_inference", &r),
            "error: inference is not paused\n"
        );
        let msg = json!({"timestamp": "2026-11-27T21:23:31.782866Z", "inference_type": "person_detection",
            "data": {"count": 1, "detections": [{"bbox": {"x": 1.0, "y": 2.0, "width": 3.0, "height": 4.0}, "confidence": 0.9}]},
            "e2e_latency_ms": 12.3, "model": {"name": "ssdlite", "input_size": 300}, "roi": {"source": "full_frame"}});
        let line = watch_line(
            "care/inferences/x/person_detection",
            msg.to_string().as_bytes(),
            at(),
        );
        assert_eq!(
            line,
            "21:23:31.782 person_detection 1 person(s) [1,2 3x4 0.90] e2e 12 ms, model ssdlite/300, roi full_frame"
        );
    }

    #[test]
    fn zones_say_their_kind() {
        let r = json!({"success": true, "message": "2 zone(s)", "data": {"zones": [
            {"name": "bed", "polygon": [[0.1, 0.5], [0.5, 0.5], [0.5, 0.9]], "rest": true},
            {"name": "spot", "polygon": [[0.1, 0.1], [0.2, 0.1], [0.2, 0.2]]}]}});
        let text = reply("get_zones", &r);
        assert!(text.contains("  bed (rest): (0.10, 0.50)"), "{text}");
        assert!(text.contains("  spot: (0.10, 0.10)"), "{text}");
    }

    #[test]
    fn watch_shows_tracks_events_and_occupancy() {
        let result = json!({"timestamp": "2026-11-28T08:00:00.123Z", "inference_type": "person_detection",
            "data": {"count": 1, "detections": [{"bbox": {"x": 1, "y": 2, "width": 3, "height": 4},
            "confidence": 0.9, "class": "person", "track_id": 7}]},
            "e2e_latency_ms": 5, "model": {"name": "ssdlite", "input_size": 300}, "roi": {"source": "full_frame"}});
        let line = watch_line(
            "care/inferences/a/person_detection",
            result.to_string().as_bytes(),
            at(),
        );
        assert!(line.contains("[#7 1,2 3x4 0.90]"), "{line}");
        let left = json!({"type": "zone_left", "timestamp": "2026-11-28T08:00:01.000Z", "track_id": 7,
            "zone": "bed", "reason": "walked_out"});
        let line = watch_line("care/events/a", left.to_string().as_bytes(), at());
        assert_eq!(
            line,
            "08:00:01.000 event zone_left track #7 zone bed (walked_out)"
        );
        let occ = json!({"occupied": true, "count": 1, "since": "2026-11-28T08:00:00.000Z",
            "zones": {"bed": {"occupied": true, "count": 1}}});
        let line = watch_line("care/occupancy/a", occ.to_string().as_bytes(), at());
        assert_eq!(
            line,
            "08:00:05.250 occupancy occupied=true count=1 since 2026-11-28T08:00:00.000Z zones: bed=1",
            "a retained state without a timestamp shows when it arrived"
        );
        let occ = json!({"state": "paused", "occupied": true, "count": 2, "seen": 1, "unseen": 1,
            "since": "2026-11-28T08:00:00.000Z", "zones": {},
            "unseen_people": [{"track_id": 3, "last_seen": "2026-11-28T07:59:00.000Z", "position": {"x": 0.5, "y": 0.8}}]});
        let line = watch_line("care/occupancy/a", occ.to_string().as_bytes(), at());
        assert!(
            line.ends_with(
                "occupancy [paused: last known] occupied=true count=2 (seen 1, not seen 1: #3 last seen 2026-11-28T07:59:00.000Z) since 2026-11-28T08:00:00.000Z"
            ),
            "{line}"
        );
    }

    #[test]
    fn watch_shows_postures_falls_and_alerts() {
        let result = json!({"timestamp": "2026-11-30T08:00:00.123Z", "inference_type": "person_detection",
            "data": {"count": 1, "detections": [{"bbox": {"x": 1, "y": 2, "width": 3, "height": 4},
            "confidence": 0.3, "class": "person", "track_id": 7, "posture": "lying"}]},
            "e2e_latency_ms": 5, "model": {"name": "movenet", "input_size": 256}, "roi": {"source": "full_frame"}});
        let line = watch_line(
            "care/inferences/a/person_detection",
            result.to_string().as_bytes(),
            at(),
        );
        assert!(line.contains("[#7 lying 1,2 3x4 0.30]"), "{line}");
        let fall = json!({"type": "fall_detected", "timestamp": "2026-11-30T08:00:03.000Z", "track_id": 7,
            "alert_id": "a-1-a1", "alert": "fall", "how": "lying"});
        assert_eq!(
            watch_line("care/events/a", fall.to_string().as_bytes(), at()),
            "08:00:03.000 event fall_detected track #7 ALERT fall (lying) a-1-a1"
        );
        let acked = json!({"type": "alert_acknowledged", "timestamp": "2026-11-30T08:01:03.000Z", "track_id": 7,
            "alert_id": "a-1-a1", "alert": "fall", "reason": "acknowledged", "duration_s": 60.2});
        assert_eq!(
            watch_line("care/events/a", acked.to_string().as_bytes(), at()),
            "08:01:03.000 event alert_acknowledged track #7 alert a-1-a1 ended (acknowledged) after 60 s"
        );
        let posture = json!({"type": "posture_changed", "timestamp": "2026-11-30T08:00:01.000Z", "track_id": 7,
            "posture": "lying", "previous": "standing"});
        assert!(
            watch_line("care/events/a", posture.to_string().as_bytes(), at())
                .ends_with("track #7 standing -> lying")
        );
        let state = json!({"active": true, "alerts": [{"alert_id": "a-1-a1", "alert": "fall", "track_id": 7,
            "since": "2026-11-30T08:00:03.000Z", "announced": 2}]});
        assert!(
            watch_line("care/alerts/a", state.to_string().as_bytes(), at())
                .ends_with("ALERTS fall track #7 since 08:00:03 (announced 2x) a-1-a1")
        );
        let none = json!({"active": false, "alerts": []});
        assert_eq!(
            watch_line("care/alerts/a", none.to_string().as_bytes(), at()),
            "08:00:05.250 alerts none"
        );
    }
}

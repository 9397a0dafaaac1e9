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
    for w in d["workers"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "worker     {}: up {}, {} inferences, avg {} ms, {} restarts{}",
            s(&w["id"]),
            yn(&w["up"]),
            s(&w["inferences"]),
            s(&w["avg_latency_ms"]),
            s(&w["restarts"]),
            if w["failed"].as_bool() == Some(true) {
                ", failed (restarts stopped)"
            } else {
                ""
            }
        );
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

/// One line per watched message.
pub fn watch_line(topic: &str, payload: &[u8]) -> String {
    let Ok(v) = serde_json::from_slice::<Value>(payload) else {
        return format!("{topic}: {} bytes (not JSON)", payload.len());
    };
    let time = v["timestamp"]
        .as_str()
        .and_then(|t| t.get(11..23))
        .unwrap_or("--:--:--.---");
    if topic.contains("/inferences/") {
        let boxes: Vec<String> = v["data"]["detections"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|d| {
                let b = &d["bbox"];
                format!(
                    "[{:.0},{:.0} {:.0}x{:.0} {:.2}]",
                    b["x"].as_f64().unwrap_or(0.0),
                    b["y"].as_f64().unwrap_or(0.0),
                    b["width"].as_f64().unwrap_or(0.0),
                    b["height"].as_f64().unwrap_or(0.0),
                    d["confidence"].as_f64().unwrap_or(0.0)
                )
            })
            .collect();
        format!(
            "{time} {} {} person(s) {} e2e {:.0} ms, model {}/{}, roi {}",
            s(&v["inference_type"]),
            s(&v["data"]["count"]),
            boxes.join(" "),
            v["e2e_latency_ms"].as_f64().unwrap_or(0.0),
            s(&v["model"]["name"]),
            s(&v["model"]["input_size"]),
            s(&v["roi"]["source"])
        )
    } else if topic.starts_with("care/status/") {
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
        format!(
            "{time} reply {} {}: {}",
            s(&v["command"]),
            if v["success"].as_bool() == Some(true) {
                "ok"
            } else {
                "error"
            },
            s(&v["message"])
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
        );
        assert_eq!(
            line,
            "21:23:31.782 person_detection 1 person(s) [1,2 3x4 0.90] e2e 12 ms, model ssdlite/300, roi full_frame"
        );
    }
}

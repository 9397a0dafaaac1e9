//! The Prometheus text exposition (format 0.0.4) of every camera's metrics and
//! state and every worker's: each family once, labelled `camera` or `worker`.
//!
//! Reads only: it never changes a counter or a state.

use std::fmt::Write as _;

use crate::metrics::{EVENT_TYPES, GroupMetrics, Histogram, LATENCY_BUCKETS_S, Metrics};
use crate::status::{CameraWatch, WorkerView};

/// A labelled series for the exposition: name, type, help, value getter.
type Series<T> = (&'static str, &'static str, &'static str, fn(&T) -> f64);

/// A camera series: name, help, value getter.
type CameraSeries = (
    &'static str,
    &'static str,
    fn(&Metrics, &CameraWatch) -> f64,
);

fn flag(v: bool) -> f64 {
    f64::from(u8::from(v))
}

const CAMERA_COUNTERS: [CameraSeries; 25] = [
    (
        "orion_frames_captured_total",
        "Frames delivered by the stream.",
        |m, _| m.frames_captured.get() as f64,
    ),
    (
        "orion_frame_bytes_total",
        "Pixel bytes delivered by the stream.",
        |m, _| m.frame_bytes.get() as f64,
    ),
    (
        "orion_frames_warmup_total",
        "Frames consumed by the warm-up without inference.",
        |m, _| m.frames_warmup.get() as f64,
    ),
    (
        "orion_frames_gated_total",
        "Frames skipped by the rate gate.",
        |m, _| m.frames_gated.get() as f64,
    ),
    (
        "orion_frames_invalid_total",
        "Frames discarded because their buffer did not match the caps.",
        |m, _| m.frames_invalid.get() as f64,
    ),
    (
        "orion_stream_reconnects_total",
        "Stream (re)connections after a failure.",
        |m, _| m.stream_reconnects.get() as f64,
    ),
    (
        "orion_mqtt_published_total",
        "Messages handed to the MQTT client.",
        |m, _| m.mqtt_published.get() as f64,
    ),
    (
        "orion_mqtt_dropped_total",
        "Messages dropped because the broker was away or the queue full.",
        |m, _| m.mqtt_dropped.get() as f64,
    ),
    (
        "orion_mqtt_reconnects_total",
        "MQTT connection failures followed by a retry.",
        |m, _| m.mqtt_reconnects.get() as f64,
    ),
    (
        "orion_stream_input_bytes_total",
        "Encoded bytes that entered the decoder (file or network).",
        |m, _| m.stream_input_bytes.get() as f64,
    ),
    (
        "orion_stream_stalls_total",
        "Times the stream was connected but silent for stream.stall_timeout_s.",
        |m, _| m.stream_stalls.get() as f64,
    ),
    (
        "orion_frames_paused_total",
        "Frames not sent to inference because it was paused.",
        |m, _| m.frames_paused.get() as f64,
    ),
    (
        "orion_mqtt_connections_total",
        "Successful connections to the broker.",
        |m, _| m.mqtt_connections.get() as f64,
    ),
    (
        "orion_control_commands_total",
        "Control messages answered with success.",
        |m, _| m.control_commands.get() as f64,
    ),
    (
        "orion_control_rejected_total",
        "Control messages answered with an error.",
        |m, _| m.control_rejected.get() as f64,
    ),
    (
        "orion_control_messages_total",
        "Control messages that reached the daemon.",
        |m, _| m.control_received.get() as f64,
    ),
    (
        "orion_control_busy_total",
        "Control messages answered busy because the control queue was full.",
        |m, _| m.control_busy.get() as f64,
    ),
    (
        "orion_control_dropped_total",
        "Control messages neither run nor answered (queue full, busy replies' budget spent).",
        |m, _| m.control_dropped.get() as f64,
    ),
    (
        "orion_control_replies_dropped_total",
        "Replies that could not be sent (broker away).",
        |m, _| m.control_replies_dropped.get() as f64,
    ),
    (
        "orion_e2e_results_total",
        "Results that reached the emitter.",
        |m, _| m.e2e_latency.count() as f64,
    ),
    (
        "orion_outbox_delivered_total",
        "Events the broker acknowledged (removed from the outbox).",
        |m, _| m.outbox_delivered.get() as f64,
    ),
    (
        "orion_outbox_delayed_total",
        "Events delivered more than a second after they happened (delayed: true).",
        |m, _| m.outbox_delayed.get() as f64,
    ),
    (
        "orion_outbox_dropped_total",
        "Events dropped from the outbox (the oldest beyond its bounds, or unreadable).",
        |m, _| m.outbox_dropped.get() as f64,
    ),
    (
        "orion_events_suppressed_total",
        "Events not stored: beyond the camera's outbox.max_events_per_minute (a runaway model).",
        |m, _| m.events_suppressed.get() as f64,
    ),
    (
        "orion_ui_frames_encoded_total",
        "Frames JPEG-encoded for the live view (only while someone watches).",
        |m, _| m.ui_frames_encoded.get() as f64,
    ),
];

const CAMERA_GAUGES: [CameraSeries; 14] = [
    ("orion_ui_viewers", "Live view connections now.", |m, _| {
        m.ui_viewers.get()
    }),
    (
        "orion_outbox_queued",
        "Events in the outbox, not yet acknowledged by the broker.",
        |m, _| m.outbox_queued.get(),
    ),
    (
        "orion_outbox_disk_ok",
        "0 while the outbox cannot write to disk (events kept in memory only).",
        |_, w| flag(w.outbox.borrow().disk_error.is_none()),
    ),
    (
        "orion_tracks_active",
        "Confirmed tracks (people in view) now.",
        |m, _| m.tracks_active.get(),
    ),
    (
        "orion_running",
        "1 while the camera's components run.",
        |_, w| flag(w.running()),
    ),
    ("orion_paused", "1 while inference is paused.", |_, w| {
        flag(w.paused())
    }),
    (
        "orion_stream_stalled",
        "1 while the stream is connected but silent.",
        |_, w| flag(w.stream.borrow().stalled),
    ),
    (
        "orion_stream_failed",
        "1 once reconnecting was given up (camera.max_reconnect_attempts).",
        |_, w| flag(w.stream.borrow().failed),
    ),
    (
        "orion_stream_up",
        "1 while the stream delivers frames.",
        |_, w| flag(w.stream.borrow().up),
    ),
    (
        "orion_stream_fps",
        "Real frame rate of the stream.",
        |m, _| m.stream_fps.get(),
    ),
    (
        "orion_stream_last_frame_timestamp_seconds",
        "Unix time of the last frame from the stream.",
        |m, _| m.stream_last_frame.get_ms() as f64 / 1000.0,
    ),
    (
        "orion_inference_rate_hz",
        "Effective inference rate of the rate gate.",
        |m, _| m.inference_rate_hz.get(),
    ),
    (
        "orion_mqtt_connected",
        "1 while connected to the broker.",
        |_, w| flag(w.connected()),
    ),
    (
        "orion_mqtt_duplicate_instance",
        "1 while another live process uses this instance_id on the broker.",
        |_, w| flag(w.mqtt.borrow().conflict.is_some()),
    ),
];

/// Prometheus text exposition format, version 0.0.4, of every camera (label
/// `camera`) and every worker (label `worker`), each family once; `uptime_s`:
/// the daemon's.
pub fn render(
    cameras: &[(&Metrics, &CameraWatch)],
    workers: &[WorkerView],
    uptime_s: f64,
) -> String {
    let mut out = String::with_capacity(8 * 1024);
    render_cameras(&mut out, cameras);
    render_daemon(&mut out, cameras, workers, uptime_s);
    render_events(&mut out, cameras);
    render_workers(&mut out, workers);
    render_groups(&mut out, cameras);
    out
}

fn camera_label(m: &Metrics) -> String {
    format!("camera=\"{}\"", label_value(&m.camera))
}

/// The per-camera counters and gauges.
fn render_cameras(out: &mut String, cameras: &[(&Metrics, &CameraWatch)]) {
    for (kind, series) in [
        ("counter", &CAMERA_COUNTERS[..]),
        ("gauge", &CAMERA_GAUGES[..]),
    ] {
        for (name, help, get) in series {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (m, w) in cameras {
                let _ = writeln!(out, "{name}{{{}}} {}", camera_label(m), get(m, w));
            }
        }
    }
}

/// The daemon's own gauges: cameras, workers, uptime.
fn render_daemon(
    out: &mut String,
    cameras: &[(&Metrics, &CameraWatch)],
    workers: &[WorkerView],
    uptime: f64,
) {
    let gauges = [
        (
            "orion_cameras",
            "Cameras this daemon serves.",
            cameras.len() as f64,
        ),
        (
            "orion_workers",
            "Configured worker processes.",
            workers.len() as f64,
        ),
        ("orion_uptime_seconds", "Seconds since start.", uptime),
    ];
    for (name, help, v) in gauges {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
    }
}

/// Events by type, and the capture-to-MQTT latency.
fn render_events(out: &mut String, cameras: &[(&Metrics, &CameraWatch)]) {
    let name = "orion_events_total";
    let _ = writeln!(
        out,
        "# HELP {name} Events produced (stored in the outbox for delivery), by type.\n# TYPE {name} counter"
    );
    for (m, _) in cameras {
        for (kind, n) in EVENT_TYPES.iter().zip(&m.events) {
            let _ = writeln!(
                out,
                "{name}{{{},type=\"{kind}\"}} {}",
                camera_label(m),
                n.get()
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP orion_e2e_latency_seconds Capture to hand-off to MQTT.\n# TYPE orion_e2e_latency_seconds histogram"
    );
    for (m, _) in cameras {
        histogram(
            out,
            &m.e2e_latency,
            "orion_e2e_latency_seconds",
            &camera_label(m),
        );
    }
}

/// Per worker: its counters, state, backend and inference time.
fn render_workers(out: &mut String, workers: &[WorkerView]) {
    for (name, kind, help, get) in WORKER_SERIES {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for w in workers {
            let _ = writeln!(out, "{name}{{worker=\"{}\"}} {}", w.metrics.id, get(w));
        }
    }
    let name = "orion_worker_backend_info";
    let _ = writeln!(
        out,
        "# HELP {name} The runtime a worker runs its model on (label backend), 1 per worker that said it.\n# TYPE {name} gauge"
    );
    for w in workers {
        if let Some(backend) = w.status().backend {
            let _ = writeln!(
                out,
                "{name}{{worker=\"{}\",backend=\"{}\"}} 1",
                w.metrics.id,
                label_value(&backend)
            );
        }
    }
    let name = "orion_inference_duration_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Worker-reported total time per frame.\n# TYPE {name} histogram"
    );
    for w in workers {
        let labels = format!("worker=\"{}\"", w.metrics.id);
        histogram(out, &w.metrics.latency, name, &labels);
    }
}

/// Per camera and pool: the frame bus.
fn render_groups(out: &mut String, cameras: &[(&Metrics, &CameraWatch)]) {
    for (name, kind, help, get) in GROUP_SERIES {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (m, _) in cameras {
            for g in m.groups() {
                let _ = writeln!(
                    out,
                    "{name}{{{},group=\"{}\"}} {}",
                    camera_label(m),
                    g.name,
                    get(&g)
                );
            }
        }
    }
}

/// Per worker (label `worker`).
const WORKER_SERIES: [Series<WorkerView>; 10] = [
    (
        "orion_worker_frames_total",
        "counter",
        "Frames a worker took from its pool.",
        |w| w.metrics.frames_sent.get() as f64,
    ),
    (
        "orion_worker_inferences_total",
        "counter",
        "Results returned by a worker.",
        |w| w.metrics.inferences.get() as f64,
    ),
    (
        "orion_worker_results_dropped_total",
        "counter",
        "Results dropped because their camera's result handler was behind (or the camera had gone).",
        |w| w.metrics.results_dropped.get() as f64,
    ),
    (
        "orion_worker_errors_total",
        "counter",
        "Errors reported by or about a worker.",
        |w| w.metrics.errors.get() as f64,
    ),
    (
        "orion_worker_protocol_errors_total",
        "counter",
        "Messages that broke the worker contract (invalid result, wrong type or frame, stray answer): counted, logged, never published.",
        |w| w.metrics.protocol_errors.get() as f64,
    ),
    (
        "orion_worker_restarts_total",
        "counter",
        "Worker process restarts.",
        |w| w.metrics.restarts.get() as f64,
    ),
    (
        "orion_worker_hangs_total",
        "counter",
        "Frames a worker did not answer in time (it was replaced).",
        |w| w.metrics.hangs.get() as f64,
    ),
    (
        "orion_worker_failed",
        "gauge",
        "1 once restarts stopped after repeated failures.",
        |w| f64::from(u8::from(w.status.borrow().failed)),
    ),
    (
        "orion_worker_up",
        "gauge",
        "1 while the worker process is ready.",
        |w| f64::from(u8::from(w.status.borrow().up)),
    ),
    (
        "orion_worker_last_seen_timestamp_seconds",
        "gauge",
        "Unix time of the last message from a worker.",
        |w| w.metrics.last_seen.get_ms() as f64 / 1000.0,
    ),
];

/// Per camera and pool (labels `camera`, `group`).
const GROUP_SERIES: [Series<GroupMetrics>; 3] = [
    (
        "orion_framebus_frames_sent_total",
        "counter",
        "Frames of a camera a worker of the pool took.",
        |g| g.frames_sent.get() as f64,
    ),
    (
        "orion_framebus_frames_dropped_total",
        "counter",
        "Frames of a camera replaced in a pool's slot before any of its workers took them.",
        |g| g.frames_dropped.get() as f64,
    ),
    (
        "orion_framebus_drop_ratio",
        "gauge",
        "dropped / (sent + dropped) per camera and pool.",
        |g| g.drop_rate(),
    ),
];

/// One histogram's series: cumulative buckets, `+Inf`, sum and count.
fn histogram(out: &mut String, h: &Histogram, name: &str, labels: &str) {
    let (buckets, count, sum) = h.snapshot();
    let sep = if labels.is_empty() { "" } else { "," };
    for (bound, cumulative) in LATENCY_BUCKETS_S.iter().zip(buckets) {
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
        );
    }
    let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
    let braces = if labels.is_empty() {
        String::new()
    } else {
        format!("{{{labels}}}")
    };
    let _ = writeln!(out, "{name}_sum{braces} {sum}");
    let _ = writeln!(out, "{name}_count{braces} {count}");
}

/// A label value from outside (a worker's words): escaped as the exposition
/// format wants, and cut to 64 characters.
fn label_value(v: &str) -> String {
    let mut out = String::new();
    for c in v.chars().take(64) {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label_value("openvino:CPU"), "openvino:CPU");
        assert_eq!(label_value("a\"b\\c\nd\re"), "a\\\"b\\\\c\\nde");
        assert_eq!(label_value(&"x".repeat(100)).len(), 64);
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::default();
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_millis(40));
        h.observe(Duration::from_secs(9));
        let mut out = String::new();
        histogram(&mut out, &h, "x", "");
        assert!(out.contains("x_bucket{le=\"0.005\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"0.05\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"5\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("x_count 3\n"), "{out}");
    }
}

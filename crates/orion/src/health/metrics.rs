//! Counters, gauges and histograms shared by the components, and their Prometheus
//! text exposition. Only measurements live here: what a component *is* (up,
//! connected, paused, failed) is its typed status on a watch channel
//! (`crate::status`), which the exposition reads next to these.
//!
//! Components update these with relaxed atomics on their own hot paths; the HTTP
//! server and the health model only read them. Nothing here allocates per update or
//! takes a lock on the data path (the worker list lock is taken only when a worker
//! is registered and when the metrics are rendered).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

use crate::status::{CameraWatch, WorkerStatus, WorkerView};

#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.add(1);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A floating-point gauge.
#[derive(Debug, Default)]
pub struct GaugeF64(AtomicU64);

impl GaugeF64 {
    pub fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Ordering::Relaxed);
    }
    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

/// A wall-clock instant (Unix milliseconds); 0 = never.
/// When something last happened: the wall-clock time for operators (Unix ms,
/// exported), and a monotonic reading for every age and timeout, so that a
/// clock step (NTP on a box without a real-time clock) never makes a healthy
/// camera look stalled.
#[derive(Debug, Default)]
pub struct Timestamp {
    wall_ms: AtomicU64,
    /// Nanoseconds since [`mono_base`] plus one; 0 = never.
    mono_ns: AtomicU64,
}

/// The process's monotonic reference point.
fn mono_base() -> Instant {
    static BASE: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

impl Timestamp {
    pub fn touch(&self) {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        self.wall_ms.store(ms, Ordering::Relaxed);
        let ns = mono_base().elapsed().as_nanos() as u64;
        self.mono_ns.store(ns.saturating_add(1), Ordering::Relaxed);
    }
    /// Wall-clock Unix milliseconds of the last touch; 0 if never.
    pub fn get_ms(&self) -> u64 {
        self.wall_ms.load(Ordering::Relaxed)
    }
    /// Monotonic time since the last touch; `None` if never touched.
    pub fn age(&self) -> Option<Duration> {
        let ns = self.mono_ns.load(Ordering::Relaxed);
        (ns > 0).then(|| {
            mono_base()
                .elapsed()
                .saturating_sub(Duration::from_nanos(ns - 1))
        })
    }
}

/// Upper bounds (seconds) of the latency histogram buckets.
pub const LATENCY_BUCKETS_S: [f64; 12] = [
    0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
];

/// A fixed-bucket latency histogram.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS_S.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        if let Some(i) = LATENCY_BUCKETS_S.iter().position(|b| s <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(
            d.as_micros().min(u64::MAX as u128) as u64,
            Ordering::Relaxed,
        );
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    pub fn mean(&self) -> Option<Duration> {
        let n = self.count();
        (n > 0).then(|| Duration::from_micros(self.sum_us.load(Ordering::Relaxed) / n))
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, bound) in LATENCY_BUCKETS_S.iter().enumerate() {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
            );
        }
        let count = self.count();
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let braces = |s: &str| {
            if s.is_empty() {
                String::new()
            } else {
                format!("{{{s}}}")
            }
        };
        let _ = writeln!(out, "{name}_sum{} {sum}", braces(labels));
        let _ = writeln!(out, "{name}_count{} {count}", braces(labels));
    }
}

/// Everything one worker slot counts. Shared by the frame bus (sent/dropped), the
/// worker supervisor (the rest) and the result collector (inferences).
#[derive(Debug)]
pub struct WorkerMetrics {
    pub id: String,
    /// Frames the worker took from its group's slot.
    pub frames_sent: Counter,
    pub inferences: Counter,
    /// Results dropped because the result collector was busy.
    pub results_dropped: Counter,
    pub errors: Counter,
    /// Messages that broke the contract without breaking the stream (an
    /// invalid result, a result of another type or frame, a stray answer).
    pub protocol_errors: Counter,
    pub restarts: Counter,
    /// Frames the worker did not answer in time (it was then replaced).
    pub hangs: Counter,
    /// Last message from the worker.
    pub last_seen: Timestamp,
    pub latency: Histogram,
}

impl WorkerMetrics {
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            frames_sent: Counter::default(),
            inferences: Counter::default(),
            results_dropped: Counter::default(),
            errors: Counter::default(),
            protocol_errors: Counter::default(),
            restarts: Counter::default(),
            hangs: Counter::default(),
            last_seen: Timestamp::default(),
            latency: Histogram::default(),
        }
    }
}

/// Frame bus counters of one worker group (one inference type).
#[derive(Debug)]
pub struct GroupMetrics {
    pub name: String,
    /// Frames a worker of the group took.
    pub frames_sent: Counter,
    /// Frames replaced in the group's slot before any worker took them.
    pub frames_dropped: Counter,
}

impl GroupMetrics {
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            frames_sent: Counter::default(),
            frames_dropped: Counter::default(),
        }
    }

    /// dropped / (sent + dropped), 0 when nothing was offered.
    pub fn drop_rate(&self) -> f64 {
        let sent = self.frames_sent.get();
        let dropped = self.frames_dropped.get();
        if sent + dropped == 0 {
            0.0
        } else {
            dropped as f64 / (sent + dropped) as f64
        }
    }
}

/// A labelled series for the exposition: name, type, help, value getter.
type Series<T> = (&'static str, &'static str, &'static str, fn(&T) -> f64);

/// All counters of one camera (and the shared workers it uses, attached). Exported
/// with the label `camera="<instance_id>"`. State (stream up, connected, paused,
/// running) is not here: it is published on watch channels (`crate::status`).
#[derive(Debug)]
pub struct Metrics {
    /// The camera's instance_id (the `camera` label).
    pub camera: String,
    pub started: Instant,
    pub frames_captured: Counter,
    pub frame_bytes: Counter,
    pub frames_warmup: Counter,
    pub frames_gated: Counter,
    pub frames_invalid: Counter,
    pub stream_stalls: Counter,
    /// Encoded bytes entering the decoder (file or network).
    pub stream_input_bytes: Counter,
    /// Real frame rate of the stream, measured over about one second.
    pub stream_fps: GaugeF64,
    pub stream_last_frame: Timestamp,
    pub stream_reconnects: Counter,
    /// `stream.stall_timeout_s`: no frame for longer makes the daemon not ready.
    pub stall_timeout_s: GaugeF64,
    /// Effective inference rate the gate lets through.
    pub inference_rate_hz: GaugeF64,
    pub e2e_latency: Histogram,
    pub mqtt_published: Counter,
    pub mqtt_dropped: Counter,
    pub mqtt_reconnects: Counter,
    /// Successful connections (CONNACKs); presence re-publishes after each.
    pub mqtt_connections: Counter,
    pub frames_paused: Counter,
    pub control_commands: Counter,
    pub control_rejected: Counter,
    /// Control messages that reached the daemon (each is answered, answered
    /// `busy`, or counted in `control_dropped`).
    pub control_received: Counter,
    /// Control messages answered `busy` because the control queue was full.
    pub control_busy: Counter,
    /// Control messages neither run nor answered: the queue was full and the busy
    /// replies' budget spent.
    pub control_dropped: Counter,
    /// Replies that could not be sent (the broker away).
    pub control_replies_dropped: Counter,
    /// Confirmed tracks (people in view) now.
    pub tracks_active: GaugeF64,
    /// Events produced, by type (index in [`EVENT_TYPES`]).
    pub events: [Counter; EVENT_TYPES.len()],
    /// Events in the outbox, not yet acknowledged by the broker.
    pub outbox_queued: GaugeF64,
    /// Events the broker acknowledged (removed from the outbox).
    pub outbox_delivered: Counter,
    /// Of those, delivered more than a second after they happened (`delayed`).
    pub outbox_delayed: Counter,
    /// Events dropped from the outbox: the oldest beyond its bounds, or unreadable.
    pub outbox_dropped: Counter,
    /// Events not stored: beyond the camera's `outbox.max_events_per_minute`.
    pub events_suppressed: Counter,
    /// Live view connections now.
    pub ui_viewers: GaugeF64,
    /// Frames JPEG-encoded for the live view (only while someone watches).
    pub ui_frames_encoded: Counter,
    workers: Mutex<Vec<WorkerView>>,
    groups: Mutex<Vec<Arc<GroupMetrics>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            camera: String::new(),
            started: Instant::now(),
            frames_captured: Counter::default(),
            frame_bytes: Counter::default(),
            frames_warmup: Counter::default(),
            frames_gated: Counter::default(),
            frames_invalid: Counter::default(),
            stream_stalls: Counter::default(),
            stream_input_bytes: Counter::default(),
            stream_fps: GaugeF64::default(),
            stream_last_frame: Timestamp::default(),
            stream_reconnects: Counter::default(),
            stall_timeout_s: GaugeF64(AtomicU64::new(10f64.to_bits())),
            inference_rate_hz: GaugeF64::default(),
            e2e_latency: Histogram::default(),
            mqtt_published: Counter::default(),
            mqtt_dropped: Counter::default(),
            mqtt_reconnects: Counter::default(),
            mqtt_connections: Counter::default(),
            frames_paused: Counter::default(),
            control_commands: Counter::default(),
            control_rejected: Counter::default(),
            control_received: Counter::default(),
            control_busy: Counter::default(),
            control_dropped: Counter::default(),
            control_replies_dropped: Counter::default(),
            tracks_active: GaugeF64::default(),
            events: Default::default(),
            outbox_queued: GaugeF64::default(),
            outbox_delivered: Counter::default(),
            outbox_delayed: Counter::default(),
            outbox_dropped: Counter::default(),
            events_suppressed: Counter::default(),
            ui_viewers: GaugeF64::default(),
            ui_frames_encoded: Counter::default(),
            workers: Mutex::new(Vec::new()),
            groups: Mutex::new(Vec::new()),
        }
    }
}

/// The event types counted in `orion_events_total{type}`.
pub const EVENT_TYPES: [&str; 5] = [
    "person_entered",
    "person_left",
    "zone_entered",
    "zone_left",
    "occupancy_changed",
];

impl Metrics {
    /// Counts one published event of type `kind`.
    pub fn count_event(&self, kind: &str) {
        if let Some(i) = EVENT_TYPES.iter().position(|t| *t == kind) {
            self.events[i].inc();
        }
    }

    /// The metrics of camera `instance_id`.
    pub fn for_camera(instance_id: &str) -> Self {
        Self {
            camera: instance_id.to_string(),
            ..Self::default()
        }
    }

    /// Attaches a shared worker (health and status of this camera report the
    /// workers that serve it).
    pub fn attach_worker(&self, w: WorkerView) {
        self.workers
            .lock()
            .expect("metrics worker list poisoned")
            .push(w);
    }

    /// A new worker attached to this camera; its state sender for the caller.
    pub fn add_worker(&self, id: &str) -> watch::Sender<WorkerStatus> {
        let (view, tx) = WorkerView::new(id);
        self.attach_worker(view);
        tx
    }

    pub fn add_group(&self, name: &str) -> Arc<GroupMetrics> {
        let g = Arc::new(GroupMetrics::new(name));
        self.groups
            .lock()
            .expect("metrics group list poisoned")
            .push(g.clone());
        g
    }

    pub fn groups(&self) -> Vec<Arc<GroupMetrics>> {
        self.groups
            .lock()
            .expect("metrics group list poisoned")
            .clone()
    }

    pub fn workers(&self) -> Vec<WorkerView> {
        self.workers
            .lock()
            .expect("metrics worker list poisoned")
            .clone()
    }
}

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
/// `camera`) and every worker (label `worker`), each family once.
pub fn render(cameras: &[(&Metrics, &CameraWatch)], workers: &[WorkerView]) -> String {
    let mut out = String::with_capacity(8 * 1024);
    let label = |m: &Metrics| format!("camera=\"{}\"", label_value(&m.camera));
    for (kind, series) in [
        ("counter", &CAMERA_COUNTERS[..]),
        ("gauge", &CAMERA_GAUGES[..]),
    ] {
        for (name, help, get) in series {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (m, w) in cameras {
                let _ = writeln!(out, "{name}{{{}}} {}", label(m), get(m, w));
            }
        }
    }
    let uptime = cameras
        .first()
        .map_or(0.0, |(m, _)| m.started.elapsed().as_secs_f64());
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
    let name = "orion_events_total";
    let _ = writeln!(
        out,
        "# HELP {name} Events produced (stored in the outbox for delivery), by type.\n# TYPE {name} counter"
    );
    for (m, _) in cameras {
        for (kind, n) in EVENT_TYPES.iter().zip(&m.events) {
            let _ = writeln!(out, "{name}{{{},type=\"{kind}\"}} {}", label(m), n.get());
        }
    }
    let _ = writeln!(
        out,
        "# HELP orion_e2e_latency_seconds Capture to hand-off to MQTT.\n# TYPE orion_e2e_latency_seconds histogram"
    );
    for (m, _) in cameras {
        m.e2e_latency
            .render(&mut out, "orion_e2e_latency_seconds", &label(m));
    }
    let per_worker: [Series<WorkerView>; 10] = [
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
            "Results dropped because the collector was busy.",
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
    for (name, kind, help, get) in per_worker {
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
    let per_group: [Series<GroupMetrics>; 3] = [
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
    for (name, kind, help, get) in per_group {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (m, _) in cameras {
            for g in m.groups() {
                let _ = writeln!(
                    out,
                    "{name}{{{},group=\"{}\"}} {}",
                    label(m),
                    g.name,
                    get(&g)
                );
            }
        }
    }
    let name = "orion_inference_duration_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Worker-reported total time per frame.\n# TYPE {name} histogram"
    );
    for w in workers {
        w.metrics
            .latency
            .render(&mut out, name, &format!("worker=\"{}\"", w.metrics.id));
    }
    out
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
    use super::*;

    #[test]
    fn ages_are_monotonic_and_wall_time_is_kept_for_export() {
        let t = Timestamp::default();
        assert_eq!(t.age(), None);
        assert_eq!(t.get_ms(), 0);
        t.touch();
        let first = t.age().expect("touched");
        assert!(first < Duration::from_secs(1));
        std::thread::sleep(Duration::from_millis(20));
        assert!(t.age().expect("touched") >= first + Duration::from_millis(20));
        assert!(t.get_ms() > 1_700_000_000_000, "Unix milliseconds");
    }

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
        h.render(&mut out, "x", "");
        assert!(out.contains("x_bucket{le=\"0.005\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"0.05\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"5\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("x_count 3\n"), "{out}");
    }

    #[test]
    fn drop_rate_is_dropped_over_offered() {
        let g = GroupMetrics::new("g");
        assert_eq!(g.drop_rate(), 0.0);
        g.frames_sent.add(3);
        g.frames_dropped.add(1);
        assert!((g.drop_rate() - 0.25).abs() < 1e-9);
    }
}

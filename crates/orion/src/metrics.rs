//! Counters, gauges and histograms shared by the components (their Prometheus
//! text is `health::exposition`'s). Only measurements live here: what a component *is* (up,
//! connected, paused, failed) is its typed status on a watch channel
//! (the `status` module, a floor above), which the exposition reads next to these.
//!
//! Components update these with relaxed atomics on their own hot paths; the HTTP
//! server and the health model only read them. Nothing here allocates per update or
//! takes a lock on the data path (the worker list lock is taken only when a worker
//! is registered and when the metrics are rendered).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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

    /// Per bucket of [`LATENCY_BUCKETS_S`], the observations at or below it
    /// (cumulative); then the count and the sum in seconds.
    pub fn snapshot(&self) -> ([u64; LATENCY_BUCKETS_S.len()], u64, f64) {
        let mut cumulative = 0;
        let buckets = std::array::from_fn(|i| {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            cumulative
        });
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        (buckets, self.count(), sum)
    }
}

/// Everything one worker slot counts. Shared by the frame bus (sent/dropped), the
/// worker supervisor (the rest).
#[derive(Debug)]
pub struct WorkerMetrics {
    pub id: String,
    /// Frames the worker took from its group's slot.
    pub frames_sent: Counter,
    pub inferences: Counter,
    /// Results dropped because their camera's result handler was behind (or
    /// the camera had gone).
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

/// All counters of one camera (and the shared workers it uses, attached). Exported
/// with the label `camera="<instance_id>"`. State (stream up, connected, paused,
/// running) is not here: it is published on watch channels (the `status` module).
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
    fn drop_rate_is_dropped_over_offered() {
        let g = GroupMetrics::new("g");
        assert_eq!(g.drop_rate(), 0.0);
        g.frames_sent.add(3);
        g.frames_dropped.add(1);
        assert!((g.drop_rate() - 0.25).abs() < 1e-9);
    }
}

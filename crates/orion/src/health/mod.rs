//! Health: the status model (`healthy` / `degraded` / `unhealthy`) derived from
//! each camera's typed state and counters, and their Prometheus exposition.
//!
//! Owns the read side of the daemon's state for operators. It never changes what the
//! pipeline does: it only reads each camera's state and [`Metrics`] and the
//! shared workers', gathered in a [`Registry`]. It knows no transport: the HTTP
//! server (the `http` module, a floor above) serves what it derives.

pub mod exposition;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use serde::Serialize;
use tokio::sync::mpsc;

use crate::metrics::Metrics;
use crate::status::{CameraWatch, FrameClock, StreamStatus, WorkerView};

/// One camera as the read side sees it: its counters and its state.
pub type CameraEntry = (Arc<Metrics>, CameraWatch);

/// Every camera's metrics and state and the shared workers', for the HTTP
/// server. Cameras come and go while the daemon runs (a reload).
#[derive(Debug)]
pub struct Registry {
    cameras: RwLock<Vec<CameraEntry>>,
    pub workers: Vec<WorkerView>,
    /// When this run of the daemon started (its uptime; a reload that
    /// restarts everything starts a new run).
    started: Instant,
    /// The daemon's start is done: every camera started and what they share
    /// (the live view) serves. Until then it is not ready.
    up: AtomicBool,
}

impl Registry {
    pub fn new(cameras: Vec<CameraEntry>, workers: Vec<WorkerView>) -> Self {
        Self {
            cameras: RwLock::new(cameras),
            workers,
            started: Instant::now(),
            up: AtomicBool::new(true),
        }
    }

    /// The registry of a daemon that is starting: not ready until
    /// [`Registry::mark_up`], whatever its cameras say.
    pub fn starting(cameras: Vec<CameraEntry>, workers: Vec<WorkerView>) -> Self {
        let registry = Self::new(cameras, workers);
        registry.up.store(false, Ordering::Relaxed);
        registry
    }

    /// The daemon's start is done.
    pub fn mark_up(&self) {
        self.up.store(true, Ordering::Relaxed);
    }

    /// The cameras now, in the order they came.
    pub fn cameras(&self) -> Vec<CameraEntry> {
        self.cameras.read().expect("registry poisoned").clone()
    }

    pub fn add_camera(&self, camera: CameraEntry) {
        self.cameras
            .write()
            .expect("registry poisoned")
            .push(camera);
    }

    /// Lists the cameras in the order of `ids` (the config's).
    pub fn sort_cameras(&self, ids: &[String]) {
        self.cameras
            .write()
            .expect("registry poisoned")
            .sort_by_key(|(m, _)| ids.iter().position(|id| *id == m.camera));
    }

    pub fn remove_camera(&self, instance_id: &str) {
        self.cameras
            .write()
            .expect("registry poisoned")
            .retain(|(m, _)| m.camera != instance_id);
    }

    /// The daemon's report: `unhealthy` when no camera can do its job, `degraded`
    /// when one camera or more is not healthy, `healthy` otherwise. With several
    /// cameras each reason names its camera.
    pub fn report(&self) -> DaemonReport {
        let entries = self.cameras();
        let cameras: Vec<HealthReport> = entries
            .iter()
            .map(|(m, w)| {
                let mut r = report(m, w, &self.workers);
                r.workers.clear();
                r
            })
            .collect();
        let many = cameras.len() > 1;
        let mut reasons = Vec::new();
        for r in &cameras {
            for why in &r.reasons {
                // Worker reasons are the same for every camera: said once.
                if many && !why.starts_with("worker ") {
                    reasons.push(format!("{}: {why}", r.instance_id));
                } else if !reasons.contains(why) {
                    reasons.push(why.clone());
                }
            }
        }
        let up = self.up.load(Ordering::Relaxed);
        if !up {
            reasons.insert(0, "daemon starting".to_string());
        }
        let status =
            if !up || cameras.is_empty() || cameras.iter().all(|r| r.status == Status::Unhealthy) {
                Status::Unhealthy
            } else if cameras.iter().all(|r| r.status == Status::Healthy) {
                Status::Healthy
            } else {
                Status::Degraded
            };
        DaemonReport {
            status,
            reasons,
            uptime_s: self.started.elapsed().as_secs(),
            cameras,
            workers: self.workers.iter().map(worker_report).collect(),
        }
    }

    /// Prometheus text exposition of every camera and worker.
    pub fn render(&self) -> String {
        let entries = self.cameras();
        let cameras: Vec<(&Metrics, &CameraWatch)> =
            entries.iter().map(|(m, w)| (m.as_ref(), w)).collect();
        exposition::render(
            &cameras,
            &self.workers,
            self.started.elapsed().as_secs_f64(),
        )
    }
}

/// The daemon's health: its status, and each camera's report.
#[derive(Debug, Clone, Serialize)]
pub struct DaemonReport {
    pub status: Status,
    pub reasons: Vec<String>,
    pub uptime_s: u64,
    pub cameras: Vec<HealthReport>,
    pub workers: Vec<WorkerReport>,
}

/// Something an operator must hear about, published on the health topic
/// (`{"type": "error", ...}`): a worker whose restarts stopped, a camera given up.
#[derive(Debug, Clone, Serialize)]
pub struct Alert {
    /// `worker` or `stream`.
    pub source: &'static str,
    /// Worker id, or the redacted stream description.
    pub id: String,
    pub message: String,
}

/// Where components send alerts: the health topics of the cameras concerned (a
/// camera's own stream: that camera; a shared worker: every camera, those
/// that come later too). Sending never waits (a full queue drops the alert,
/// which is also in the log); a camera that has gone is forgotten.
#[derive(Debug, Clone, Default)]
pub struct Alerts(Arc<Mutex<Vec<mpsc::Sender<Alert>>>>);

impl Alerts {
    /// Alerts for one camera's queue.
    pub fn to(target: mpsc::Sender<Alert>) -> Self {
        let alerts = Self::default();
        alerts.add(target);
        alerts
    }

    /// Alerts go to `target` too from now on.
    pub fn add(&self, target: mpsc::Sender<Alert>) {
        self.targets().push(target);
    }

    fn targets(&self) -> std::sync::MutexGuard<'_, Vec<mpsc::Sender<Alert>>> {
        self.0.lock().expect("alert targets poisoned")
    }

    pub fn send(&self, alert: Alert) {
        tracing::error!(source = alert.source, id = %alert.id, "{}", alert.message);
        let mut targets = self.targets();
        targets.retain(|t| !t.is_closed());
        for target in targets.iter() {
            let _ = target.try_send(alert.clone());
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Running, stream and MQTT connected, every worker up.
    Healthy,
    /// Running and doing its job, with something missing: MQTT away (results are
    /// dropped and counted until it is back), the camera reconnecting within the
    /// stall timeout, a worker restarting or still starting.
    Degraded,
    /// Cannot do its job: not running (starting up or shutting down), no frame
    /// for longer than the stall timeout, the camera given up, or every worker
    /// failed for good. `/readiness` answers 503.
    Unhealthy,
}

#[derive(Debug, Clone, Serialize)]
pub struct WorkerReport {
    pub id: String,
    pub up: bool,
    /// Frames this worker took from its group's slot.
    pub frames_processed: u64,
    pub inferences: u64,
    pub errors: u64,
    pub restarts: u64,
    pub hangs: u64,
    /// Restarts stopped after repeated failures.
    pub failed: bool,
    /// Restarted at least once (state, not the counter above): down now
    /// means restarting.
    #[serde(skip)]
    pub restarted: bool,
    /// Said `ready` at least once (before that, a worker not up is starting).
    #[serde(skip)]
    pub ever_up: bool,
    pub avg_latency_ms: Option<f64>,
    /// The runtime of its model (`openvino:CPU`, ...); absent until `ready`.
    pub backend: Option<String>,
    /// Why that runtime: `openvino int8: fastest of openvino int8 10.9 ms,
    /// ... (measured ...)`; absent until `ready`.
    pub runtime_choice: Option<String>,
    /// Frames it works on at once; 0 until `ready`.
    pub parallel: u32,
    /// Unix time in milliseconds of the last message; absent if never seen.
    pub last_seen_ms: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StreamReport {
    pub connected: bool,
    pub stalled: bool,
    pub failed: bool,
    pub frames: u64,
    /// Real FPS over the last second; 0 when no frame came for 2 s.
    pub fps: f64,
    pub last_frame_age_ms: Option<u64>,
    pub reconnects: u64,
    /// Why the stream last failed, in a few words; absent once frames flow.
    pub last_error: Option<String>,
    pub bytes: u64,
    pub inference_rate_hz: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct HealthReport {
    /// The camera this report is about.
    pub instance_id: String,
    pub status: Status,
    /// Why the status is not `healthy`.
    pub reasons: Vec<String>,
    pub uptime_s: u64,
    pub stream: StreamReport,
    pub mqtt_connected: bool,
    /// Per worker group: frames taken versus dropped.
    pub frame_bus: Vec<GroupReport>,
    /// The workers serving the camera (left out of the daemon report's cameras:
    /// it lists them once).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub workers: Vec<WorkerReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct GroupReport {
    pub group: String,
    pub sent: u64,
    pub dropped: u64,
    pub drop_rate: f64,
}

/// Derives one camera's health report from its counters, its state and the
/// state of the workers that serve it.
pub fn report(m: &Metrics, w: &CameraWatch, workers: &[WorkerView]) -> HealthReport {
    let stream = w.stream();
    let mqtt = w.mqtt();
    let workers: Vec<WorkerReport> = workers.iter().map(worker_report).collect();
    let mut reasons = Vec::new();
    let status = if !w.running() {
        reasons.push("not running".to_string());
        Status::Unhealthy
    } else {
        let mut unhealthy = stream_reasons(w, &stream, &mut reasons);
        if !mqtt.connected {
            reasons.push("mqtt disconnected".to_string());
        }
        if let Some(conflict) = &mqtt.conflict {
            reasons.push(conflict.clone());
        }
        outbox_reasons(&w.outbox.borrow(), &mut reasons);
        unhealthy |= worker_reasons(&workers, &mut reasons);
        if unhealthy {
            Status::Unhealthy
        } else if reasons.is_empty() {
            Status::Healthy
        } else {
            Status::Degraded
        }
    };
    HealthReport {
        instance_id: m.camera.clone(),
        status,
        reasons,
        uptime_s: m.started.elapsed().as_secs(),
        stream: stream_report(m, &stream, &w.frames),
        mqtt_connected: mqtt.connected,
        frame_bus: m
            .groups()
            .iter()
            .map(|g| GroupReport {
                group: g.name.clone(),
                sent: g.frames_sent.get(),
                dropped: g.frames_dropped.get(),
                drop_rate: g.drop_rate(),
            })
            .collect(),
        workers,
    }
}

/// What is wrong with the stream, if anything; whether it makes the camera
/// unhealthy (given up, or no frame for longer than the stall timeout).
fn stream_reasons(w: &CameraWatch, stream: &StreamStatus, reasons: &mut Vec<String>) -> bool {
    // No frame ever counts from the start of the camera.
    let silent = w.frames.silent_for();
    let why = stream
        .last_error
        .as_ref()
        .map(|e| format!(": {e}"))
        .unwrap_or_default();
    if stream.failed {
        reasons.push(format!("stream failed (reconnecting given up){why}"));
        return true;
    }
    if silent > w.stall_timeout {
        reasons.push(format!("no frame for {:.0} s{why}", silent.as_secs_f64()));
        return true;
    }
    if !stream.up {
        reasons.push(format!("stream down{why}"));
    } else if stream.stalled {
        reasons.push("stream stalled".to_string());
    }
    false
}

/// What the outbox says is wrong (never unhealthy: events are kept).
fn outbox_reasons(outbox: &crate::status::OutboxStatus, reasons: &mut Vec<String>) {
    if let Some(e) = &outbox.disk_error {
        reasons.push(format!(
            "outbox cannot write to disk ({e}): events kept in memory only"
        ));
    }
    if outbox.dropped > 0 {
        reasons.push(format!(
            "outbox full: {} oldest events dropped",
            outbox.dropped
        ));
    }
    if outbox.suppressed > 0 {
        reasons.push(format!(
            "event flood: {} events not stored (more than outbox.max_events_per_minute; a runaway model?)",
            outbox.suppressed
        ));
    }
}

/// Each worker that is not up; whether none can work (every one failed).
fn worker_reasons(workers: &[WorkerReport], reasons: &mut Vec<String>) -> bool {
    for w in workers.iter().filter(|w| !w.up) {
        if w.failed {
            reasons.push(format!("worker {} failed (restarts stopped)", w.id));
        } else if w.restarted || w.ever_up {
            reasons.push(format!("worker {} down (restarting)", w.id));
        } else {
            reasons.push(format!("worker {} starting", w.id));
        }
    }
    !workers.is_empty() && workers.iter().all(|w| w.failed)
}

fn worker_report(view: &WorkerView) -> WorkerReport {
    let (w, status) = (&view.metrics, view.status());
    WorkerReport {
        id: w.id.clone(),
        up: status.up,
        frames_processed: w.frames_sent.get(),
        inferences: w.inferences.get(),
        errors: w.errors.get(),
        restarts: w.restarts.get(),
        hangs: w.hangs.get(),
        failed: status.failed,
        ever_up: status.ever_up,
        restarted: status.restarted,
        avg_latency_ms: w.latency.mean().map(|d| d.as_secs_f64() * 1e3),
        backend: status.backend,
        runtime_choice: status.choice,
        parallel: status.parallel,
        last_seen_ms: Some(w.last_seen.get_ms()).filter(|ms| *ms > 0),
    }
}

fn stream_report(m: &Metrics, s: &StreamStatus, frames: &FrameClock) -> StreamReport {
    let age = frames.age();
    let fresh = age.is_some_and(|a| a < std::time::Duration::from_secs(2));
    StreamReport {
        connected: s.up,
        stalled: s.stalled,
        failed: s.failed,
        frames: m.frames_captured.get(),
        fps: if fresh { m.stream_fps.get() } else { 0.0 },
        last_frame_age_ms: age.map(|a| a.as_millis() as u64),
        reconnects: m.stream_reconnects.get(),
        last_error: s.last_error.clone(),
        bytes: m.stream_input_bytes.get(),
        inference_rate_hz: m.inference_rate_hz.get(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A camera that runs, streams (a frame just now) and is connected.
    fn running_camera() -> (Metrics, crate::status::CameraStatus, CameraWatch) {
        let m = Metrics::default();
        let (status, w) = channels(std::time::Duration::from_secs(10), false);
        status.running.send_replace(true);
        status.stream.send_modify(|s| s.up = true);
        status.frames.next();
        status.mqtt.send_modify(|s| s.connected = true);
        (m, status, w)
    }
    use crate::status::channels;

    #[test]
    fn status_follows_components() {
        let m = Metrics::default();
        let (status, w) = channels(std::time::Duration::from_secs(10), false);
        let (view, worker) = WorkerView::new("person_detector-0");
        let workers = [view];
        let report = |m: &Metrics, w: &CameraWatch| report(m, w, &workers);
        assert_eq!(report(&m, &w).status, Status::Unhealthy);
        status.running.send_replace(true);
        status.stream.send_modify(|s| s.up = true);
        status.mqtt.send_modify(|s| s.connected = true);
        assert_eq!(report(&m, &w).status, Status::Degraded, "worker not up yet");
        worker.send_modify(|s| s.up = true);
        assert_eq!(report(&m, &w).status, Status::Healthy);
        status.mqtt.send_modify(|s| s.connected = false);
        let r = report(&m, &w);
        assert_eq!(r.status, Status::Degraded);
        assert_eq!(r.reasons, vec!["mqtt disconnected".to_string()]);
    }

    #[test]
    fn workers_starting_are_not_down_and_all_failed_is_unhealthy() {
        let (m, _status, w) = running_camera();
        let (v0, w0) = WorkerView::new("person_detector-0");
        let (v1, w1) = WorkerView::new("person_detector-1");
        let workers = [v0, v1];
        let report = |m: &Metrics, w: &CameraWatch| report(m, w, &workers);
        let r = report(&m, &w);
        assert_eq!(r.status, Status::Degraded);
        assert_eq!(
            r.reasons,
            vec![
                "worker person_detector-0 starting",
                "worker person_detector-1 starting"
            ]
        );
        for x in [&w0, &w1] {
            x.send_modify(|s| (s.up, s.ever_up) = (true, true));
        }
        assert_eq!(report(&m, &w).status, Status::Healthy);
        w0.send_modify(|s| s.up = false);
        assert_eq!(
            report(&m, &w).reasons,
            vec!["worker person_detector-0 down (restarting)"]
        );
        w0.send_modify(|s| s.failed = true);
        assert_eq!(report(&m, &w).status, Status::Degraded, "one worker left");
        w1.send_modify(|s| (s.up, s.failed) = (false, true));
        assert_eq!(
            report(&m, &w).status,
            Status::Unhealthy,
            "every worker failed"
        );
    }

    #[test]
    fn an_outbox_that_drops_or_cannot_write_degrades_the_camera() {
        let (m, status, w) = running_camera();
        let report = |m: &Metrics, w: &CameraWatch| report(m, w, &[]);
        assert_eq!(report(&m, &w).status, Status::Healthy);
        status.outbox.send_modify(|s| {
            s.disk_error = Some("No space left on device".into());
            s.dropped = 3;
        });
        let r = report(&m, &w);
        assert_eq!(r.status, Status::Degraded);
        assert_eq!(
            r.reasons,
            vec![
                "outbox cannot write to disk (No space left on device): events kept in memory only",
                "outbox full: 3 oldest events dropped"
            ]
        );
        status.outbox.send_replace(Default::default());
        assert_eq!(report(&m, &w).status, Status::Healthy);
    }

    #[test]
    fn no_frame_for_longer_than_the_stall_timeout_is_unhealthy() {
        let m = Metrics::default();
        let (status, w) = channels(std::time::Duration::ZERO, false);
        let report = |m: &Metrics, w: &CameraWatch| report(m, w, &[]);
        status.running.send_replace(true);
        status.mqtt.send_modify(|s| s.connected = true);
        status
            .stream
            .send_modify(|s| s.last_error = Some("connection refused".into()));
        std::thread::sleep(std::time::Duration::from_millis(5));
        let r = report(&m, &w);
        assert_eq!(r.status, Status::Unhealthy);
        assert!(
            r.reasons[0].starts_with("no frame for ")
                && r.reasons[0].ends_with(": connection refused"),
            "{:?}",
            r.reasons
        );
        let w = CameraWatch {
            stall_timeout: std::time::Duration::from_secs(3600),
            ..w
        };
        let r = report(&m, &w);
        assert_eq!(r.status, Status::Degraded);
        assert_eq!(r.reasons, vec!["stream down: connection refused"]);
        // A broker outage alone is degraded, not unhealthy.
        status.stream.send_modify(|s| {
            s.up = true;
            s.last_error = None;
        });
        status.frames.next();
        status.mqtt.send_modify(|s| s.connected = false);
        assert_eq!(report(&m, &w).status, Status::Degraded);
    }

    #[test]
    fn the_daemon_is_unhealthy_only_when_no_camera_can_work() {
        let cameras: Vec<_> = ["a", "b"]
            .iter()
            .map(|id| {
                let (status, w) = channels(std::time::Duration::from_secs(10), false);
                status.running.send_replace(true);
                status.mqtt.send_modify(|s| s.connected = true);
                (Arc::new(Metrics::for_camera(id)), w, status)
            })
            .collect();
        for (_, _, status) in &cameras {
            status.stream.send_modify(|s| s.up = true);
            status.frames.next();
        }
        let registry = Registry::new(
            cameras
                .iter()
                .map(|(m, w, _)| (m.clone(), w.clone()))
                .collect(),
            Vec::new(),
        );
        assert_eq!(registry.report().status, Status::Healthy);
        cameras[0].2.stream.send_modify(|s| s.failed = true);
        let r = registry.report();
        assert_eq!(r.status, Status::Degraded, "one camera still works");
        assert_eq!(r.reasons, vec!["a: stream failed (reconnecting given up)"]);
        cameras[1].2.stream.send_modify(|s| s.failed = true);
        assert_eq!(registry.report().status, Status::Unhealthy);
    }

    /// A daemon still starting is not ready, even once its cameras run (its
    /// live view may not serve yet); it is from its mark on.
    #[test]
    fn a_starting_daemon_is_unready_until_marked_up() {
        let (status, w) = channels(std::time::Duration::from_secs(10), false);
        status.running.send_replace(true);
        status.mqtt.send_modify(|s| s.connected = true);
        status.stream.send_modify(|s| s.up = true);
        status.frames.next();
        let registry =
            Registry::starting(vec![(Arc::new(Metrics::for_camera("a")), w)], Vec::new());
        let r = registry.report();
        assert_eq!(r.status, Status::Unhealthy);
        assert_eq!(r.reasons, ["daemon starting"]);
        registry.mark_up();
        assert_eq!(registry.report().status, Status::Healthy);
    }

    /// The daemon's uptime is its own: not a camera's (a camera restarted by
    /// a reload, or none at all, does not reset it).
    #[test]
    fn uptime_is_the_daemons_whatever_its_cameras() {
        let uptime = |r: &Registry| -> f64 {
            let text = r.render();
            let line = text
                .lines()
                .find(|l| l.starts_with("orion_uptime_seconds "))
                .expect("uptime gauge");
            line.split(' ')
                .nth(1)
                .and_then(|v| v.parse().ok())
                .expect("value")
        };
        let registry = Registry::new(Vec::new(), Vec::new());
        let empty = uptime(&registry);
        assert!(empty > 0.0, "counted with no camera: {empty}");
        let (_, w) = channels(std::time::Duration::from_secs(10), false);
        registry.add_camera((Arc::new(Metrics::for_camera("late")), w));
        assert!(
            uptime(&registry) >= empty,
            "a camera that came later does not reset it"
        );
    }
}

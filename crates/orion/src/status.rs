//! The typed state of one camera's components, each published by its one owner
//! on a `watch` channel: the stream supervisor publishes [`StreamStatus`], the MQTT
//! emitter [`MqttStatus`], the control plane `paused` and `privacy`, the camera `running`,
//! the outbox [`OutboxStatus`]; each worker supervisor its [`WorkerStatus`].
//! Health, presence, `get_status` and the metrics exposition read a
//! [`CameraWatch`] (receivers only); presence and start-up wait on changes instead
//! of polling.
//!
//! Counters and timings stay in `crate::metrics`; this module holds state, and
//! derives the camera and inference states in one place. It never publishes
//! anything itself and never blocks a publisher (a `watch` keeps only the newest
//! value).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::metrics::WorkerMetrics;

/// What the stream supervisor says about its camera.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamStatus {
    /// The pipeline runs and delivers frames.
    pub up: bool,
    /// Connected but no frame for `stream.stall_timeout_s`.
    pub stalled: bool,
    /// Reconnecting was given up (`camera.max_reconnect_attempts`).
    pub failed: bool,
    /// Why the stream last failed, in a few words (`connection refused`, ...).
    pub last_error: Option<String>,
    /// A first run ended: the stream is reconnecting, not starting, while down.
    pub retrying: bool,
}

/// The frames a camera's stream delivered, as its supervisor counts them (its
/// one writer): sequence numbers, progress and silence are decided from here,
/// never from the metrics (which count the same frames for operators).
#[derive(Debug)]
pub struct FrameClock {
    /// Sequence number of the newest frame (the first is 1; never reset).
    seq: AtomicU64,
    /// When the newest frame came.
    last: Mutex<Option<Instant>>,
    /// When the camera was set up: silence counts from here before any frame.
    since: Instant,
}

impl Default for FrameClock {
    fn default() -> Self {
        Self {
            seq: AtomicU64::new(0),
            last: Mutex::new(None),
            since: Instant::now(),
        }
    }
}

impl FrameClock {
    /// Counts a new frame; its sequence number.
    pub fn next(&self) -> u64 {
        *self.last.lock().expect("frame clock poisoned") = Some(Instant::now());
        self.seq.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Frames so far.
    pub fn count(&self) -> u64 {
        self.seq.load(Ordering::Relaxed)
    }

    /// Since the newest frame (`None` before the first).
    pub fn age(&self) -> Option<Duration> {
        self.last
            .lock()
            .expect("frame clock poisoned")
            .map(|t| t.elapsed())
    }

    /// How long no frame came: since the newest, or since the start.
    pub fn silent_for(&self) -> Duration {
        self.age().unwrap_or_else(|| self.since.elapsed())
    }
}

/// What a stream supervisor publishes: its status and its frame count.
pub struct StreamOwner {
    pub status: watch::Sender<StreamStatus>,
    pub frames: Arc<FrameClock>,
}

/// What the MQTT emitter says about its connection.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MqttStatus {
    pub connected: bool,
    /// Connections accepted so far (CONNACKs): what is published once per
    /// connection (presence, discovery) is published again when it changes.
    pub connection: u64,
    /// Another live process uses this instance_id on the broker.
    pub conflict: Option<String>,
}

/// What the outbox says about one camera's events (kept by the `outbox` module).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OutboxStatus {
    /// The disk refuses the events (full, read-only, gone): they are kept in
    /// memory only, up to a bound, and lost if the daemon stops.
    pub disk_error: Option<String>,
    /// Oldest events dropped for the bounds since the backlog was last empty.
    pub dropped: u64,
    /// Events not stored in the current flood (beyond
    /// `outbox.max_events_per_minute`); 0 once it is over.
    pub suppressed: u64,
}

/// What a worker supervisor says about its worker.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WorkerStatus {
    /// The process said `ready` and has not failed since.
    pub up: bool,
    /// Said `ready` at least once: before that a worker that is not up is
    /// starting, not down.
    pub ever_up: bool,
    /// Restarts stopped after repeated failures.
    pub failed: bool,
    /// Its process was restarted at least once (down now: restarting).
    pub restarted: bool,
    /// The runtime the worker runs its model on (`openvino:CPU`, ...), as it
    /// said in `ready` and its results.
    pub backend: Option<String>,
    /// Why that runtime and precision (measured figures), as the worker said
    /// in `ready` or after a model swap.
    pub choice: Option<String>,
    /// Frames it works on at once (its `ready`, capped by the config).
    pub parallel: u32,
}

/// One worker as its readers see it: its counters and its state.
#[derive(Debug, Clone)]
pub struct WorkerView {
    pub metrics: Arc<WorkerMetrics>,
    pub status: watch::Receiver<WorkerStatus>,
}

impl WorkerView {
    /// A worker's counters and state channel; the sender goes to its supervisor.
    pub fn new(id: &str) -> (Self, watch::Sender<WorkerStatus>) {
        let (tx, status) = watch::channel(WorkerStatus::default());
        (
            Self {
                metrics: Arc::new(WorkerMetrics::new(id)),
                status,
            },
            tx,
        )
    }

    pub fn status(&self) -> WorkerStatus {
        self.status.borrow().clone()
    }
}

/// The publishing sides, handed out once each to the owning component.
pub struct CameraStatus {
    pub stream: watch::Sender<StreamStatus>,
    /// Shared by the emitter's event loop (which connects) and its `disconnect`.
    pub mqtt: Arc<watch::Sender<MqttStatus>>,
    pub paused: watch::Sender<bool>,
    /// Privacy mode: no video leaves the sensor (the control plane sets it).
    pub privacy: watch::Sender<bool>,
    pub running: watch::Sender<bool>,
    pub outbox: watch::Sender<OutboxStatus>,
    /// The stream supervisor's frame count (it writes, everyone reads).
    pub frames: Arc<FrameClock>,
}

/// The reading side: everything that reports on a camera holds one (cheap to clone).
#[derive(Debug, Clone)]
pub struct CameraWatch {
    pub stream: watch::Receiver<StreamStatus>,
    pub mqtt: watch::Receiver<MqttStatus>,
    pub paused: watch::Receiver<bool>,
    pub privacy: watch::Receiver<bool>,
    pub running: watch::Receiver<bool>,
    pub outbox: watch::Receiver<OutboxStatus>,
    /// The frames the stream delivered.
    pub frames: Arc<FrameClock>,
    /// `stream.stall_timeout_s`: a stream silent for longer is stalled and the
    /// camera not ready (a fact of its config, fixed while it runs).
    pub stall_timeout: Duration,
}

/// A camera's status channels: the senders for their owners, a watch for
/// readers; privacy mode starts as `privacy` says (set before anything can
/// read it: no frame leaves before the configured mode holds).
pub fn channels(stall_timeout: Duration, privacy: bool) -> (CameraStatus, CameraWatch) {
    let (stream, stream_rx) = watch::channel(StreamStatus::default());
    let (mqtt, mqtt_rx) = watch::channel(MqttStatus::default());
    let (paused, paused_rx) = watch::channel(false);
    let (privacy, privacy_rx) = watch::channel(privacy);
    let (running, running_rx) = watch::channel(false);
    let (outbox, outbox_rx) = watch::channel(OutboxStatus::default());
    let frames = Arc::new(FrameClock::default());
    (
        CameraStatus {
            stream,
            mqtt: Arc::new(mqtt),
            paused,
            privacy,
            running,
            outbox,
            frames: frames.clone(),
        },
        CameraWatch {
            stream: stream_rx,
            mqtt: mqtt_rx,
            paused: paused_rx,
            privacy: privacy_rx,
            running: running_rx,
            outbox: outbox_rx,
            frames,
            stall_timeout,
        },
    )
}

impl CameraWatch {
    pub fn stream(&self) -> StreamStatus {
        self.stream.borrow().clone()
    }

    pub fn mqtt(&self) -> MqttStatus {
        self.mqtt.borrow().clone()
    }

    pub fn connected(&self) -> bool {
        self.mqtt.borrow().connected
    }

    pub fn paused(&self) -> bool {
        *self.paused.borrow()
    }

    /// Privacy mode: boxes and figures only, no video leaves the sensor.
    pub fn privacy(&self) -> bool {
        *self.privacy.borrow()
    }

    pub fn running(&self) -> bool {
        *self.running.borrow()
    }

    /// The camera state as presence and status report it: `failed`, `stalled`,
    /// `streaming`, `starting` (nothing yet) or `reconnecting`, as the stream's
    /// supervisor says (it finds a stall after the stall timeout).
    pub fn camera_state(&self) -> &'static str {
        let s = self.stream.borrow();
        if s.failed {
            "failed"
        } else if s.stalled {
            "stalled"
        } else if s.up {
            "streaming"
        } else if !s.retrying {
            "starting"
        } else {
            "reconnecting"
        }
    }

    /// The stream delivers frames now (`camera_state` is `streaming`).
    pub fn streaming(&self) -> bool {
        let s = self.stream.borrow();
        s.up && !s.stalled && !s.failed
    }

    /// `starting` until the daemon runs, then `paused` or `running`.
    pub fn inference_state(&self) -> &'static str {
        match (self.running(), self.paused()) {
            (false, _) => "starting",
            (true, true) => "paused",
            (true, false) => "running",
        }
    }

    /// Resolves when any of the camera's states changes (or its owners are gone,
    /// then never again: the caller's cancellation ends its wait).
    pub async fn changed(&mut self) {
        let gone = tokio::select! {
            r = self.stream.changed() => r.is_err(),
            r = self.mqtt.changed() => r.is_err(),
            r = self.paused.changed() => r.is_err(),
            r = self.privacy.changed() => r.is_err(),
            r = self.running.changed() => r.is_err(),
        };
        if gone {
            std::future::pending::<()>().await;
        }
    }

    /// Waits until the MQTT connection is up, at most `timeout`; true if it is.
    pub async fn wait_connected(&self, timeout: Duration) -> bool {
        let mut rx = self.mqtt.clone();
        matches!(
            tokio::time::timeout(timeout, rx.wait_for(|s| s.connected)).await,
            Ok(Ok(_))
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn camera_and_inference_states_come_from_the_owners_status() {
        let (status, w) = channels(Duration::from_secs(10), false);
        assert_eq!(w.camera_state(), "starting");
        assert_eq!(w.inference_state(), "starting");
        status.stream.send_modify(|s| s.up = true);
        assert_eq!(w.camera_state(), "streaming");
        status
            .stream
            .send_modify(|s| (s.up, s.retrying) = (false, true));
        assert_eq!(w.camera_state(), "reconnecting");
        status.stream.send_modify(|s| s.failed = true);
        assert_eq!(w.camera_state(), "failed");
        status.running.send_replace(true);
        assert_eq!(w.inference_state(), "running");
        status.paused.send_replace(true);
        assert_eq!(w.inference_state(), "paused");
    }

    #[tokio::test(start_paused = true)]
    async fn waits_follow_changes_not_a_clock() {
        let (status, mut w) = channels(Duration::from_secs(10), false);
        // Paused time: the wait for a connection that never comes ends exactly at
        // its timeout, however long that is in real time.
        let started = tokio::time::Instant::now();
        assert!(!w.wait_connected(Duration::from_secs(5)).await);
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        let waiter = {
            let w = w.clone();
            tokio::spawn(async move { w.wait_connected(Duration::from_secs(3600)).await })
        };
        tokio::task::yield_now().await;
        status.mqtt.send_modify(|s| s.connected = true);
        assert!(waiter.await.expect("task"), "woken by the change");
        // `changed` resolves on a change of any part.
        w.stream.mark_unchanged();
        w.mqtt.mark_unchanged();
        let change = tokio::spawn(async move {
            w.changed().await;
            w.paused()
        });
        tokio::task::yield_now().await;
        status.paused.send_replace(true);
        assert!(change.await.expect("task"));
    }
}

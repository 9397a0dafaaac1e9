//! Frame bus: non-blocking fan-out of accepted frames to every worker.
//!
//! Each worker has an inbox of one slot. Publishing replaces what is in the slot
//! (newest frame wins: a stale frame is worth less than a fresh one) and counts the
//! replaced frame as dropped for that worker. Frames are `Arc`s: fan-out copies a
//! pointer, never pixels. Publishing never waits for a worker.

use std::sync::{Arc, Mutex};

use orion_protocol::RoiProcessing;
use tokio::sync::Notify;

use crate::health::metrics::WorkerMetrics;
use crate::stream::Frame;

/// One frame with the crop chosen for it.
#[derive(Debug)]
pub struct Job {
    pub frame: Arc<Frame>,
    pub roi: RoiProcessing,
    pub trace_id: String,
}

struct Slot {
    job: Mutex<Option<Arc<Job>>>,
    notify: Notify,
    metrics: Arc<WorkerMetrics>,
}

/// The publishing side, held by the frame consumer.
#[derive(Clone, Default)]
pub struct FrameBus {
    slots: Arc<Mutex<Vec<Arc<Slot>>>>,
}

/// The receiving side of one worker's inbox, held by that worker's supervisor.
/// Dropping it does not unregister the slot; frames then simply keep replacing
/// each other (counted as drops), which is what an absent worker means.
pub struct Inbox {
    slot: Arc<Slot>,
}

impl FrameBus {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a worker inbox counted in `metrics`.
    pub fn register(&self, metrics: Arc<WorkerMetrics>) -> Inbox {
        let slot = Arc::new(Slot {
            job: Mutex::new(None),
            notify: Notify::new(),
            metrics,
        });
        self.slots
            .lock()
            .expect("frame bus slot list poisoned")
            .push(slot.clone());
        Inbox { slot }
    }

    /// Offers `job` to every worker; never blocks on a worker.
    pub fn publish(&self, job: Arc<Job>) {
        let slots = self.slots.lock().expect("frame bus slot list poisoned");
        for slot in slots.iter() {
            let replaced = slot
                .job
                .lock()
                .expect("frame bus slot poisoned")
                .replace(job.clone());
            if replaced.is_some() {
                slot.metrics.frames_dropped.inc();
            }
            slot.notify.notify_one();
        }
    }

    /// Number of registered inboxes.
    pub fn len(&self) -> usize {
        self.slots.lock().expect("frame bus slot list poisoned").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Inbox {
    /// Takes the newest frame if there is one.
    pub fn try_take(&self) -> Option<Arc<Job>> {
        let job = self.slot.job.lock().expect("frame bus slot poisoned").take();
        if job.is_some() {
            self.slot.metrics.frames_sent.inc();
        }
        job
    }

    /// Waits for a frame. Cancel-safe: a frame is only taken when this returns it.
    pub async fn recv(&self) -> Arc<Job> {
        loop {
            if let Some(job) = self.try_take() {
                return job;
            }
            self.slot.notify.notified().await;
        }
    }

    /// Forgets a pending frame (e.g. while its worker restarts), counting it dropped.
    pub fn discard(&self) {
        if self.slot.job.lock().expect("frame bus slot poisoned").take().is_some() {
            self.slot.metrics.frames_dropped.inc();
        }
    }
}

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
        self.slots
            .lock()
            .expect("frame bus slot list poisoned")
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Inbox {
    /// Takes the newest frame if there is one.
    pub fn try_take(&self) -> Option<Arc<Job>> {
        let job = self
            .slot
            .job
            .lock()
            .expect("frame bus slot poisoned")
            .take();
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
        if self
            .slot
            .job
            .lock()
            .expect("frame bus slot poisoned")
            .take()
            .is_some()
        {
            self.slot.metrics.frames_dropped.inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant, SystemTime};

    use gstreamer as gst;

    use super::*;
    use crate::attention::RoiAttention;
    use crate::stream::CapturedFrame;

    fn job(seq: u64) -> Arc<Job> {
        gst::init().expect("gstreamer init");
        let buffer = gst::Buffer::from_slice(vec![0u8; 8 * 4 * 3]);
        let frame = Frame::map(
            CapturedFrame {
                seq,
                buffer,
                captured_at: SystemTime::now(),
                captured_instant: Instant::now(),
            },
            8,
            4,
        )
        .expect("frame maps");
        Arc::new(Job {
            frame,
            roi: RoiAttention::new(8, 4, &crate::config::RoisConfig::default()).process(),
            trace_id: format!("t-{seq}"),
        })
    }

    fn worker(bus: &FrameBus, id: &str) -> (Inbox, Arc<WorkerMetrics>) {
        let m = Arc::new(WorkerMetrics::new(id));
        (bus.register(m.clone()), m)
    }

    #[test]
    fn newest_frame_wins_and_replaced_frames_count_as_dropped() {
        let bus = FrameBus::new();
        let (inbox, m) = worker(&bus, "w0");
        for seq in 1..=3 {
            bus.publish(job(seq));
        }
        let got = inbox.try_take().expect("a frame is waiting");
        assert_eq!(got.frame.seq, 3, "the newest frame is delivered");
        assert!(inbox.try_take().is_none(), "only one frame is held");
        assert_eq!((m.frames_sent.get(), m.frames_dropped.get()), (1, 2));
        assert!((m.drop_rate() - 2.0 / 3.0).abs() < 1e-9);
    }

    #[test]
    fn fan_out_shares_the_frame_and_counts_per_worker() {
        let bus = FrameBus::new();
        let (fast, fast_m) = worker(&bus, "fast");
        let (slow, slow_m) = worker(&bus, "slow");
        bus.publish(job(1));
        let a = fast.try_take().expect("fast got frame 1");
        bus.publish(job(2));
        let b = fast.try_take().expect("fast got frame 2");
        let s = slow.try_take().expect("slow got the newest");
        assert_eq!((a.frame.seq, b.frame.seq, s.frame.seq), (1, 2, 2));
        assert!(
            Arc::ptr_eq(&b, &s),
            "both workers hold the same frame, not copies"
        );
        assert_eq!(
            (fast_m.frames_sent.get(), fast_m.frames_dropped.get()),
            (2, 0)
        );
        assert_eq!(
            (slow_m.frames_sent.get(), slow_m.frames_dropped.get()),
            (1, 1)
        );
    }

    #[test]
    fn publishing_never_waits_for_an_absent_reader() {
        let bus = FrameBus::new();
        let (_inbox, m) = worker(&bus, "idle");
        let j = job(1);
        for _ in 0..10_000 {
            bus.publish(j.clone());
        }
        assert_eq!(m.frames_dropped.get(), 9_999);
        assert_eq!(
            Arc::strong_count(&j),
            2,
            "one frame held in the inbox, nothing queued"
        );
    }

    #[tokio::test]
    async fn recv_wakes_on_publish_and_discard_drops() {
        let bus = FrameBus::new();
        let (inbox, m) = worker(&bus, "w");
        let waiter = tokio::spawn(async move {
            let j = inbox.recv().await;
            (j.frame.seq, inbox)
        });
        tokio::task::yield_now().await;
        bus.publish(job(7));
        let (seq, inbox) = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("recv woke up")
            .expect("task ok");
        assert_eq!(seq, 7);
        bus.publish(job(8));
        inbox.discard();
        assert!(inbox.try_take().is_none());
        assert_eq!((m.frames_sent.get(), m.frames_dropped.get()), (1, 1));
    }
}

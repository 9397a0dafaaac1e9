//! Frame bus: non-blocking distribution of accepted frames to the workers.
//!
//! Workers come in groups, one per inference type (all `person_detector`
//! workers form one group). Every group gets every frame (fan-out across
//! inference types); inside a group, the frame goes to whichever worker is free
//! first (load sharing: two detectors process twice the frames, they do not
//! repeat each other's work). Each group has a one-frame slot: publishing
//! replaces what is there (newest frame wins: a stale frame is worth less than a
//! fresh one) and counts the replaced frame as dropped for that group. Frames are
//! `Arc`s: fan-out copies a pointer, never pixels. Publishing never waits for a
//! worker.

use std::sync::{Arc, Mutex};

use orion_protocol::RoiProcessing;
use tokio::sync::Notify;

use crate::health::metrics::{GroupMetrics, WorkerMetrics};
use crate::stream::Frame;

/// One frame with the crop chosen for it.
#[derive(Debug)]
pub struct Job {
    pub frame: Arc<Frame>,
    pub roi: RoiProcessing,
    pub trace_id: String,
}

struct Group {
    slot: Mutex<Option<Arc<Job>>>,
    /// Woken when a frame is published (one waiting worker takes it).
    published: Notify,
    /// Woken when a worker takes the frame (for paced sources).
    taken: Notify,
    metrics: Arc<GroupMetrics>,
}

impl Group {
    fn is_empty(&self) -> bool {
        self.slot.lock().expect("frame bus slot poisoned").is_none()
    }
}

/// The publishing side, held by the frame consumer.
#[derive(Clone, Default)]
pub struct FrameBus {
    groups: Arc<Mutex<Vec<Arc<Group>>>>,
}

/// The receiving side of one worker, held by that worker's supervisor. Dropping it
/// does not unregister anything; frames then simply keep replacing each other in
/// the group's slot (counted as drops) if no other worker takes them.
pub struct Inbox {
    group: Arc<Group>,
    worker: Arc<WorkerMetrics>,
}

impl FrameBus {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a worker to its group (created with `group` on first use).
    pub fn register(&self, group: &Arc<GroupMetrics>, worker: Arc<WorkerMetrics>) -> Inbox {
        let mut groups = self.groups.lock().expect("frame bus group list poisoned");
        let existing = groups
            .iter()
            .find(|g| Arc::ptr_eq(&g.metrics, group))
            .cloned();
        let group = existing.unwrap_or_else(|| {
            let g = Arc::new(Group {
                slot: Mutex::new(None),
                published: Notify::new(),
                taken: Notify::new(),
                metrics: group.clone(),
            });
            groups.push(g.clone());
            g
        });
        Inbox { group, worker }
    }

    /// Offers `job` to every group; never blocks on a worker.
    pub fn publish(&self, job: Arc<Job>) {
        let groups = self.groups.lock().expect("frame bus group list poisoned");
        for group in groups.iter() {
            let replaced = group
                .slot
                .lock()
                .expect("frame bus slot poisoned")
                .replace(job.clone());
            if replaced.is_some() {
                group.metrics.frames_dropped.inc();
            }
            group.published.notify_one();
        }
    }

    /// Waits until every group's frame was taken by a worker. Used for paced
    /// sources (a file replayed as fast as the workers go), never for cameras.
    pub async fn wait_taken(&self) {
        loop {
            let groups: Vec<Arc<Group>> = self
                .groups
                .lock()
                .expect("frame bus group list poisoned")
                .clone();
            let Some(pending) = groups.iter().find(|g| !g.is_empty()) else {
                return;
            };
            let taken = pending.taken.notified();
            tokio::pin!(taken);
            taken.as_mut().enable();
            if pending.is_empty() {
                continue;
            }
            taken.await;
        }
    }
}

impl Inbox {
    /// Takes the group's newest frame if there is one.
    pub fn try_take(&self) -> Option<Arc<Job>> {
        let job = self
            .group
            .slot
            .lock()
            .expect("frame bus slot poisoned")
            .take();
        if job.is_some() {
            self.worker.frames_sent.inc();
            self.group.metrics.frames_sent.inc();
            self.group.taken.notify_waiters();
        }
        job
    }

    /// Waits for a frame. Cancel-safe: a frame is only taken when this returns it.
    pub async fn recv(&self) -> Arc<Job> {
        loop {
            if let Some(job) = self.try_take() {
                return job;
            }
            self.group.published.notified().await;
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
                caps: None,
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

    fn worker(bus: &FrameBus, group: &Arc<GroupMetrics>, id: &str) -> (Inbox, Arc<WorkerMetrics>) {
        let m = Arc::new(WorkerMetrics::new(id));
        (bus.register(group, m.clone()), m)
    }

    fn group(name: &str) -> Arc<GroupMetrics> {
        Arc::new(GroupMetrics::new(name))
    }

    #[test]
    fn newest_frame_wins_and_replaced_frames_count_as_dropped() {
        let bus = FrameBus::new();
        let g = group("person_detector");
        let (inbox, m) = worker(&bus, &g, "w0");
        for seq in 1..=3 {
            bus.publish(job(seq));
        }
        let got = inbox.try_take().expect("a frame is waiting");
        assert_eq!(got.frame.seq, 3, "the newest frame is delivered");
        assert!(inbox.try_take().is_none(), "only one frame is held");
        assert_eq!(m.frames_sent.get(), 1);
        assert_eq!((g.frames_sent.get(), g.frames_dropped.get()), (1, 2));
        assert!((g.drop_rate() - 2.0 / 3.0).abs() < 1e-9);
    }

    #[test]
    fn every_group_gets_every_frame_shared_not_copied() {
        let bus = FrameBus::new();
        let (a, b) = (group("person_detector"), group("pose"));
        let (det, _) = worker(&bus, &a, "det-0");
        let (pose, _) = worker(&bus, &b, "pose-0");
        bus.publish(job(1));
        let x = det.try_take().expect("detector got frame 1");
        let y = pose.try_take().expect("pose got frame 1");
        assert!(
            Arc::ptr_eq(&x, &y),
            "both groups hold the same frame, not copies"
        );
    }

    #[test]
    fn inside_a_group_each_frame_goes_to_one_worker() {
        let bus = FrameBus::new();
        let g = group("person_detector");
        let (w0, m0) = worker(&bus, &g, "w0");
        let (w1, m1) = worker(&bus, &g, "w1");
        bus.publish(job(1));
        assert_eq!(w0.try_take().map(|j| j.frame.seq), Some(1));
        assert!(w1.try_take().is_none(), "no duplicate work");
        bus.publish(job(2));
        assert_eq!(w1.try_take().map(|j| j.frame.seq), Some(2));
        assert_eq!(
            (
                m0.frames_sent.get(),
                m1.frames_sent.get(),
                g.frames_dropped.get()
            ),
            (1, 1, 0)
        );
    }

    #[test]
    fn publishing_never_waits_for_an_absent_reader() {
        let bus = FrameBus::new();
        let g = group("person_detector");
        let (_inbox, _) = worker(&bus, &g, "idle");
        let j = job(1);
        for _ in 0..10_000 {
            bus.publish(j.clone());
        }
        assert_eq!(g.frames_dropped.get(), 9_999);
        assert_eq!(
            Arc::strong_count(&j),
            2,
            "one frame held in the slot, nothing queued"
        );
    }

    #[tokio::test]
    async fn recv_wakes_on_publish_and_wait_taken_follows_workers() {
        let bus = FrameBus::new();
        let g = group("person_detector");
        let (inbox, _) = worker(&bus, &g, "w");
        let inbox = Arc::new(inbox);
        bus.wait_taken().await; // nothing pending
        let receiver = inbox.clone();
        let waiter = tokio::spawn(async move { receiver.recv().await.frame.seq });
        tokio::task::yield_now().await;
        bus.publish(job(7));
        let seq = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("recv woke up")
            .expect("task ok");
        assert_eq!(seq, 7);
        bus.publish(job(8));
        let pending = tokio::time::timeout(Duration::from_millis(50), bus.wait_taken()).await;
        assert!(pending.is_err(), "frame 8 is not taken yet");
        let taker = inbox.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            taker.try_take()
        });
        tokio::time::timeout(Duration::from_secs(5), bus.wait_taken())
            .await
            .expect("wait_taken returns once a worker took the frame");
    }
}

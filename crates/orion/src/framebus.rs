//! Frame bus: non-blocking distribution of every camera's accepted frames to the
//! shared worker pools.
//!
//! Workers come in pools, one per inference type (all `person_detector` workers
//! form one pool). Every pool gets every camera's frames (fan-out across inference
//! types); inside a pool, a frame goes to whichever worker is free first (load
//! sharing: two detectors process twice the frames, they do not repeat each
//! other's work). A pool holds one slot per camera: publishing replaces what is
//! in that camera's slot (newest frame wins: a stale frame is worth less than a
//! fresh one) and counts the replaced frame as dropped for that camera and pool.
//! A free worker takes the frame of the camera that has waited longest (since its
//! slot last went from empty to full), so that every camera gets an equal share
//! when the pool cannot keep up. Frames are `Arc`s: fan-out copies a pointer,
//! never pixels. Publishing never waits for a worker.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use orion_protocol::RoiProcessing;
use tokio::sync::Notify;

use crate::metrics::{GroupMetrics, WorkerMetrics};
use crate::stream::Frame;

/// One frame of one camera with the crop chosen for it.
#[derive(Debug)]
pub struct Job {
    /// The camera's key on the bus (its port's; results are routed by it).
    pub camera: usize,
    pub instance_id: Arc<str>,
    pub room_id: Arc<str>,
    /// The camera's inference rate when the frame was accepted (the hang
    /// timeout of the worker that takes it follows from it).
    pub rate_hz: f64,
    pub frame: Arc<Frame>,
    pub roi: RoiProcessing,
    pub trace_id: String,
    /// Where the camera's workers look besides the crop (from its zones)
    /// when the frame was accepted.
    pub looks: Arc<crate::tracking::zones::LookAreas>,
    /// The frame has no colour (an infrared camera at night).
    pub grayscale: bool,
}

/// One camera's place in one pool.
struct Slot {
    /// The camera's key.
    camera: usize,
    job: Option<Arc<Job>>,
    /// When the slot last went from empty to full.
    waiting_since: Instant,
    /// This camera's counters for this pool.
    metrics: Arc<GroupMetrics>,
}

struct Pool {
    name: String,
    slots: Mutex<Vec<Slot>>,
    /// Woken when a frame is published (one waiting worker takes it).
    published: Notify,
    /// Woken when a worker takes a frame (for paced sources).
    taken: Notify,
}

impl Pool {
    fn slots(&self) -> std::sync::MutexGuard<'_, Vec<Slot>> {
        self.slots.lock().expect("frame bus slots poisoned")
    }
}

/// The bus of one daemon: its pools, each with one slot per attached camera.
#[derive(Clone)]
pub struct FrameBus {
    pools: Arc<Vec<Arc<Pool>>>,
    /// The key of the next camera attached (keys are never reused).
    next_key: Arc<AtomicUsize>,
}

/// The publishing side of one camera, held by its frame consumer.
#[derive(Clone)]
pub struct CameraPort {
    pools: Arc<Vec<Arc<Pool>>>,
    camera: usize,
}

/// The receiving side of one worker, held by that worker's supervisor. Dropping it
/// does not unregister anything; frames then simply keep replacing each other in
/// the pool's slots (counted as drops) if no other worker takes them.
pub struct Inbox {
    pool: Arc<Pool>,
    worker: Arc<WorkerMetrics>,
}

impl FrameBus {
    /// A bus with one pool per name and, in each pool, one slot per camera
    /// (keys `0..cameras`); `camera_groups(camera, pool)` gives that camera's
    /// counters for the pool. More cameras come with [`FrameBus::attach`].
    pub fn new(
        pools: &[String],
        cameras: usize,
        mut camera_groups: impl FnMut(usize, &str) -> Arc<GroupMetrics>,
    ) -> Self {
        let bus = Self::with_pools(pools);
        for camera in 0..cameras {
            bus.attach(|name| camera_groups(camera, name));
        }
        bus
    }

    /// A bus with one pool per name and no camera yet.
    pub fn with_pools(pools: &[String]) -> Self {
        let pools = pools
            .iter()
            .map(|name| {
                Arc::new(Pool {
                    name: name.clone(),
                    slots: Mutex::new(Vec::new()),
                    published: Notify::new(),
                    taken: Notify::new(),
                })
            })
            .collect();
        Self {
            pools: Arc::new(pools),
            next_key: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// A new camera: a slot in every pool (`groups(pool)` gives its counters
    /// there) and its port, until [`FrameBus::detach`].
    pub fn attach(&self, mut groups: impl FnMut(&str) -> Arc<GroupMetrics>) -> CameraPort {
        let camera = self.next_key.fetch_add(1, Ordering::Relaxed);
        for pool in self.pools.iter() {
            pool.slots().push(Slot {
                camera,
                job: None,
                waiting_since: Instant::now(),
                metrics: groups(&pool.name),
            });
        }
        self.camera(camera)
    }

    /// A camera goes: its slots and the frames in them (a worker that holds
    /// one finishes it; its result finds no camera and is dropped).
    pub fn detach(&self, camera: usize) {
        for pool in self.pools.iter() {
            pool.slots().retain(|s| s.camera != camera);
            pool.taken.notify_waiters();
        }
    }

    /// The inbox of a worker of pool `pool`; `None` if there is no such pool.
    pub fn inbox(&self, pool: &str, worker: Arc<WorkerMetrics>) -> Option<Inbox> {
        let pool = self.pools.iter().find(|p| p.name == pool)?.clone();
        Some(Inbox { pool, worker })
    }

    /// The publishing side of the camera of key `camera`.
    pub fn camera(&self, camera: usize) -> CameraPort {
        CameraPort {
            pools: self.pools.clone(),
            camera,
        }
    }
}

impl CameraPort {
    /// The camera's key (what its jobs carry).
    pub fn key(&self) -> usize {
        self.camera
    }

    /// Offers `job` to every pool; never blocks on a worker.
    pub fn publish(&self, job: Arc<Job>) {
        for pool in self.pools.iter() {
            let mut slots = pool.slots();
            let Some(slot) = slots.iter_mut().find(|s| s.camera == self.camera) else {
                continue;
            };
            match slot.job.replace(job.clone()) {
                Some(_) => slot.metrics.frames_dropped.inc(),
                None => slot.waiting_since = Instant::now(),
            }
            drop(slots);
            pool.published.notify_one();
        }
    }

    fn pending(&self) -> Option<Arc<Pool>> {
        self.pools
            .iter()
            .find(|p| {
                p.slots()
                    .iter()
                    .any(|s| s.camera == self.camera && s.job.is_some())
            })
            .cloned()
    }

    /// Waits until every pool took this camera's frame. Used for paced sources
    /// (a file replayed as fast as the workers go), never for cameras.
    pub async fn wait_taken(&self) {
        loop {
            let Some(pool) = self.pending() else {
                return;
            };
            let taken = pool.taken.notified();
            tokio::pin!(taken);
            taken.as_mut().enable();
            if self.pending().is_none_or(|p| !Arc::ptr_eq(&p, &pool)) {
                continue;
            }
            taken.await;
        }
    }
}

impl Inbox {
    /// Takes the frame of the camera that has waited longest, if any is waiting.
    pub fn try_take(&self) -> Option<Arc<Job>> {
        let mut slots = self.pool.slots();
        let slot = slots
            .iter_mut()
            .filter(|s| s.job.is_some())
            .min_by_key(|s| s.waiting_since)?;
        let job = slot.job.take()?;
        slot.metrics.frames_sent.inc();
        drop(slots);
        self.worker.frames_sent.inc();
        self.pool.taken.notify_waiters();
        Some(job)
    }

    /// Waits for a frame. Cancel-safe: a frame is only taken when this returns it.
    pub async fn recv(&self) -> Arc<Job> {
        loop {
            let published = self.pool.published.notified();
            tokio::pin!(published);
            published.as_mut().enable();
            if let Some(job) = self.try_take() {
                return job;
            }
            published.await;
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

    fn job_for(camera: usize, seq: u64) -> Arc<Job> {
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
            camera,
            instance_id: Arc::from(format!("cam-{camera}").as_str()),
            room_id: Arc::from("r"),
            rate_hz: 2.0,
            frame,
            roi: RoiAttention::new(8, 4, &crate::config::RoisConfig::default()).process(),
            trace_id: format!("t-{seq}"),
            looks: Arc::default(),
            grayscale: false,
        })
    }

    fn job(seq: u64) -> Arc<Job> {
        job_for(0, seq)
    }

    /// A bus with `pools` pools and `cameras` cameras; returns each camera's
    /// counters per pool.
    fn bus(pools: &[&str], cameras: usize) -> (FrameBus, Vec<Vec<Arc<GroupMetrics>>>) {
        let mut groups = vec![Vec::new(); cameras];
        let names: Vec<String> = pools.iter().map(|p| p.to_string()).collect();
        let bus = FrameBus::new(&names, cameras, |c, name| {
            let g = Arc::new(GroupMetrics::new(name));
            groups[c].push(g.clone());
            g
        });
        (bus, groups)
    }

    fn worker(bus: &FrameBus, pool: &str, id: &str) -> (Inbox, Arc<WorkerMetrics>) {
        let m = Arc::new(WorkerMetrics::new(id));
        (bus.inbox(pool, m.clone()).expect("pool exists"), m)
    }

    #[test]
    fn newest_frame_wins_and_replaced_frames_count_as_dropped() {
        let (bus, groups) = bus(&["person_detector"], 1);
        let (inbox, m) = worker(&bus, "person_detector", "w0");
        let port = bus.camera(0);
        for seq in 1..=3 {
            port.publish(job(seq));
        }
        let got = inbox.try_take().expect("a frame is waiting");
        assert_eq!(got.frame.seq, 3, "the newest frame is delivered");
        assert!(inbox.try_take().is_none(), "only one frame is held");
        assert_eq!(m.frames_sent.get(), 1);
        let g = &groups[0][0];
        assert_eq!((g.frames_sent.get(), g.frames_dropped.get()), (1, 2));
        assert!((g.drop_rate() - 2.0 / 3.0).abs() < 1e-9);
    }

    #[test]
    fn every_pool_gets_every_frame_shared_not_copied() {
        let (bus, _) = bus(&["person_detector", "scene_brightness"], 1);
        let (det, _) = worker(&bus, "person_detector", "det-0");
        let (light, _) = worker(&bus, "scene_brightness", "light-0");
        bus.camera(0).publish(job(1));
        let x = det.try_take().expect("detector got frame 1");
        let y = light.try_take().expect("brightness got frame 1");
        assert!(
            Arc::ptr_eq(&x, &y),
            "both pools hold the same frame, not copies"
        );
        assert!(
            bus.inbox("pose", Arc::new(WorkerMetrics::new("x")))
                .is_none()
        );
    }

    #[test]
    fn inside_a_pool_each_frame_goes_to_one_worker() {
        let (bus, groups) = bus(&["person_detector"], 1);
        let (w0, m0) = worker(&bus, "person_detector", "w0");
        let (w1, m1) = worker(&bus, "person_detector", "w1");
        let port = bus.camera(0);
        port.publish(job(1));
        assert_eq!(w0.try_take().map(|j| j.frame.seq), Some(1));
        assert!(w1.try_take().is_none(), "no duplicate work");
        port.publish(job(2));
        assert_eq!(w1.try_take().map(|j| j.frame.seq), Some(2));
        assert_eq!(
            (
                m0.frames_sent.get(),
                m1.frames_sent.get(),
                groups[0][0].frames_dropped.get()
            ),
            (1, 1, 0)
        );
    }

    #[test]
    fn cameras_keep_their_own_newest_frame_and_drops() {
        let (bus, groups) = bus(&["person_detector"], 2);
        let (inbox, _) = worker(&bus, "person_detector", "w0");
        bus.camera(0).publish(job_for(0, 1));
        bus.camera(1).publish(job_for(1, 1));
        bus.camera(1).publish(job_for(1, 2));
        let a = inbox.try_take().expect("camera 0 waited longest");
        let b = inbox.try_take().expect("camera 1 next");
        assert_eq!((a.camera, b.camera, b.frame.seq), (0, 1, 2));
        assert_eq!(
            groups[0][0].frames_dropped.get(),
            0,
            "camera 0 lost nothing"
        );
        assert_eq!(
            groups[1][0].frames_dropped.get(),
            1,
            "camera 1's replaced frame"
        );
    }

    #[test]
    fn a_free_worker_takes_the_camera_that_waited_longest() {
        // Six cameras publish at the same rate; the pool serves three frames per
        // round. Over many rounds every camera gets the same share.
        let cameras = 6;
        let (bus, groups) = bus(&["person_detector"], cameras);
        let (inbox, _) = worker(&bus, "person_detector", "w0");
        let mut seq = 0;
        for _round in 0..600 {
            for c in 0..cameras {
                seq += 1;
                bus.camera(c).publish(job_for(c, seq));
                std::thread::sleep(Duration::from_micros(5));
            }
            for _ in 0..3 {
                inbox.try_take().expect("frames are waiting");
            }
        }
        let sent: Vec<u64> = groups.iter().map(|g| g[0].frames_sent.get()).collect();
        let (min, max) = (sent.iter().min().unwrap(), sent.iter().max().unwrap());
        assert!(max - min <= 2, "equal shares: {sent:?}");
        assert_eq!(sent.iter().sum::<u64>(), 1800);
    }

    #[test]
    fn publishing_never_waits_for_an_absent_reader() {
        let (bus, groups) = bus(&["person_detector"], 1);
        let (_inbox, _) = worker(&bus, "person_detector", "idle");
        let j = job(1);
        let port = bus.camera(0);
        for _ in 0..10_000 {
            port.publish(j.clone());
        }
        assert_eq!(groups[0][0].frames_dropped.get(), 9_999);
        assert_eq!(
            Arc::strong_count(&j),
            2,
            "one frame held in the slot, nothing queued"
        );
    }

    #[test]
    fn a_detached_camera_leaves_the_pools_and_a_new_one_gets_a_new_key() {
        let (bus, _) = bus(&["person_detector"], 2);
        let (inbox, _) = worker(&bus, "person_detector", "w0");
        bus.camera(0).publish(job_for(0, 1));
        bus.detach(0);
        bus.camera(0).publish(job_for(0, 2));
        assert!(
            inbox.try_take().is_none(),
            "the frames of a detached camera go nowhere"
        );
        let port = bus.attach(|name| Arc::new(GroupMetrics::new(name)));
        assert_eq!(port.key(), 2, "keys are never reused");
        port.publish(job_for(2, 3));
        bus.camera(1).publish(job_for(1, 4));
        let taken: Vec<usize> = std::iter::from_fn(|| inbox.try_take().map(|j| j.camera)).collect();
        assert_eq!(
            taken,
            [2, 1],
            "the new camera is served, longest waiting first"
        );
    }

    #[tokio::test]
    async fn recv_wakes_on_publish_and_wait_taken_follows_workers() {
        let (bus, _) = bus(&["person_detector"], 2);
        let (inbox, _) = worker(&bus, "person_detector", "w");
        let inbox = Arc::new(inbox);
        let port = bus.camera(0);
        port.wait_taken().await; // nothing pending
        let receiver = inbox.clone();
        let waiter = tokio::spawn(async move { receiver.recv().await.frame.seq });
        tokio::task::yield_now().await;
        port.publish(job(7));
        let seq = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("recv woke up")
            .expect("task ok");
        assert_eq!(seq, 7);
        port.publish(job(8));
        bus.camera(1).wait_taken().await; // another camera's frame is not ours
        let pending = tokio::time::timeout(Duration::from_millis(50), port.wait_taken()).await;
        assert!(pending.is_err(), "frame 8 is not taken yet");
        let taker = inbox.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            taker.try_take()
        });
        tokio::time::timeout(Duration::from_secs(5), port.wait_taken())
            .await
            .expect("wait_taken returns once a worker took the frame");
    }
}

//! Worker supervision with real subprocesses (a scripted Python worker speaking the
//! real protocol): results flow, crashes and hangs lead to restarts, garbage output
//! is a protocol error, and cancellation stops the process.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use gstreamer as gst;
use orion::attention::RoiAttention;
use orion::config::{ModelEntry, ModelFormat};
use orion::framebus::{CameraPort, FrameBus, Job};
use orion::metrics::{GroupMetrics, WorkerMetrics};
use orion::stream::{CapturedFrame, Frame};
use orion::worker::{ModelChoice, Supervisor, WorkerHandle, WorkerOutput, WorkerSpec};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

struct Harness {
    status: tokio::sync::watch::Receiver<orion::status::WorkerStatus>,
    /// The one camera's side of the frame bus.
    bus: CameraPort,
    metrics: Arc<WorkerMetrics>,
    results: mpsc::Receiver<WorkerOutput>,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    pidfile: std::path::PathBuf,
    handle: WorkerHandle,
    _dir: tempfile::TempDir,
}

fn job(seq: u64) -> Arc<Job> {
    sized_job(seq, 16, 8)
}

fn sized_job(seq: u64, width: u32, height: u32) -> Arc<Job> {
    gst::init().expect("gstreamer init");
    let frame = Frame::map(
        CapturedFrame {
            seq,
            buffer: gst::Buffer::from_slice(vec![0u8; (width * height * 3) as usize]),
            caps: None,
            captured_at: SystemTime::now(),
            captured_instant: Instant::now(),
        },
        width,
        height,
    )
    .expect("frame");
    Arc::new(Job {
        camera: 0,
        instance_id: Arc::from("test"),
        room_id: Arc::from("room"),
        rate_hz: 10.0,
        frame,
        roi: RoiAttention::new(width, height, &orion::config::RoisConfig::default()).process(),
        trace_id: format!("t-{seq}"),
        looks: Arc::default(),
        grayscale: false,
    })
}

fn start(mode: &str, hang_floor: Duration) -> Harness {
    start_with(mode, hang_floor, Some(16 * 8 * 3), 0)
}

/// `shm`: the shared-memory slot size (`None`: frames inline); `prefetch`:
/// frames sent ahead.
fn start_with(mode: &str, hang_floor: Duration, shm: Option<usize>, prefetch: usize) -> Harness {
    start_parallel(mode, hang_floor, shm, prefetch, 1)
}

/// `parallel`: the most frames the worker may work on at once.
fn start_parallel(
    mode: &str,
    hang_floor: Duration,
    shm: Option<usize>,
    prefetch: usize,
    parallel: usize,
) -> Harness {
    let dir = tempfile::tempdir().expect("tempdir");
    let pidfile = dir.path().join("pids");
    let script = common::repo_root().join("crates/orion/tests/workers/fake_worker.py");
    let bus = FrameBus::new(&["fake".to_string()], 1, |_, name| {
        Arc::new(GroupMetrics::new(name))
    });
    let metrics = Arc::new(WorkerMetrics::new("fake-0"));
    let (status_tx, status) = tokio::sync::watch::channel(Default::default());
    let (tx, results) = mpsc::channel(16);
    let routes = orion::worker::ResultRoutes::default();
    routes.add(0, tx);
    let (requests_tx, requests) = mpsc::channel(4);
    let sup = Supervisor {
        spec: WorkerSpec {
            id: "fake-0".into(),
            inference_type: Arc::from("person_detector"),
            program: common::venv_python(),
            args: vec![
                script.to_string_lossy().into_owned(),
                mode.into(),
                pidfile.to_string_lossy().into_owned(),
            ],
            env: orion::worker::worker_env(|k| std::env::var(k).ok(), &Default::default()),
            startup_timeout: Duration::from_secs(20),
            hang_timeout_floor: hang_floor,
            max_message_bytes: 1024 * 1024,
            shm_frame_bytes: shm,
            parallel,
            prefetch,
            max_restarts: 100,
            restart_window: Duration::from_secs(60),
            restart_backoff_max: Duration::from_secs(30),
        },
        inbox: bus.inbox("fake", metrics.clone()).expect("pool"),
        results: routes,
        metrics: metrics.clone(),
        status: status_tx,
        model: Some(ModelChoice {
            name: "fake".into(),
            entry: ModelEntry::single("/nonexistent/fake.onnx", ModelFormat::Ssd),
        }),
        requests,
        alerts: None,
        protocol_log: orion::logging::RateLimit::new(Duration::from_secs(10)),
    };
    let cancel = CancellationToken::new();
    let task = tokio::spawn(sup.run(cancel.clone()));
    Harness {
        status,
        bus: bus.camera(0),
        metrics,
        results,
        cancel,
        task,
        pidfile,
        handle: WorkerHandle::new("fake-0".into(), requests_tx),
        _dir: dir,
    }
}

impl Harness {
    fn pids(&self) -> Vec<i32> {
        std::fs::read_to_string(&self.pidfile)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.parse().ok())
            .collect()
    }

    async fn wait(&self, what: &str, timeout: Duration, mut f: impl FnMut(&Self) -> bool) {
        let until = Instant::now() + timeout;
        while !f(self) {
            assert!(Instant::now() < until, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Cancels and checks that the supervisor ends and no worker process is left.
    async fn stop(self) {
        self.cancel.cancel();
        let pids = self.pids();
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("supervisor stops within 5 s")
            .expect("supervisor task ok");
        for pid in pids {
            assert!(!common::alive(pid), "worker {pid} still alive after stop");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_flow_and_stop_ends_the_process() {
    let mut h = start("echo", Duration::from_secs(30));
    h.wait("worker up", Duration::from_secs(20), |h| {
        h.status.borrow().up
    })
    .await;
    for seq in 1..=3 {
        h.bus.publish(job(seq));
        let out = tokio::time::timeout(Duration::from_secs(5), h.results.recv())
            .await
            .expect("a result within 5 s")
            .expect("channel open");
        assert_eq!(out.result.frame_seq, seq);
        assert_eq!(out.job.frame.seq, seq);
        assert_eq!(&*out.worker_id, "fake-0");
        assert_eq!(out.result.timing.total_ms, 0.6);
    }
    assert_eq!(h.metrics.inferences.get(), 3);
    assert_eq!(h.metrics.restarts.get(), 0);
    assert_eq!(h.pids().len(), 1);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_works_on_two_frames_at_once_gets_two() {
    let mut h = start_parallel("pairs", Duration::from_secs(30), Some(16 * 8 * 3), 0, 2);
    h.wait("worker up", Duration::from_secs(20), |h| {
        h.status.borrow().up
    })
    .await;
    {
        let status = h.status.borrow();
        assert_eq!(status.parallel, 2, "the worker's ready says two at once");
        assert_eq!(status.backend.as_deref(), Some("fake:CPU"));
        assert!(
            status
                .choice
                .as_deref()
                .is_some_and(|c| c.starts_with("fake fp32: fastest of")),
            "{:?}",
            status.choice
        );
    }
    // The worker answers nothing until it holds two frames: both results
    // come only if the supervisor sent the second while the first was in
    // the worker.
    for pair in [[1, 2], [3, 4]] {
        for seq in pair {
            let sent = h.metrics.frames_sent.get();
            h.bus.publish(job(seq));
            h.wait("the frame taken", Duration::from_secs(5), |h| {
                h.metrics.frames_sent.get() > sent
            })
            .await;
        }
        for seq in pair {
            let out = tokio::time::timeout(Duration::from_secs(5), h.results.recv())
                .await
                .expect("a result within 5 s")
                .expect("channel open");
            assert_eq!(out.result.frame_seq, seq, "answers in order");
            assert_eq!(out.job.frame.seq, seq);
        }
    }
    assert_eq!(h.metrics.restarts.get(), 0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_gets_no_more_frames_at_once_than_the_config_allows() {
    // The worker says two at once, the config allows one: it holds the
    // first frame forever (it answers pairs), is hung after 1 s, and by then
    // the second frame was never taken.
    let h = start_parallel("pairs", Duration::from_secs(1), None, 0, 1);
    h.wait("worker up", Duration::from_secs(20), |h| {
        h.status.borrow().up
    })
    .await;
    assert_eq!(
        h.status.borrow().parallel,
        1,
        "capped by workers.<type>.parallel"
    );
    h.bus.publish(job(1));
    h.wait("the first frame taken", Duration::from_secs(5), |h| {
        h.metrics.frames_sent.get() == 1
    })
    .await;
    h.bus.publish(job(2));
    h.wait(
        "the worker hung on its one frame",
        Duration::from_secs(10),
        |h| h.metrics.hangs.get() >= 1,
    )
    .await;
    assert_eq!(
        h.metrics.frames_sent.get(),
        1,
        "the second frame waited on the bus"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashing_worker_is_restarted() {
    let h = start("crash", Duration::from_secs(30));
    h.wait("worker up", Duration::from_secs(20), |h| {
        h.status.borrow().up
    })
    .await;
    h.bus.publish(job(1));
    // The crash is noticed at once and the worker comes back after 1 s of backoff.
    h.wait("restart", Duration::from_secs(20), |h| {
        h.metrics.restarts.get() >= 1 && h.status.borrow().up
    })
    .await;
    assert!(h.metrics.errors.get() >= 1);
    let pids = h.pids();
    assert!(pids.len() >= 2, "a new process was started: {pids:?}");
    assert!(!common::alive(pids[0]), "the crashed process is reaped");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_worker_is_killed_and_replaced() {
    let h = start("hang", Duration::from_secs(1));
    h.wait("worker up", Duration::from_secs(20), |h| {
        h.status.borrow().up
    })
    .await;
    let first = h.pids()[0];
    h.bus.publish(job(1));
    h.wait(
        "hang detected and worker replaced",
        Duration::from_secs(20),
        |h| h.metrics.restarts.get() >= 1 && h.pids().len() >= 2,
    )
    .await;
    assert!(!common::alive(first), "the hung process was killed");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_hung_with_inline_frames_and_prefetch_is_replaced_in_time() {
    // Inline 640x480 frames (900 KB each) fill the pipe of a worker that stopped
    // reading: the write itself must not hold the supervisor past the hang timeout.
    let h = start_with("hang", Duration::from_secs(1), None, 1);
    h.wait("worker up", Duration::from_secs(20), |h| {
        h.status.borrow().up
    })
    .await;
    let first = h.pids()[0];
    let published = Instant::now();
    for seq in 1..=3 {
        h.bus.publish(sized_job(seq, 640, 480));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    h.wait("hang detected", Duration::from_secs(20), |h| {
        h.metrics.hangs.get() >= 1
    })
    .await;
    // The hang timeout is max(1 s floor, 3 / 10 Hz): detected well within 5 s.
    assert!(
        published.elapsed() < Duration::from_secs(5),
        "hang detected after {:?}",
        published.elapsed()
    );
    h.wait("worker replaced", Duration::from_secs(20), |h| {
        h.metrics.restarts.get() >= 1 && h.pids().len() >= 2
    })
    .await;
    assert!(!common::alive(first), "the hung process was killed");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_length_prefix_restarts_the_worker() {
    let h = start("garbage", Duration::from_secs(30));
    h.wait("worker up", Duration::from_secs(20), |h| {
        h.status.borrow().up
    })
    .await;
    h.bus.publish(job(1));
    h.wait("restart after garbage", Duration::from_secs(20), |h| {
        h.metrics.restarts.get() >= 1
    })
    .await;
    assert!(h.metrics.errors.get() >= 1);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_swaps_are_answered_and_frames_keep_flowing() {
    let mut h = start("echo", Duration::from_secs(30));
    h.wait("worker up", Duration::from_secs(20), |h| {
        h.status.borrow().up
    })
    .await;
    let good = ModelChoice {
        name: "n".into(),
        entry: ModelEntry::single("/models/good.onnx", ModelFormat::Yolo),
    };
    let bad = ModelChoice {
        name: "x".into(),
        entry: ModelEntry::single("/models/missing.onnx", ModelFormat::Yolo),
    };
    assert_eq!(
        h.handle.set_model(good, Duration::from_secs(5)).await,
        Ok("swapped to n".into())
    );
    assert_eq!(
        h.handle.set_model(bad, Duration::from_secs(5)).await,
        Err("model file not found".into())
    );
    h.bus.publish(job(1));
    let out = tokio::time::timeout(Duration::from_secs(5), h.results.recv())
        .await
        .expect("a result after the swaps")
        .expect("channel open");
    assert_eq!(out.result.frame_seq, 1);
    h.stop().await;
}

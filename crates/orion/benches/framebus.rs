//! Frame bus micro-benchmarks:
//! - `fan_out`: the cost of fanning one frame out to 1, 4 and 16 pools that each
//!   receive every frame (one worker per pool; frames are `Arc`s: fan-out copies
//!   pointers, never pixels). Each iteration publishes one 640x480 RGB frame and
//!   lets every worker take it, the steady state of a bus whose workers keep up.
//! - `cameras`: 1, 16 and 64 cameras publishing into one pool whose worker takes
//!   every frame, longest-waiting camera first: the scheduling cost per frame.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use gstreamer as gst;
use orion::attention::RoiAttention;
use orion::config::RoisConfig;
use orion::framebus::{FrameBus, Job};
use orion::metrics::{GroupMetrics, WorkerMetrics};
use orion::stream::{CapturedFrame, Frame};

fn job() -> Arc<Job> {
    gst::init().expect("gstreamer init");
    let frame = Frame::map(
        CapturedFrame {
            seq: 1,
            buffer: gst::Buffer::from_slice(vec![0u8; 640 * 480 * 3]),
            caps: None,
            captured_at: SystemTime::now(),
            captured_instant: Instant::now(),
        },
        640,
        480,
    )
    .expect("frame");
    Arc::new(Job {
        camera: 0,
        instance_id: Arc::from("bench"),
        room_id: Arc::from("bench"),
        rate_hz: 2.0,
        frame,
        roi: RoiAttention::new(640, 480, &RoisConfig::default()).process(),
        trace_id: "bench-1".into(),
        looks: Arc::default(),
        grayscale: false,
    })
}

fn fan_out(c: &mut Criterion) {
    let job = job();
    let mut group = c.benchmark_group("fan_out");
    for workers in [1usize, 4, 16] {
        // One pool per worker: every one of them receives every frame.
        let pools: Vec<String> = (0..workers).map(|i| format!("g{i}")).collect();
        let bus = FrameBus::new(&pools, 1, |_, name| Arc::new(GroupMetrics::new(name)));
        let inboxes: Vec<_> = pools
            .iter()
            .enumerate()
            .filter_map(|(i, p)| bus.inbox(p, Arc::new(WorkerMetrics::new(format!("w{i}")))))
            .collect();
        let port = bus.camera(0);
        group.bench_with_input(BenchmarkId::from_parameter(workers), &workers, |b, _| {
            b.iter(|| {
                port.publish(job.clone());
                for inbox in &inboxes {
                    std::hint::black_box(inbox.try_take());
                }
            })
        });
    }
    group.finish();
}

fn cameras(c: &mut Criterion) {
    let job = job();
    let mut group = c.benchmark_group("cameras");
    for cameras in [1usize, 16, 64] {
        let pools = ["person_detector".to_string()];
        let bus = FrameBus::new(&pools, cameras, |_, name| Arc::new(GroupMetrics::new(name)));
        let inbox = bus
            .inbox("person_detector", Arc::new(WorkerMetrics::new("w0")))
            .expect("pool");
        let ports: Vec<_> = (0..cameras).map(|i| bus.camera(i)).collect();
        group.bench_with_input(BenchmarkId::from_parameter(cameras), &cameras, |b, _| {
            b.iter(|| {
                for port in &ports {
                    port.publish(job.clone());
                }
                for _ in 0..cameras {
                    std::hint::black_box(inbox.try_take());
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, fan_out, cameras);
criterion_main!(benches);

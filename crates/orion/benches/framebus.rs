//! Frame bus micro-benchmark: the cost of fanning one frame out to 1, 4 and 16
//! workers that each receive every frame (one worker per group; frames are `Arc`s:
//! fan-out copies pointers, never pixels). Each iteration publishes one 640x480
//! RGB frame and lets every worker take it, the steady state of a bus whose
//! workers keep up.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use gstreamer as gst;
use orion::attention::RoiAttention;
use orion::config::RoisConfig;
use orion::framebus::{FrameBus, Job};
use orion::health::metrics::{GroupMetrics, WorkerMetrics};
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
        frame,
        roi: RoiAttention::new(640, 480, &RoisConfig::default()).process(),
        trace_id: "bench-1".into(),
    })
}

fn fan_out(c: &mut Criterion) {
    let job = job();
    let mut group = c.benchmark_group("fan_out");
    for workers in [1usize, 4, 16] {
        let bus = FrameBus::new();
        let inboxes: Vec<_> = (0..workers)
            // One group per worker: every one of them receives every frame.
            .map(|i| {
                let group = Arc::new(GroupMetrics::new(format!("g{i}")));
                bus.register(&group, Arc::new(WorkerMetrics::new(format!("w{i}"))))
            })
            .collect();
        group.bench_with_input(BenchmarkId::from_parameter(workers), &workers, |b, _| {
            b.iter(|| {
                bus.publish(job.clone());
                for inbox in &inboxes {
                    std::hint::black_box(inbox.try_take());
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, fan_out);
criterion_main!(benches);

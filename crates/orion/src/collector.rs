//! Result collector: fan-in of every worker's results, enrichment into the
//! published inference message, hand-off to the emitter.
//!
//! Owns the shape of the inference message (docs/results.md). It stops when every worker
//! supervisor has dropped its sender (then nothing more can arrive) or on cancel.
//! It never waits for the broker: the emitter's publish is non-blocking.

use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use orion_protocol::{Detection, ModelInfo, NormRect, RoiProcessing, Timing};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::attention::RoiAttention;
use crate::health::metrics::Metrics;
use crate::mqtt::emitter::EmitterHandle;
use crate::worker::WorkerOutput;

/// Published on `care/inferences/{instance_id}/{inference_type}`.
#[derive(Debug, Serialize)]
pub struct InferenceMessage<'a> {
    pub instance_id: &'a str,
    pub room_id: &'a str,
    pub inference_type: &'a str,
    /// When the message was built, RFC 3339 UTC.
    pub timestamp: String,
    /// When the frame was captured, RFC 3339 UTC.
    pub captured_at: String,
    pub frame_seq: u64,
    pub trace_id: &'a str,
    pub worker_id: &'a str,
    pub data: InferenceData<'a>,
    pub timing: &'a Timing,
    pub model: &'a ModelInfo,
    pub roi: &'a RoiProcessing,
    pub suggested_roi: Option<&'a NormRect>,
    /// Capture to hand-off to MQTT, milliseconds.
    pub e2e_latency_ms: f64,
    /// Capture until a worker started on the frame (waiting for a free worker).
    pub queue_ms: f64,
}

#[derive(Debug, Serialize)]
pub struct InferenceData<'a> {
    pub detections: &'a [Detection],
    pub count: u32,
}

/// Static context of the collector.
pub struct Collector {
    pub instance_id: String,
    pub room_id: String,
    pub metrics: Arc<Metrics>,
    pub emitter: EmitterHandle,
    /// Auto-focus feedback goes here.
    pub roi: Arc<Mutex<RoiAttention>>,
}

impl Collector {
    pub async fn run(self, mut results: mpsc::Receiver<WorkerOutput>, cancel: CancellationToken) {
        loop {
            let output = tokio::select! {
                _ = cancel.cancelled() => break,
                o = results.recv() => match o {
                    Some(o) => o,
                    None => break,
                },
            };
            self.handle(&output);
        }
        tracing::info!("result collector stopped");
    }

    fn handle(&self, o: &WorkerOutput) {
        let frame = &o.job.frame;
        let now = Instant::now();
        let e2e = now.saturating_duration_since(frame.captured_instant);
        let r = &o.result;
        self.roi
            .lock()
            .expect("roi attention poisoned")
            .auto_focus
            .observe(r.suggested_roi);
        let msg = InferenceMessage {
            instance_id: &self.instance_id,
            room_id: &self.room_id,
            inference_type: &r.inference_type,
            timestamp: humantime::format_rfc3339_micros(SystemTime::now()).to_string(),
            captured_at: humantime::format_rfc3339_micros(frame.captured_at).to_string(),
            frame_seq: r.frame_seq,
            trace_id: &o.job.trace_id,
            worker_id: &o.worker_id,
            data: InferenceData {
                detections: &r.detections,
                count: r.person_count,
            },
            timing: &r.timing,
            model: &r.model,
            roi: &o.job.roi,
            suggested_roi: r.suggested_roi.as_ref(),
            e2e_latency_ms: e2e.as_secs_f64() * 1e3,
            queue_ms: o
                .started_at
                .saturating_duration_since(frame.captured_instant)
                .as_secs_f64()
                * 1e3,
        };
        let payload = match serde_json::to_vec(&msg) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "cannot serialize inference message");
                return;
            }
        };
        self.metrics.e2e_latency.observe(e2e);
        let topic = crate::topics::inferences(&self.instance_id, &r.inference_type);
        self.emitter.publish(topic, payload);
    }
}

//! Result collector: fan-in of every worker's results (of every pool), routing to
//! the camera the frame came from, enrichment into the published inference
//! message, hand-off to that camera's emitter.
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

/// What a result found: a detector's boxes, or a worker's own data object.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum InferenceData<'a> {
    Detections {
        detections: &'a [Detection],
        count: u32,
    },
    Custom(&'a serde_json::Map<String, serde_json::Value>),
}

/// Where one camera's results go.
pub struct CameraSink {
    pub instance_id: String,
    pub room_id: String,
    pub metrics: Arc<Metrics>,
    pub emitter: EmitterHandle,
    /// Auto-focus feedback (from `person_detector` results) goes here.
    pub roi: Arc<Mutex<RoiAttention>>,
}

/// The collector: one sink per camera, indexed like the daemon's camera list.
pub struct Collector {
    pub cameras: Vec<CameraSink>,
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
        let Some(sink) = self.cameras.get(o.job.camera) else {
            tracing::error!(
                camera = o.job.camera,
                "result for an unknown camera dropped"
            );
            return;
        };
        let frame = &o.job.frame;
        let now = Instant::now();
        let e2e = now.saturating_duration_since(frame.captured_instant);
        let r = &o.result;
        if &*o.pool == crate::config::PERSON_DETECTOR {
            sink.roi
                .lock()
                .expect("roi attention poisoned")
                .auto_focus
                .observe(r.suggested_roi);
        }
        let data = match &r.data {
            Some(custom) => InferenceData::Custom(custom),
            None => InferenceData::Detections {
                detections: &r.detections,
                count: r.person_count,
            },
        };
        let msg = InferenceMessage {
            instance_id: &sink.instance_id,
            room_id: &sink.room_id,
            inference_type: &r.inference_type,
            timestamp: humantime::format_rfc3339_micros(SystemTime::now()).to_string(),
            captured_at: humantime::format_rfc3339_micros(frame.captured_at).to_string(),
            frame_seq: r.frame_seq,
            trace_id: &o.job.trace_id,
            worker_id: &o.worker_id,
            data,
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
        sink.metrics.e2e_latency.observe(e2e);
        let topic = crate::topics::inferences(&sink.instance_id, &r.inference_type);
        sink.emitter.publish(topic, payload);
    }
}

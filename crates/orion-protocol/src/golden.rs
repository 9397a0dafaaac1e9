//! The canonical messages behind the golden byte fixtures in `fixtures/`.
//!
//! The Python SDK's tests build the same messages and must produce the same bytes
//! (and decode these bytes to the same values), so that any change to the contract
//! shows up on both sides at once.

use std::borrow::Cow;
use std::collections::BTreeMap;

use crate::messages::*;

/// `(fixture file name, message)` for every message the daemon sends.
pub fn to_worker() -> Vec<(&'static str, ToWorker<'static>)> {
    let pixels: Vec<u8> = (0u8..24).collect(); // a 4x2 RGB frame
    vec![
        (
            "frame.bin",
            ToWorker::Frame(FrameRequest {
                seq: 42,
                width: 4,
                height: 2,
                format: "rgb24".into(),
                data: Pixels(Cow::Owned(pixels)),
                meta: FrameMeta {
                    instance_id: "room-101-cam".into(),
                    room_id: "room-101".into(),
                    seq: 42,
                    timestamp: "2026-11-27T21:00:00.250000Z".into(),
                    trace_id: "room-101-cam-42".into(),
                    rest_areas: Vec::new(),
                    exit_areas: Vec::new(),
                    roi_processing: RoiProcessing {
                        source: "full_frame".into(),
                        crop: PixelRect {
                            x: 0,
                            y: 0,
                            width: 4,
                            height: 2,
                        },
                        crop_normalized: NormRect {
                            x: 0.0,
                            y: 0.0,
                            width: 1.0,
                            height: 1.0,
                        },
                        target_size: 640,
                    },
                },
                shm: None,
            }),
        ),
        (
            "frame_shm.bin",
            ToWorker::Frame(FrameRequest {
                seq: 43,
                width: 4,
                height: 2,
                format: "rgb24".into(),
                data: Pixels(Cow::Borrowed(&[])),
                meta: FrameMeta {
                    instance_id: "room-101-cam".into(),
                    room_id: "room-101".into(),
                    seq: 43,
                    timestamp: "2026-11-27T21:00:00.316667Z".into(),
                    trace_id: "room-101-cam-43".into(),
                    rest_areas: Vec::new(),
                    exit_areas: Vec::new(),
                    roi_processing: RoiProcessing {
                        source: "external".into(),
                        crop: PixelRect {
                            x: 2,
                            y: 0,
                            width: 2,
                            height: 2,
                        },
                        crop_normalized: NormRect {
                            x: 0.5,
                            y: 0.0,
                            width: 0.5,
                            height: 1.0,
                        },
                        target_size: 320,
                    },
                },
                shm: Some(ShmSlice {
                    offset: 0,
                    length: 24,
                }),
            }),
        ),
        (
            "command.bin",
            ToWorker::Command(CommandRequest {
                id: 7,
                name: "set_model".into(),
                params: BTreeMap::from([
                    ("path".to_string(), "models/yolo11s.onnx".to_string()),
                    ("size".to_string(), "s".to_string()),
                ]),
            }),
        ),
    ]
}

/// `(fixture file name, message)` for every message a worker sends.
pub fn from_worker() -> Vec<(&'static str, FromWorker)> {
    // Without `backend` (optional): the fixtures stay those of every worker.
    let model = ModelInfo {
        name: "ssdlite".into(),
        input_size: 300,
        backend: None,
        choice: None,
    };
    let chosen = ModelInfo {
        name: "movenet".into(),
        input_size: 256,
        backend: Some("openvino:CPU/int8".into()),
        choice: Some(
            "openvino int8: fastest of openvino int8 10.9 ms, openvino fp32 14.3 ms (measured 2026-11-30T13:20:00Z)"
                .into(),
        ),
    };
    vec![
        (
            "ready.bin",
            FromWorker::Ready(Ready {
                protocol_version: crate::PROTOCOL_VERSION,
                inference_type: "person_detection".into(),
                model: chosen.clone(),
                pid: 4242,
                shm: true,
                parallel: 2,
            }),
        ),
        (
            "result.bin",
            FromWorker::Result(InferenceResult {
                frame_seq: 42,
                trace_id: "room-101-cam-42".into(),
                inference_type: "person_detection".into(),
                detections: vec![Detection {
                    bbox: BBox {
                        x: 120.5,
                        y: 40.25,
                        width: 200.0,
                        height: 380.75,
                    },
                    confidence: 0.9375,
                    class: "person".into(),
                    keypoints: None,
                }],
                person_count: 1,
                model,
                timing: Timing {
                    preprocess_ms: 1.5,
                    inference_ms: 14.25,
                    postprocess_ms: 0.5,
                    total_ms: 16.25,
                },
                suggested_roi: Some(NormRect {
                    x: 0.125,
                    y: 0.0625,
                    width: 0.5,
                    height: 0.875,
                }),
                data: None,
            }),
        ),
        (
            "result_pose.bin",
            FromWorker::Result(InferenceResult {
                frame_seq: 43,
                trace_id: "room-101-cam-43".into(),
                inference_type: "person_detection".into(),
                detections: vec![Detection {
                    bbox: BBox {
                        x: 100.0,
                        y: 300.0,
                        width: 320.5,
                        height: 90.25,
                    },
                    confidence: 0.3125,
                    class: "person".into(),
                    keypoints: Some(vec![
                        Keypoint {
                            name: "left_shoulder".into(),
                            x: 180.5,
                            y: 340.0,
                            score: 0.625,
                        },
                        Keypoint {
                            name: "left_hip".into(),
                            x: 300.25,
                            y: 350.0,
                            score: 0.5,
                        },
                    ]),
                }],
                person_count: 1,
                model: ModelInfo {
                    name: "movenet".into(),
                    input_size: 256,
                    backend: None,
                    choice: None,
                },
                timing: Timing {
                    preprocess_ms: 0.5,
                    inference_ms: 15.0,
                    postprocess_ms: 0.25,
                    total_ms: 15.75,
                },
                suggested_roi: None,
                data: None,
            }),
        ),
        (
            "command_result.bin",
            FromWorker::CommandResult(CommandResult {
                id: 7,
                success: false,
                message: "model file not found: models/yolo11s.onnx".into(),
                model: None,
            }),
        ),
        (
            "command_result_model.bin",
            FromWorker::CommandResult(CommandResult {
                id: 8,
                success: true,
                message: "model movenet loaded".into(),
                model: Some(chosen),
            }),
        ),
        (
            "error.bin",
            FromWorker::Error(WorkerError {
                message: "frame has 23 bytes, expected 24".into(),
                frame_seq: Some(42),
                fatal: false,
            }),
        ),
    ]
}

//! Message types of the worker protocol.
//!
//! Every message is a MsgPack map whose `type` key names its kind. Field order is
//! part of the golden fixtures (MsgPack maps keep insertion order), so fields are
//! declared in the order the documentation lists them. All floating-point values are
//! 64-bit so that every language encodes them identically.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Messages the daemon sends to a worker (on the worker's stdin).
///
/// Closing stdin is the request to stop: a worker exits when it reads end of file.
// Built and encoded one at a time, never stored: boxing the frame would only add
// an allocation per frame.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToWorker<'a> {
    Frame(FrameRequest<'a>),
    Command(CommandRequest),
}

/// Messages a worker sends to the daemon (on the worker's stdout).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FromWorker {
    Ready(Ready),
    Result(InferenceResult),
    CommandResult(CommandResult),
    Error(WorkerError),
}

/// One frame to run inference on. Pixels are raw, row-major, without padding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrameRequest<'a> {
    pub seq: u64,
    pub width: u32,
    pub height: u32,
    /// Pixel format; `rgb24` (3 bytes per pixel) is the only one defined in version 1.
    pub format: String,
    /// The pixels, unless they are in shared memory (`shm`): then empty.
    pub data: Pixels<'a>,
    pub meta: FrameMeta,
    /// Where the pixels are in the worker's shared-memory region, when the worker
    /// accepted one (`Ready::shm`). Absent for frames sent inline in `data`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shm: Option<ShmSlice>,
}

/// A byte range of the shared-memory region the daemon gave the worker (file
/// descriptor `ORION_SHM_FD`). The daemon writes it before sending the frame and
/// does not touch it again until the worker has answered that frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShmSlice {
    pub offset: u64,
    pub length: u64,
}

/// Where a frame came from and which part of it the worker must look at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrameMeta {
    pub instance_id: String,
    pub room_id: String,
    pub seq: u64,
    /// Capture time, RFC 3339 UTC.
    pub timestamp: String,
    pub trace_id: String,
    pub roi_processing: RoiProcessing,
    /// Where people lie (rest zones: a bed, an armchair), normalized: a
    /// person detector looks at each turned by 90 degrees both ways too (it
    /// was trained on upright people). Absent: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rest_areas: Vec<NormRect>,
    /// Where people come and go (exit zones: a door), normalized squares: a
    /// person detector looks at each on its own too (closer: a person half in
    /// view in a doorway is found there). Absent: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exit_areas: Vec<NormRect>,
}

/// The crop a worker runs on, chosen by ROI attention.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoiProcessing {
    /// `external`, `auto_focus` or `full_frame`.
    pub source: String,
    /// The crop in full-frame pixels.
    pub crop: PixelRect,
    /// The same crop normalized to 0..1.
    pub crop_normalized: NormRect,
    /// Model input size chosen for this crop (320 or 640).
    pub target_size: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PixelRect {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct NormRect {
    pub x: f64,
    pub y: f64,
    pub width: f64,
    pub height: f64,
}

/// A command for the worker (for example a model swap). Answered by a
/// [`CommandResult`] carrying the same `id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandRequest {
    pub id: u64,
    pub name: String,
    pub params: BTreeMap<String, String>,
}

/// A worker is "up" only after it has sent this (model loaded).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ready {
    pub protocol_version: u32,
    pub inference_type: String,
    pub model: ModelInfo,
    pub pid: u32,
    /// The worker mapped the shared-memory region it was offered and takes frames
    /// from it. Workers that ignore shared memory leave it out (false).
    #[serde(default)]
    pub shm: bool,
    /// How many frames the worker works on at once (it answers them in
    /// order); the daemon sends at most this many ahead. Absent: 1.
    #[serde(default = "one")]
    pub parallel: u32,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// Catalog name of the model (`ssdlite`, `n`, `s`, ...).
    pub name: String,
    /// Side of the square model input in pixels.
    pub input_size: u32,
    /// The runtime that runs the model (`openvino:CPU`,
    /// `onnxruntime:CPUExecutionProvider`, ...); optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// Why that runtime and precision (`openvino int8: fastest of ...`); in
    /// `ready` and a model swap's `command_result`, not in every result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub choice: Option<String>,
}

/// Answer to one frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InferenceResult {
    pub frame_seq: u64,
    pub trace_id: String,
    pub inference_type: String,
    pub detections: Vec<Detection>,
    pub person_count: u32,
    pub model: ModelInfo,
    pub timing: Timing,
    /// All detections merged, expanded by 15 %, normalized; absent when nothing was found.
    pub suggested_roi: Option<NormRect>,
    /// The worker's own result data (any JSON object, at most
    /// [`MAX_DATA_BYTES`] as JSON), published as the message's `data` in place
    /// of the detections: how a worker type that finds no boxes (scene
    /// brightness, motion) says what it measured. Absent for detectors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Map<String, serde_json::Value>>,
}

/// The largest `data` object a result may carry, as JSON bytes.
pub const MAX_DATA_BYTES: usize = 16 * 1024;
/// The most detections a result may carry: beyond it the daemon keeps the
/// most confident ones and counts a protocol error (a model without NMS at a
/// low threshold can produce thousands).
pub const MAX_DETECTIONS: usize = 100;
/// The longest class name, in characters.
pub const MAX_CLASS_CHARS: usize = 64;

/// The most keypoints a detection may carry (pose models give 17).
pub const MAX_KEYPOINTS: usize = 32;
/// The longest keypoint name, in characters.
pub const MAX_KEYPOINT_NAME_CHARS: usize = 32;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    /// Full-frame pixels.
    pub bbox: BBox,
    pub confidence: f64,
    pub class: String,
    /// The body's keypoints, from pose models (COCO's 17 for MoveNet: `nose`,
    /// `left_eye`, ..., `right_ankle`). Absent for detectors that find boxes
    /// only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keypoints: Option<Vec<Keypoint>>,
}

/// One keypoint of a body, in full-frame pixels, with the model's confidence
/// in it (0..1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Keypoint {
    pub name: String,
    pub x: f64,
    pub y: f64,
    pub score: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BBox {
    pub x: f64,
    pub y: f64,
    pub width: f64,
    pub height: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Timing {
    pub preprocess_ms: f64,
    pub inference_ms: f64,
    pub postprocess_ms: f64,
    pub total_ms: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandResult {
    pub id: u64,
    pub success: bool,
    pub message: String,
    /// The model the worker runs after a successful model swap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelInfo>,
}

/// A worker-side failure. With `frame_seq` set it answers that frame (which then
/// has no result); `fatal` means the worker is about to exit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerError {
    pub message: String,
    pub frame_seq: Option<u64>,
    pub fatal: bool,
}

/// Raw pixel bytes, encoded as MsgPack `bin`. Borrowed when the daemon encodes a
/// frame (no copy of the pixels into an intermediate struct), owned when decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pixels<'a>(pub Cow<'a, [u8]>);

impl Serialize for Pixels<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de, 'a> Deserialize<'de> for Pixels<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bytes = serde_bytes::ByteBuf::deserialize(d)?;
        Ok(Pixels(Cow::Owned(bytes.into_vec())))
    }
}

//! Configuration: the YAML schema with its defaults, loading, and validation.
//!
//! Owns the shape of `config/orion.yaml` (documented key by key in
//! `docs/config.md`). Loading rejects unknown keys; [`Config::validate`] then reports
//! *every* problem with its key path and the allowed range, so an operator fixes a
//! file in one pass. This module never starts anything and never logs secrets.

mod validate;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use crate::tracking::zones::ZoneAnchor;

pub use validate::{BrokerAddr, Problem};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {cause}")]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("cannot parse config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config file {path} is invalid:\n{}", format_problems(.problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

fn format_problems(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  - {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The whole configuration. Every field has a default; an empty file is valid.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Unique name of this sensor; part of every MQTT topic.
    pub instance_id: String,
    /// Room the camera watches; copied into every message.
    pub room_id: String,
    pub camera: CameraConfig,
    pub stream: StreamConfig,
    pub models: ModelsConfig,
    pub rois: RoisConfig,
    pub workers: WorkersConfig,
    pub framebus: FrameBusConfig,
    pub mqtt: MqttConfig,
    pub health: HealthConfig,
    /// Upper bound for the whole ordered shutdown, in seconds.
    pub shutdown_timeout_s: f64,
    pub tracking: TrackingConfig,
    pub occupancy: OccupancyConfig,
    pub presence: PresenceConfig,
    pub falls: FallsConfig,
    pub zones: ZonesConfig,
    pub homeassistant: HomeAssistantConfig,
    pub outbox: OutboxConfig,
    pub ui: UiConfig,
    /// Several cameras in one daemon: each entry names `instance_id` and `camera`
    /// and may set `room_id`, `stream`, `rois` and `max_inference_rate_hz`
    /// (merged over the top-level sections). Without it the top-level
    /// `instance_id`, `room_id` and `camera` are the one camera.
    #[serde(skip_serializing)]
    pub cameras: Vec<serde_norway::Value>,
    /// The cameras as complete single-camera configs (from `cameras`).
    #[serde(skip)]
    resolved: Vec<Config>,
    /// Problems found while resolving `cameras` (reported by `validate`).
    #[serde(skip)]
    form_problems: Vec<Problem>,
}

/// The most cameras one daemon serves.
pub const MAX_CAMERAS: usize = 64;

/// The keys a `cameras` entry may set.
pub const CAMERA_KEYS: [&str; 11] = [
    "zones",
    "presence",
    "falls",
    "instance_id",
    "room_id",
    "camera",
    "stream",
    "rois",
    "max_inference_rate_hz",
    "tracking",
    "occupancy",
];

/// Tracking of people across results (per camera).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrackingConfig {
    /// Results a track must be seen in before it counts as a person (and
    /// `person_entered` goes out).
    pub min_hits: u32,
    /// A track not seen for this long ends (`person_left`).
    pub max_missing_s: f64,
    /// Largest association distance, in box sizes (centre distance to the
    /// predicted position, plus a penalty for a change of size).
    pub max_distance: f64,
}

impl Default for TrackingConfig {
    fn default() -> Self {
        Self {
            min_hits: 2,
            max_missing_s: 3.0,
            max_distance: 1.5,
        }
    }
}

/// Falls and people down (per camera; docs/events.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FallsConfig {
    /// Watch for falls and people down (needs posture: best with the pose
    /// model, `movenet`).
    pub enabled: bool,
    /// Down (lying or on the floor) this long right after standing, outside
    /// rest zones, or lost by the detector this long right after going
    /// down: `fall_detected`.
    pub confirm_s: f64,
    /// Lying outside rest zones this long without a fall seen:
    /// `person_down`.
    pub down_after_s: f64,
    /// An active alert is announced again this often (0: never).
    pub repeat_s: f64,
}

impl Default for FallsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            confirm_s: 2.0,
            down_after_s: 60.0,
            repeat_s: 60.0,
        }
    }
}

/// Presence that holds (per camera): people no longer detected away from an
/// exit are unseen, not gone (docs/events.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PresenceConfig {
    /// An unseen person leaves (`person_left`, `not_seen`) after this long of
    /// watching without them: a night's sleep by default. 0: a person not
    /// detected for `tracking.max_missing_s` leaves wherever they were.
    pub unseen_timeout_s: f64,
    /// The frame edges people leave by (zones marked `exit` are exits too).
    pub exit_edges: Vec<Edge>,
    /// A person-shaped thing that has not moved at all for this long outside
    /// rest zones is pointed out (`get_status`, the live view) as a candidate
    /// for an ignore zone; never ignored by itself. 0: never.
    pub ignore_hint_after_s: f64,
    /// Directory of the present people kept across restarts (one file per
    /// camera). Default: `presence` in systemd's state directory, else
    /// `state/presence` under the working directory.
    pub path: PathBuf,
}

/// An edge of the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Edge {
    Left,
    Right,
    Top,
    Bottom,
}

/// A directory `name` in systemd's state directory (`$STATE_DIRECTORY`), else
/// under `state/` in the working directory.
fn state_dir(name: &str) -> PathBuf {
    std::env::var_os("STATE_DIRECTORY")
        .and_then(|dirs| std::env::split_paths(&dirs).next())
        .filter(|d| d.is_absolute())
        .map_or_else(|| Path::new("state").join(name), |d| d.join(name))
}

impl Default for PresenceConfig {
    fn default() -> Self {
        Self {
            unseen_timeout_s: 12.0 * 3600.0,
            exit_edges: vec![Edge::Left, Edge::Right, Edge::Top, Edge::Bottom],
            ignore_hint_after_s: 1800.0,
            path: state_dir("presence"),
        }
    }
}

/// Home Assistant MQTT discovery (docs/events.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HomeAssistantConfig {
    /// Publish discovery messages: a device per camera with occupancy, person
    /// count and one entity per zone.
    pub enabled: bool,
    /// Home Assistant's discovery prefix.
    pub discovery_prefix: String,
}

impl Default for HomeAssistantConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            discovery_prefix: "homeassistant".into(),
        }
    }
}

/// The persistent outbox of events (docs/operations.md): every event is stored
/// on disk before it is published and removed only when the broker has
/// acknowledged it. Daemon-wide (one store for every camera).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboxConfig {
    /// Directory of the store (created if missing). One daemon per directory.
    /// Default: `outbox` in systemd's state directory (`$STATE_DIRECTORY`, the
    /// service's `/var/lib/orion`), else `state/outbox` under the working
    /// directory.
    pub path: PathBuf,
    /// Most events kept; beyond it the oldest are dropped (and counted).
    pub max_events: u64,
    /// Most bytes of events kept; beyond it the oldest are dropped (and counted).
    pub max_bytes: u64,
    /// Most events one camera stores a minute (a burst of this many, then this
    /// many a minute): beyond, its events are not stored, counted
    /// (`orion_events_suppressed_total`) and its health says so, so that a
    /// runaway model cannot push real events out of the outbox.
    pub max_events_per_minute: u32,
    /// Flush every event to the disk before publishing it: events survive a
    /// power cut (about 0.1-2 ms per event, depending on the disk). Without it
    /// they survive a crash or kill of the daemon, not of the machine.
    pub fsync: bool,
}

/// The live view (docs/ui.md): a page on the health HTTP server that shows what
/// each camera sees, its detections and zones, and sets ROIs and zones.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UiConfig {
    /// Serve the page at `/` (and its API under `/api/`).
    pub enabled: bool,
    /// Most frames per second sent to a viewer (JPEG encoded only while
    /// someone watches).
    pub max_fps: f64,
    /// `false`: privacy mode, boxes and zones on a neutral background; no
    /// pixels leave the box.
    pub show_video: bool,
    /// Required on every UI request and control call when `health.listen` is
    /// not a loopback address. `ORION_UI_TOKEN` overrides it. Never logged.
    #[serde(serialize_with = "redact_secret")]
    pub token: Option<String>,
}

impl Default for UiConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            max_fps: 5.0,
            show_video: true,
            token: None,
        }
    }
}

/// Events kept in memory when the disk cannot take them (full, read-only).
pub const OUTBOX_MEMORY_EVENTS: u64 = 10_000;

impl Default for OutboxConfig {
    fn default() -> Self {
        Self {
            path: state_dir("outbox"),
            max_events: 100_000,
            max_bytes: 64 * 1024 * 1024,
            max_events_per_minute: 120,
            fsync: true,
        }
    }
}

/// Named regions of the camera's view (per camera), changeable at run time
/// (`set_zones`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ZonesConfig {
    /// Results in a row inside (outside) before a person is in (out of) a zone.
    pub min_frames: u32,
    /// And for at least this many seconds (the same at any inference rate).
    pub min_s: f64,
    /// Someone in a zone leaves it only this far outside its outline
    /// (normalized): no flapping at the edge.
    pub margin: f64,
    pub anchor: ZoneAnchor,
    /// The zones: `{name, polygon: [[x, y], ...]}` or `{name, rect: {x, y,
    /// width, height}}`, normalized.
    pub regions: Vec<crate::tracking::zones::ZoneSpec>,
}

impl Default for ZonesConfig {
    fn default() -> Self {
        Self {
            min_frames: 2,
            min_s: 0.5,
            margin: 0.03,
            anchor: ZoneAnchor::BottomCenter,
            regions: Vec::new(),
        }
    }
}

/// Occupancy with hysteresis (per camera).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OccupancyConfig {
    /// No confirmed person for this long: the room is empty.
    pub empty_after_s: f64,
}

impl Default for OccupancyConfig {
    fn default() -> Self {
        Self {
            empty_after_s: 10.0,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            instance_id: "orion-demo".into(),
            room_id: "demo-room".into(),
            camera: CameraConfig::default(),
            stream: StreamConfig::default(),
            models: ModelsConfig::default(),
            rois: RoisConfig::default(),
            workers: WorkersConfig::default(),
            framebus: FrameBusConfig::default(),
            mqtt: MqttConfig::default(),
            health: HealthConfig::default(),
            shutdown_timeout_s: 5.0,
            tracking: TrackingConfig::default(),
            occupancy: OccupancyConfig::default(),
            presence: PresenceConfig::default(),
            falls: FallsConfig::default(),
            zones: ZonesConfig::default(),
            homeassistant: HomeAssistantConfig::default(),
            outbox: OutboxConfig::default(),
            ui: UiConfig::default(),
            cameras: Vec::new(),
            resolved: Vec::new(),
            form_problems: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// GStreamer `videotestsrc`: no camera needed.
    Test,
    /// A video file, replayed in a loop.
    File,
    /// An RTSP camera.
    Rtsp,
    /// A USB / V4L2 camera (`camera.device`).
    V4l2,
}

/// What a V4L2 camera is asked to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum V4l2Format {
    /// MJPEG when the camera offers it (full frame rate at high resolutions over
    /// USB 2), else raw.
    #[default]
    Auto,
    Mjpeg,
    Raw,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CameraConfig {
    pub source: SourceKind,
    /// Video file for `source: file`.
    pub path: Option<PathBuf>,
    /// Camera URL for `source: rtsp` (may carry credentials; never logged).
    pub rtsp_url: Option<String>,
    /// File source: pace frames at the file's own frame rate (true) or decode as
    /// fast as possible (false, for benchmarks).
    pub realtime: bool,
    /// Test source: `videotestsrc` pattern name.
    pub test_pattern: String,
    /// Consecutive failed (re)connections before giving up; 0 = never give up.
    pub max_reconnect_attempts: u32,
    /// Longest wait between reconnection attempts (backoff 1 s doubling to this).
    pub reconnect_backoff_max_s: f64,
    /// RTSP jitter buffer.
    pub rtsp_latency_ms: u32,
    /// V4L2 device for `source: v4l2`.
    pub device: PathBuf,
    /// V4L2: the format asked of the camera; frames are scaled to
    /// `stream.width` x `stream.height` whatever it sends.
    pub v4l2_format: V4l2Format,
}

impl Default for CameraConfig {
    fn default() -> Self {
        Self {
            source: SourceKind::Test,
            path: None,
            rtsp_url: None,
            realtime: true,
            test_pattern: "ball".into(),
            max_reconnect_attempts: 0,
            reconnect_backoff_max_s: 30.0,
            rtsp_latency_ms: 200,
            device: PathBuf::from("/dev/video0"),
            v4l2_format: V4l2Format::Auto,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamConfig {
    /// Frame size delivered to the pipeline (scaled by GStreamer).
    pub width: u32,
    pub height: u32,
    /// Frame rate of the test source.
    pub fps: u32,
    /// Seconds of frames consumed without inference to measure the real FPS.
    pub warmup_duration_s: f64,
    /// A connected stream without frames for this long is `stalled`.
    pub stall_timeout_s: f64,
    /// Threads of the video decoder; 0 = as many as it likes (more CPU, lower
    /// latency on large frames).
    pub decoder_threads: u32,
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            width: 640,
            height: 480,
            fps: 15,
            warmup_duration_s: 5.0,
            stall_timeout_s: 10.0,
            decoder_threads: 1,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelsConfig {
    pub person_detector: DetectorConfig,
}

/// Output layout of a model file, which decides how the worker decodes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelFormat {
    /// TF Object Detection API SSD export (the shipped SSDLite-MobileNetV2).
    Ssd,
    /// Ultralytics YOLO v8/11 export, output `[1, 4 + classes, N]`.
    Yolo,
    /// MoveNet MultiPose export (the shipped pose model): people with their
    /// 17 keypoints, output `[1, 6, 56]`.
    Movenet,
}

/// The runtime that runs a model in the shipped worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// The fastest on this machine: measured at the first start (per model,
    /// machine and runtime version) and remembered in the cache directory.
    #[default]
    Auto,
    Openvino,
    Onnxruntime,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Auto => "auto",
            Backend::Openvino => "openvino",
            Backend::Onnxruntime => "onnxruntime",
        }
    }
}

/// The numbers a model computes with in the shipped worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// The entry's INT8 variant where it is faster on this machine and its
    /// accuracy check (beside the file) passed; else FP32.
    #[default]
    Auto,
    Fp32,
    Int8,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::Auto => "auto",
            Precision::Fp32 => "fp32",
            Precision::Int8 => "int8",
        }
    }
}

/// One catalog entry: either one model file for every crop (`path`), or one file
/// per model input size (`variants`), between which ROI attention chooses by crop
/// area (320 for small crops, 640 for large ones).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    pub format: ModelFormat,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// Square input size of `path` for YOLO models; SSD models take any size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_size: Option<u32>,
    /// Input size -> model file.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variants: BTreeMap<u32, PathBuf>,
    /// Runtime for this entry; `models.person_detector.backend` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<Backend>,
    /// The quantized variant of `path` (OpenVINO IR `.xml`, its `.bin` and
    /// accuracy check `.check.json` beside it), made by `models/quantize.py`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub int8: Option<PathBuf>,
    /// Precision for this entry; `models.person_detector.precision` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precision: Option<Precision>,
    /// This model's own thresholds (its scores run lower or higher than
    /// another's); each absent one is `models.person_detector`'s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continue_confidence: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edge_confidence: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub night: Option<ModelNight>,
}

/// A model's own night thresholds; each absent one is
/// `models.person_detector.night`'s.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelNight {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continue_confidence: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edge_confidence: Option<f64>,
}

impl ModelEntry {
    pub fn single(path: impl Into<PathBuf>, format: ModelFormat) -> Self {
        Self {
            format,
            path: Some(path.into()),
            input_size: None,
            variants: BTreeMap::new(),
            backend: None,
            int8: None,
            precision: None,
            confidence: None,
            continue_confidence: None,
            edge_confidence: None,
            night: None,
        }
    }

    /// The shipped pose model at `path`, with the thresholds its scores
    /// need (MoveNet scores people lower than SSDLite: standing 0.4-0.65,
    /// lying on the floor 0.25-0.35; docs/benchmarks.md, "Pose").
    pub fn movenet(path: impl Into<PathBuf>) -> Self {
        Self {
            confidence: Some(0.35),
            continue_confidence: Some(0.2),
            edge_confidence: Some(0.25),
            night: Some(ModelNight {
                confidence: Some(0.3),
                continue_confidence: Some(0.2),
                edge_confidence: Some(0.2),
            }),
            ..Self::single(path, ModelFormat::Movenet)
        }
    }

    pub fn format_name(&self) -> &'static str {
        match self.format {
            ModelFormat::Ssd => "ssd",
            ModelFormat::Yolo => "yolo",
            ModelFormat::Movenet => "movenet",
        }
    }

    /// Every file of the entry.
    pub fn files(&self) -> Vec<&Path> {
        self.path
            .iter()
            .map(PathBuf::as_path)
            .chain(self.variants.values().map(PathBuf::as_path))
            .chain(self.int8.iter().map(PathBuf::as_path))
            .collect()
    }

    /// The entry as string parameters, as the worker protocol carries them (the
    /// `set_model` command and, as `--key value` flags, the worker's arguments).
    pub fn params(&self, name: &str) -> BTreeMap<String, String> {
        let mut p = BTreeMap::from([
            ("size".to_string(), name.to_string()),
            ("format".to_string(), self.format_name().to_string()),
        ]);
        if let Some(path) = &self.path {
            p.insert("path".into(), path.to_string_lossy().into_owned());
        }
        if let Some(n) = self.input_size {
            p.insert("input_size".into(), n.to_string());
        }
        for (size, path) in &self.variants {
            p.insert(
                format!("variant_{size}"),
                path.to_string_lossy().into_owned(),
            );
        }
        if let Some(b) = self.backend {
            p.insert("backend".into(), b.name().into());
        }
        if let Some(path) = &self.int8 {
            p.insert("int8".into(), path.to_string_lossy().into_owned());
        }
        if let Some(precision) = self.precision {
            p.insert("precision".into(), precision.name().into());
        }
        p
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectorConfig {
    /// Catalog entry the workers start with.
    pub size: String,
    /// Models by name (`ssdlite`, `n`, `s`, ...).
    pub catalog: BTreeMap<String, ModelEntry>,
    /// Confidence from which a detection is a person (starts a track).
    pub confidence: f64,
    /// Confidence from which a detection keeps a person already tracked (a
    /// person lying, in the dark, half hidden); it never starts a track.
    pub continue_confidence: f64,
    /// Confidence from which a box touching the frame's edge starts a track
    /// (a person half in view at a door or bedside scores lower).
    pub edge_confidence: f64,
    /// The same three at night (the camera's frames turned grayscale).
    pub night: NightThresholds,
    /// Upper bound of the inference rate; the effective rate is
    /// min(this, measured stream FPS).
    pub max_inference_rate_hz: f64,
    /// Runtime of every catalog entry that names none.
    pub backend: Backend,
    /// Precision of every catalog entry that names none.
    pub precision: Precision,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        Self {
            size: "movenet".into(),
            catalog: BTreeMap::from([
                (
                    "movenet".to_string(),
                    ModelEntry {
                        int8: Some("models/movenet_multipose_lightning.int8.xml".into()),
                        ..ModelEntry::movenet("models/movenet_multipose_lightning.onnx")
                    },
                ),
                (
                    "ssdlite".to_string(),
                    ModelEntry {
                        int8: Some("models/ssdlite_mobilenet_v2_coco.int8.xml".into()),
                        ..ModelEntry::single(
                            "models/ssdlite_mobilenet_v2_coco.onnx",
                            ModelFormat::Ssd,
                        )
                    },
                ),
            ]),
            confidence: 0.5,
            continue_confidence: 0.3,
            edge_confidence: 0.35,
            night: NightThresholds::default(),
            max_inference_rate_hz: 2.0,
            backend: Backend::Auto,
            precision: Precision::Auto,
        }
    }
}

/// The detector's thresholds at night.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NightThresholds {
    pub confidence: f64,
    pub continue_confidence: f64,
    pub edge_confidence: f64,
}

impl Default for NightThresholds {
    fn default() -> Self {
        Self {
            confidence: 0.4,
            continue_confidence: 0.25,
            edge_confidence: 0.3,
        }
    }
}

/// The thresholds a model's detections are judged by, day and night:
/// (confidence, continue_confidence, edge_confidence) each.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Levels {
    pub day: (f64, f64, f64),
    pub night: (f64, f64, f64),
}

impl DetectorConfig {
    /// The lowest confidence any threshold of any model accepts: what the
    /// workers report (a model swapped in at run time included).
    pub fn floor(&self) -> f64 {
        std::iter::once(self.levels(None))
            .chain(self.catalog.values().map(|e| self.levels(Some(e))))
            .flat_map(|l| {
                let (a, b, c) = l.day;
                let (d, e, f) = l.night;
                [a, b, c, d, e, f]
            })
            .fold(1.0, f64::min)
    }

    /// The thresholds of catalog entry `entry` (its own, else these); of
    /// this section with `None`.
    pub fn levels(&self, entry: Option<&ModelEntry>) -> Levels {
        let own = entry.and_then(|e| e.night.clone()).unwrap_or_default();
        let n = &self.night;
        Levels {
            day: (
                entry.and_then(|e| e.confidence).unwrap_or(self.confidence),
                entry
                    .and_then(|e| e.continue_confidence)
                    .unwrap_or(self.continue_confidence),
                entry
                    .and_then(|e| e.edge_confidence)
                    .unwrap_or(self.edge_confidence),
            ),
            night: (
                own.confidence.unwrap_or(n.confidence),
                own.continue_confidence.unwrap_or(n.continue_confidence),
                own.edge_confidence.unwrap_or(n.edge_confidence),
            ),
        }
    }

    /// The catalog entry `name` as a worker runs it: its backend resolved
    /// against [`DetectorConfig::backend`].
    pub fn resolved(&self, name: &str) -> Option<ModelEntry> {
        let mut entry = self.catalog.get(name)?.clone();
        entry.backend = Some(entry.backend.unwrap_or(self.backend));
        entry.precision = Some(entry.precision.unwrap_or(self.precision));
        Some(entry)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoisConfig {
    /// Crops smaller than this many pixels go to the 320 model, others to the 640.
    pub small_roi_threshold_px: u64,
    /// Crops are never smaller than this many pixels on a side.
    pub min_crop_px: u32,
    pub auto_focus: AutoFocusConfig,
}

impl Default for RoisConfig {
    fn default() -> Self {
        Self {
            small_roi_threshold_px: 320 * 320,
            min_crop_px: 32,
            auto_focus: AutoFocusConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AutoFocusStrategy {
    /// Use the workers' suggestion as it is.
    Simple,
    /// Exponential smoothing of successive suggestions (`alpha`).
    Smoothing,
    /// Expand the suggestion in the direction of motion.
    Velocity,
}

impl AutoFocusStrategy {
    pub fn name(self) -> &'static str {
        match self {
            Self::Simple => "simple",
            Self::Smoothing => "smoothing",
            Self::Velocity => "velocity",
        }
    }
}

/// Auto-focus: crop the next frames to where the workers last saw people.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AutoFocusConfig {
    pub enabled: bool,
    pub strategy: AutoFocusStrategy,
    /// Smoothing weight of the newest suggestion, 0 < alpha <= 1.
    pub alpha: f64,
    /// Center speed (normalized units per result) above which `velocity` expands.
    pub velocity_threshold: f64,
    /// Expansion per unit of speed.
    pub velocity_factor: f64,
    /// Largest expansion, normalized.
    pub max_expansion: f64,
    /// Results without a suggestion in a row before falling back to the full frame.
    pub miss_limit: u32,
}

impl Default for AutoFocusConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            strategy: AutoFocusStrategy::Smoothing,
            alpha: 0.3,
            velocity_threshold: 0.02,
            velocity_factor: 2.0,
            max_expansion: 0.2,
            miss_limit: 3,
        }
    }
}

/// The worker pools by inference type (`person_detector`, `scene_brightness`,
/// any name a worker announces). Every camera's frames go to every pool. Without a
/// `workers` section the daemon runs one `person_detector` pool.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WorkersConfig(pub BTreeMap<String, WorkerConfig>);

/// The inference type whose workers take the detector model flags and whose
/// results feed ROI attention.
pub const PERSON_DETECTOR: &str = "person_detector";

impl Default for WorkersConfig {
    fn default() -> Self {
        Self(BTreeMap::from([(
            PERSON_DETECTOR.to_string(),
            WorkerConfig::person_detector(),
        )]))
    }
}

impl WorkersConfig {
    pub fn get(&self, inference_type: &str) -> Option<&WorkerConfig> {
        self.0.get(inference_type)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &WorkerConfig)> {
        self.0.iter()
    }

    /// A `person_detector` entry that names no command runs the shipped worker.
    fn fill_defaults(&mut self) {
        if let Some(w) = self.0.get_mut(PERSON_DETECTOR) {
            w.command = WorkerConfig::person_detector().command;
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerConfig {
    /// Program and arguments. For `person_detector` the daemon appends `--model
    /// PATH --model-name NAME --model-format FORMAT --confidence C` (see
    /// docs/worker-protocol.md); other types get their command as it is.
    /// Required for every type but `person_detector` (which runs the shipped
    /// worker by default).
    pub command: Vec<String>,
    /// Number of worker processes.
    pub count: u32,
    /// Frames one worker process works on at once, each on a core of its own
    /// (the shipped person detector runs them on one model in one process:
    /// less memory than one process per core). 0: as many as the machine has
    /// cores. A worker that cannot says so in `ready` and gets one at a time.
    pub parallel: u32,
    /// Seconds a new worker has to load its model and say `ready`.
    pub startup_timeout_s: f64,
    /// A worker that has a frame and answers nothing for max(this, 3 / rate) seconds
    /// is hung and replaced.
    pub hang_timeout_floor_s: f64,
    /// Upper bound for one message from a worker, in bytes.
    pub max_message_bytes: usize,
    /// Offer workers a shared-memory region for frames (no pixel copies through
    /// the pipe); workers that do not take it get frames inline.
    pub shared_memory: bool,
    /// This many failures within `restart_window_s` stop the restarts (the worker
    /// is then reported failed) instead of restarting forever.
    pub max_restarts: u32,
    pub restart_window_s: f64,
    /// Longest wait before a restart (backoff 1 s doubling to this).
    pub restart_backoff_max_s: f64,
    /// Extra environment variables for the worker processes (e.g. `OMP_NUM_THREADS`).
    /// Workers never inherit the daemon's environment: they get only the variables
    /// the worker module inherits on purpose (`INHERITED_ENV`), the shared-memory variables, and
    /// these. Names starting with `ORION_` are reserved and refused.
    pub env: std::collections::BTreeMap<String, String>,
}

impl WorkerConfig {
    /// `parallel` with 0 resolved to this machine's cores.
    pub fn frames_at_once(&self) -> usize {
        match self.parallel {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get().min(64)),
            n => n as usize,
        }
    }

    /// The shipped person detector worker.
    pub fn person_detector() -> Self {
        Self {
            command: vec![
                ".venv/bin/python".into(),
                "-m".into(),
                "orion_worker.person_detector".into(),
            ],
            ..Self::default()
        }
    }
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            command: Vec::new(),
            count: 1,
            parallel: 0,
            startup_timeout_s: 60.0,
            hang_timeout_floor_s: 30.0,
            max_message_bytes: 1024 * 1024,
            shared_memory: true,
            max_restarts: 5,
            restart_window_s: 60.0,
            restart_backoff_max_s: 30.0,
            env: std::collections::BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FrameBusConfig {
    /// Seconds between frame bus statistics log lines.
    pub stats_interval_s: f64,
}

impl Default for FrameBusConfig {
    fn default() -> Self {
        Self {
            stats_interval_s: 10.0,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// `embedded` (start a broker inside the daemon on `embedded_listen`) or
    /// `mqtt://host:port`.
    pub broker: String,
    /// Listen address of the embedded broker.
    pub embedded_listen: SocketAddr,
    /// MQTT client id; defaults to `orion-{instance_id}`.
    pub client_id: Option<String>,
    pub keep_alive_s: u64,
    /// Results queued for the broker beyond this are dropped and counted.
    pub max_pending_publishes: usize,
    /// Broker user name; `ORION_MQTT_USERNAME` overrides it.
    pub username: Option<String>,
    /// Broker password; `ORION_MQTT_PASSWORD` overrides it. Never logged or published.
    #[serde(serialize_with = "redact_secret")]
    pub password: Option<String>,
    pub tls: TlsConfig,
    /// Control commands larger than this are refused (with an answer).
    pub max_command_bytes: usize,
}

fn redact_secret<S: serde::Serializer>(v: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(_) => s.serialize_some("***"),
        None => s.serialize_none(),
    }
}

/// TLS to the broker (rustls).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    pub enabled: bool,
    /// PEM file of the CA(s) that signed the broker's certificate; without it the
    /// system's root certificates are used.
    pub ca_file: Option<PathBuf>,
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            broker: "embedded".into(),
            embedded_listen: SocketAddr::from(([127, 0, 0, 1], 1883)),
            client_id: None,
            keep_alive_s: 30,
            max_pending_publishes: 64,
            username: None,
            password: None,
            tls: TlsConfig::default(),
            max_command_bytes: 64 * 1024,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// Address of the HTTP server for /health, /readiness and /metrics.
    pub listen: SocketAddr,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
        }
    }
}

/// Largest config file.
const MAX_CONFIG_BYTES: usize = 1024 * 1024;
/// Deepest nesting of `[` and `{` in a config (the examples use 3).
const MAX_FLOW_NESTING: usize = 32;

/// The deepest nesting of `[` and `{` in `text`, counted everywhere (in quotes
/// and comments too: a guard before the parser that nothing can hide from; a
/// real config nests 3 deep).
fn flow_nesting(text: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    for b in text.bytes() {
        match b {
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

impl Config {
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        // At most one byte more than allowed (`--config /dev/zero` ends); the
        // size is checked before the text (a cut may split a character).
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .and_then(|f| {
                use std::io::Read;
                f.take(MAX_CONFIG_BYTES as u64 + 1).read_to_end(&mut bytes)
            })
            .map_err(|cause| ConfigError::Read {
                path: path.to_owned(),
                cause,
            })?;
        let parse_error = |message: String| ConfigError::Parse {
            path: path.to_owned(),
            message,
        };
        if bytes.len() > MAX_CONFIG_BYTES {
            return Err(parse_error(format!(
                "the config is larger than {MAX_CONFIG_BYTES} bytes"
            )));
        }
        let text = String::from_utf8(bytes)
            .map_err(|_| parse_error("the config is not UTF-8 text".to_string()))?;
        let mut config = Self::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })?;
        config.apply_env();
        let problems = config.validate();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid {
                path: path.to_owned(),
                problems,
            })
        }
    }

    /// Parses YAML text without validating it. An empty document is the defaults.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        if text.len() > MAX_CONFIG_BYTES {
            return Err(format!(
                "the config is {} bytes; at most {MAX_CONFIG_BYTES}",
                text.len()
            ));
        }
        // The parser takes time in the square of the nesting depth.
        let depth = flow_nesting(text);
        if depth > MAX_FLOW_NESTING {
            return Err(format!(
                "brackets nested {depth} deep; a config needs a handful, at most {MAX_FLOW_NESTING}"
            ));
        }
        let mut config: Config = serde_norway::from_str(text).map_err(|e| e.to_string())?;
        let top: serde_norway::Value = serde_norway::from_str(text).map_err(|e| e.to_string())?;
        let detector_command = top
            .get("workers")
            .and_then(|w| w.get(PERSON_DETECTOR))
            .is_some_and(|d| d.get("command").is_some());
        if !detector_command {
            config.workers.fill_defaults();
        }
        if !config.cameras.is_empty() {
            config.resolve_cameras(&top, detector_command)?;
        }
        Ok(config)
    }

    /// Builds one complete config per `cameras` entry: the top-level document
    /// without `cameras`, with the entry merged over it.
    fn resolve_cameras(
        &mut self,
        top: &serde_norway::Value,
        detector_command: bool,
    ) -> Result<(), String> {
        use serde_norway::Value;
        let mut base = top.as_mapping().cloned().unwrap_or_default();
        base.remove("cameras");
        for key in ["instance_id", "room_id", "camera"] {
            if base.contains_key(key) {
                self.form_problems.push(Problem {
                    key: key.to_string(),
                    message: "cannot be used together with `cameras`; give every camera its own entry in `cameras` (or use the single-camera form without `cameras`)".into(),
                });
            }
        }
        let many = self.cameras.len() > 1;
        for (i, entry) in self.cameras.iter().enumerate() {
            let Some(map) = entry.as_mapping() else {
                return Err(format!(
                    "cameras[{i}]: must be a mapping with instance_id and camera"
                ));
            };
            let mut overlay = serde_norway::Mapping::new();
            for (k, v) in map {
                let key = k.as_str().unwrap_or("");
                if !CAMERA_KEYS.contains(&key) {
                    return Err(format!(
                        "cameras[{i}]: unknown key `{}`; a camera may set {}",
                        crate::logging::cut(&format!("{k:?}"), 64),
                        CAMERA_KEYS.join(", ")
                    ));
                }
                if key == "max_inference_rate_hz" {
                    let mut detector = serde_norway::Mapping::new();
                    detector.insert("max_inference_rate_hz".into(), v.clone());
                    let mut models = serde_norway::Mapping::new();
                    models.insert(PERSON_DETECTOR.into(), Value::Mapping(detector));
                    overlay.insert("models".into(), Value::Mapping(models));
                } else {
                    overlay.insert(k.clone(), v.clone());
                }
            }
            let Some(id) = overlay.get("instance_id").and_then(Value::as_str) else {
                return Err(format!("cameras[{i}]: instance_id is required (a string)"));
            };
            let id = id.to_string();
            if !overlay.contains_key("room_id") {
                overlay.insert("room_id".into(), Value::String(id.clone()));
            }
            let mut merged = Value::Mapping(base.clone());
            merge(&mut merged, Value::Mapping(overlay));
            let mut camera: Config = serde_norway::from_value(merged)
                .map_err(|e| format!("cameras[{i}] ({id}): {e}"))?;
            if !detector_command {
                camera.workers.fill_defaults();
            }
            if many && let Some(client) = &camera.mqtt.client_id {
                camera.mqtt.client_id = Some(format!("{client}-{id}"));
            }
            self.resolved.push(camera);
        }
        Ok(())
    }

    /// The cameras this daemon serves, each as a complete single-camera config
    /// (shared sections identical in all). The single-camera form is a list of one.
    pub fn camera_configs(&self) -> Vec<Config> {
        if self.resolved.is_empty() {
            vec![self.clone()]
        } else {
            self.resolved.clone()
        }
    }

    /// Applies the environment overrides of secrets (`ORION_MQTT_USERNAME`,
    /// `ORION_MQTT_PASSWORD`, `ORION_RTSP_URL`).
    pub fn apply_env(&mut self) {
        self.apply_env_from(|k| std::env::var(k).ok());
    }

    pub fn apply_env_from(&mut self, get: impl Fn(&str) -> Option<String>) {
        self.apply_env_dyn(&get);
    }

    fn apply_env_dyn(&mut self, get: &dyn Fn(&str) -> Option<String>) {
        if let Some(v) = get("ORION_MQTT_USERNAME") {
            self.mqtt.username = Some(v);
        }
        if let Some(v) = get("ORION_MQTT_PASSWORD") {
            self.mqtt.password = Some(v);
        }
        if let Some(v) = get("ORION_UI_TOKEN") {
            self.ui.token = Some(v);
        }
        if self.resolved.is_empty() {
            if let Some(v) = get("ORION_RTSP_URL") {
                self.camera.rtsp_url = Some(v);
            }
            return;
        }
        for camera in &mut self.resolved {
            // Each camera's URL comes from its own variable.
            let own = rtsp_url_variable(&camera.instance_id);
            camera.apply_env_dyn(&|k: &str| match k {
                "ORION_RTSP_URL" => get(&own),
                _ => get(k),
            });
        }
    }

    /// The config as JSON with secrets replaced: the password by `***`, RTSP
    /// credentials by `rtsp://***@host/...`. For status replies and logs.
    pub fn redacted_json(&self) -> serde_json::Value {
        let mut c = self.clone();
        c.camera.rtsp_url = c.camera.rtsp_url.as_deref().map(redact_url);
        let mut v = serde_json::to_value(&c).unwrap_or(serde_json::Value::Null);
        if !self.resolved.is_empty()
            && let Some(map) = v.as_object_mut()
        {
            for key in ["instance_id", "room_id", "camera"] {
                map.remove(key);
            }
            let cameras: Vec<serde_json::Value> = self
                .resolved
                .iter()
                .map(|cam| {
                    let full = cam.redacted_json();
                    let mut one = serde_json::Map::new();
                    for key in ["instance_id", "room_id", "camera", "stream", "rois"] {
                        one.insert(key.into(), full[key].clone());
                    }
                    one.insert(
                        "max_inference_rate_hz".into(),
                        full["models"][PERSON_DETECTOR]["max_inference_rate_hz"].clone(),
                    );
                    serde_json::Value::Object(one)
                })
                .collect();
            map.insert("cameras".into(), cameras.into());
        }
        v
    }

    pub fn broker(&self) -> Option<BrokerAddr> {
        BrokerAddr::parse(&self.mqtt.broker).ok()
    }

    /// TLS to the broker: `mqtt.tls.enabled`, or implied by an `mqtts://` address.
    pub fn tls_enabled(&self) -> bool {
        self.mqtt.tls.enabled
            || matches!(self.broker(), Some(BrokerAddr::External { tls: true, .. }))
    }

    pub fn client_id(&self) -> String {
        self.mqtt
            .client_id
            .clone()
            .unwrap_or_else(|| format!("orion-{}", self.instance_id))
    }

    pub fn control_topic(&self) -> String {
        crate::topics::control(&self.instance_id)
    }

    pub fn health_topic(&self) -> String {
        crate::topics::health(&self.instance_id)
    }

    pub fn status_topic(&self) -> String {
        crate::topics::status(&self.instance_id)
    }
}

/// The variable that overrides a camera's `rtsp_url` in a `cameras` list:
/// `ORION_RTSP_URL_` and the instance_id in capitals, `-` and `.` as `_`
/// (`room-101` -> `ORION_RTSP_URL_ROOM_101`).
pub fn rtsp_url_variable(instance_id: &str) -> String {
    let id: String = instance_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("ORION_RTSP_URL_{id}")
}

/// Merges `overlay` into `base`: mappings key by key, anything else replaced.
fn merge(base: &mut serde_norway::Value, overlay: serde_norway::Value) {
    match (base, overlay) {
        (serde_norway::Value::Mapping(b), serde_norway::Value::Mapping(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

/// Replaces the user-info part of a URL (`rtsp://user:pass@host/...`) with `***`,
/// also when the scheme is missing or misspelt (`user:pass@host`), and its
/// query (`?user=...&password=...`, as some cameras take them) with `?***`.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(end) => (&url[..end + 3], &url[end + 3..]),
        None => ("", url),
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let shown = match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}***@{}", &rest[at + 1..]),
        None => url.to_string(),
    };
    match shown.split_once('?') {
        Some((base, _)) => format!("{base}?***"),
        None => shown,
    }
}

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
}

impl Default for CameraConfig {
    fn default() -> Self {
        Self {
            source: SourceKind::Test,
            path: None,
            rtsp_url: None,
            realtime: true,
            test_pattern: "ball".into(),
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
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            width: 640,
            height: 480,
            fps: 15,
            warmup_duration_s: 5.0,
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
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    pub path: PathBuf,
    pub format: ModelFormat,
    /// Square input size for YOLO models (320 or 640); SSD models take 300.
    #[serde(default)]
    pub input_size: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectorConfig {
    /// Catalog entry the workers start with.
    pub size: String,
    /// Models by name (`ssdlite`, `n`, `s`, ...).
    pub catalog: BTreeMap<String, ModelEntry>,
    /// Minimum detection confidence, 0..1.
    pub confidence: f64,
    /// Upper bound of the inference rate; the effective rate is
    /// min(this, measured stream FPS).
    pub max_inference_rate_hz: f64,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        Self {
            size: "ssdlite".into(),
            catalog: BTreeMap::from([(
                "ssdlite".to_string(),
                ModelEntry {
                    path: "models/ssdlite_mobilenet_v2_coco.onnx".into(),
                    format: ModelFormat::Ssd,
                    input_size: None,
                },
            )]),
            confidence: 0.5,
            max_inference_rate_hz: 2.0,
        }
    }
}

impl DetectorConfig {
    /// The catalog entry named by `size`; validation guarantees it exists.
    pub fn active_model(&self) -> Option<&ModelEntry> {
        self.catalog.get(&self.size)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoisConfig {
    /// Crops smaller than this many pixels go to the 320 model, others to the 640.
    pub small_roi_threshold_px: u64,
}

impl Default for RoisConfig {
    fn default() -> Self {
        Self {
            small_roi_threshold_px: 320 * 320,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkersConfig {
    pub person_detector: WorkerConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerConfig {
    /// Program and arguments; the daemon appends `--model PATH --model-name NAME
    /// --model-format FORMAT --confidence C` (see docs/worker-protocol.md).
    pub command: Vec<String>,
    /// Number of worker processes.
    pub count: u32,
    /// Seconds a new worker has to load its model and say `ready`.
    pub startup_timeout_s: f64,
    /// A worker that has a frame and answers nothing for max(this, 3 / rate) seconds
    /// is hung and replaced.
    pub hang_timeout_floor_s: f64,
    /// Upper bound for one message from a worker, in bytes.
    pub max_message_bytes: usize,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            command: vec![
                ".venv/bin/python".into(),
                "-m".into(),
                "orion_worker.person_detector".into(),
            ],
            count: 1,
            startup_timeout_s: 60.0,
            hang_timeout_floor_s: 30.0,
            max_message_bytes: 1024 * 1024,
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
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            broker: "embedded".into(),
            embedded_listen: SocketAddr::from(([127, 0, 0, 1], 1883)),
            client_id: None,
            keep_alive_s: 30,
            max_pending_publishes: 64,
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

impl Config {
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|cause| ConfigError::Read {
            path: path.to_owned(),
            cause,
        })?;
        let config = Self::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })?;
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
        serde_yaml::from_str(text).map_err(|e| e.to_string())
    }

    pub fn broker(&self) -> Option<BrokerAddr> {
        BrokerAddr::parse(&self.mqtt.broker).ok()
    }

    pub fn client_id(&self) -> String {
        self.mqtt
            .client_id
            .clone()
            .unwrap_or_else(|| format!("orion-{}", self.instance_id))
    }

    pub fn inference_topic(&self, inference_type: &str) -> String {
        format!("care/inferences/{}/{inference_type}", self.instance_id)
    }
}

/// Replaces the user-info part of a URL (`rtsp://user:pass@host/...`) with `***`.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}://***@{}", &url[..scheme_end], &rest[at + 1..]),
        None => url.to_string(),
    }
}

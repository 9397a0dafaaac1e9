//! The control plane of one camera: applies validated commands to its running
//! components.
//!
//! Holds no copy of what it changes: the effective configuration `get_status`
//! reports (secrets redacted) is the start config with the running state read
//! back from its owners. Owns the decisions that need the running state: pause/resume,
//! the inference rate, ROI attention and auto-focus act on this camera alone;
//! model swaps go to the shared detector pool (every camera it serves; the reply
//! names them). Every
//! command yields exactly one [`Outcome`]; a refused command changes nothing.
//! It never touches MQTT itself: the control handler (`mqtt::control`) parses
//! messages and publishes the replies.

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio::sync::watch;

use crate::attention::RoiAttention;
use crate::command::Command;
use crate::config::{AutoFocusConfig, AutoFocusStrategy, Config};
use crate::health;
use crate::metrics::Metrics;
use crate::status::{CameraWatch, WorkerView};
use crate::tracking::zones::{Zone, ZoneSpec};
use crate::worker::{DetectorPool, Swapped};

/// The answer to one command.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub success: bool,
    pub message: String,
    pub data: Value,
    /// Start the shutdown once the reply is out.
    pub shutdown: bool,
}

impl Outcome {
    fn ok(message: impl Into<String>, data: Value) -> Self {
        Self {
            success: true,
            message: message.into(),
            data,
            shutdown: false,
        }
    }

    fn fail(message: impl Into<String>) -> Self {
        Self {
            success: false,
            message: message.into(),
            data: Value::Null,
            shutdown: false,
        }
    }
}

/// What one camera's control plane acts on.
pub struct CameraControls {
    pub metrics: Arc<Metrics>,
    /// The camera's state (for `get_status`).
    pub status: CameraWatch,
    /// The plane owns the camera's pause state.
    pub paused: watch::Sender<bool>,
    /// And its privacy mode (read by the live feed and presence).
    pub privacy: watch::Sender<bool>,
    /// The camera's inference rate (read by its rate gate).
    pub rate_tx: watch::Sender<f64>,
    /// FPS measured during warm-up; caps the inference rate.
    pub measured_fps: Option<f64>,
    pub roi: Arc<Mutex<RoiAttention>>,
    /// The shared workers that serve this camera (their state, for `get_status`).
    pub workers: Vec<WorkerView>,
    /// The camera's room: its zones, people and alerts (they live with its
    /// room tracker, in its result handler).
    pub room: Arc<dyn RoomTable>,
}

/// Where a camera's room lives (its zones, people and alerts): read the
/// zones or replace them, acknowledge alerts (and publish what that changes).
pub trait RoomTable: Send + Sync {
    fn zones(&self) -> Vec<Zone>;
    /// Replaces the zones (validated by the caller).
    fn set_zones(&self, zones: Vec<Zone>);
    /// What the room notices beyond its zones (night, candidates for an
    /// ignore zone, active alerts), for `get_status`.
    fn room_status(&self) -> Value;
    /// Acknowledges alert `alert_id` (every active one with `None`): the
    /// acknowledged alerts, or why none was.
    fn acknowledge(&self, alert_id: Option<&str>) -> Result<Value, String>;
}

pub struct ControlPlane {
    /// The camera's config as it started (never changed: what commands
    /// change lives with its owners and is read back for `get_status`).
    config: Config,
    /// The inference rate last asked for (the gate runs at most the stream's
    /// measured fps of it).
    requested_hz: Mutex<f64>,
    camera: CameraControls,
    /// The shared person detector pool; `None` when no such workers run.
    detector: Option<Arc<DetectorPool>>,
}

impl ControlPlane {
    pub fn new(
        config: Config,
        camera: CameraControls,
        detector: Option<Arc<DetectorPool>>,
    ) -> Self {
        Self {
            requested_hz: Mutex::new(config.models.person_detector.max_inference_rate_hz),
            config,
            camera,
            detector,
        }
    }

    fn roi(&self) -> std::sync::MutexGuard<'_, RoiAttention> {
        self.camera.roi.lock().expect("roi attention poisoned")
    }

    /// Applies `command` to the running camera: exactly one outcome; a refused
    /// command changes nothing.
    pub async fn execute(&self, command: &Command) -> Outcome {
        match command {
            Command::GetStatus => Outcome::ok("status", self.status()),
            Command::PauseInference => self.pause(true),
            Command::ResumeInference => self.pause(false),
            Command::SetInferenceRate { rate_hz } => self.set_rate(*rate_hz),
            Command::SetModelSize { size } => self.set_model(size).await,
            Command::SetAttentionRois { rois } => {
                let mut roi = self.roi();
                match roi.set_external(rois.clone()) {
                    Ok(()) => Outcome::ok(
                        format!("{} attention ROI(s) set", rois.len()),
                        json!({"rois": roi.external(), "merged": roi.merged_external()}),
                    ),
                    Err(e) => Outcome::fail(e),
                }
            }
            Command::ClearAttentionRois => {
                let mut roi = self.roi();
                let n = roi.external().len();
                roi.clear_external();
                Outcome::ok(format!("{n} attention ROI(s) cleared"), json!({"rois": []}))
            }
            Command::GetAttentionRois => {
                let roi = self.roi();
                Outcome::ok(
                    format!("{} attention ROI(s)", roi.external().len()),
                    json!({"rois": roi.external(), "merged": roi.merged_external()}),
                )
            }
            Command::SetAutoFocusStrategy { strategy, params } => {
                self.set_auto_focus(*strategy, params)
            }
            Command::GetAutoFocusStrategy => {
                let roi = self.roi();
                Outcome::ok(
                    roi.auto_focus.config().strategy.name(),
                    auto_focus_json(roi.auto_focus.config()),
                )
            }
            Command::EnablePrivacy => self.set_privacy(true),
            Command::DisablePrivacy => self.set_privacy(false),
            Command::EnableAutoFocus => self.enable_auto_focus(true),
            Command::DisableAutoFocus => self.enable_auto_focus(false),
            Command::ClearAutoFocusHistory => {
                self.roi().auto_focus.clear_history();
                Outcome::ok("auto-focus history cleared", Value::Null)
            }
            Command::GetAutoFocusStats => {
                Outcome::ok("auto-focus stats", self.roi().auto_focus.stats())
            }
            Command::SetZones { zones } => self.set_zones(zones),
            Command::GetZones => {
                let zones = self.camera.room.zones();
                Outcome::ok(format!("{} zone(s)", zones.len()), json!({"zones": zones}))
            }
            Command::ClearZones => {
                let n = self.camera.room.zones().len();
                self.camera.room.set_zones(Vec::new());
                Outcome::ok(format!("{n} zone(s) cleared"), json!({"zones": []}))
            }
            Command::AckAlert { alert_id } => {
                match self.camera.room.acknowledge(alert_id.as_deref()) {
                    Ok(acked) => Outcome::ok("alert acknowledged", acked),
                    Err(e) => Outcome::fail(e),
                }
            }
            Command::Shutdown => Outcome {
                shutdown: true,
                ..Outcome::ok("shutting down", Value::Null)
            },
        }
    }

    fn pause(&self, pause: bool) -> Outcome {
        if !self
            .camera
            .paused
            .send_if_modified(|p| std::mem::replace(p, pause) != pause)
        {
            return Outcome::fail(if pause {
                "inference is already paused"
            } else {
                "inference is not paused"
            });
        }
        if pause {
            Outcome::ok(
                "inference paused; capture continues",
                json!({"paused": true}),
            )
        } else {
            Outcome::ok("inference resumed", json!({"paused": false}))
        }
    }

    fn set_auto_focus(
        &self,
        strategy: AutoFocusStrategy,
        params: &std::collections::BTreeMap<String, f64>,
    ) -> Outcome {
        let mut roi = self.roi();
        let mut next = AutoFocusConfig {
            strategy,
            ..roi.auto_focus.config().clone()
        };
        for (key, value) in params {
            match key.as_str() {
                "alpha" => next.alpha = *value,
                "velocity_threshold" => next.velocity_threshold = *value,
                "velocity_factor" => next.velocity_factor = *value,
                "max_expansion" => next.max_expansion = *value,
                "miss_limit"
                    if *value >= 0.0 && value.fract() == 0.0 && *value <= f64::from(u32::MAX) =>
                {
                    next.miss_limit = *value as u32
                }
                "miss_limit" => {
                    return Outcome::fail(format!(
                        "params.miss_limit {value} must be a whole number in 1..=1000"
                    ));
                }
                _ => return Outcome::fail(format!("unknown param `{key}`")),
            }
        }
        let problems = next.problems("params");
        if !problems.is_empty() {
            let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
            return Outcome::fail(text.join("; "));
        }
        roi.auto_focus.set_strategy(next);
        Outcome::ok(
            format!("auto-focus strategy set to {}", strategy.name()),
            auto_focus_json(roi.auto_focus.config()),
        )
    }

    /// Privacy mode on or off (asking for the mode it is in is no error: a
    /// switch may send it twice). Privacy the config sets (`ui.show_video:
    /// false`) is the installer's decision: no command turns the video on.
    fn set_privacy(&self, on: bool) -> Outcome {
        if !on && !self.config.ui.show_video {
            return Outcome::fail(
                "privacy mode is set by the config (ui.show_video: false) and stays on; \
                 change the config to show video",
            );
        }
        let changed = self
            .camera
            .privacy
            .send_if_modified(|p| std::mem::replace(p, on) != on);
        let message = match (on, changed) {
            (true, true) => "privacy mode on: no video leaves the sensor",
            (true, false) => "privacy mode was already on",
            (false, true) => "privacy mode off: the live view shows video",
            (false, false) => "privacy mode was already off",
        };
        Outcome::ok(message, json!({"privacy": on}))
    }

    fn enable_auto_focus(&self, enable: bool) -> Outcome {
        let mut roi = self.roi();
        let was = roi.auto_focus.enabled();
        roi.auto_focus.set_enabled(enable);
        let word = if enable { "enabled" } else { "disabled" };
        let message = if was == enable {
            format!("auto-focus was already {word}")
        } else {
            format!("auto-focus {word}")
        };
        Outcome::ok(message, auto_focus_json(roi.auto_focus.config()))
    }

    fn set_zones(&self, zones: &[ZoneSpec]) -> Outcome {
        match crate::tracking::zones::validate(zones) {
            Ok(valid) => {
                let n = valid.len();
                self.camera.room.set_zones(valid);
                let zones = self.camera.room.zones();
                Outcome::ok(format!("{n} zone(s) set"), json!({"zones": zones}))
            }
            Err(e) => Outcome::fail(e),
        }
    }

    fn set_rate(&self, rate_hz: f64) -> Outcome {
        let effective = match self.camera.measured_fps {
            Some(fps) if fps > 0.0 => rate_hz.min(fps),
            _ => rate_hz,
        };
        self.camera.rate_tx.send_replace(effective);
        self.camera.metrics.inference_rate_hz.set(effective);
        *self.requested_hz.lock().expect("requested rate poisoned") = rate_hz;
        let message = if effective < rate_hz {
            format!(
                "inference rate set to {effective:.2} Hz (asked {rate_hz} Hz; the stream delivers {effective:.2} FPS)"
            )
        } else {
            format!("inference rate set to {rate_hz} Hz")
        };
        Outcome::ok(
            message,
            json!({"requested_hz": rate_hz, "effective_hz": effective, "stream_fps": self.camera.measured_fps}),
        )
    }

    /// The config in effect: the start config with what commands changed read
    /// back from its owners (rate, model, auto-focus, zones).
    fn effective_config(&self) -> Config {
        let mut config = self.config.clone();
        config.models.person_detector.max_inference_rate_hz =
            *self.requested_hz.lock().expect("requested rate poisoned");
        if let Some(pool) = &self.detector {
            // The pool's model, whichever camera swapped it.
            config.models.person_detector.size = pool.model();
        }
        config.rois.auto_focus = self.roi().auto_focus.config().clone();
        config.zones.regions = zones_as_specs(&self.camera.room.zones());
        config
    }

    async fn set_model(&self, size: &str) -> Outcome {
        let Some(pool) = &self.detector else {
            return Outcome::fail("no person_detector workers run in this daemon");
        };
        let cameras = pool.cameras();
        let shared = if cameras.len() > 1 {
            format!(
                " (shared by {} cameras: {})",
                cameras.len(),
                cameras.join(", ")
            )
        } else {
            String::new()
        };
        // The swap runs to its end in a task of its own: a camera stopped
        // meanwhile (a reload) must not cut short the swap of a pool that
        // serves the others.
        let swap = {
            let (pool, size) = (pool.clone(), size.to_string());
            tokio::spawn(async move { pool.set_model(&size).await })
        };
        let swapped = swap
            .await
            .unwrap_or_else(|e| Err(format!("the model swap failed: {e}")));
        match swapped {
            Ok(Swapped::AlreadyActive) => Outcome::ok(
                format!("model {size} is already active"),
                json!({"size": size, "cameras": cameras}),
            ),
            Ok(Swapped::Loaded(workers)) => Outcome::ok(
                format!("model {size} loaded on {workers} worker(s){shared}"),
                json!({"size": size, "cameras": cameras}),
            ),
            Err(e) => Outcome::fail(e),
        }
    }

    /// Everything an operator asks `get_status` for.
    pub fn status(&self) -> Value {
        let h = health::report(
            &self.camera.metrics,
            &self.camera.status,
            &self.camera.workers,
        );
        let config = &self.config;
        let effective = self.effective_config().redacted_json();
        let roi = self.roi();
        json!({
            "instance_id": config.instance_id,
            "room_id": config.room_id,
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_s": h.uptime_s,
            "health": h.status,
            "reasons": h.reasons,
            "state": self.camera.status.inference_state(),
            "privacy": self.camera.status.privacy(),
            "stream": {
                "source": format!("{:?}", config.camera.source).to_lowercase(),
                "width": config.stream.width,
                "height": config.stream.height,
                "connected": h.stream.connected,
                "frames": h.stream.frames,
                "fps": h.stream.fps,
                "measured_fps": self.camera.measured_fps,
                "last_frame_age_ms": h.stream.last_frame_age_ms,
                "reconnects": h.stream.reconnects,
                "last_error": h.stream.last_error,
                "stalled": h.stream.stalled,
                "failed": h.stream.failed,
                "bytes": h.stream.bytes,
                "frames_gated": self.camera.metrics.frames_gated.get(),
                "frames_paused": self.camera.metrics.frames_paused.get(),
            },
            "inference": {
                "rate_hz": *self.camera.rate_tx.borrow(),
                "model": self.detector.as_ref().map(|p| p.model()),
                "shared_with": self.detector.as_ref().map(|p| p.cameras()),
            },
            "frame_bus": h.frame_bus,
            "workers": h.workers,
            "emitter": {
                "connected": self.camera.status.connected(),
                "published": self.camera.metrics.mqtt_published.get(),
                "dropped": self.camera.metrics.mqtt_dropped.get(),
                "reconnects": self.camera.metrics.mqtt_reconnects.get(),
            },
            "attention": {
                "rois": roi.external(),
                "auto_focus": roi.auto_focus.stats(),
            },
            "presence": self.camera.room.room_status(),
            "config": effective,
        })
    }
}

/// Zones as the config writes them (for the effective config in `get_status`).
fn zones_as_specs(zones: &[Zone]) -> Vec<ZoneSpec> {
    zones
        .iter()
        .map(|z| ZoneSpec {
            name: z.name.clone(),
            polygon: Some(z.polygon.clone()),
            rect: None,
            ignore: z.ignore,
            rest: z.rest,
            exit: z.exit,
        })
        .collect()
}

fn auto_focus_json(c: &AutoFocusConfig) -> Value {
    json!({
        "enabled": c.enabled,
        "strategy": c.strategy.name(),
        "alpha": c.alpha,
        "velocity_threshold": c.velocity_threshold,
        "velocity_factor": c.velocity_factor,
        "max_expansion": c.max_expansion,
        "miss_limit": c.miss_limit,
    })
}

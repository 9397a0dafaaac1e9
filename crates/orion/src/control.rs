//! The control plane: applies validated commands to the running components.
//!
//! Owns the effective configuration (what `get_status` reports, with secrets
//! redacted) and the decisions that need the running state: pause/resume, the
//! inference rate, model swaps with rollback, ROI attention and auto-focus. Every
//! command yields exactly one [`Outcome`]; a refused command changes nothing.
//! It never touches MQTT itself: the control handler (`mqtt::control`) parses
//! messages and publishes the replies.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::watch;

use crate::attention::RoiAttention;
use crate::config::{AutoFocusConfig, Config};
use crate::health::{self, metrics::Metrics};
use crate::mqtt::commands::Command;
use crate::worker::{ModelChoice, WorkerHandle};

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

pub struct ControlPlane {
    config: Mutex<Config>,
    metrics: Arc<Metrics>,
    rate_tx: watch::Sender<f64>,
    /// FPS measured during warm-up; caps the inference rate.
    measured_fps: Option<f64>,
    roi: Arc<Mutex<RoiAttention>>,
    workers: Vec<WorkerHandle>,
    swap_timeout: Duration,
}

impl ControlPlane {
    pub fn new(
        config: Config,
        metrics: Arc<Metrics>,
        rate_tx: watch::Sender<f64>,
        measured_fps: Option<f64>,
        roi: Arc<Mutex<RoiAttention>>,
        workers: Vec<WorkerHandle>,
    ) -> Self {
        // A swap loads a model like a start does: same time budget, plus slack.
        let swap_timeout =
            Duration::from_secs_f64(config.workers.person_detector.startup_timeout_s + 5.0);
        Self {
            config: Mutex::new(config),
            metrics,
            rate_tx,
            measured_fps,
            roi,
            workers,
            swap_timeout,
        }
    }

    fn config(&self) -> std::sync::MutexGuard<'_, Config> {
        self.config.lock().expect("control config poisoned")
    }

    fn roi(&self) -> std::sync::MutexGuard<'_, RoiAttention> {
        self.roi.lock().expect("roi attention poisoned")
    }

    pub async fn execute(&self, command: &Command) -> Outcome {
        match command {
            Command::GetStatus => Outcome::ok("status", self.status()),
            Command::PauseInference => {
                if self.metrics.paused.get() {
                    return Outcome::fail("inference is already paused");
                }
                self.metrics.paused.set(true);
                Outcome::ok(
                    "inference paused; capture continues",
                    json!({"paused": true}),
                )
            }
            Command::ResumeInference => {
                if !self.metrics.paused.get() {
                    return Outcome::fail("inference is not paused");
                }
                self.metrics.paused.set(false);
                Outcome::ok("inference resumed", json!({"paused": false}))
            }
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
                let mut roi = self.roi();
                let mut next = AutoFocusConfig {
                    strategy: *strategy,
                    ..roi.auto_focus.config().clone()
                };
                for (key, value) in params {
                    match key.as_str() {
                        "alpha" => next.alpha = *value,
                        "velocity_threshold" => next.velocity_threshold = *value,
                        "velocity_factor" => next.velocity_factor = *value,
                        "max_expansion" => next.max_expansion = *value,
                        "miss_limit"
                            if *value >= 0.0
                                && value.fract() == 0.0
                                && *value <= f64::from(u32::MAX) =>
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
                self.config().rois.auto_focus = roi.auto_focus.config().clone();
                Outcome::ok(
                    format!("auto-focus strategy set to {}", strategy.name()),
                    auto_focus_json(roi.auto_focus.config()),
                )
            }
            Command::GetAutoFocusStrategy => {
                let roi = self.roi();
                Outcome::ok(
                    roi.auto_focus.config().strategy.name(),
                    auto_focus_json(roi.auto_focus.config()),
                )
            }
            Command::EnableAutoFocus | Command::DisableAutoFocus => {
                let enable = matches!(command, Command::EnableAutoFocus);
                let mut roi = self.roi();
                let was = roi.auto_focus.enabled();
                roi.auto_focus.set_enabled(enable);
                self.config().rois.auto_focus.enabled = enable;
                let word = if enable { "enabled" } else { "disabled" };
                let message = if was == enable {
                    format!("auto-focus was already {word}")
                } else {
                    format!("auto-focus {word}")
                };
                Outcome::ok(message, auto_focus_json(roi.auto_focus.config()))
            }
            Command::ClearAutoFocusHistory => {
                self.roi().auto_focus.clear_history();
                Outcome::ok("auto-focus history cleared", Value::Null)
            }
            Command::GetAutoFocusStats => {
                Outcome::ok("auto-focus stats", self.roi().auto_focus.stats())
            }
            Command::Shutdown => Outcome {
                shutdown: true,
                ..Outcome::ok("shutting down", Value::Null)
            },
        }
    }

    fn set_rate(&self, rate_hz: f64) -> Outcome {
        let effective = match self.measured_fps {
            Some(fps) if fps > 0.0 => rate_hz.min(fps),
            _ => rate_hz,
        };
        self.rate_tx.send_replace(effective);
        self.metrics.inference_rate_hz.set(effective);
        self.config().models.person_detector.max_inference_rate_hz = rate_hz;
        let message = if effective < rate_hz {
            format!(
                "inference rate set to {effective:.2} Hz (asked {rate_hz} Hz; the stream delivers {effective:.2} FPS)"
            )
        } else {
            format!("inference rate set to {rate_hz} Hz")
        };
        Outcome::ok(
            message,
            json!({"requested_hz": rate_hz, "effective_hz": effective, "stream_fps": self.measured_fps}),
        )
    }

    async fn set_model(&self, size: &str) -> Outcome {
        let (old, new) = {
            let config = self.config();
            let detector = &config.models.person_detector;
            let Some(entry) = detector.resolved(size) else {
                let names: Vec<&str> = detector.catalog.keys().map(String::as_str).collect();
                return Outcome::fail(format!(
                    "unknown model size `{size}`; allowed: {}",
                    names.join(", ")
                ));
            };
            if detector.size == size {
                return Outcome::ok(
                    format!("model {size} is already active"),
                    json!({"size": size}),
                );
            }
            let old = detector.resolved(&detector.size).map(|e| ModelChoice {
                name: detector.size.clone(),
                entry: e,
            });
            (
                old,
                ModelChoice {
                    name: size.to_string(),
                    entry,
                },
            )
        };
        let results = self.swap_all(&new).await;
        let failed: Vec<String> = results
            .iter()
            .filter_map(|(id, r)| r.as_ref().err().map(|e| format!("{id}: {e}")))
            .collect();
        if failed.is_empty() {
            self.config().models.person_detector.size = size.to_string();
            tracing::info!(size, workers = results.len(), "model swapped");
            return Outcome::ok(
                format!("model {size} loaded on {} worker(s)", results.len()),
                json!({"size": size}),
            );
        }
        // All or nothing: put back the old model where the new one went in.
        let old_name = old.as_ref().map_or("?", |o| o.name.as_str()).to_string();
        if let Some(old) = old {
            let swapped: Vec<&WorkerHandle> = self
                .workers
                .iter()
                .filter(|w| results.iter().any(|(id, r)| id == &w.id && r.is_ok()))
                .collect();
            for w in swapped {
                if let Err(e) = w.set_model(old.clone(), self.swap_timeout).await {
                    tracing::error!(worker = %w.id, error = %e, "rollback to the previous model failed");
                }
            }
        }
        tracing::warn!(size, failures = ?failed, "model swap failed; previous model kept");
        Outcome::fail(format!(
            "model {size} could not be loaded ({}); model {old_name} kept",
            failed.join("; ")
        ))
    }

    async fn swap_all(&self, model: &ModelChoice) -> Vec<(String, Result<String, String>)> {
        let mut tasks = tokio::task::JoinSet::new();
        for w in &self.workers {
            let (w, model, timeout) = (w.clone(), model.clone(), self.swap_timeout);
            tasks.spawn(async move { (w.id.clone(), w.set_model(model, timeout).await) });
        }
        let mut out = Vec::new();
        while let Some(r) = tasks.join_next().await {
            match r {
                Ok(pair) => out.push(pair),
                Err(e) => out.push(("?".into(), Err(format!("swap task failed: {e}")))),
            }
        }
        out
    }

    /// Everything an operator asks `get_status` for.
    pub fn status(&self) -> Value {
        let h = health::report(&self.metrics);
        let config = self.config();
        let roi = self.roi();
        json!({
            "instance_id": config.instance_id,
            "room_id": config.room_id,
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_s": h.uptime_s,
            "health": h.status,
            "reasons": h.reasons,
            "state": if !self.metrics.running.get() { "starting" } else if self.metrics.paused.get() { "paused" } else { "running" },
            "stream": {
                "source": format!("{:?}", config.camera.source).to_lowercase(),
                "width": config.stream.width,
                "height": config.stream.height,
                "connected": h.stream.connected,
                "frames": h.stream.frames,
                "fps": h.stream.fps,
                "measured_fps": self.measured_fps,
                "last_frame_age_ms": h.stream.last_frame_age_ms,
                "reconnects": h.stream.reconnects,
                "last_error": h.stream.last_error,
                "stalled": h.stream.stalled,
                "failed": h.stream.failed,
                "bytes": h.stream.bytes,
                "frames_gated": self.metrics.frames_gated.get(),
                "frames_paused": self.metrics.frames_paused.get(),
            },
            "inference": {
                "rate_hz": self.metrics.inference_rate_hz.get(),
                "model": config.models.person_detector.size,
            },
            "frame_bus": h.frame_bus,
            "workers": h.workers,
            "emitter": {
                "connected": self.metrics.mqtt_connected.get(),
                "published": self.metrics.mqtt_published.get(),
                "dropped": self.metrics.mqtt_dropped.get(),
                "reconnects": self.metrics.mqtt_reconnects.get(),
            },
            "attention": {
                "rois": roi.external(),
                "auto_focus": roi.auto_focus.stats(),
            },
            "config": config.redacted_json(),
        })
    }
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

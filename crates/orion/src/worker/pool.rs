//! The control side of the shared `person_detector` pool: the handles of its
//! workers and the catalog entry they run.
//!
//! Owns model swaps: one at a time, on every worker of the pool, all or nothing
//! (a failure puts the old model back where the new one went in). A swap acts on
//! the pool, so on every camera the pool serves; the answer names them. It never
//! touches frames or MQTT.

use std::sync::Mutex;
use std::time::Duration;

use crate::config::DetectorConfig;

use super::{ModelChoice, WorkerHandle};

/// What a swap did.
#[derive(Debug, Clone, PartialEq)]
pub enum Swapped {
    /// The model was loaded on this many workers.
    Loaded(usize),
    /// The model was already the active one.
    AlreadyActive,
}

pub struct DetectorPool {
    workers: Vec<WorkerHandle>,
    /// Catalog and the active entry's name (`size`).
    detector: Mutex<DetectorConfig>,
    /// The cameras whose frames the pool serves (instance_ids); they come and
    /// go while the pool runs (a reload).
    cameras: Mutex<Vec<String>>,
    swap_timeout: Duration,
    /// Held for the length of a swap: swaps never interleave.
    swapping: tokio::sync::Mutex<()>,
}

impl DetectorPool {
    pub fn new(
        detector: DetectorConfig,
        workers: Vec<WorkerHandle>,
        cameras: Vec<String>,
        startup_timeout: Duration,
    ) -> Self {
        Self {
            workers,
            detector: Mutex::new(detector),
            cameras: Mutex::new(cameras),
            // A swap loads a model like a start does: the same time budget,
            // enforced by each worker's supervisor.
            swap_timeout: startup_timeout,
            swapping: tokio::sync::Mutex::new(()),
        }
    }

    fn detector(&self) -> std::sync::MutexGuard<'_, DetectorConfig> {
        self.detector.lock().expect("detector pool config poisoned")
    }

    /// The cameras the pool serves now.
    pub fn cameras(&self) -> Vec<String> {
        self.cameras
            .lock()
            .expect("detector pool cameras poisoned")
            .clone()
    }

    pub fn add_camera(&self, instance_id: &str) {
        self.cameras
            .lock()
            .expect("detector pool cameras poisoned")
            .push(instance_id.to_string());
    }

    /// Lists the cameras in the order of `ids` (the config's).
    pub fn sort_cameras(&self, ids: &[String]) {
        self.cameras
            .lock()
            .expect("detector pool cameras poisoned")
            .sort_by_key(|c| ids.iter().position(|id| id == c));
    }

    pub fn remove_camera(&self, instance_id: &str) {
        self.cameras
            .lock()
            .expect("detector pool cameras poisoned")
            .retain(|c| c != instance_id);
    }

    /// The catalog name of the model the pool runs.
    pub fn model(&self) -> String {
        self.detector().size.clone()
    }

    /// Loads catalog entry `size` on every worker; the old model stays
    /// everywhere if one worker cannot load it. `Err` says why, in words.
    pub async fn set_model(&self, size: &str) -> Result<Swapped, String> {
        let _one_at_a_time = self.swapping.lock().await;
        let (old, new) = {
            let detector = self.detector();
            let Some(entry) = detector.resolved(size) else {
                let names: Vec<&str> = detector.catalog.keys().map(String::as_str).collect();
                return Err(format!(
                    "unknown model size `{size}`; allowed: {}",
                    names.join(", ")
                ));
            };
            if detector.size == size {
                return Ok(Swapped::AlreadyActive);
            }
            let old = detector.resolved(&detector.size).map(|e| ModelChoice {
                name: detector.size.clone(),
                entry: e,
            });
            let new = ModelChoice {
                name: size.to_string(),
                entry,
            };
            (old, new)
        };
        let results = self.swap_all(&new).await;
        let failed: Vec<String> = results
            .iter()
            .filter_map(|(id, r)| r.as_ref().err().map(|e| format!("{id}: {e}")))
            .collect();
        if failed.is_empty() {
            self.detector().size = size.to_string();
            tracing::info!(
                size,
                workers = results.len(),
                cameras = self.cameras().len(),
                "model swapped"
            );
            return Ok(Swapped::Loaded(results.len()));
        }
        // All or nothing: put back the old model where the new one went in.
        let old_name = old.as_ref().map_or("?", |o| o.name.as_str()).to_string();
        if let Some(old) = old {
            let swapped = self
                .workers
                .iter()
                .filter(|w| results.iter().any(|(id, r)| id == &w.id && r.is_ok()));
            for w in swapped {
                if let Err(e) = w.set_model(old.clone(), self.swap_timeout).await {
                    tracing::error!(worker = %w.id, error = %e, "rollback to the previous model failed");
                }
            }
        }
        tracing::warn!(size, failures = ?failed, "model swap failed; previous model kept");
        Err(format!(
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
}

//! Inference workers: supervised subprocesses speaking the protocol of the
//! `orion-protocol` crate on stdin/stdout, with stderr lines as logs.
//!
//! - [`process`] owns one child process and its pipes: spawn, typed send and
//!   receive, stderr to tracing, stop (EOF, then kill).
//! - [`pool`] owns the `person_detector` pool's model and its swaps.
//! - [`supervisor`] owns one worker slot for the daemon's lifetime: takes frames from
//!   the slot's inbox (as many in flight as the worker said it runs in
//!   `parallel`, answered in order), forwards results, notices exits and hangs,
//!   and restarts the process with a jittered backoff.
//!
//! A worker never blocks the frame bus (it pulls from its inbox when idle) and no
//! worker process outlives the daemon (stdin EOF, then SIGKILL, `kill_on_drop`, and
//! a parent-death signal).

pub mod pool;
pub mod process;
pub mod supervisor;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use orion_protocol::InferenceResult;
use tokio::sync::mpsc;

use crate::framebus::Job;

pub use pool::{DetectorPool, Swapped};
pub use supervisor::{ModelChoice, Supervisor, WorkerHandle, WorkerRequest, WorkerSpec};

/// The only variables a worker inherits from the daemon's environment (when set).
/// Everything else, above all the daemon's secrets (`ORION_MQTT_PASSWORD`,
/// `ORION_RTSP_URL`, ...), never reaches a worker: workers run model code the
/// daemon does not control. More variables come from `workers.<type>.env`.
pub const INHERITED_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LANGUAGE",
    "LC_ALL",
    "LC_CTYPE",
    "LC_NUMERIC",
    "TZ",
    "TMPDIR",
    "LD_LIBRARY_PATH",
    "PYTHONPATH",
    "CUDA_VISIBLE_DEVICES",
    // Where workers keep compiled models (paths, not secrets).
    "ORION_CACHE_DIR",
    "CACHE_DIRECTORY",
    "XDG_CACHE_HOME",
];

/// The environment a worker process starts with: the [`INHERITED_ENV`] variables
/// that `get` finds, then `extra` (config), in that order (`extra` wins).
pub fn worker_env(
    get: impl Fn(&str) -> Option<String>,
    extra: &std::collections::BTreeMap<String, String>,
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = INHERITED_ENV
        .iter()
        .filter_map(|k| get(k).map(|v| (k.to_string(), v)))
        .filter(|(k, _)| !extra.contains_key(k))
        .collect();
    env.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
    env
}

/// A result on its way to its camera's result handler, with the job it answers.
#[derive(Debug)]
pub struct WorkerOutput {
    pub worker_id: Arc<str>,
    /// The pool the worker belongs to (`workers.<type>`); the result names the
    /// inference type it publishes (its topic).
    pub pool: Arc<str>,
    pub job: Arc<Job>,
    pub result: InferenceResult,
    /// When the worker started on the frame (it was taken from the frame bus then,
    /// or, when sent ahead, the worker finished the frame before it).
    pub started_at: Instant,
}

/// Where the shared workers' results go: to the camera whose frame it was (by
/// the job's camera key), each camera's into its own queue. Cameras come and
/// go while the workers run.
#[derive(Clone, Default)]
pub struct ResultRoutes(Arc<Mutex<HashMap<usize, mpsc::Sender<WorkerOutput>>>>);

impl ResultRoutes {
    fn routes(&self) -> std::sync::MutexGuard<'_, HashMap<usize, mpsc::Sender<WorkerOutput>>> {
        self.0.lock().expect("result routes poisoned")
    }

    /// The results of camera `camera`'s frames go to `queue` from now on.
    pub fn add(&self, camera: usize, queue: mpsc::Sender<WorkerOutput>) {
        self.routes().insert(camera, queue);
    }

    pub fn remove(&self, camera: usize) {
        self.routes().remove(&camera);
    }

    /// Hands `output` to its camera's queue; never waits. False (it is
    /// dropped) when the queue is full (the camera is behind) or the camera
    /// has gone.
    pub fn try_send(&self, output: WorkerOutput) -> bool {
        let queue = self.routes().get(&output.job.camera).cloned();
        queue.is_some_and(|q| q.try_send(output).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_env_keeps_only_the_allowlist_and_the_config() {
        let parent = |k: &str| match k {
            "PATH" => Some("/usr/bin".to_string()),
            "HOME" => Some("/root".to_string()),
            "ORION_MQTT_PASSWORD" => Some("S3cret".to_string()),
            "ORION_RTSP_URL" => Some("rtsp://u:p@cam/".to_string()),
            _ => None,
        };
        let mut extra = std::collections::BTreeMap::new();
        extra.insert("OMP_NUM_THREADS".to_string(), "1".to_string());
        extra.insert("HOME".to_string(), "/var/lib/orion".to_string());
        let env = worker_env(parent, &extra);
        assert_eq!(
            env,
            vec![
                ("PATH".to_string(), "/usr/bin".to_string()),
                ("HOME".to_string(), "/var/lib/orion".to_string()),
                ("OMP_NUM_THREADS".to_string(), "1".to_string()),
            ]
        );
    }
}

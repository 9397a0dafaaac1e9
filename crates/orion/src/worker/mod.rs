//! Inference workers: supervised subprocesses speaking the protocol of the
//! `orion-protocol` crate on stdin/stdout, with stderr lines as logs.
//!
//! - [`process`] owns one child process and its pipes: spawn, typed send and
//!   receive, stderr to tracing, stop (EOF, then kill).
//! - [`supervisor`] owns one worker slot for the daemon's lifetime: takes frames from
//!   the slot's inbox, one in flight at a time, forwards results, notices exits and
//!   hangs, and restarts the process with backoff.
//!
//! A worker never blocks the frame bus (it pulls from its inbox when idle) and no
//! worker process outlives the daemon (stdin EOF, then SIGKILL, `kill_on_drop`, and
//! a parent-death signal).

pub mod process;
pub mod supervisor;

use std::sync::Arc;
use std::time::Instant;

use orion_protocol::InferenceResult;

use crate::framebus::Job;

pub use supervisor::{ModelChoice, Supervisor, WorkerHandle, WorkerRequest, WorkerSpec};

/// A result on its way to the collector, with the job it answers.
#[derive(Debug)]
pub struct WorkerOutput {
    pub worker_id: Arc<str>,
    pub job: Arc<Job>,
    pub result: InferenceResult,
    /// When the worker started on the frame (it was taken from the frame bus then,
    /// or, when sent ahead, the worker finished the frame before it).
    pub started_at: Instant,
}

//! The worker supervisor: one per worker slot, for the daemon's whole life.
//!
//! `run` loops over `run_once` (one process lifetime) with exponential backoff.
//! Inside a lifetime, at most one frame is in flight: the supervisor takes the
//! newest frame from its inbox only when the worker is idle, so a slow worker sees
//! fresh frames and the bus never waits for it.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use orion_protocol::{FrameMeta, FrameRequest, FromWorker, PROTOCOL_VERSION, Pixels, ToWorker};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::WorkerOutput;
use super::process::{Process, ProcessError};
use crate::backoff::Backoff;
use crate::framebus::{Inbox, Job};
use crate::health::metrics::WorkerMetrics;

/// A process that stayed up this long resets the backoff.
const STABLE_AFTER: Duration = Duration::from_secs(60);
/// How long a worker gets to exit after its stdin is closed.
const STOP_GRACE: Duration = Duration::from_millis(1500);

/// How to run one worker.
#[derive(Debug, Clone)]
pub struct WorkerSpec {
    pub id: String,
    pub program: String,
    pub args: Vec<String>,
    pub startup_timeout: Duration,
    pub hang_timeout_floor: Duration,
    pub max_message_bytes: usize,
    pub instance_id: String,
    pub room_id: String,
}

#[derive(Debug, thiserror::Error)]
enum LifetimeError {
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error("no `ready` within {0:?}")]
    StartupTimeout(Duration),
    #[error("no answer to frame {seq} within {timeout:?} (hung)")]
    Hung { seq: u64, timeout: Duration },
    #[error("unexpected first message {0}; expected `ready`")]
    NotReady(&'static str),
    #[error("worker speaks protocol version {0}, expected {PROTOCOL_VERSION}")]
    Version(u32),
    #[error("worker reported a fatal error: {0}")]
    Fatal(String),
}

enum Stop {
    Cancelled,
}

/// One worker slot.
pub struct Supervisor {
    pub spec: WorkerSpec,
    pub inbox: Inbox,
    /// To the result collector. The collector stops when every supervisor has
    /// dropped its sender.
    pub results: mpsc::Sender<WorkerOutput>,
    pub metrics: Arc<WorkerMetrics>,
    /// Current effective inference rate, for the hang timeout.
    pub rate_hz: watch::Receiver<f64>,
}

impl Supervisor {
    /// Runs until `cancel`; restarts the process whenever it fails.
    pub async fn run(self, cancel: CancellationToken) {
        let worker_id: Arc<str> = Arc::from(self.spec.id.as_str());
        let mut backoff = Backoff::default();
        loop {
            let started = Instant::now();
            let end = self.run_once(&worker_id, &cancel).await;
            self.metrics.up.set(false);
            match end {
                Ok(Stop::Cancelled) => break,
                Err(e) => {
                    self.metrics.errors.inc();
                    if started.elapsed() >= STABLE_AFTER {
                        backoff.reset();
                    }
                    tracing::warn!(error = %e, retry_in_s = backoff.peek().as_secs_f64(), "worker failed; restarting");
                }
            }
            // A frame that waited while the worker was down is stale by now.
            self.inbox.discard();
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(backoff.next_delay()) => {}
            }
            self.metrics.restarts.inc();
        }
        tracing::info!("worker supervisor stopped");
    }

    fn hang_timeout(&self) -> Duration {
        let rate = *self.rate_hz.borrow();
        let three_intervals = if rate > 0.0 {
            Duration::from_secs_f64(3.0 / rate)
        } else {
            Duration::MAX
        };
        self.spec.hang_timeout_floor.max(three_intervals)
    }

    async fn run_once(
        &self,
        worker_id: &Arc<str>,
        cancel: &CancellationToken,
    ) -> Result<Stop, LifetimeError> {
        let spec = &self.spec;
        let mut process =
            Process::spawn(&spec.program, &spec.args, spec.max_message_bytes, &spec.id)?;
        tracing::info!(pid = process.pid, "worker process started");

        let ready = tokio::select! {
            _ = cancel.cancelled() => {
                process.stop(STOP_GRACE).await;
                return Ok(Stop::Cancelled);
            }
            r = tokio::time::timeout(spec.startup_timeout, process.recv()) => r,
        };
        let ready = match ready {
            Err(_) => Err(LifetimeError::StartupTimeout(spec.startup_timeout)),
            Ok(Err(e)) => Err(e.into()),
            Ok(Ok(FromWorker::Ready(r))) if r.protocol_version != PROTOCOL_VERSION => {
                Err(LifetimeError::Version(r.protocol_version))
            }
            Ok(Ok(FromWorker::Ready(r))) => Ok(r),
            Ok(Ok(FromWorker::Error(e))) => Err(LifetimeError::Fatal(e.message)),
            Ok(Ok(other)) => Err(LifetimeError::NotReady(kind(&other))),
        };
        let ready = match ready {
            Ok(r) => r,
            Err(e) => {
                process.kill().await;
                return Err(e);
            }
        };
        tracing::info!(pid = process.pid, model = %ready.model.name, input = ready.model.input_size, "worker ready");
        self.metrics.last_seen.touch();
        self.metrics.up.set(true);

        let result = self.serve(&mut process, worker_id, cancel).await;
        match &result {
            Ok(Stop::Cancelled) => process.stop(STOP_GRACE).await,
            Err(_) => process.kill().await,
        }
        result
    }

    async fn serve(
        &self,
        process: &mut Process,
        worker_id: &Arc<str>,
        cancel: &CancellationToken,
    ) -> Result<Stop, LifetimeError> {
        loop {
            let job = tokio::select! {
                _ = cancel.cancelled() => return Ok(Stop::Cancelled),
                // While idle, a message can only be a log-worthy error or the
                // end of the process: noticed at once, not at the next frame.
                msg = process.recv() => {
                    self.handle_unsolicited(msg?)?;
                    continue;
                }
                job = self.inbox.recv() => job,
            };
            let timeout = self.hang_timeout();
            let exchange = self.exchange(process, worker_id, &job);
            tokio::select! {
                _ = cancel.cancelled() => return Ok(Stop::Cancelled),
                r = tokio::time::timeout(timeout, exchange) => match r {
                    Ok(r) => r?,
                    Err(_) => return Err(LifetimeError::Hung { seq: job.frame.seq, timeout }),
                },
            }
        }
    }

    /// Sends one frame and waits for its answer.
    async fn exchange(
        &self,
        process: &mut Process,
        worker_id: &Arc<str>,
        job: &Arc<Job>,
    ) -> Result<(), LifetimeError> {
        let frame = &job.frame;
        let request = ToWorker::Frame(FrameRequest {
            seq: frame.seq,
            width: frame.width,
            height: frame.height,
            format: "rgb24".into(),
            data: Pixels(Cow::Borrowed(frame.data())),
            meta: FrameMeta {
                instance_id: self.spec.instance_id.clone(),
                room_id: self.spec.room_id.clone(),
                seq: frame.seq,
                timestamp: humantime::format_rfc3339_micros(frame.captured_at).to_string(),
                trace_id: job.trace_id.clone(),
                roi_processing: job.roi.clone(),
            },
        });
        process.send(&request).await?;
        loop {
            match process.recv().await? {
                FromWorker::Result(result) if result.frame_seq == frame.seq => {
                    self.metrics.last_seen.touch();
                    self.metrics.inferences.inc();
                    self.metrics.latency.observe(Duration::from_secs_f64(
                        (result.timing.total_ms / 1e3).clamp(0.0, 3600.0),
                    ));
                    let output = WorkerOutput {
                        worker_id: worker_id.clone(),
                        job: job.clone(),
                        result,
                        received_at: Instant::now(),
                    };
                    if self.results.try_send(output).is_err() {
                        self.metrics.results_dropped.inc();
                        tracing::debug!("collector busy; result dropped");
                    }
                    return Ok(());
                }
                FromWorker::Result(result) => {
                    self.metrics.errors.inc();
                    tracing::warn!(
                        expected = frame.seq,
                        got = result.frame_seq,
                        "result for another frame ignored"
                    );
                }
                FromWorker::Error(e) if e.fatal => return Err(LifetimeError::Fatal(e.message)),
                FromWorker::Error(e) => {
                    self.metrics.last_seen.touch();
                    self.metrics.errors.inc();
                    tracing::warn!(seq = frame.seq, error = %e.message, "worker could not process frame");
                    if e.frame_seq == Some(frame.seq) {
                        return Ok(());
                    }
                }
                other => self.handle_unsolicited(other)?,
            }
        }
    }

    fn handle_unsolicited(&self, msg: FromWorker) -> Result<(), LifetimeError> {
        match msg {
            FromWorker::Error(e) if e.fatal => Err(LifetimeError::Fatal(e.message)),
            FromWorker::Error(e) => {
                self.metrics.errors.inc();
                tracing::warn!(error = %e.message, "worker error");
                Ok(())
            }
            other => {
                tracing::warn!(
                    kind = kind(&other),
                    "unexpected message from worker ignored"
                );
                Ok(())
            }
        }
    }
}

fn kind(msg: &FromWorker) -> &'static str {
    match msg {
        FromWorker::Ready(_) => "ready",
        FromWorker::Result(_) => "result",
        FromWorker::CommandResult(_) => "command_result",
        FromWorker::Error(_) => "error",
    }
}

//! The worker supervisor: one per worker slot, for the daemon's whole life.
//!
//! `run` loops over `run_once` (one process lifetime) with exponential backoff.
//! Inside a lifetime, at most as many frames are in flight as the worker works
//! on at once (its `ready` says how many, capped by `WorkerSpec::parallel`),
//! one more for a paced file (`WorkerSpec::prefetch`): the supervisor takes the
//! newest frame from its inbox only when the worker has a free place, so a slow
//! worker sees fresh frames and the bus never waits for it. Requests from the control plane
//! (model swaps) are sent between frames and answered when the worker reports back;
//! frames keep flowing meanwhile.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use orion_protocol::{
    CommandRequest, FrameMeta, FrameRequest, FromWorker, PROTOCOL_VERSION, Pixels, Ready, ToWorker,
};
use tokio::sync::{mpsc, oneshot, watch};
// Tokio's clock: the deadlines follow a paused clock, like its timers.
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::WorkerOutput;
use super::process::{Process, ProcessError};
use crate::backoff::Backoff;
use crate::config::ModelEntry;
use crate::framebus::{Inbox, Job};
use crate::health::{Alert, Alerts};
use crate::metrics::WorkerMetrics;
use crate::status::WorkerStatus;

/// A process that stayed up this long resets the backoff.
const STABLE_AFTER: Duration = Duration::from_secs(60);
/// How long a worker gets to exit after its stdin is closed.
const STOP_GRACE: Duration = Duration::from_millis(1500);

/// How to run one worker.
#[derive(Debug, Clone)]
pub struct WorkerSpec {
    pub id: String,
    /// The pool this worker belongs to (its results go to this type's topics).
    pub inference_type: Arc<str>,
    pub program: String,
    /// Arguments before the model flags.
    pub args: Vec<String>,
    /// The worker's whole environment (see [`super::worker_env`]).
    pub env: Vec<(String, String)>,
    pub startup_timeout: Duration,
    pub hang_timeout_floor: Duration,
    pub max_message_bytes: usize,
    /// Size of one frame slot of the shared-memory region offered to the worker
    /// (the region has `parallel` + `prefetch` slots); `None`: frames go inline.
    pub shm_frame_bytes: Option<usize>,
    /// The most frames the worker may work on at once (1 or more); it says
    /// in `ready` how many it does.
    pub parallel: usize,
    /// Frames sent ahead while the worker is busy (0 or more). Only for paced
    /// sources: a frame queued ahead grows stale while it waits, and for a live
    /// camera the newest frame when the worker is free is the one worth running.
    pub prefetch: usize,
    /// This many failures within `restart_window` stop the restarts.
    pub max_restarts: u32,
    pub restart_window: Duration,
    pub restart_backoff_max: Duration,
}

/// A catalog entry by name: what a worker runs.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelChoice {
    pub name: String,
    pub entry: ModelEntry,
}

impl ModelChoice {
    /// The worker's model flags (docs/worker-protocol.md).
    pub fn args(&self) -> Vec<String> {
        let mut args = Vec::new();
        for (key, value) in self.entry.params(&self.name) {
            match key.as_str() {
                "size" => args.extend(["--model-name".into(), value]),
                "format" => args.extend(["--model-format".into(), value]),
                "path" => args.extend(["--model".into(), value]),
                "input_size" => args.extend(["--input-size".into(), value]),
                "backend" => args.extend(["--backend".into(), value]),
                "int8" => args.extend(["--int8".into(), value]),
                "precision" => args.extend(["--precision".into(), value]),
                _ => {
                    if let Some(size) = key.strip_prefix("variant_") {
                        args.extend(["--variant".into(), format!("{size}={value}")]);
                    }
                }
            }
        }
        args
    }
}

/// What the control plane can ask of a worker.
#[derive(Debug)]
pub enum WorkerRequest {
    /// Load `model` next to the running one and swap; the old model stays on
    /// failure. Answered with the worker's message.
    SetModel {
        model: ModelChoice,
        /// The worker must answer within this (from when the command is sent),
        /// else it is restarted with the model it had.
        timeout: Duration,
        reply: oneshot::Sender<Result<String, String>>,
    },
}

/// How much longer than a command's own timeout its sender waits for the
/// supervisor's answer (which comes at that timeout at the latest).
const REPLY_MARGIN: Duration = Duration::from_secs(2);

/// The control plane's side of one worker slot.
#[derive(Debug, Clone)]
pub struct WorkerHandle {
    pub id: String,
    tx: mpsc::Sender<WorkerRequest>,
}

impl WorkerHandle {
    pub fn new(id: String, tx: mpsc::Sender<WorkerRequest>) -> Self {
        Self { id, tx }
    }

    /// Asks the worker to swap its model. The worker has `timeout` to answer;
    /// without an answer by then it is restarted with the model it had, and this
    /// says so (a late answer can then never change anything).
    pub async fn set_model(&self, model: ModelChoice, timeout: Duration) -> Result<String, String> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .try_send(WorkerRequest::SetModel {
                model,
                timeout,
                reply,
            })
            .map_err(|_| "worker supervisor is busy or stopped".to_string())?;
        // The supervisor's queue can hold the request while a frame is being
        // written: the margin covers that, the supervisor enforces `timeout`.
        match tokio::time::timeout(timeout * 2 + REPLY_MARGIN, answer).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err("worker stopped before answering".into()),
            Err(_) => Err(format!("no answer within {timeout:?}")),
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum RunError {
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
    #[error("no answer to command {name} within {timeout:?}; restarted with the model it had")]
    CommandTimeout { name: String, timeout: Duration },
}

/// A process run ended because the supervisor was told to stop.
struct Cancelled;

/// A command sent to the worker and not yet answered.
struct Pending {
    model: ModelChoice,
    reply: oneshot::Sender<Result<String, String>>,
    /// No answer by then: the worker is restarted.
    deadline: Instant,
    timeout: Duration,
}

/// A frame sent to the worker and not answered yet.
struct InFlight {
    job: Arc<Job>,
    /// Shared-memory slot holding its pixels.
    slot: usize,
    /// When the worker started on it: sent while it had a free place, or
    /// when a place became free; `None` while it waits behind others.
    started: Option<Instant>,
}

/// State of one process lifetime.
struct ProcessRun {
    process: Process,
    pending: HashMap<u64, Pending>,
    /// Oldest first; at most `parallel` + `WorkerSpec::prefetch`.
    in_flight: VecDeque<InFlight>,
    /// Frames the worker works on at once (its `ready`, capped by the spec).
    parallel: usize,
    /// Since when the oldest frame in flight is the one the worker works on
    /// (the hang timeout runs from here).
    front_since: Instant,
    /// The runtime the worker last said it runs the model on (it can change
    /// with a model swap); mirrored into the metrics when it changes.
    backend: Option<String>,
    /// The type the worker announced in `ready`: its results must say it.
    inference_type: String,
}

impl ProcessRun {
    /// When the earliest command must be answered.
    fn command_deadline(&self) -> Option<Instant> {
        self.pending.values().map(|p| p.deadline).min()
    }

    /// The error for the command whose deadline passed first.
    fn command_timeout(&self) -> RunError {
        let timeout = self
            .pending
            .values()
            .min_by_key(|p| p.deadline)
            .map_or(Duration::ZERO, |p| p.timeout);
        RunError::CommandTimeout {
            name: "set_model".into(),
            timeout,
        }
    }

    /// A frame may wait for a command the worker handles on its main loop:
    /// nothing is hung before the command's own deadline.
    fn extend_for_commands(&self, deadline: Instant) -> Instant {
        self.command_deadline()
            .map_or(deadline, |c| deadline.max(c))
    }
}

impl ProcessRun {
    fn complete_front(&mut self) -> InFlight {
        let done = self
            .in_flight
            .pop_front()
            .expect("an answer matched the front frame");
        let now = Instant::now();
        self.front_since = now;
        // A place became free: the first frame waiting behind starts now.
        if let Some(next) = self.in_flight.get_mut(self.parallel - 1) {
            next.started.get_or_insert(now);
        }
        done
    }
}

/// One worker slot.
pub struct Supervisor {
    pub spec: WorkerSpec,
    /// The model the next process starts with; follows successful swaps.
    /// `None` for worker types without a model catalog (their command says it all).
    pub model: Option<ModelChoice>,
    pub inbox: Inbox,
    /// To the camera whose frame it was.
    pub results: super::ResultRoutes,
    pub metrics: Arc<WorkerMetrics>,
    /// The worker's state; this supervisor is its one writer.
    pub status: watch::Sender<WorkerStatus>,
    /// From the control plane ([`WorkerHandle`]).
    pub requests: mpsc::Receiver<WorkerRequest>,
    /// Told when restarts stop.
    pub alerts: Option<Alerts>,
    /// Rate limit of the protocol error log line.
    pub protocol_log: crate::logging::RateLimit,
}

impl Supervisor {
    /// Runs until `cancel`; restarts the process whenever it fails.
    pub async fn run(mut self, cancel: CancellationToken) {
        let worker_id: Arc<str> = Arc::from(self.spec.id.as_str());
        let mut backoff = Backoff::new(Duration::from_secs(1), self.spec.restart_backoff_max);
        let mut next_command_id = 1;
        let mut failures: VecDeque<Instant> = VecDeque::new();
        loop {
            let started = Instant::now();
            let end = self
                .run_once(&worker_id, &mut next_command_id, &cancel)
                .await;
            self.status
                .send_if_modified(|s| std::mem::replace(&mut s.up, false));
            match end {
                Ok(Cancelled) => break,
                Err(e) => {
                    self.metrics.errors.inc();
                    if matches!(e, RunError::Hung { .. }) {
                        self.metrics.hangs.inc();
                    }
                    if started.elapsed() >= STABLE_AFTER {
                        backoff.reset();
                    }
                    let now = Instant::now();
                    failures.push_back(now);
                    while failures
                        .front()
                        .is_some_and(|t| now.duration_since(*t) > self.spec.restart_window)
                    {
                        failures.pop_front();
                    }
                    if failures.len() >= self.spec.max_restarts as usize {
                        self.give_up(&e, failures.len(), &cancel).await;
                        return;
                    }
                    // `restart` is the number orion_worker_restarts_total reaches
                    // when this restart happens.
                    tracing::warn!(error = %e, restart = self.metrics.restarts.get() + 1, retry_in_s = backoff.peek().as_secs_f64(), "worker failed; restarting");
                }
            }
            let delay = tokio::time::sleep(crate::backoff::jittered(backoff.next_delay()));
            tokio::pin!(delay);
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => {
                        tracing::info!("worker supervisor stopped");
                        return;
                    }
                    _ = &mut delay => break,
                    Some(req) = self.requests.recv() => refuse(req, "worker is restarting; try again shortly"),
                }
            }
            self.metrics.restarts.inc();
            self.status
                .send_if_modified(|s| !std::mem::replace(&mut s.restarted, true));
        }
        tracing::info!("worker supervisor stopped");
    }

    /// Stops restarting after repeated failures: the worker is reported failed
    /// (health `degraded`, an alert on the health topic) and stays down until
    /// the daemon restarts. Waits for `cancel`, refusing requests meanwhile.
    async fn give_up(&mut self, last: &RunError, count: usize, cancel: &CancellationToken) {
        self.status.send_modify(|s| s.failed = true);
        let message = format!(
            "worker {} failed {count} times within {:?}; restarts stopped after {} restart(s) (last error: {last})",
            self.spec.id,
            self.spec.restart_window,
            self.metrics.restarts.get()
        );
        match &self.alerts {
            Some(a) => a.send(Alert {
                source: "worker",
                id: self.spec.id.clone(),
                message,
            }),
            None => tracing::error!("{message}"),
        }
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                // Frames keep replacing each other in the inbox, counted as
                // dropped: that is what an absent worker means.
                Some(req) = self.requests.recv() => refuse(req, "worker failed; restarts stopped"),
            }
        }
        tracing::info!("worker supervisor stopped");
    }

    /// How long the worker may take on the frame in flight: three intervals of
    /// that frame's camera, at least the floor (the floor alone when idle).
    fn hang_timeout(&self, life: &ProcessRun) -> Duration {
        life.in_flight
            .front()
            .map_or(self.spec.hang_timeout_floor, |f| {
                self.hang_timeout_for(&f.job)
            })
    }

    /// The hang timeout a frame of `job`'s camera gets.
    fn hang_timeout_for(&self, job: &Job) -> Duration {
        if job.rate_hz > 0.0 {
            self.spec
                .hang_timeout_floor
                .max(Duration::from_secs_f64(3.0 / job.rate_hz))
        } else {
            self.spec.hang_timeout_floor
        }
    }

    /// Spawns the worker and waits for its `ready` (within the startup
    /// timeout); None when cancelled meanwhile. A worker that does not become
    /// ready is killed.
    async fn start_process(
        &self,
        cancel: &CancellationToken,
    ) -> Result<Option<(Process, Ready)>, RunError> {
        let spec = &self.spec;
        let model_args = self
            .model
            .as_ref()
            .map(ModelChoice::args)
            .unwrap_or_default();
        let args: Vec<String> = spec.args.iter().cloned().chain(model_args).collect();
        let shm = spec
            .shm_frame_bytes
            .map(|frame| (frame, spec.parallel + spec.prefetch));
        let mut process = Process::spawn(
            &spec.program,
            &args,
            &spec.env,
            spec.max_message_bytes,
            shm,
            &spec.id,
        )?;
        let model = self.model.as_ref().map_or("-", |m| m.name.as_str());
        tracing::info!(pid = process.pid, model, "worker process started");

        let ready = tokio::select! {
            _ = cancel.cancelled() => {
                process.stop(STOP_GRACE).await;
                return Ok(None);
            }
            r = tokio::time::timeout(spec.startup_timeout, process.recv()) => r,
        };
        let ready = match ready {
            Err(_) => Err(RunError::StartupTimeout(spec.startup_timeout)),
            Ok(Err(e)) => Err(e.into()),
            Ok(Ok(FromWorker::Ready(r))) if r.protocol_version != PROTOCOL_VERSION => {
                Err(RunError::Version(r.protocol_version))
            }
            Ok(Ok(FromWorker::Ready(r))) => Ok(r),
            Ok(Ok(FromWorker::Error(e))) => Err(RunError::Fatal(e.message)),
            Ok(Ok(other)) => Err(RunError::NotReady(kind(&other))),
        };
        match ready {
            Ok(r) => Ok(Some((process, r))),
            Err(e) => {
                process.kill().await;
                Err(e)
            }
        }
    }

    async fn run_once(
        &mut self,
        worker_id: &Arc<str>,
        next_command_id: &mut u64,
        cancel: &CancellationToken,
    ) -> Result<Cancelled, RunError> {
        let Some((mut process, ready)) = self.start_process(cancel).await? else {
            return Ok(Cancelled);
        };
        process.accept_shared(ready.shm);
        tracing::info!(pid = process.pid, model = %ready.model.name, input = ready.model.input_size, backend = ready.model.backend.as_deref().unwrap_or("-"), shared_memory = ready.shm, "worker ready");
        self.metrics.last_seen.touch();
        let parallel = (ready.parallel as usize).clamp(1, self.spec.parallel.max(1));
        let (backend, choice) = (ready.model.backend.clone(), ready.model.choice.clone());
        if let Some(choice) = &choice {
            tracing::info!(runtime = choice.as_str(), parallel, "worker runtime");
        }
        self.status.send_modify(|s| {
            (s.up, s.ever_up) = (true, true);
            (s.backend, s.choice) = (backend, choice);
            s.parallel = parallel as u32;
        });

        let mut life = ProcessRun {
            process,
            pending: HashMap::new(),
            in_flight: VecDeque::new(),
            parallel,
            front_since: Instant::now(),
            backend: ready.model.backend.clone(),
            inference_type: ready.inference_type.clone(),
        };
        let result = self
            .serve(&mut life, worker_id, next_command_id, cancel)
            .await;
        let kept = self.model.as_ref().map_or("-", |m| m.name.as_str());
        for (_, p) in life.pending.drain() {
            let why = match &result {
                Err(RunError::CommandTimeout { .. }) => format!(
                    "no answer within {:?}; the worker is restarted with model {kept}",
                    p.timeout
                ),
                _ => "worker stopped before answering".to_string(),
            };
            let _ = p.reply.send(Err(why));
        }
        match &result {
            Ok(Cancelled) => life.process.stop(STOP_GRACE).await,
            Err(_) => life.process.kill().await,
        }
        result
    }

    async fn serve(
        &mut self,
        life: &mut ProcessRun,
        worker_id: &Arc<str>,
        next_command_id: &mut u64,
        cancel: &CancellationToken,
    ) -> Result<Cancelled, RunError> {
        let capacity = life.parallel + self.spec.prefetch;
        loop {
            let timeout = self.hang_timeout(life);
            let deadline = life.extend_for_commands(life.front_since + timeout);
            let command_deadline = life.command_deadline();
            tokio::select! {
                // A hung worker must not hold up shutdown.
                _ = cancel.cancelled() => return Ok(Cancelled),
                // Answers, command results, errors, or the end of the process:
                // noticed at once, whatever else is going on.
                msg = life.process.recv() => {
                    let msg = msg?;
                    self.handle_message(life, worker_id, msg)?;
                }
                Some(req) = self.requests.recv() => {
                    let WorkerRequest::SetModel { model, timeout: answer_within, reply } = req;
                    let id = *next_command_id;
                    *next_command_id += 1;
                    let command = ToWorker::Command(CommandRequest {
                        id,
                        name: "set_model".into(),
                        params: model.entry.params(&model.name),
                    });
                    if let Some(stop) = self.send_bounded(life, &command, timeout, cancel).await? {
                        return Ok(stop);
                    }
                    life.pending.insert(id, Pending {
                        model,
                        reply,
                        deadline: Instant::now() + answer_within,
                        timeout: answer_within,
                    });
                }
                _ = sleep_until(command_deadline) => return Err(life.command_timeout()),
                job = self.inbox.recv(), if life.in_flight.len() < capacity => {
                    let timeout = timeout.max(self.hang_timeout_for(&job));
                    if let Some(stop) = self.send_frame(life, job, timeout, cancel).await? {
                        return Ok(stop);
                    }
                }
                _ = tokio::time::sleep_until(deadline), if !life.in_flight.is_empty() => {
                    let seq = life.in_flight.front().map_or(0, |f| f.job.frame.seq);
                    return Err(RunError::Hung { seq, timeout });
                }
            }
        }
    }

    /// Sends `msg` to the worker, but never longer than the hang timeout and
    /// never past `cancel`: a worker that stops reading its stdin (a full pipe,
    /// an inline frame half written) is hung like one that does not answer. The
    /// stream to the worker is then broken, which is fine: the process is
    /// replaced or stopped. `Some(Cancelled)` when cancelled meanwhile.
    async fn send_bounded(
        &mut self,
        life: &mut ProcessRun,
        msg: &ToWorker<'_>,
        timeout: Duration,
        cancel: &CancellationToken,
    ) -> Result<Option<Cancelled>, RunError> {
        // The frame in flight keeps its own deadline; a write has at least the
        // whole timeout from now.
        let started = Instant::now();
        let deadline = if life.in_flight.is_empty() {
            started + timeout
        } else {
            (life.front_since + timeout).max(started)
        };
        // A worker busy with a command on its main loop reads no frame until
        // it is done: not hung before the command's deadline.
        let deadline = life.extend_for_commands(deadline);
        let command_deadline = life.command_deadline();
        tokio::select! {
            _ = cancel.cancelled() => Ok(Some(Cancelled)),
            r = life.process.send(msg) => r.map(|()| None).map_err(RunError::from),
            // A write blocked by a worker busy with a command ends with it.
            _ = sleep_until(command_deadline) => Err(life.command_timeout()),
            _ = tokio::time::sleep_until(deadline) => {
                let seq = life.in_flight.front().map_or(0, |f| f.job.frame.seq);
                Err(RunError::Hung { seq, timeout })
            }
        }
    }

    /// Writes one frame (into a free shared-memory slot, or inline) and sends it.
    async fn send_frame(
        &mut self,
        life: &mut ProcessRun,
        job: Arc<Job>,
        timeout: Duration,
        cancel: &CancellationToken,
    ) -> Result<Option<Cancelled>, RunError> {
        let frame = &job.frame;
        let slot = (0..self.spec.parallel + self.spec.prefetch)
            .find(|s| life.in_flight.iter().all(|f| f.slot != *s))
            .unwrap_or(0);
        let shm = match life.process.shared_frames() {
            Some(region) => Some(region.write(slot, frame.data())?),
            None => None,
        };
        let data: &[u8] = if shm.is_some() { &[] } else { frame.data() };
        let request = ToWorker::Frame(FrameRequest {
            seq: frame.seq,
            width: frame.width,
            height: frame.height,
            format: "rgb24".into(),
            data: Pixels(Cow::Borrowed(data)),
            meta: FrameMeta {
                instance_id: job.instance_id.to_string(),
                room_id: job.room_id.to_string(),
                seq: frame.seq,
                timestamp: humantime::format_rfc3339_micros(frame.captured_at).to_string(),
                trace_id: job.trace_id.clone(),
                roi_processing: job.roi.clone(),
                rest_areas: job.looks.rest.clone(),
                exit_areas: job.looks.exits.clone(),
            },
            shm,
        });
        if let Some(stop) = self.send_bounded(life, &request, timeout, cancel).await? {
            return Ok(Some(stop));
        }
        let now = Instant::now();
        if life.in_flight.is_empty() {
            life.front_since = now;
        }
        let started = (life.in_flight.len() < life.parallel).then_some(now);
        life.in_flight.push_back(InFlight { job, slot, started });
        Ok(None)
    }

    /// Answers are matched to the oldest frame in flight (workers answer in order).
    fn handle_message(
        &mut self,
        life: &mut ProcessRun,
        worker_id: &Arc<str>,
        msg: FromWorker,
    ) -> Result<(), RunError> {
        let front_seq = life.in_flight.front().map(|f| f.job.frame.seq);
        match msg {
            FromWorker::Result(result) if Some(result.frame_seq) == front_seq => {
                self.on_answer(life, worker_id, result);
                Ok(())
            }
            FromWorker::Result(result) => {
                self.protocol_error(&format!(
                    "result for frame {} while frame {} is the one to answer; ignored",
                    result.frame_seq,
                    front_seq.map_or("(none)".to_string(), |s| s.to_string())
                ));
                Ok(())
            }
            FromWorker::Error(e)
                if !e.fatal && e.frame_seq.is_some() && e.frame_seq == front_seq =>
            {
                life.complete_front();
                self.metrics.last_seen.touch();
                self.metrics.errors.inc();
                tracing::warn!(seq = ?e.frame_seq, error = %e.message, "worker could not process frame");
                Ok(())
            }
            other => self.handle_other(life, other),
        }
    }

    /// The answer to the frame in flight: checked (size, contract), then
    /// handed to its camera; what breaks the contract is counted and dropped.
    fn on_answer(
        &mut self,
        life: &mut ProcessRun,
        worker_id: &Arc<str>,
        mut result: orion_protocol::InferenceResult,
    ) {
        if data_too_large(&result) {
            life.complete_front();
            self.metrics.errors.inc();
            tracing::warn!(
                seq = result.frame_seq,
                limit = orion_protocol::MAX_DATA_BYTES,
                "result data larger than allowed; result not published"
            );
            return;
        }
        if let Err(why) =
            validate_result(&result, &life.inference_type, &life.in_flight[0].job.frame)
        {
            life.complete_front();
            self.protocol_error(&format!(
                "invalid result for frame {}: {why}; not published",
                result.frame_seq
            ));
            return;
        }
        let found = result.detections.len();
        if keep_most_confident(&mut result) {
            self.protocol_error(&format!(
                "result for frame {} has {found} detections, more than {}; the {} most confident are kept",
                result.frame_seq,
                orion_protocol::MAX_DETECTIONS,
                orion_protocol::MAX_DETECTIONS
            ));
        }
        let done = life.complete_front();
        let started_at = done.started.unwrap_or_else(Instant::now);
        if result.model.backend.is_some() && result.model.backend != life.backend {
            life.backend = result.model.backend.clone();
            tracing::info!(
                backend = life.backend.as_deref().unwrap_or("-"),
                "worker runtime changed"
            );
            let backend = life.backend.clone();
            self.status.send_modify(|s| s.backend = backend);
        }
        self.metrics.last_seen.touch();
        self.metrics.inferences.inc();
        self.metrics.latency.observe(Duration::from_secs_f64(
            (result.timing.total_ms / 1e3).clamp(0.0, 3600.0),
        ));
        let output = WorkerOutput {
            worker_id: worker_id.clone(),
            pool: self.spec.inference_type.clone(),
            job: done.job,
            result,
            started_at: started_at.into_std(),
        };
        if !self.results.try_send(output) {
            self.metrics.results_dropped.inc();
            tracing::debug!("the camera is behind (or gone); result dropped");
        }
    }

    /// Messages that are not the answer to the frame in flight.
    fn handle_other(&mut self, life: &mut ProcessRun, msg: FromWorker) -> Result<(), RunError> {
        match msg {
            FromWorker::Error(e) if e.fatal => Err(RunError::Fatal(e.message)),
            FromWorker::Error(e) => {
                self.metrics.errors.inc();
                tracing::warn!(error = %e.message, "worker error");
                Ok(())
            }
            FromWorker::CommandResult(r) => {
                self.metrics.last_seen.touch();
                match life.pending.remove(&r.id) {
                    Some(p) if r.success => {
                        tracing::info!(model = %p.model.name, message = %r.message, "model swapped");
                        self.model = Some(p.model);
                        // What runs now, or (a worker that does not say) no
                        // reason rather than the old model's.
                        let (backend, choice) =
                            r.model.map_or((None, None), |m| (m.backend, m.choice));
                        self.status.send_modify(|s| {
                            s.choice = choice;
                            if backend.is_some() {
                                s.backend = backend;
                            }
                        });
                        let _ = p.reply.send(Ok(r.message));
                    }
                    Some(p) => {
                        tracing::warn!(model = %p.model.name, message = %r.message, "model swap failed; old model kept");
                        let _ = p.reply.send(Err(r.message));
                    }
                    // Never a state change: commands not answered in time
                    // restart the worker, so this is a stray answer.
                    None => self.protocol_error(&format!(
                        "command_result for command {} which is not pending; ignored",
                        r.id
                    )),
                }
                Ok(())
            }
            other => {
                self.protocol_error(&format!(
                    "unexpected `{}` after `ready`; ignored",
                    kind(&other)
                ));
                Ok(())
            }
        }
    }

    /// A message that breaks the contract but not the stream: counted, logged
    /// (at most one line per 10 s), never published.
    fn protocol_error(&mut self, what: &str) {
        self.metrics.protocol_errors.inc();
        self.metrics.errors.inc();
        if let Some(held_back) = self.protocol_log.allow(std::time::Instant::now()) {
            tracing::warn!(
                "worker protocol error: {what}{}",
                self.protocol_log.and_more(held_back)
            );
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Checks a result against the contract (docs/worker-protocol.md): its type is
/// the one announced, numbers are finite and in range, boxes inside the frame
/// (half a pixel of slack), and the person count matches the detections.
pub fn validate_result(
    r: &orion_protocol::InferenceResult,
    announced: &str,
    frame: &crate::stream::Frame,
) -> Result<(), String> {
    if r.inference_type != announced {
        return Err(format!(
            "inference_type `{}` but the worker announced `{announced}` in ready",
            crate::logging::cut(&r.inference_type, 64)
        ));
    }
    validate_timing(&r.timing)?;
    let (w, h) = (f64::from(frame.width), f64::from(frame.height));
    let slack = 0.5;
    for (i, d) in r.detections.iter().enumerate() {
        if d.class.chars().count() > orion_protocol::MAX_CLASS_CHARS {
            return Err(format!(
                "detections[{i}].class is longer than {} characters",
                orion_protocol::MAX_CLASS_CHARS
            ));
        }
        if let Some(kps) = &d.keypoints {
            validate_keypoints(i, kps, w, h, slack)?;
        }
        let b = &d.bbox;
        if ![b.x, b.y, b.width, b.height, d.confidence]
            .iter()
            .all(|v| v.is_finite())
        {
            return Err(format!("detections[{i}] has a number that is not finite"));
        }
        if !(0.0..=1.0).contains(&d.confidence) {
            return Err(format!(
                "detections[{i}].confidence {} is outside 0..1",
                d.confidence
            ));
        }
        if b.width < 0.0
            || b.height < 0.0
            || b.x < -slack
            || b.y < -slack
            || b.x + b.width > w + slack
            || b.y + b.height > h + slack
        {
            return Err(format!(
                "detections[{i}].bbox {{x: {}, y: {}, width: {}, height: {}}} is not inside the {}x{} frame",
                b.x, b.y, b.width, b.height, frame.width, frame.height
            ));
        }
    }
    if r.data.is_none() {
        let persons = r.detections.iter().filter(|d| d.class == "person").count();
        if r.person_count as usize != persons {
            return Err(format!(
                "person_count {} but {persons} person detection(s)",
                r.person_count
            ));
        }
    }
    if let Some(s) = &r.suggested_roi {
        let ok = [s.x, s.y, s.width, s.height]
            .iter()
            .all(|v| v.is_finite() && (0.0..=1.0 + 1e-6).contains(v))
            && s.x + s.width <= 1.0 + 1e-6
            && s.y + s.height <= 1.0 + 1e-6;
        if !ok {
            return Err("suggested_roi must be normalized (0..1, inside the frame)".into());
        }
    }
    Ok(())
}

/// Checks a result's timings: finite, not negative.
fn validate_timing(t: &orion_protocol::Timing) -> Result<(), String> {
    for (name, v) in [
        ("preprocess_ms", t.preprocess_ms),
        ("inference_ms", t.inference_ms),
        ("postprocess_ms", t.postprocess_ms),
        ("total_ms", t.total_ms),
    ] {
        if !v.is_finite() || v < 0.0 {
            return Err(format!("timing.{name} {v} must be a finite number >= 0"));
        }
    }
    Ok(())
}

/// Checks detection `i`'s keypoints: at most [`orion_protocol::MAX_KEYPOINTS`],
/// named (short, each once), inside the `w`x`h` frame, scores in 0..1.
fn validate_keypoints(
    i: usize,
    kps: &[orion_protocol::Keypoint],
    w: f64,
    h: f64,
    slack: f64,
) -> Result<(), String> {
    if kps.len() > orion_protocol::MAX_KEYPOINTS {
        return Err(format!(
            "detections[{i}] has {} keypoints; at most {}",
            kps.len(),
            orion_protocol::MAX_KEYPOINTS
        ));
    }
    for (j, k) in kps.iter().enumerate() {
        let name_ok = !k.name.is_empty()
            && k.name.chars().count() <= orion_protocol::MAX_KEYPOINT_NAME_CHARS
            && kps[..j].iter().all(|o| o.name != k.name);
        if !name_ok {
            return Err(format!(
                "detections[{i}].keypoints[{j}].name must be 1..{} characters and given once",
                orion_protocol::MAX_KEYPOINT_NAME_CHARS
            ));
        }
        let inside = k.x.is_finite()
            && k.y.is_finite()
            && (-slack..=w + slack).contains(&k.x)
            && (-slack..=h + slack).contains(&k.y);
        if !inside || !(0.0..=1.0).contains(&k.score) {
            return Err(format!(
                "detections[{i}].keypoints[{j}] ({}) must lie inside the frame with a score in 0..1",
                crate::logging::cut(&k.name, 32)
            ));
        }
    }
    Ok(())
}

/// Cuts a result with more than [`orion_protocol::MAX_DETECTIONS`] detections
/// down to the most confident ones (in their order), with the person count to
/// match; true if it did.
pub fn keep_most_confident(r: &mut orion_protocol::InferenceResult) -> bool {
    let max = orion_protocol::MAX_DETECTIONS;
    if r.detections.len() <= max {
        return false;
    }
    let mut order: Vec<usize> = (0..r.detections.len()).collect();
    order.sort_by(|a, b| {
        r.detections[*b]
            .confidence
            .total_cmp(&r.detections[*a].confidence)
    });
    let mut keep = vec![false; r.detections.len()];
    order.iter().take(max).for_each(|i| keep[*i] = true);
    let mut i = 0;
    r.detections.retain(|_| {
        i += 1;
        keep[i - 1]
    });
    if r.data.is_none() {
        r.person_count = r.detections.iter().filter(|d| d.class == "person").count() as u32;
    }
    true
}

/// A result whose `data` object is larger than the contract allows.
fn data_too_large(result: &orion_protocol::InferenceResult) -> bool {
    result.data.as_ref().is_some_and(|d| {
        serde_json::to_vec(d).map_or(true, |v| v.len() > orion_protocol::MAX_DATA_BYTES)
    })
}

fn refuse(req: WorkerRequest, why: &str) {
    let WorkerRequest::SetModel { reply, .. } = req;
    let _ = reply.send(Err(why.to_string()));
}

fn kind(msg: &FromWorker) -> &'static str {
    match msg {
        FromWorker::Ready(_) => "ready",
        FromWorker::Result(_) => "result",
        FromWorker::CommandResult(_) => "command_result",
        FromWorker::Error(_) => "error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beyond_the_bound_the_most_confident_are_kept_in_order_with_their_count() {
        let det = |i: usize, confidence: f64, class: &str| orion_protocol::Detection {
            bbox: orion_protocol::BBox {
                x: i as f64,
                y: 0.0,
                width: 1.0,
                height: 1.0,
            },
            confidence,
            class: class.into(),
            keypoints: None,
        };
        let n = orion_protocol::MAX_DETECTIONS + 50;
        let mut r = orion_protocol::InferenceResult {
            detections: (0..n)
                .map(|i| {
                    let confident = i % 3 == 0;
                    det(
                        i,
                        if confident { 0.9 } else { 0.2 },
                        if i % 2 == 0 { "person" } else { "cat" },
                    )
                })
                .collect(),
            person_count: n as u32,
            frame_seq: 1,
            trace_id: "t".into(),
            inference_type: "person_detection".into(),
            model: orion_protocol::ModelInfo {
                name: "m".into(),
                input_size: 320,
                backend: None,
                choice: None,
            },
            timing: orion_protocol::Timing {
                preprocess_ms: 0.0,
                inference_ms: 0.0,
                postprocess_ms: 0.0,
                total_ms: 0.0,
            },
            suggested_roi: None,
            data: None,
        };
        assert!(keep_most_confident(&mut r));
        assert_eq!(r.detections.len(), orion_protocol::MAX_DETECTIONS);
        let confident = n.div_ceil(3);
        assert_eq!(
            r.detections.iter().filter(|d| d.confidence == 0.9).count(),
            confident,
            "every confident one kept"
        );
        assert!(
            r.detections.windows(2).all(|w| w[0].bbox.x < w[1].bbox.x),
            "in their order"
        );
        let persons = r.detections.iter().filter(|d| d.class == "person").count();
        assert_eq!(r.person_count as usize, persons);
        assert!(!keep_most_confident(&mut r), "within the bound: untouched");
    }
}

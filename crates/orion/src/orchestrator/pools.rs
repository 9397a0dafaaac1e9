//! The worker pools every camera shares: one pool per `workers.<type>` entry,
//! their supervisors, the frame bus they take frames from, the routes their
//! results go back by, and the `person_detector` pool's control side.
//!
//! Owns the supervisors' tasks: [`start`] spawns them, [`Pools::stop`] is the
//! one way to stop them. Cameras join and leave the bus and the routes
//! themselves (`crate::camera`); nothing here knows a camera.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::config::{Config, PERSON_DETECTOR, SourceKind, WorkerConfig};
use crate::framebus::FrameBus;
use crate::health::Alerts;
use crate::status::{WorkerStatus, WorkerView};
use crate::tasks::Tasks;
use crate::worker::{
    DetectorPool, ModelChoice, ResultRoutes, Supervisor, WorkerHandle, WorkerSpec,
};

/// A worker before it starts: what readers see of it, and its state sender
/// (for its supervisor).
type Planned = (WorkerView, watch::Sender<WorkerStatus>);

/// The workers of every pool before they start, by pool.
pub struct Plan {
    pools: Vec<(String, Vec<Planned>)>,
}

impl Plan {
    /// Every worker as readers see it (health, metrics, `get_status`).
    pub fn views(&self) -> Vec<WorkerView> {
        self.pools
            .iter()
            .flat_map(|(_, workers)| workers.iter().map(|(view, _)| view.clone()))
            .collect()
    }
}

/// The workers `config` asks for: `count` per type, named `<type>-<i>`.
pub fn plan(config: &Config) -> Plan {
    let pools = config
        .workers
        .iter()
        .map(|(ty, w)| {
            let workers = (0..w.count)
                .map(|i| WorkerView::new(&format!("{ty}-{i}")))
                .collect();
            (ty.clone(), workers)
        })
        .collect();
    Plan { pools }
}

/// What the pools need to know of the cameras they serve: the largest frame
/// (the shared-memory slots are that large) and whether every camera is a
/// paced file (then workers may take the next frame ahead). A reload whose
/// cameras need other values restarts the pools.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fit {
    pub frame_bytes: usize,
    pub paced: bool,
}

impl Fit {
    pub fn of(config: &Config) -> Self {
        let cameras = config.camera_configs();
        Self {
            frame_bytes: cameras
                .iter()
                .map(|c| c.stream.width as usize * c.stream.height as usize * 3)
                .max()
                .unwrap_or(0),
            // Only paced files keep frames fresh while they queue (see WorkerSpec).
            paced: cameras
                .iter()
                .all(|c| c.camera.source == SourceKind::File && !c.camera.realtime),
        }
    }
}

/// The running pools.
pub struct Pools {
    pub bus: FrameBus,
    pub routes: ResultRoutes,
    /// The workers' alerts, to every camera's health topic.
    pub alerts: Alerts,
    /// The `person_detector` pool's control side (model swaps).
    pub detector: Option<Arc<DetectorPool>>,
    pub fit: Fit,
    cancel: CancellationToken,
    tasks: Tasks,
}

/// Starts every planned worker's supervisor (they load their models while the
/// cameras warm up).
pub fn start(
    config: &Config,
    plan: Plan,
    detector_model: Option<ModelChoice>,
    cancel: CancellationToken,
) -> Pools {
    let names: Vec<String> = plan.pools.iter().map(|(name, _)| name.clone()).collect();
    let mut pools = Pools {
        bus: FrameBus::with_pools(&names),
        routes: ResultRoutes::default(),
        alerts: Alerts::default(),
        detector: None,
        fit: Fit::of(config),
        cancel,
        tasks: Tasks::new(),
    };
    for (inference_type, workers) in plan.pools {
        let Some(wcfg) = config.workers.get(&inference_type) else {
            continue;
        };
        let is_detector = inference_type == PERSON_DETECTOR;
        let model = detector_model.clone().filter(|_| is_detector);
        let mut handles = Vec::new();
        for (view, status) in workers {
            let (tx, requests) = mpsc::channel(4);
            handles.push(WorkerHandle::new(view.metrics.id.clone(), tx));
            pools.spawn(
                config,
                &inference_type,
                wcfg,
                &view,
                status,
                requests,
                model.clone(),
            );
        }
        if is_detector {
            pools.detector = Some(Arc::new(DetectorPool::new(
                config.models.person_detector.clone(),
                handles,
                Vec::new(),
                Duration::from_secs_f64(wcfg.startup_timeout_s),
            )));
        }
    }
    pools
}

impl Pools {
    /// Spawns one worker's supervisor.
    #[allow(clippy::too_many_arguments)] // one call site, each a different part
    fn spawn(
        &self,
        config: &Config,
        inference_type: &str,
        wcfg: &WorkerConfig,
        view: &WorkerView,
        status: watch::Sender<WorkerStatus>,
        requests: mpsc::Receiver<crate::worker::WorkerRequest>,
        model: Option<ModelChoice>,
    ) {
        let Some(inbox) = self.bus.inbox(inference_type, view.metrics.clone()) else {
            return;
        };
        let mut args: Vec<String> = wcfg.command[1..].to_vec();
        let parallel = wcfg.frames_at_once();
        if inference_type == PERSON_DETECTOR {
            args.extend([
                "--confidence".into(),
                config.models.person_detector.floor().to_string(),
                "--parallel".into(),
                parallel.to_string(),
            ]);
        }
        let id = view.metrics.id.clone();
        let supervisor = Supervisor {
            spec: WorkerSpec {
                id: id.clone(),
                inference_type: Arc::from(inference_type),
                program: wcfg.command[0].clone(),
                args,
                env: crate::worker::worker_env(|k| std::env::var(k).ok(), &wcfg.env),
                startup_timeout: Duration::from_secs_f64(wcfg.startup_timeout_s),
                hang_timeout_floor: Duration::from_secs_f64(wcfg.hang_timeout_floor_s),
                max_message_bytes: wcfg.max_message_bytes,
                shm_frame_bytes: wcfg.shared_memory.then_some(self.fit.frame_bytes),
                parallel,
                prefetch: usize::from(self.fit.paced),
                max_restarts: wcfg.max_restarts,
                restart_window: Duration::from_secs_f64(wcfg.restart_window_s),
                restart_backoff_max: Duration::from_secs_f64(wcfg.restart_backoff_max_s),
            },
            model,
            inbox,
            results: self.routes.clone(),
            metrics: view.metrics.clone(),
            status,
            requests,
            alerts: Some(self.alerts.clone()),
            protocol_log: crate::logging::RateLimit::new(Duration::from_secs(10)),
        };
        self.tasks.spawn(
            supervisor
                .run(self.cancel.clone())
                .instrument(tracing::info_span!("worker", id = %id)),
        );
    }

    /// Stops every worker; whether they all stopped within `timeout`.
    pub async fn stop(&self, timeout: Duration) -> bool {
        self.cancel.cancel();
        self.tasks.stop(timeout).await
    }
}

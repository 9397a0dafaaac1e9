//! The orchestrator: builds what the cameras share, starts every camera as one
//! unit ([`Camera`]), applies a reloaded config to the cameras it changes, and
//! tears everything down in order.
//!
//! Start-up ([`start`]): health HTTP and the embedded broker if configured (so
//! that liveness answers and subscribers can connect during warm-up) -> the
//! outbox -> the worker pools (they load their models while the cameras warm
//! up) -> every camera at once ([`Camera::start`]) -> the UI, the stats logger
//! and the outbox's disk keeper. An early error stops whatever had started,
//! and waits for it.
//! Shutdown ([`Running::stop`]): every camera says it is stopping -> workers ->
//! cameras (each in its own order) -> shared tasks -> health HTTP -> the outbox,
//! all within `shutdown_timeout_s`; whatever misses the deadline is named in
//! the report.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::camera::{Broker, Camera, Shared};
use crate::config::{BrokerAddr, Config, PERSON_DETECTOR};
use crate::health::Registry;
use crate::outbox::Outbox;
use crate::tasks::{self, Tasks};
use crate::ui::Ui;
use crate::worker::ModelChoice;
use crate::{http, mqtt};

mod pools;
pub mod reload;
mod stats;

use pools::Pools;

/// What a finished run reports.
#[derive(Debug, Default)]
pub struct ShutdownReport {
    /// Components that did not stop before the deadline.
    pub late: Vec<String>,
    pub took: Duration,
}

/// A running daemon; [`Running::stop`] is the one way to stop it.
pub struct Running {
    root: CancellationToken,
    config: Config,
    /// Cameras that go away for good at this stop (a reload without them).
    retired: Vec<String>,
    cameras: Vec<Camera>,
    shared: Arc<Shared>,
    pools: Pools,
    health: CancellationToken,
    health_task: JoinHandle<()>,
    /// The stats logger and the outbox's disk keeper.
    tasks: CancellationToken,
    task_set: Tasks,
}

/// Starts every component; on an early error stops what had started and
/// returns the error.
pub async fn start(config: Config, shutdown: CancellationToken) -> anyhow::Result<Running> {
    let root = CancellationToken::new();
    let health = root.child_token();
    let pools_plan = pools::plan(&config);
    let registry = Arc::new(Registry::starting(Vec::new(), pools_plan.views()));
    let listener = http::bind(config.health.listen).await?;
    let health_addr = listener.local_addr().context("health listener address")?;
    tracing::info!(addr = %health_addr, cameras = config.camera_configs().len(), "health HTTP listening");
    let ui_slot = config
        .ui
        .enabled
        .then(|| Arc::new(crate::ui::UiSlot::new()));
    let health_task = tokio::spawn(http::serve(
        listener,
        registry.clone(),
        ui_slot.clone(),
        health.clone(),
    ));
    let (outbox, broker, detector_model) = match prepare(&config).await {
        Ok(p) => p,
        Err(e) => {
            root.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(2), health_task).await;
            return Err(e);
        }
    };
    let pools = pools::start(&config, pools_plan, detector_model, root.child_token());
    let shared = Arc::new(Shared {
        bus: pools.bus.clone(),
        routes: pools.routes.clone(),
        outbox,
        detector: pools.detector.clone(),
        workers: registry.workers.clone(),
        worker_alerts: pools.alerts.clone(),
        registry: registry.clone(),
        ui: config.ui.enabled.then(|| {
            Arc::new(Ui::new(
                config.ui.token.clone(),
                config.ui.show_video,
                config.ui.max_fps,
                registry.clone(),
            ))
        }),
        broker,
        shutdown: shutdown.clone(),
    });
    let mut running = Running {
        root: root.clone(),
        config: config.clone(),
        retired: Vec::new(),
        cameras: Vec::new(),
        shared,
        pools,
        health,
        health_task,
        tasks: root.child_token(),
        task_set: Tasks::new(),
    };
    let cameras = config.camera_configs();
    let all = cameras.into_iter().enumerate().collect();
    if let Err(e) = running.start_cameras(all, true).await {
        running.stop().await;
        return Err(e);
    }
    running.start_shared_tasks(health_addr, ui_slot);
    // Ready from now on: the cameras run and the live view serves.
    running.shared.registry.mark_up();
    for (camera, events) in running.shared.outbox.orphans() {
        tracing::warn!(
            camera,
            events,
            "outbox: events of a camera this config does not have are kept (delivered if it comes back)"
        );
    }
    let ids: Vec<String> = running.cameras();
    tracing::info!(cameras = %ids.join(","), "orion running");
    Ok(running)
}

/// What must exist before the cameras: the embedded broker (if configured),
/// the outbox, the broker's address and TLS, the detector's first model.
async fn prepare(config: &Config) -> anyhow::Result<(Arc<Outbox>, Broker, Option<ModelChoice>)> {
    let (host, port) = match config.broker().context("mqtt.broker")? {
        BrokerAddr::External { host, port, .. } => (host, port),
        BrokerAddr::Embedded => {
            mqtt::broker::start_or_join(config.mqtt.embedded_listen).await?;
            let a = config.mqtt.embedded_listen;
            (a.ip().to_string(), a.port())
        }
    };
    let tls = if config.tls_enabled() {
        Some(mqtt::tls::client_config(config.mqtt.tls.ca_file.as_deref()).context("mqtt.tls")?)
    } else {
        None
    };
    let model = detector_model(config)?;
    // Opening reads the journal back: disk I/O, off the async runtime.
    let settings = config.outbox.clone();
    let outbox = tokio::task::spawn_blocking(move || Outbox::open(&settings))
        .await
        .context("opening the outbox")??;
    let outbox = Arc::new(outbox);
    outbox
        .start_writer()
        .context("starting the outbox writer thread")?;
    Ok((outbox, Broker { host, port, tls }, model))
}

/// The model the person detector pool starts with (`None` without such a pool).
fn detector_model(config: &Config) -> anyhow::Result<Option<ModelChoice>> {
    if config.workers.get(PERSON_DETECTOR).is_none() {
        return Ok(None);
    }
    let detector = &config.models.person_detector;
    let entry = detector
        .resolved(&detector.size)
        .context("models.person_detector.size names no catalog entry")?;
    Ok(Some(ModelChoice {
        name: detector.size.clone(),
        entry,
    }))
}

/// Stops `cameras` all at once, each by `deadline` (`retire`: the ids of
/// those that go for good); what each missed.
async fn stop_cameras(cameras: Vec<Camera>, deadline: Instant, retire: &[String]) -> Vec<String> {
    let mut stopping = tokio::task::JoinSet::new();
    for camera in cameras {
        let gone = retire.contains(&camera.instance_id);
        stopping.spawn(camera.stop(deadline, gone));
    }
    let mut late = Vec::new();
    while let Some(done) = stopping.join_next().await {
        match done {
            Ok(missed) => late.extend(missed.0),
            Err(e) => late.push(format!("a camera's stop failed: {e}")),
        }
    }
    late
}

/// Closes the outbox off the async runtime (the writer writes what is queued;
/// a last try to write back what a full disk made it hold, the clean-close
/// marker, a sync); false when it did not finish within `limit`.
async fn close_outbox(outbox: Arc<Outbox>, limit: Duration) -> bool {
    let closing = tokio::task::spawn_blocking(move || outbox.close());
    match tokio::time::timeout(limit, closing).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "outbox close failed");
            true
        }
        Err(_) => false,
    }
}

impl Running {
    /// The instance ids of this run's cameras.
    pub fn cameras(&self) -> Vec<String> {
        self.cameras.iter().map(|c| c.instance_id.clone()).collect()
    }

    /// The config this run applies.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Marks cameras that go away for good (a reloaded config without them): at
    /// [`Running::stop`] their retained messages (presence, occupancy, Home
    /// Assistant discovery) are removed instead of left as `offline`.
    fn retire(&mut self, ids: &[String]) {
        self.retired.extend(ids.iter().cloned());
    }

    /// Starts `cameras` (each with its position among the config's cameras)
    /// at once; on an error the ones that started stay in `self.cameras` and
    /// the first error is returned. `hurry_on_error`: the caller stops them
    /// then, so a failed start cuts the others' warm-up short.
    async fn start_cameras(
        &mut self,
        cameras: Vec<(usize, Config)>,
        hurry_on_error: bool,
    ) -> anyhow::Result<()> {
        let count = self.config.camera_configs().len().max(1);
        // A failed start hurries the others when they are stopped after.
        let hurry = self.shared.shutdown.child_token();
        let mut starting = tokio::task::JoinSet::new();
        for (i, camera) in cameras {
            let phase = i as f64 / count as f64;
            starting.spawn(Camera::start(
                camera,
                self.shared.clone(),
                phase,
                hurry.clone(),
            ));
        }
        let mut first_error = None;
        while let Some(done) = starting.join_next().await {
            match done {
                Ok(Ok(camera)) => self.cameras.push(camera),
                Ok(Err(e)) => {
                    if hurry_on_error {
                        hurry.cancel();
                    }
                    first_error = first_error.or(Some(e));
                }
                Err(e) => {
                    if hurry_on_error {
                        hurry.cancel();
                    }
                    first_error = first_error.or(Some(anyhow::anyhow!("camera start failed: {e}")));
                }
            }
        }
        // In the config's order (health, metrics and the UI list them so).
        let order: Vec<String> = self
            .config
            .camera_configs()
            .into_iter()
            .map(|c| c.instance_id)
            .collect();
        self.cameras
            .sort_by_key(|c| order.iter().position(|id| *id == c.instance_id));
        self.shared.registry.sort_cameras(&order);
        if let Some(ui) = &self.shared.ui {
            ui.sort_cameras(&order);
        }
        if let Some(pool) = &self.shared.detector {
            pool.sort_cameras(&order);
        }
        first_error.map_or(Ok(()), Err)
    }

    /// The UI, the stats logger and the outbox's disk keeper.
    fn start_shared_tasks(
        &self,
        health_addr: std::net::SocketAddr,
        ui_slot: Option<Arc<crate::ui::UiSlot>>,
    ) {
        self.task_set.spawn(stats::run(
            self.shared.registry.clone(),
            Duration::from_secs_f64(self.config.framebus.stats_interval_s),
            self.tasks.clone(),
        ));
        // Writes the outbox to disk again once a full disk has room.
        self.task_set.spawn(crate::outbox::store::keep_disk(
            self.shared.outbox.clone(),
            self.tasks.clone(),
        ));
        if let (Some(slot), Some(ui)) = (ui_slot, &self.shared.ui) {
            let _ = slot.set(ui.clone());
            tracing::info!(
                addr = %health_addr,
                privacy = !self.config.ui.show_video,
                token = self.config.ui.token.is_some(),
                "live view at http://{health_addr}/"
            );
        }
    }

    /// Stops everything in order within `shutdown_timeout_s`.
    pub async fn stop(self) -> ShutdownReport {
        let started = Instant::now();
        let timeout = Duration::from_secs_f64(self.config.shutdown_timeout_s);
        let deadline = started + timeout;
        let left = || deadline.saturating_duration_since(Instant::now());
        let mut report = ShutdownReport::default();
        tracing::info!(timeout_s = timeout.as_secs_f64(), "shutting down");
        for c in &self.cameras {
            c.stopping();
        }
        if !self.pools.stop(left()).await {
            report.late.push("workers".into());
        }
        report
            .late
            .extend(stop_cameras(self.cameras, deadline, &self.retired).await);
        self.tasks.cancel();
        if !self.task_set.stop(left()).await {
            report.late.push("tasks".into());
        }
        self.health.cancel();
        if !tasks::stop_one(self.health_task, left()).await {
            report.late.push("health http".into());
        }
        self.root.cancel();
        if !close_outbox(self.shared.outbox.clone(), left()).await {
            report.late.push("outbox".into());
        }
        report.took = started.elapsed();
        report
    }
}

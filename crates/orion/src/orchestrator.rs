//! The orchestrator: builds the components in start-up order (docs/design.md) for
//! every camera and the shared worker pools, and tears everything down in order.
//!
//! Start-up ([`start`]): health HTTP and the embedded broker if configured (so
//! that liveness answers and subscribers can connect during warm-up) -> the
//! worker pools (they load their models during the warm-up) -> every camera's
//! stream -> warm-up (all cameras at once) -> one MQTT connection per camera
//! (each with its own last will) -> per camera: control plane, frame consumer,
//! presence; shared: result collector, stats logger.
//! Every component's token is a child of one root: an early error cancels the
//! root, which stops whatever had started, and waits for it.
//! Shutdown ([`Running::stop`]): workers -> streams -> control planes -> tasks ->
//! offline presences and MQTT disconnects -> health HTTP, all within
//! `shutdown_timeout_s`; whatever misses the deadline is named in the report.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use crate::attention::{RateGate, RoiAttention};
use crate::camera::FrameConsumer;
use crate::config::{BrokerAddr, Config, PERSON_DETECTOR, SourceKind};
use crate::control::{CameraControls, ControlPlane};
use crate::framebus::FrameBus;
use crate::health::{Alert, Alerts, Registry};
use crate::live::LiveFeed;
use crate::metrics::Metrics;
use crate::mqtt::control::ControlHandler;
use crate::mqtt::emitter::{Emitter, EmitterSettings};
use crate::mqtt::presence::{self, Presence};
use crate::outbox::{EventPublisher, Outbox};
use crate::status::{self, CameraStatus, CameraWatch, WorkerStatus, WorkerView};
use crate::stream::{FrameReceiver, RgbConverter, Stream, warmup};
use crate::tracking::signals::{SignalSettings, Signals};
use crate::tracking::tracker::TrackerSettings;
use crate::ui::{Ui, UiCamera};
use crate::worker::{DetectorPool, ModelChoice, Supervisor, WorkerHandle, WorkerSpec};
use crate::{collector, http, mqtt};

/// How long start-up waits for the first MQTT connections before going on degraded.
const MQTT_CONNECT_WAIT: Duration = Duration::from_secs(5);
/// Capacity of the worker -> collector channel, per camera.
const RESULT_QUEUE: usize = 64;
/// Capacity of the emitter -> control handler channel.
const CONTROL_QUEUE: usize = 64;
/// Capacity of a camera's alert channel (alerts are rare; a flood is cut here).
const ALERT_QUEUE: usize = 16;

/// What a finished run reports.
#[derive(Debug, Default)]
pub struct ShutdownReport {
    /// Components that did not stop before the deadline.
    pub late: Vec<String>,
    pub took: Duration,
}

/// One camera's running components.
struct CameraRun {
    instance_id: String,
    identity: presence::Identity,
    status_topic: String,
    stream: Stream,
    emitter: Emitter,
    control: CancellationToken,
    control_task: JoinHandle<()>,
    sink: Arc<collector::CameraSink>,
}

/// A running daemon; [`Running::stop`] is the one way to stop it.
pub struct Running {
    root: CancellationToken,
    /// Cameras that go away for good at this stop (a reload without them).
    retired: Vec<String>,
    shutdown_timeout: Duration,
    cameras: Vec<CameraRun>,
    /// Each camera's `running` state (this struct owns it).
    running: Vec<watch::Sender<bool>>,
    health: CancellationToken,
    health_task: JoinHandle<()>,
    workers: CancellationToken,
    worker_tasks: TaskTracker,
    tasks: CancellationToken,
    task_set: TaskTracker,
    /// Each camera's event publisher (stopped after the collector, so that the
    /// last events still go out).
    publish: CancellationToken,
    publishers: TaskTracker,
    outbox: Arc<Outbox>,
}

/// What start-up has built so far, stopped in order when a later step fails.
struct Partial {
    root: CancellationToken,
    health_task: Option<JoinHandle<()>>,
    streams: Vec<Stream>,
    emitters: Vec<Emitter>,
    outbox: Option<Arc<Outbox>>,
    /// The worker pools' tasks (stopped by the root token).
    workers: Option<TaskTracker>,
}

impl Partial {
    async fn abort(self, error: anyhow::Error) -> anyhow::Error {
        self.root.cancel();
        if let Some(tasks) = &self.workers {
            let _ = tokio::time::timeout(Duration::from_secs(5), tasks.wait()).await;
        }
        if let Some(outbox) = self.outbox {
            close_outbox(outbox).await;
        }
        for s in self.streams {
            s.stop(Duration::from_secs(2)).await;
        }
        for e in self.emitters {
            e.disconnect(Duration::from_millis(500)).await;
        }
        if let Some(t) = self.health_task {
            let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
        }
        error
    }
}

/// The worker pools: one entry per inference type.
struct PoolPlan {
    inference_type: String,
    /// Each worker: its id, what readers see, and its state sender (taken by
    /// its supervisor).
    workers: Vec<(String, WorkerView, Option<watch::Sender<WorkerStatus>>)>,
}

/// Starts every component; on an early error stops what had started and
/// returns the error.
pub async fn start(config: Config, shutdown: CancellationToken) -> anyhow::Result<Running> {
    let cameras = config.camera_configs();
    let camera_metrics: Vec<Arc<Metrics>> = cameras
        .iter()
        .map(|c| Arc::new(Metrics::for_camera(&c.instance_id)))
        .collect();
    let mut pools: Vec<PoolPlan> = config
        .workers
        .iter()
        .map(|(ty, w)| {
            let workers = (0..w.count)
                .map(|i| {
                    let id = format!("{ty}-{i}");
                    let (view, tx) = WorkerView::new(&id);
                    (id, view, Some(tx))
                })
                .collect();
            PoolPlan {
                inference_type: ty.clone(),
                workers,
            }
        })
        .collect();
    // Each camera's state: one sender per owner, a watch for every reader.
    let (senders, watches): (Vec<CameraStatus>, Vec<CameraWatch>) = cameras
        .iter()
        .map(|c| status::channels(Duration::from_secs_f64(c.stream.stall_timeout_s)))
        .unzip();
    let mut stream_status = Vec::new();
    let mut mqtt_status = Vec::new();
    let mut paused_status = Vec::new();
    let mut running = Vec::new();
    let mut outbox_status = Vec::new();
    for s in senders {
        stream_status.push(Some(s.stream));
        mqtt_status.push(s.mqtt);
        paused_status.push(Some(s.paused));
        running.push(s.running);
        outbox_status.push(s.outbox);
    }
    let registry = Arc::new(Registry {
        cameras: camera_metrics
            .iter()
            .cloned()
            .zip(watches.iter().cloned())
            .collect(),
        workers: pools
            .iter()
            .flat_map(|p| p.workers.iter().map(|(_, view, _)| view.clone()))
            .collect(),
    });

    let root = CancellationToken::new();
    let listener = http::bind(config.health.listen).await?;
    let health_addr = listener.local_addr().context("health listener address")?;
    tracing::info!(addr = %health_addr, cameras = cameras.len(), "health HTTP listening");
    let health = root.child_token();
    let ui_slot = config.ui.enabled.then(|| Arc::new(http::UiSlot::new()));
    let mut partial = Partial {
        root: root.clone(),
        health_task: Some(tokio::spawn(http::serve(
            listener,
            registry.clone(),
            ui_slot.clone(),
            health.clone(),
        ))),
        streams: Vec::new(),
        emitters: Vec::new(),
        outbox: None,
        workers: None,
    };
    match prepare(&config).await {
        Ok(()) => {}
        Err(e) => return Err(partial.abort(e).await),
    }
    let outbox = match Outbox::open(&config.outbox) {
        Ok(o) => Arc::new(o),
        Err(e) => return Err(partial.abort(e.into()).await),
    };
    partial.outbox = Some(outbox.clone());
    for ((cam, m), status) in cameras.iter().zip(&camera_metrics).zip(outbox_status) {
        outbox.attach(&cam.instance_id, m.clone(), status);
    }
    for (camera, events) in outbox.orphans() {
        tracing::warn!(
            camera,
            events,
            "outbox: events of a camera this config does not have are kept (delivered if it comes back; dropped first when the outbox is full)"
        );
    }
    let tls = if config.tls_enabled() {
        match mqtt::tls::client_config(config.mqtt.tls.ca_file.as_deref()).context("mqtt.tls") {
            Ok(t) => Some(t),
            Err(e) => return Err(partial.abort(e).await),
        }
    } else {
        None
    };
    let detector_model = match detector_model(&config) {
        Ok(m) => m,
        Err(e) => return Err(partial.abort(e).await),
    };

    // Alerts: each camera's go out on its own health topic; a shared worker's on
    // every camera's.
    let mut alert_txs = Vec::new();
    let mut alert_rxs = Vec::new();
    for _ in &cameras {
        let (tx, rx) = mpsc::channel::<Alert>(ALERT_QUEUE);
        alert_txs.push(tx);
        alert_rxs.push(rx);
    }
    let all_alerts = Alerts(alert_txs.clone());

    // 1. Worker pools, shared by every camera: started first, so that they
    //    load (and compile) their models while the streams warm up.
    let pool_names: Vec<String> = pools.iter().map(|p| p.inference_type.clone()).collect();
    let bus = FrameBus::new(&pool_names, cameras.len(), |c, name| {
        camera_metrics[c].add_group(name)
    });
    let (results_tx, results_rx) = mpsc::channel(RESULT_QUEUE * cameras.len());
    let workers = root.child_token();
    let worker_tasks = TaskTracker::new();
    let frame_bytes = cameras
        .iter()
        .map(|c| c.stream.width as usize * c.stream.height as usize * 3)
        .max()
        .unwrap_or(0);
    // Only paced files keep frames fresh while they queue (see WorkerSpec).
    let paced = cameras
        .iter()
        .all(|c| c.camera.source == SourceKind::File && !c.camera.realtime);
    let mut detector_pool = None;
    for plan in &mut pools {
        let Some(wcfg) = config.workers.get(&plan.inference_type) else {
            continue;
        };
        let is_detector = plan.inference_type == PERSON_DETECTOR;
        let mut args: Vec<String> = wcfg.command[1..].to_vec();
        if is_detector {
            args.extend([
                "--confidence".into(),
                config.models.person_detector.confidence.to_string(),
            ]);
        }
        let mut handles = Vec::new();
        for (id, view, status) in &mut plan.workers {
            let (Some(status), wm) = (status.take(), &view.metrics) else {
                continue;
            };
            let (tx, requests) = mpsc::channel(4);
            handles.push(WorkerHandle::new(id.clone(), tx));
            let Some(inbox) = bus.inbox(&plan.inference_type, wm.clone()) else {
                continue;
            };
            let sup = Supervisor {
                spec: WorkerSpec {
                    id: id.clone(),
                    inference_type: Arc::from(plan.inference_type.as_str()),
                    program: wcfg.command[0].clone(),
                    args: args.clone(),
                    env: crate::worker::worker_env(|k| std::env::var(k).ok(), &wcfg.env),
                    startup_timeout: Duration::from_secs_f64(wcfg.startup_timeout_s),
                    hang_timeout_floor: Duration::from_secs_f64(wcfg.hang_timeout_floor_s),
                    max_message_bytes: wcfg.max_message_bytes,
                    shm_frame_bytes: wcfg.shared_memory.then_some(frame_bytes),
                    prefetch: usize::from(paced),
                    max_restarts: wcfg.max_restarts,
                    restart_window: Duration::from_secs_f64(wcfg.restart_window_s),
                    restart_backoff_max: Duration::from_secs_f64(wcfg.restart_backoff_max_s),
                },
                model: if is_detector {
                    detector_model.clone()
                } else {
                    None
                },
                inbox,
                results: results_tx.clone(),
                metrics: wm.clone(),
                status,
                requests,
                alerts: Some(all_alerts.clone()),
                protocol_log: crate::logging::RateLimit::new(Duration::from_secs(10)),
            };
            worker_tasks.spawn(
                sup.run(workers.clone())
                    .instrument(tracing::info_span!("worker", id = %id)),
            );
        }
        if is_detector {
            detector_pool = Some(Arc::new(DetectorPool::new(
                config.models.person_detector.clone(),
                handles,
                cameras.iter().map(|c| c.instance_id.clone()).collect(),
                Duration::from_secs_f64(wcfg.startup_timeout_s),
            )));
        }
    }
    drop(results_tx);
    worker_tasks.close();
    partial.workers = Some(worker_tasks.clone());

    // 2. Streams.
    let mut receivers: Vec<FrameReceiver> = Vec::new();
    for (i, cam) in cameras.iter().enumerate() {
        let Some(own_status) = stream_status[i].take() else {
            continue;
        };
        let started = Stream::start(
            cam,
            camera_metrics[i].clone(),
            own_status,
            Some(Alerts(vec![alert_txs[i].clone()])),
            root.child_token(),
        )
        .with_context(|| format!("starting the stream of camera {}", cam.instance_id));
        match started {
            Ok((stream, frames)) => {
                partial.streams.push(stream);
                receivers.push(frames);
            }
            Err(e) => return Err(partial.abort(e).await),
        }
    }

    // 3. Warm-up, every camera at once.
    let warmups = match warm_up(&cameras, receivers, &camera_metrics, &shutdown).await {
        Ok(w) => w,
        Err(e) => return Err(partial.abort(e).await),
    };

    // 4. MQTT: one connection per camera, so that each has its own last will.
    let (host, port) = match config.broker() {
        Some(BrokerAddr::External { host, port, .. }) => (host, port),
        _ => {
            let a = config.mqtt.embedded_listen;
            (a.ip().to_string(), a.port())
        }
    };
    let mut control_rxs = Vec::new();
    let mut control_txs = Vec::new();
    let mut emitter_settings = Vec::new();
    for (i, cam) in cameras.iter().enumerate() {
        let identity = presence::Identity::new(&cam.instance_id, &cam.room_id);
        let (control_tx, control_rx) = mpsc::channel(CONTROL_QUEUE);
        control_rxs.push((identity.clone(), control_rx));
        control_txs.push(control_tx.clone());
        let settings = EmitterSettings {
            client_id: cam.client_id(),
            host: host.clone(),
            port,
            keep_alive: Duration::from_secs(cam.mqtt.keep_alive_s),
            max_pending: cam.mqtt.max_pending_publishes,
            credentials: cam
                .mqtt
                .username
                .clone()
                .map(|u| (u, cam.mqtt.password.clone().unwrap_or_default())),
            tls: tls.clone(),
            last_will: Some((
                cam.status_topic(),
                presence::offline(&identity, "connection_lost"),
            )),
            control_topic: Some(cam.control_topic()),
            presence: Some((cam.status_topic(), identity.session.clone())),
            busy: Some(mqtt::emitter::BusyReplies {
                topic: cam.health_topic(),
                instance_id: cam.instance_id.clone(),
                max_command_bytes: cam.mqtt.max_command_bytes,
            }),
        };
        partial.emitters.push(Emitter::start(
            &settings,
            camera_metrics[i].clone(),
            mqtt_status[i].clone(),
            Some(control_tx),
            root.child_token(),
        ));
        emitter_settings.push(settings);
    }
    // Woken by the connections themselves (no polling), at most MQTT_CONNECT_WAIT.
    let connected = async {
        for w in &watches {
            w.wait_connected(MQTT_CONNECT_WAIT).await;
        }
    };
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = tokio::time::timeout(MQTT_CONNECT_WAIT, connected) => {}
    }
    if !shutdown.is_cancelled() {
        for (m, _) in camera_metrics
            .iter()
            .zip(&watches)
            .filter(|(_, w)| !w.connected())
        {
            tracing::warn!(
                camera = %m.camera,
                "MQTT broker not reachable yet; continuing degraded, results are dropped until it is"
            );
        }
    }

    // 5. Per camera: control plane, frame consumer, presence; shared: collector.
    let tasks = root.child_token();
    let task_set = TaskTracker::new();
    let publish = root.child_token();
    let publishers = TaskTracker::new();
    let mut sinks = Vec::new();
    let mut runs = Vec::new();
    let mut ui_cameras = Vec::new();
    let camera_count = cameras.len();
    let streams = std::mem::take(&mut partial.streams);
    let emitters = std::mem::take(&mut partial.emitters);
    let parts = cameras
        .iter()
        .zip(streams)
        .zip(emitters)
        .zip(warmups)
        .zip(control_rxs)
        .zip(alert_rxs)
        .enumerate();
    for (i, (((((cam, stream), emitter), (frames, warm)), (identity, control_rx)), alerts_rx)) in
        parts
    {
        let metrics = &camera_metrics[i];
        let rate_hz = warmup::effective_rate(
            cam.models.person_detector.max_inference_rate_hz,
            warm.as_ref(),
        );
        metrics.inference_rate_hz.set(rate_hz);
        let (rate_tx, rate_rx) = watch::channel(rate_hz);
        let roi = Arc::new(Mutex::new(RoiAttention::new(
            cam.stream.width,
            cam.stream.height,
            &cam.rois,
        )));
        let signals = Signals::new(
            &cam.instance_id,
            &cam.room_id,
            cam.stream.width,
            cam.stream.height,
            SignalSettings {
                tracker: TrackerSettings {
                    min_hits: cam.tracking.min_hits,
                    max_missing: Duration::from_secs_f64(cam.tracking.max_missing_s),
                    max_distance: cam.tracking.max_distance,
                },
                empty_after: Duration::from_secs_f64(cam.occupancy.empty_after_s),
                // Validated with the config.
                zones: crate::tracking::zones::validate(&cam.zones.regions).unwrap_or_default(),
                zone_min_frames: cam.zones.min_frames,
                anchor: cam.zones.anchor,
            },
        );
        let live = config.ui.enabled.then(|| {
            let feed = LiveFeed::new(
                &cam.instance_id,
                cam.stream.width,
                cam.stream.height,
                config.ui.show_video,
                config.ui.max_fps,
                metrics.clone(),
            );
            task_set.spawn(feed.clone().run(frames.viewer(), tasks.clone()));
            feed
        });
        let (occupancy_tx, occupancy_rx) = watch::channel(None);
        let tracking = detector_pool.is_some();
        publishers.spawn(
            EventPublisher {
                camera: cam.instance_id.clone(),
                outbox: outbox.clone(),
                settings: emitter_settings[i].clone(),
                occupancy: tracking
                    .then(|| (crate::topics::occupancy(&cam.instance_id), occupancy_rx)),
                mqtt: watches[i].mqtt.clone(),
                metrics: metrics.clone(),
            }
            .run(publish.clone())
            .instrument(tracing::info_span!("camera", id = %cam.instance_id)),
        );
        let sink = Arc::new(collector::CameraSink {
            instance_id: cam.instance_id.clone(),
            room_id: cam.room_id.clone(),
            metrics: metrics.clone(),
            emitter: emitter.handle.clone(),
            mqtt: watches[i].mqtt.clone(),
            roi: roi.clone(),
            signals: Mutex::new(signals),
            outbox: outbox.clone(),
            event_rate: Mutex::new(crate::outbox::rate::EventRate::new(
                config.outbox.max_events_per_minute,
            )),
            occupancy: occupancy_tx,
            live: live.clone(),
            tracking,
            discovery: cam
                .homeassistant
                .enabled
                .then(|| cam.homeassistant.discovery_prefix.clone()),
            discovered: Mutex::new((Vec::new(), 0, Vec::new())),
        });
        sinks.push(sink.clone());
        if let Some(filter) = sink.device().map(|d| d.filter()) {
            // What a previous run published for this camera, to clean up.
            let (sink, settings) = (sink.clone(), emitter_settings[i].clone());
            let cancel = tasks.clone();
            task_set.spawn(async move {
                let quiet = Duration::from_millis(500);
                let read =
                    mqtt::emitter::retained_topics(&settings, &filter, quiet, MQTT_CONNECT_WAIT);
                tokio::select! {
                    _ = cancel.cancelled() => {}
                    found = read => sink.adopt_discovered(found),
                }
            });
        }
        let Some(paused) = paused_status[i].take() else {
            continue;
        };
        let plane = Arc::new(ControlPlane::new(
            cam.clone(),
            CameraControls {
                metrics: metrics.clone(),
                status: watches[i].clone(),
                paused,
                rate_tx,
                measured_fps: warm.map(|w| w.fps_mean),
                workers: registry.workers.clone(),
                roi: roi.clone(),
                zones: sink.clone(),
            },
            detector_pool.clone(),
        ));
        let control = root.child_token();
        let span = tracing::info_span!("camera", id = %cam.instance_id);
        let control_task = tokio::spawn(
            ControlHandler {
                plane: plane.clone(),
                emitter: emitter.handle.clone(),
                metrics: metrics.clone(),
                instance_id: cam.instance_id.clone(),
                health_topic: cam.health_topic(),
                max_command_bytes: cam.mqtt.max_command_bytes,
                shutdown: shutdown.clone(),
                reply_log: std::sync::Mutex::new(crate::logging::RateLimit::new(
                    Duration::from_secs(10),
                )),
            }
            .run(control_rx, alerts_rx, control.clone())
            .instrument(span.clone()),
        );
        task_set.spawn(
            FrameConsumer {
                camera: i,
                instance_id: Arc::from(cam.instance_id.as_str()),
                room_id: Arc::from(cam.room_id.as_str()),
                gate: RateGate::with_phase(rate_hz, i as f64 / camera_count as f64),
                roi: roi.clone(),
                port: bus.camera(i),
                metrics: metrics.clone(),
                width: cam.stream.width,
                height: cam.stream.height,
                rate_hz: rate_rx,
                paused: watches[i].paused.clone(),
                rgb: RgbConverter::default(),
            }
            .run(frames, tasks.clone())
            .instrument(span.clone()),
        );
        task_set.spawn(
            Presence {
                topic: cam.status_topic(),
                identity: identity.clone(),
                status: watches[i].clone(),
                emitter: emitter.handle.clone(),
            }
            .run(tasks.clone())
            .instrument(span),
        );
        if let Some(feed) = live {
            ui_cameras.push(UiCamera {
                instance_id: cam.instance_id.clone(),
                room_id: cam.room_id.clone(),
                width: cam.stream.width,
                height: cam.stream.height,
                control: control_txs[i].clone(),
                max_command_bytes: cam.mqtt.max_command_bytes,
                plane: plane.clone(),
                zones: sink.clone(),
                feed,
            });
        }
        runs.push(CameraRun {
            instance_id: cam.instance_id.clone(),
            identity,
            status_topic: cam.status_topic(),
            stream,
            emitter,
            control,
            control_task,
            sink: sink.clone(),
        });
    }
    task_set.spawn(collector::Collector { cameras: sinks }.run(results_rx, tasks.clone()));
    task_set.spawn(stats_logger(
        registry.clone(),
        Duration::from_secs_f64(config.framebus.stats_interval_s),
        tasks.clone(),
    ));
    // Writes the outbox to disk again once a full disk has room.
    publishers.spawn(crate::outbox::store::keep_disk(
        outbox.clone(),
        publish.clone(),
    ));
    task_set.close();
    publishers.close();
    if let Some(slot) = &ui_slot {
        let _ = slot.set(Arc::new(Ui {
            token: config.ui.token.clone(),
            show_video: config.ui.show_video,
            max_fps: config.ui.max_fps,
            cameras: ui_cameras,
            registry: registry.clone(),
        }));
        tracing::info!(
            addr = %health_addr,
            privacy = !config.ui.show_video,
            token = config.ui.token.is_some(),
            "live view at http://{health_addr}/"
        );
    }

    for r in &running {
        r.send_replace(true);
    }
    let ids: Vec<&str> = cameras.iter().map(|c| c.instance_id.as_str()).collect();
    tracing::info!(cameras = %ids.join(","), "orion running");
    Ok(Running {
        root,
        retired: Vec::new(),
        shutdown_timeout: Duration::from_secs_f64(config.shutdown_timeout_s),
        cameras: runs,
        running,
        health,
        health_task: partial.health_task.take().expect("health task started"),
        workers,
        worker_tasks,
        tasks,
        task_set,
        publish,
        publishers,
        outbox,
    })
}

/// Closes the outbox off the async runtime (a last try to write back what a
/// full disk made it hold, the clean-close marker, a sync).
async fn close_outbox(outbox: Arc<Outbox>) {
    if let Err(e) = tokio::task::spawn_blocking(move || outbox.close()).await {
        tracing::error!(error = %e, "outbox close failed");
    }
}

/// Infrastructure that must exist before the cameras: the embedded broker.
async fn prepare(config: &Config) -> anyhow::Result<()> {
    let broker = config.broker().context("mqtt.broker")?;
    if broker == BrokerAddr::Embedded {
        mqtt::broker::start_or_join(config.mqtt.embedded_listen).await?;
    }
    Ok(())
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

/// Measures every camera's real frame rate at once; returns each camera's frame
/// receiver with its measurement, in camera order.
async fn warm_up(
    cameras: &[Config],
    receivers: Vec<FrameReceiver>,
    metrics: &[Arc<Metrics>],
    shutdown: &CancellationToken,
) -> anyhow::Result<Vec<(FrameReceiver, Option<warmup::WarmupStats>)>> {
    let mut set = tokio::task::JoinSet::new();
    for (i, mut frames) in receivers.into_iter().enumerate() {
        let duration = Duration::from_secs_f64(cameras[i].stream.warmup_duration_s);
        let (metrics, shutdown) = (metrics[i].clone(), shutdown.clone());
        let configured_hz = cameras[i].models.person_detector.max_inference_rate_hz;
        let span = tracing::info_span!("camera", id = %cameras[i].instance_id);
        set.spawn(
            async move {
                let warm = warmup::measure(&mut frames, duration, &metrics, &shutdown).await;
                let rate = warmup::effective_rate(configured_hz, warm.as_ref());
                match &warm {
                    Some(w) => tracing::info!(
                        fps_mean = format_args!("{:.2}", w.fps_mean),
                        fps_std = format_args!("{:.2}", w.fps_std),
                        frames = w.frames,
                        configured_hz,
                        effective_hz = format_args!("{rate:.2}"),
                        "warm-up done"
                    ),
                    None if !shutdown.is_cancelled() && !duration.is_zero() => tracing::warn!(
                        effective_hz = rate,
                        "no frames measured during warm-up; using the configured rate"
                    ),
                    None => {}
                }
                (i, frames, warm)
            }
            .instrument(span),
        );
    }
    let mut out: Vec<Option<(FrameReceiver, Option<warmup::WarmupStats>)>> =
        (0..cameras.len()).map(|_| None).collect();
    while let Some(done) = set.join_next().await {
        match done {
            Ok((i, frames, warm)) => out[i] = Some((frames, warm)),
            Err(e) => tracing::error!(error = %e, "warm-up task failed"),
        }
    }
    // A warm-up task that failed took its camera's frames with it.
    out.into_iter()
        .zip(cameras)
        .map(|(o, c)| o.with_context(|| format!("warm-up of camera {} failed", c.instance_id)))
        .collect()
}

impl Running {
    /// The instance ids of this run's cameras.
    pub fn cameras(&self) -> Vec<String> {
        self.cameras.iter().map(|c| c.instance_id.clone()).collect()
    }

    /// Marks cameras that go away for good (a reloaded config without them): at
    /// [`Running::stop`] their retained messages (presence, occupancy, Home
    /// Assistant discovery) are removed instead of left as `offline`.
    pub fn retire(&mut self, ids: &[String]) {
        self.retired.extend(ids.iter().cloned());
    }

    /// Stops everything in order within `shutdown_timeout_s`.
    pub async fn stop(self) -> ShutdownReport {
        for r in &self.running {
            r.send_replace(false);
        }
        let started = Instant::now();
        let deadline = started + self.shutdown_timeout;
        let left = || deadline.saturating_duration_since(Instant::now());
        let mut report = ShutdownReport::default();
        tracing::info!(
            timeout_s = self.shutdown_timeout.as_secs_f64(),
            "shutting down"
        );

        self.workers.cancel();
        if tokio::time::timeout(left(), self.worker_tasks.wait())
            .await
            .is_err()
        {
            report.late.push("workers".into());
        }
        let mut cameras = Vec::new();
        for c in self.cameras {
            if !c.stream.stop(left()).await {
                report.late.push(format!("stream of {}", c.instance_id));
            }
            let retired = self.retired.contains(&c.instance_id).then_some(c.sink);
            cameras.push((
                c.instance_id,
                c.identity,
                c.status_topic,
                c.emitter,
                c.control,
                c.control_task,
                retired,
            ));
        }
        let mut emitters = Vec::new();
        for (id, identity, topic, emitter, control, task, retired) in cameras {
            control.cancel();
            if tokio::time::timeout(left(), task).await.is_err() {
                report.late.push(format!("control plane of {id}"));
            }
            emitters.push((identity, topic, emitter, retired));
        }
        self.tasks.cancel();
        if tokio::time::timeout(left(), self.task_set.wait())
            .await
            .is_err()
        {
            report.late.push("tasks".into());
        }
        // After the collector: its last events go out too (or stay queued).
        self.publish.cancel();
        if tokio::time::timeout(left(), self.publishers.wait())
            .await
            .is_err()
        {
            report.late.push("event publishers".into());
        }
        // A clean exit is not a lost connection: say offline ourselves (the broker
        // only publishes the last will when the connection dies).
        let mut disconnects = tokio::task::JoinSet::new();
        for (identity, topic, emitter, retired) in emitters {
            // A camera that goes away for good leaves nothing behind (its
            // collector has stopped: nothing republishes it).
            let presence = match retired {
                Some(sink) => {
                    sink.remove_retained();
                    Vec::new()
                }
                None => presence::offline(&identity, "shutdown"),
            };
            emitter.handle.publish_retained(topic, presence);
            let wait = left().min(Duration::from_secs(2));
            disconnects.spawn(async move {
                if !emitter.disconnect(wait).await {
                    tracing::debug!("MQTT disconnect was not acknowledged");
                }
            });
        }
        while disconnects.join_next().await.is_some() {}
        self.health.cancel();
        if tokio::time::timeout(left(), self.health_task)
            .await
            .is_err()
        {
            report.late.push("health http".into());
        }
        self.root.cancel();
        close_outbox(self.outbox).await;
        report.took = started.elapsed();
        report
    }
}

/// Logs each camera's stream, frame bus and MQTT counters, and each worker's,
/// every `interval`.
async fn stats_logger(registry: Arc<Registry>, interval: Duration, cancel: CancellationToken) {
    let mut ticker = tokio::time::interval(interval);
    ticker.tick().await;
    let mut last: Vec<(u64, Instant)> = registry
        .cameras
        .iter()
        .map(|(m, _)| (m.frames_captured.get(), Instant::now()))
        .collect();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = ticker.tick() => {}
        }
        for ((metrics, _), (last_frames, last_at)) in registry.cameras.iter().zip(last.iter_mut()) {
            let frames = metrics.frames_captured.get();
            let fps = (frames - *last_frames) as f64 / last_at.elapsed().as_secs_f64();
            (*last_frames, *last_at) = (frames, Instant::now());
            tracing::info!(
                camera = %metrics.camera,
                frames,
                fps = format_args!("{fps:.1}"),
                gated = metrics.frames_gated.get(),
                paused = metrics.frames_paused.get(),
                published = metrics.mqtt_published.get(),
                mqtt_dropped = metrics.mqtt_dropped.get(),
                "stream stats"
            );
            for g in metrics.groups() {
                tracing::info!(
                    camera = %metrics.camera,
                    pool = %g.name,
                    sent = g.frames_sent.get(),
                    dropped = g.frames_dropped.get(),
                    drop_rate = format_args!("{:.3}", g.drop_rate()),
                    "frame bus stats"
                );
            }
        }
        for w in registry.workers.iter().map(|v| &v.metrics) {
            tracing::info!(
                worker = %w.id,
                frames = w.frames_sent.get(),
                inferences = w.inferences.get(),
                avg_ms = format_args!("{:.1}", w.latency.mean().map_or(0.0, |d| d.as_secs_f64() * 1e3)),
                "worker stats"
            );
        }
    }
}

//! One camera as one unit: everything a camera owns, started by
//! [`Camera::start`] and stopped by [`Camera::stop`].
//!
//! A camera owns its stream and warm-up, its MQTT connection (with its own last
//! will), its control plane and control handler, its frame consumer (rate gate,
//! pause, crop, its port on the frame bus: [`frames`]), its result handler
//! (tracks, events, occupancy, Home Assistant discovery: [`results`]), its event
//! publisher (from the outbox), its live feed and its presence. What cameras
//! share (worker pools, the frame bus, the outbox, the registry, the UI) is
//! built once by the orchestrator and handed in as [`Shared`]; a camera joins
//! and leaves those, and never starts or stops them.
//!
//! Start-up order: stream -> warm-up -> MQTT (at most [`MQTT_CONNECT_WAIT`]) ->
//! result handler, event publisher, control, frame consumer, presence, live
//! feed -> `running`. Stop order: stream -> control -> tasks (frame consumer,
//! result handler, presence, live feed) -> event publisher (after the result
//! handler: its last events go out too), presence keeper (it saves the
//! handler's last snapshot) -> offline presence (or, for a camera that goes for
//! good, its retained occupancy and discovery removed; its presence file and
//! undelivered events stay) -> MQTT disconnect. Each step has the stop's
//! deadline; a task that misses it is aborted.

pub mod frames;
pub mod keeper;
pub mod results;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::attention::{RateGate, RoiAttention};
use crate::config::Config;
use crate::control::{CameraControls, ControlPlane};
use crate::framebus::FrameBus;
use crate::health::{Alert, Alerts, Registry};
use crate::live::LiveFeed;
use crate::metrics::Metrics;
use crate::mqtt::announce::Presence;
use crate::mqtt::control::ControlHandler;
use crate::mqtt::emitter::{BusyReplies, Emitter, EmitterHandle, EmitterSettings, retained_topics};
use crate::mqtt::presence::{self, Identity};
use crate::outbox::Outbox;
use crate::outbox::publisher::EventPublisher;
use crate::outbox::rate::EventRate;
use crate::status::{self, CameraWatch, StreamOwner, WorkerView};
use crate::stream::{FrameReceiver, RgbConverter, Stream, warmup};
use crate::tasks::{self, Tasks};
use crate::tracking::falls::FallSettings;
use crate::tracking::room::{Edges, ModelThresholds, RoomSettings, RoomTracker, Stamp, Thresholds};
use crate::tracking::tracker::TrackerSettings;
use crate::tracking::zones::{self, LookAreas, Zone};
use crate::ui::{Ui, UiCamera};
use crate::worker::{DetectorPool, ResultRoutes};
use frames::FrameConsumer;
use keeper::PresenceFile;
use results::CameraResults;

/// How long a camera's start waits for its MQTT connection before going on
/// degraded.
pub const MQTT_CONNECT_WAIT: Duration = Duration::from_secs(5);
/// Results waiting for a camera's result handler (beyond, the workers drop
/// them and count).
const RESULT_QUEUE: usize = 64;
/// Capacity of the emitter -> control handler channel.
const CONTROL_QUEUE: usize = 64;
/// Capacity of a camera's alert channel (alerts are rare; a flood is cut here).
const ALERT_QUEUE: usize = 16;

/// Where the cameras' MQTT connections go.
#[derive(Clone)]
pub struct Broker {
    pub host: String,
    pub port: u16,
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

/// What every camera uses and none owns: built once, before the cameras.
pub struct Shared {
    pub bus: FrameBus,
    pub routes: ResultRoutes,
    pub outbox: Arc<Outbox>,
    /// The person detector pool (`None` without one: no tracks, no events).
    pub detector: Option<Arc<DetectorPool>>,
    pub workers: Vec<WorkerView>,
    /// The shared workers' alerts: every camera's health topic gets them.
    pub worker_alerts: Alerts,
    pub registry: Arc<Registry>,
    pub ui: Option<Arc<Ui>>,
    pub broker: Broker,
    /// The daemon's shutdown (the `shutdown` command triggers it; a warm-up
    /// ends early on it).
    pub shutdown: CancellationToken,
}

impl Shared {
    /// A camera joins what reports on it: the registry (health, metrics), the
    /// workers' alerts, the outbox.
    fn join(
        &self,
        metrics: &Arc<Metrics>,
        watch: &CameraWatch,
        alerts: mpsc::Sender<Alert>,
        outbox: watch::Sender<crate::status::OutboxStatus>,
    ) {
        self.registry.add_camera((metrics.clone(), watch.clone()));
        self.worker_alerts.add(alerts);
        self.outbox.attach(&metrics.camera, metrics.clone(), outbox);
    }
}

/// A running camera; [`Camera::stop`] is the one way to stop it.
pub struct Camera {
    pub instance_id: String,
    /// The config it runs with (a reload compares the new one with it).
    pub config: Config,
    shared: Arc<Shared>,
    /// Its key on the frame bus and in the result routes.
    key: usize,
    running: watch::Sender<bool>,
    identity: Identity,
    stream: Stream,
    emitter: Emitter,
    control: CancellationToken,
    control_task: JoinHandle<()>,
    tasks: CancellationToken,
    task_set: Tasks,
    /// The event publisher: stops after the result handler (its last events
    /// go out too).
    publisher: Stoppable,
    /// The presence keeper: stops after the result handler (it saves the
    /// handler's last snapshot).
    keeper: Stoppable,
    results: Arc<CameraResults>,
}

/// A task of the camera stopped on its own token, after others.
struct Stoppable {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Stoppable {
    /// Stops it; false when it did not end within `limit` (then it is
    /// aborted: nothing of the camera runs on unowned).
    async fn stop(self, limit: Duration) -> bool {
        self.stop.cancel();
        tasks::stop_one(self.task, limit).await
    }
}

/// What a camera's stop missed.
#[derive(Debug, Default)]
pub struct Late(pub Vec<String>);

impl Camera {
    /// Starts camera `config` (one camera's complete config); `phase` (0..1)
    /// spreads the cameras' rate gates over a period; `hurry` cuts the warm-up
    /// and the wait for MQTT short (the daemon stops, or another camera failed
    /// to start). On an error nothing of the camera is left running.
    pub async fn start(
        config: Config,
        shared: Arc<Shared>,
        phase: f64,
        hurry: CancellationToken,
    ) -> anyhow::Result<Self> {
        let span = tracing::info_span!("camera", id = %config.instance_id);
        Self::start_in_span(config, shared, phase, hurry)
            .instrument(span)
            .await
    }

    async fn start_in_span(
        config: Config,
        shared: Arc<Shared>,
        phase: f64,
        hurry: CancellationToken,
    ) -> anyhow::Result<Self> {
        let id = config.instance_id.clone();
        let identity = Identity::new(&id, &config.room_id); // the session starts before the warm-up
        let zones = zones::validate(&config.zones.regions)
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("zones of camera {id}"))?;
        let metrics = Arc::new(Metrics::for_camera(&id));
        let stall = Duration::from_secs_f64(config.stream.stall_timeout_s);
        let (senders, watch) = status::channels(stall, !config.ui.show_video);
        let (alerts_tx, alerts_rx) = mpsc::channel::<Alert>(ALERT_QUEUE);
        let root = CancellationToken::new();
        let owner = StreamOwner {
            status: senders.stream,
            frames: senders.frames,
        };
        let alerts = Alerts::to(alerts_tx.clone());
        let (stream, frames) = start_stream(&config, &metrics, owner, alerts, &root).await?;
        shared.join(&metrics, &watch, alerts_tx, senders.outbox);
        let (frames, warm, rate_hz) = warm_up(&config, frames, &metrics, &hurry).await;
        let settings = emitter_settings(&config, &identity, &shared.broker);
        let (control_tx, control_rx) = mpsc::channel(CONTROL_QUEUE);
        let emitter = Emitter::start(
            &settings,
            metrics.clone(),
            senders.mqtt.clone(),
            Some(control_tx.clone()),
            root.child_token(),
        );
        wait_connected(&watch, &hurry).await;

        let (rate_tx, rate_rx) = watch::channel(rate_hz);
        let parts = Parts {
            roi: Arc::new(Mutex::new(RoiAttention::from_config(&config))),
            tasks: root.child_token(),
            task_set: Tasks::new(),
            metrics,
            watch,
            emitter: emitter.handle.clone(),
            config,
            shared,
        };
        let live = parts.spawn_live(&frames);
        let (results, publisher) = parts.spawn_results(zones, live.clone(), &settings, &root);
        let keeper = parts.spawn_keeper(&results, &root).await;
        let port = parts.route_results(&results);
        let key = port.key();
        let fps = warm.map(|w| w.fps_mean);
        let plane = parts.control_plane(senders.paused, senders.privacy, rate_tx, fps, &results);
        let control = root.child_token();
        let control_task = parts.spawn_control(&plane, control_rx, alerts_rx, &control);
        parts.spawn_frames(frames, port, rate_rx, &results, phase, &identity);
        parts.join(control_tx, plane, &results, live);
        senders.running.send_replace(true);
        tracing::info!("camera running");
        Ok(Self {
            instance_id: id,
            config: parts.config,
            shared: parts.shared,
            key,
            running: senders.running,
            identity,
            stream,
            emitter,
            control,
            control_task,
            tasks: parts.tasks,
            task_set: parts.task_set,
            publisher,
            keeper,
            results,
        })
    }

    /// The camera is about to stop: readiness and presence say so at once.
    pub fn stopping(&self) {
        self.running.send_replace(false);
    }

    /// Stops the camera in order by `deadline`, and takes it out of what it
    /// shares. `retire`: the camera goes away for good (a reload without it):
    /// its retained messages (occupancy, Home Assistant discovery) are removed
    /// instead of presence saying `offline`.
    pub async fn stop(self, deadline: Instant, retire: bool) -> Late {
        let left = || deadline.saturating_duration_since(Instant::now());
        let id = &self.instance_id;
        let mut late = Vec::new();
        self.stopping();
        if !self.stream.stop(left()).await {
            late.push(format!("stream of {id}"));
        }
        self.control.cancel();
        if !tasks::stop_one(self.control_task, left()).await {
            late.push(format!("control plane of {id}"));
        }
        self.tasks.cancel();
        if !self.task_set.stop(left()).await {
            late.push(format!("tasks of {id}"));
        }
        // After the result handler: its last snapshot is saved, its last
        // events go out too (or stay queued).
        if !self.keeper.stop(left()).await {
            late.push(format!("presence keeper of {id}"));
        }
        if !self.publisher.stop(left()).await {
            late.push(format!("event publisher of {id}"));
        }
        // A clean exit is not a lost connection: say offline ourselves (the
        // broker only publishes the last will when the connection dies).
        let presence = if retire {
            self.results.remove_retained();
            Vec::new()
        } else {
            presence::offline(&self.identity, "shutdown")
        };
        self.emitter
            .handle
            .publish_retained(self.config.status_topic(), presence);
        if !self
            .emitter
            .disconnect(left().min(Duration::from_secs(2)))
            .await
        {
            tracing::debug!(camera = %id, "MQTT disconnect was not acknowledged");
        }
        if let Some(feed) = &self.results.live {
            feed.close();
        }
        let shared = &self.shared;
        shared.bus.detach(self.key);
        shared.routes.remove(self.key);
        shared.registry.remove_camera(id);
        shared.outbox.detach(id);
        if let Some(ui) = &shared.ui {
            ui.remove_camera(id);
        }
        if let Some(pool) = &shared.detector {
            pool.remove_camera(id);
        }
        Late(late)
    }
}

/// What a starting camera's components are built from.
struct Parts {
    config: Config,
    shared: Arc<Shared>,
    metrics: Arc<Metrics>,
    watch: CameraWatch,
    emitter: EmitterHandle,
    roi: Arc<Mutex<RoiAttention>>,
    /// The camera's tasks (frame consumer, result handler, presence, live
    /// feed, discovery clean-up) and their stop.
    tasks: CancellationToken,
    task_set: Tasks,
}

impl Parts {
    /// The live feed's encoder (when the UI is on).
    fn spawn_live(&self, frames: &FrameReceiver) -> Option<Arc<LiveFeed>> {
        let ui = self.shared.ui.as_ref()?;
        let feed = LiveFeed::new(
            &self.config.instance_id,
            self.config.stream.width,
            self.config.stream.height,
            self.watch.privacy.clone(),
            ui.max_fps,
            self.metrics.clone(),
        );
        self.task_set
            .spawn(feed.clone().run(frames.viewer(), self.tasks.clone()));
        Some(feed)
    }

    /// The result handler (tracks, events, occupancy, discovery), its route
    /// from the workers, and the event publisher (with its stop).
    fn spawn_results(
        &self,
        zones: Vec<Zone>,
        live: Option<Arc<LiveFeed>>,
        settings: &EmitterSettings,
        root: &CancellationToken,
    ) -> (Arc<CameraResults>, Stoppable) {
        let (config, id) = (&self.config, &self.config.instance_id);
        // Undecided at first: a previous run's retained states are removed
        // until this run decides them.
        let (states_tx, states_rx) = watch::channel(crate::outbox::publisher::States::from([
            (crate::topics::occupancy(id), None),
            (crate::topics::alerts(id), None),
        ]));
        let tracking = self.shared.detector.is_some();
        let looks = LookAreas::of(&zones, config.stream.width, config.stream.height);
        let room = room_tracker(config, zones); // its time starts now: results come
        let results = Arc::new(CameraResults {
            instance_id: id.clone(),
            room_id: config.room_id.clone(),
            metrics: self.metrics.clone(),
            emitter: self.emitter.clone(),
            mqtt: self.watch.mqtt.clone(),
            roi: self.roi.clone(),
            room: Mutex::new(room),
            outbox: self.shared.outbox.clone(),
            event_rate: Mutex::new(EventRate::new(config.outbox.max_events_per_minute)),
            states: states_tx,
            live,
            tracking,
            watch: self.watch.clone(),
            detectors: self
                .shared
                .workers
                .iter()
                .filter(|w| w.metrics.id.starts_with(crate::config::PERSON_DETECTOR))
                .cloned()
                .collect(),
            looks: watch::channel(Arc::new(looks)).0,
            frame_size: (config.stream.width, config.stream.height),
            snapshot: watch::channel(None).0,
            discovery: config
                .homeassistant
                .enabled
                .then(|| config.homeassistant.discovery_prefix.clone()),
            discovered: Mutex::new(Default::default()),
            falls: config.falls.enabled,
        });
        let publish = root.child_token();
        let task = tokio::spawn(
            EventPublisher {
                camera: id.clone(),
                outbox: self.shared.outbox.clone(),
                settings: settings.clone(),
                states: tracking.then_some(states_rx),
                mqtt: self.watch.mqtt.clone(),
                metrics: self.metrics.clone(),
            }
            .run(publish.clone())
            .in_current_span(),
        );
        if let Some(filter) = results.device().map(|d| d.filter()) {
            self.task_set.spawn(adopt_discovered(
                results.clone(),
                settings.clone(),
                filter,
                self.tasks.clone(),
            ));
        }
        let publisher = Stoppable {
            stop: publish,
            task,
        };
        (results, publisher)
    }

    /// Takes back the present people of the last run, and starts the presence
    /// keeper that saves them from now on (with its stop).
    async fn spawn_keeper(
        &self,
        results: &Arc<CameraResults>,
        root: &CancellationToken,
    ) -> Stoppable {
        let file = PresenceFile::new(&self.config.presence.path, &self.config.instance_id);
        // Without person detectors there is no room to take people back into.
        if results.tracking
            && let Some(snapshot) = file.load().await
        {
            results.restore(&snapshot);
        }
        let stop = root.child_token();
        let task = tokio::spawn(
            file.run(results.snapshot.subscribe(), stop.clone())
                .in_current_span(),
        );
        Stoppable { stop, task }
    }

    /// The camera's port on the frame bus, and the route of its results from
    /// the workers to its result handler's loop.
    fn route_results(&self, results: &Arc<CameraResults>) -> crate::framebus::CameraPort {
        let port = self.shared.bus.attach(|pool| self.metrics.add_group(pool));
        let (queue, results_rx) = mpsc::channel(RESULT_QUEUE);
        self.shared.routes.add(port.key(), queue);
        self.task_set.spawn(
            results
                .clone()
                .run(results_rx, self.tasks.clone())
                .in_current_span(),
        );
        port
    }

    /// The control plane: it owns the pause state, the privacy mode and the
    /// rate (capped at the fps the warm-up measured).
    fn control_plane(
        &self,
        paused: watch::Sender<bool>,
        privacy: watch::Sender<bool>,
        rate_tx: watch::Sender<f64>,
        measured_fps: Option<f64>,
        results: &Arc<CameraResults>,
    ) -> Arc<ControlPlane> {
        Arc::new(ControlPlane::new(
            self.config.clone(),
            CameraControls {
                metrics: self.metrics.clone(),
                status: self.watch.clone(),
                paused,
                privacy,
                rate_tx,
                measured_fps,
                workers: self.shared.workers.clone(),
                roi: self.roi.clone(),
                room: results.clone(),
            },
            self.shared.detector.clone(),
        ))
    }

    /// The control handler: commands from MQTT and the UI, and the camera's
    /// alerts, until `control` is cancelled.
    fn spawn_control(
        &self,
        plane: &Arc<ControlPlane>,
        commands: mpsc::Receiver<crate::command::ControlMessage>,
        alerts: mpsc::Receiver<Alert>,
        control: &CancellationToken,
    ) -> JoinHandle<()> {
        tokio::spawn(
            ControlHandler {
                plane: plane.clone(),
                emitter: self.emitter.clone(),
                metrics: self.metrics.clone(),
                instance_id: self.config.instance_id.clone(),
                health_topic: self.config.health_topic(),
                max_command_bytes: self.config.mqtt.max_command_bytes,
                shutdown: self.shared.shutdown.clone(),
                reply_log: Mutex::new(crate::logging::RateLimit::new(Duration::from_secs(10))),
            }
            .run(commands, alerts, control.clone())
            .in_current_span(),
        )
    }

    /// The frame consumer (gate, pause, crop, onto the bus) and presence.
    fn spawn_frames(
        &self,
        frames: FrameReceiver,
        port: crate::framebus::CameraPort,
        rate_hz: watch::Receiver<f64>,
        results: &CameraResults,
        phase: f64,
        identity: &Identity,
    ) {
        let config = &self.config;
        let hz = *rate_hz.borrow();
        let rate_hz_presence = rate_hz.clone();
        self.task_set.spawn(
            FrameConsumer {
                instance_id: Arc::from(config.instance_id.as_str()),
                room_id: Arc::from(config.room_id.as_str()),
                gate: RateGate::with_phase(hz, phase),
                roi: self.roi.clone(),
                port,
                metrics: self.metrics.clone(),
                width: config.stream.width,
                height: config.stream.height,
                rate_hz,
                paused: self.watch.paused.clone(),
                rgb: RgbConverter::default(),
                looks: results.looks.subscribe(),
            }
            .run(frames, self.tasks.clone())
            .in_current_span(),
        );
        self.task_set.spawn(
            Presence {
                topic: config.status_topic(),
                identity: identity.clone(),
                status: self.watch.clone(),
                rate_hz: rate_hz_presence,
                emitter: self.emitter.clone(),
            }
            .run(self.tasks.clone())
            .in_current_span(),
        );
    }

    /// Joins the result routes, the UI and the detector pool's camera list.
    fn join(
        &self,
        control: mpsc::Sender<crate::command::ControlMessage>,
        plane: Arc<ControlPlane>,
        results: &Arc<CameraResults>,
        live: Option<Arc<LiveFeed>>,
    ) {
        let config = &self.config;
        if let (Some(ui), Some(feed)) = (&self.shared.ui, live) {
            ui.add_camera(UiCamera {
                instance_id: config.instance_id.clone(),
                room_id: config.room_id.clone(),
                width: config.stream.width,
                height: config.stream.height,
                control,
                max_command_bytes: config.mqtt.max_command_bytes,
                plane,
                room: results.clone(),
                feed,
            });
        }
        if let Some(pool) = &self.shared.detector {
            pool.add_camera(&config.instance_id);
        }
    }
}

/// The camera's MQTT connection: its client id, credentials, last will,
/// control topic and presence.
fn emitter_settings(config: &Config, identity: &Identity, broker: &Broker) -> EmitterSettings {
    EmitterSettings {
        client_id: config.client_id(),
        host: broker.host.clone(),
        port: broker.port,
        keep_alive: Duration::from_secs(config.mqtt.keep_alive_s),
        max_pending: config.mqtt.max_pending_publishes,
        credentials: config
            .mqtt
            .username
            .clone()
            .map(|u| (u, config.mqtt.password.clone().unwrap_or_default())),
        tls: broker.tls.clone(),
        last_will: Some((
            config.status_topic(),
            presence::offline(identity, "connection_lost"),
        )),
        control_topic: Some(config.control_topic()),
        presence: Some((config.status_topic(), identity.session.clone())),
        busy: Some(BusyReplies {
            topic: config.health_topic(),
            instance_id: config.instance_id.clone(),
            max_command_bytes: config.mqtt.max_command_bytes,
        }),
    }
}

/// A model's thresholds for the room, day and night.
fn thresholds(l: crate::config::Levels) -> (Thresholds, Thresholds) {
    let t = |(start, keep, edge_start): (f64, f64, f64)| Thresholds {
        start,
        edge_start,
        keep,
    };
    (t(l.day), t(l.night))
}

/// The camera's tracks, events and occupancy, as configured (`zones`: its
/// validated zones), from now on.
fn room_tracker(config: &Config, zones: Vec<Zone>) -> RoomTracker {
    use crate::config::Edge;
    let d = &config.models.person_detector;
    let edges = &config.presence.exit_edges;
    RoomTracker::new(
        &config.instance_id,
        &config.room_id,
        config.stream.width,
        config.stream.height,
        RoomSettings {
            tracker: TrackerSettings {
                min_hits: config.tracking.min_hits,
                max_missing: Duration::from_secs_f64(config.tracking.max_missing_s),
                max_distance: config.tracking.max_distance,
                unseen_timeout: Duration::from_secs_f64(config.presence.unseen_timeout_s),
            },
            empty_after: Duration::from_secs_f64(config.occupancy.empty_after_s),
            zones,
            zone_min_frames: config.zones.min_frames,
            zone_min_time: Duration::from_secs_f64(config.zones.min_s),
            zone_margin: config.zones.margin,
            anchor: config.zones.anchor,
            thresholds: ModelThresholds {
                default: thresholds(d.levels(None)),
                by_model: d
                    .catalog
                    .iter()
                    .map(|(name, e)| (name.clone(), thresholds(d.levels(Some(e)))))
                    .collect(),
            },
            falls: FallSettings {
                enabled: config.falls.enabled,
                confirm: Duration::from_secs_f64(config.falls.confirm_s),
                down_after: Duration::from_secs_f64(config.falls.down_after_s),
                repeat: Duration::from_secs_f64(config.falls.repeat_s),
            },
            ignore_hint_after: Duration::from_secs_f64(config.presence.ignore_hint_after_s),
            exits: Edges {
                left: edges.contains(&Edge::Left),
                right: edges.contains(&Edge::Right),
                top: edges.contains(&Edge::Top),
                bottom: edges.contains(&Edge::Bottom),
            },
        },
        Stamp::now(),
    )
}

/// Starts the camera's stream off the async runtime (GStreamer's init and the
/// check that builds the pipeline once block).
async fn start_stream(
    config: &Config,
    metrics: &Arc<Metrics>,
    owner: StreamOwner,
    alerts: Alerts,
    root: &CancellationToken,
) -> anyhow::Result<(Stream, FrameReceiver)> {
    let (config, metrics, cancel) = (config.clone(), metrics.clone(), root.child_token());
    let id = config.instance_id.clone();
    tokio::task::spawn_blocking(move || {
        Stream::start(&config, metrics, owner, Some(alerts), cancel)
    })
    .await
    .context("the stream's start failed")?
    .with_context(|| format!("starting the stream of camera {id}"))
}

/// Measures the camera's real frame rate (`stream.warmup_duration_s`); the
/// frames, the measurement and the inference rate it allows.
async fn warm_up(
    config: &Config,
    mut frames: FrameReceiver,
    metrics: &Metrics,
    hurry: &CancellationToken,
) -> (FrameReceiver, Option<warmup::WarmupStats>, f64) {
    let duration = Duration::from_secs_f64(config.stream.warmup_duration_s);
    let configured_hz = config.models.person_detector.max_inference_rate_hz;
    let warm = warmup::measure(&mut frames, duration, metrics, hurry).await;
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
        None if !hurry.is_cancelled() && !duration.is_zero() => tracing::warn!(
            effective_hz = rate,
            "no frames measured during warm-up; using the configured rate"
        ),
        None => {}
    }
    metrics.inference_rate_hz.set(rate);
    (frames, warm, rate)
}

/// Waits at most [`MQTT_CONNECT_WAIT`] for the camera's MQTT connection
/// (unless `hurry`); without it the camera goes on degraded.
async fn wait_connected(watch: &CameraWatch, hurry: &CancellationToken) {
    tokio::select! {
        _ = hurry.cancelled() => {}
        connected = watch.wait_connected(MQTT_CONNECT_WAIT) => if !connected {
            tracing::warn!("MQTT broker not reachable yet; continuing degraded, results are dropped until it is");
        },
    }
}

/// Reads what a previous run left retained for this camera's Home Assistant
/// device, so that the next publication cleans up what no longer exists.
async fn adopt_discovered(
    results: Arc<CameraResults>,
    settings: EmitterSettings,
    filter: String,
    cancel: CancellationToken,
) {
    let quiet = Duration::from_millis(500);
    let read = retained_topics(&settings, &filter, quiet, MQTT_CONNECT_WAIT);
    tokio::select! {
        _ = cancel.cancelled() => {}
        found = read => results.adopt_discovered(found),
    }
}

//! The orchestrator: builds the components in start-up order (docs/design.md), runs
//! the frame consumer and the stats logger, and tears everything down in order.
//!
//! Start-up: health HTTP and the embedded broker if configured (so that liveness
//! answers and subscribers can connect during warm-up) -> stream -> warm-up -> MQTT
//! -> control plane -> workers -> tasks (frame consumer, result collector, presence,
//! stats logger; the watchdog lives in each worker supervisor).
//! Shutdown: workers -> stream -> control plane -> tasks -> offline presence and
//! MQTT disconnect -> health HTTP, all within `shutdown_timeout_s`; whatever misses
//! the deadline is named in the report.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use crate::attention::{RateGate, RoiAttention};
use crate::config::{BrokerAddr, Config, SourceKind};
use crate::control::ControlPlane;
use crate::framebus::{FrameBus, Job};
use crate::health::Alerts;
use crate::health::metrics::Metrics;
use crate::mqtt::control::ControlHandler;
use crate::mqtt::emitter::{Emitter, EmitterSettings};
use crate::mqtt::presence::{self, Presence};
use crate::stream::{CapturedFrame, Frame, FrameReceiver, RgbConverter, Stream, warmup};
use crate::worker::{ModelChoice, Supervisor, WorkerHandle, WorkerSpec};
use crate::{collector, health, mqtt};

/// How long start-up waits for the first MQTT connection before going on degraded.
const MQTT_CONNECT_WAIT: Duration = Duration::from_secs(5);
/// Capacity of the worker -> collector channel.
const RESULT_QUEUE: usize = 64;
/// Capacity of the emitter -> control handler channel.
const CONTROL_QUEUE: usize = 64;
/// Capacity of the alert channel (alerts are rare; a flood is cut here).
const ALERT_QUEUE: usize = 16;

/// What a finished run reports.
#[derive(Debug, Default)]
pub struct ShutdownReport {
    /// Components that did not stop before the deadline.
    pub late: Vec<&'static str>,
    pub took: Duration,
}

/// Runs the daemon until `shutdown` fires (a signal, or the `shutdown` command),
/// then shuts down in order.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<ShutdownReport> {
    let metrics = Arc::new(Metrics::default());
    let identity = presence::Identity::new(&config.instance_id, &config.room_id);
    metrics.stall_timeout_s.set(config.stream.stall_timeout_s);

    let health_cancel = CancellationToken::new();
    let listener = health::http::bind(config.health.listen).await?;
    let health_addr = listener.local_addr().context("health listener address")?;
    tracing::info!(addr = %health_addr, "health HTTP listening");
    let health_task = tokio::spawn(health::http::serve(
        listener,
        metrics.clone(),
        health_cancel.clone(),
    ));

    // The embedded broker is infrastructure like the HTTP server: up first, so
    // that subscribers can connect while the stream warms up.
    let broker = config.broker().context("mqtt.broker")?;
    if broker == BrokerAddr::Embedded {
        mqtt::broker::start_or_join(config.mqtt.embedded_listen).await?;
    }
    let tls = if config.tls_enabled() {
        Some(mqtt::tls::client_config(config.mqtt.tls.ca_file.as_deref()).context("mqtt.tls")?)
    } else {
        None
    };

    // Alerts (a camera given up, a worker whose restarts stopped) go out on the
    // health topic through the control handler.
    let (alerts_tx, alerts_rx) = mpsc::channel(ALERT_QUEUE);
    let alerts = Alerts(alerts_tx);

    // 1. Stream.
    let stream_cancel = CancellationToken::new();
    let (stream, mut frames) = Stream::start(
        &config,
        metrics.clone(),
        Some(alerts.clone()),
        stream_cancel,
    )
    .context("starting the stream")?;

    // 2. Warm-up.
    let detector = &config.models.person_detector;
    let warm = warmup::measure(
        &mut frames,
        Duration::from_secs_f64(config.stream.warmup_duration_s),
        &metrics,
        &shutdown,
    )
    .await;
    let rate_hz = warmup::effective_rate(detector.max_inference_rate_hz, warm.as_ref());
    match &warm {
        Some(w) => tracing::info!(
            fps_mean = format_args!("{:.2}", w.fps_mean),
            fps_std = format_args!("{:.2}", w.fps_std),
            frames = w.frames,
            configured_hz = detector.max_inference_rate_hz,
            effective_hz = format_args!("{rate_hz:.2}"),
            "warm-up done"
        ),
        None if !shutdown.is_cancelled() && config.stream.warmup_duration_s > 0.0 => {
            tracing::warn!(
                effective_hz = rate_hz,
                "no frames measured during warm-up; using the configured rate"
            )
        }
        None => {}
    }
    metrics.inference_rate_hz.set(rate_hz);
    let (rate_tx, rate_rx) = watch::channel(rate_hz);

    // 3. MQTT.
    let (host, port) = match broker {
        BrokerAddr::Embedded => {
            let a = config.mqtt.embedded_listen;
            (a.ip().to_string(), a.port())
        }
        BrokerAddr::External { host, port, .. } => (host, port),
    };
    let (control_tx, control_rx) = mpsc::channel(CONTROL_QUEUE);
    let emitter = Emitter::start(
        &EmitterSettings {
            client_id: config.client_id(),
            host,
            port,
            keep_alive: Duration::from_secs(config.mqtt.keep_alive_s),
            max_pending: config.mqtt.max_pending_publishes,
            credentials: config
                .mqtt
                .username
                .clone()
                .map(|u| (u, config.mqtt.password.clone().unwrap_or_default())),
            tls,
            last_will: Some((
                config.status_topic(),
                presence::offline(&identity, "connection_lost"),
            )),
            control_topic: Some(config.control_topic()),
            presence: Some((config.status_topic(), identity.session.clone())),
            busy: Some(mqtt::emitter::BusyReplies {
                topic: config.health_topic(),
                instance_id: config.instance_id.clone(),
                max_command_bytes: config.mqtt.max_command_bytes,
            }),
        },
        metrics.clone(),
        Some(control_tx),
        CancellationToken::new(),
    );
    wait_for(&shutdown, MQTT_CONNECT_WAIT, || {
        metrics.mqtt_connected.get()
    })
    .await;
    if !metrics.mqtt_connected.get() && !shutdown.is_cancelled() {
        tracing::warn!(
            "MQTT broker not reachable yet; continuing degraded, results are dropped until it is"
        );
    }

    // 4. Control plane (its handler starts with the other tasks, once the
    //    workers it controls exist).
    let roi = Arc::new(Mutex::new(RoiAttention::new(
        config.stream.width,
        config.stream.height,
        &config.rois,
    )));
    let wcfg = &config.workers.person_detector;
    let model = ModelChoice {
        name: detector.size.clone(),
        entry: detector
            .resolved(&detector.size)
            .context("models.person_detector.size names no catalog entry")?,
    };
    let worker_ids: Vec<String> = (0..wcfg.count)
        .map(|i| format!("person_detector-{i}"))
        .collect();
    let mut requests = Vec::new();
    let mut handles = Vec::new();
    for id in &worker_ids {
        let (tx, rx) = mpsc::channel(4);
        handles.push(WorkerHandle::new(id.clone(), tx));
        requests.push(rx);
    }
    let plane = Arc::new(ControlPlane::new(
        config.clone(),
        metrics.clone(),
        rate_tx,
        warm.map(|w| w.fps_mean),
        roi.clone(),
        handles,
    ));

    // 5. Workers.
    let bus = FrameBus::new();
    let (results_tx, results_rx) = mpsc::channel(RESULT_QUEUE);
    let workers_cancel = CancellationToken::new();
    let workers = TaskTracker::new();
    let mut base_args: Vec<String> = wcfg.command[1..].to_vec();
    base_args.extend(["--confidence".into(), detector.confidence.to_string()]);
    let group = metrics.add_group("person_detector");
    for (id, requests) in worker_ids.into_iter().zip(requests) {
        let wm = metrics.add_worker(&id);
        let sup = Supervisor {
            spec: WorkerSpec {
                id: id.clone(),
                program: wcfg.command[0].clone(),
                args: base_args.clone(),
                env: crate::worker::worker_env(|k| std::env::var(k).ok(), &wcfg.env),
                startup_timeout: Duration::from_secs_f64(wcfg.startup_timeout_s),
                hang_timeout_floor: Duration::from_secs_f64(wcfg.hang_timeout_floor_s),
                max_message_bytes: wcfg.max_message_bytes,
                shm_frame_bytes: wcfg
                    .shared_memory
                    .then(|| config.stream.width as usize * config.stream.height as usize * 3),
                // Only a paced file keeps frames fresh while they queue (see WorkerSpec).
                prefetch: usize::from(
                    config.camera.source == SourceKind::File && !config.camera.realtime,
                ),
                instance_id: config.instance_id.clone(),
                room_id: config.room_id.clone(),
                max_restarts: wcfg.max_restarts,
                restart_window: Duration::from_secs_f64(wcfg.restart_window_s),
                restart_backoff_max: Duration::from_secs_f64(wcfg.restart_backoff_max_s),
            },
            model: model.clone(),
            inbox: bus.register(&group, wm.clone()),
            results: results_tx.clone(),
            metrics: wm,
            rate_hz: rate_rx.clone(),
            requests,
            alerts: Some(alerts.clone()),
        };
        workers.spawn(
            sup.run(workers_cancel.clone())
                .instrument(tracing::info_span!("worker", id = %id)),
        );
    }
    drop(results_tx);
    workers.close();

    // 6. Tasks.
    let control_cancel = CancellationToken::new();
    let control_task = tokio::spawn(
        ControlHandler {
            plane,
            emitter: emitter.handle.clone(),
            metrics: metrics.clone(),
            instance_id: config.instance_id.clone(),
            health_topic: config.health_topic(),
            max_command_bytes: config.mqtt.max_command_bytes,
            shutdown: shutdown.clone(),
            reply_log: std::sync::Mutex::new(crate::logging::RateLimit::new(Duration::from_secs(
                10,
            ))),
        }
        .run(control_rx, alerts_rx, control_cancel.clone()),
    );
    let tasks_cancel = CancellationToken::new();
    let tasks = TaskTracker::new();
    tasks.spawn(
        FrameConsumer {
            gate: RateGate::new(rate_hz),
            roi: roi.clone(),
            bus: bus.clone(),
            metrics: metrics.clone(),
            width: config.stream.width,
            height: config.stream.height,
            instance_id: config.instance_id.clone(),
            rate_hz: rate_rx.clone(),
            rgb: RgbConverter::default(),
        }
        .run(frames, tasks_cancel.clone())
        .instrument(tracing::info_span!("frame_consumer")),
    );
    tasks.spawn(
        collector::Collector {
            instance_id: config.instance_id.clone(),
            room_id: config.room_id.clone(),
            metrics: metrics.clone(),
            emitter: emitter.handle.clone(),
            roi,
        }
        .run(results_rx, tasks_cancel.clone()),
    );
    tasks.spawn(
        Presence {
            topic: config.status_topic(),
            identity: identity.clone(),
            stall_timeout: Duration::from_secs_f64(config.stream.stall_timeout_s),
            metrics: metrics.clone(),
            emitter: emitter.handle.clone(),
        }
        .run(tasks_cancel.clone()),
    );
    tasks.spawn(stats_logger(
        metrics.clone(),
        Duration::from_secs_f64(config.framebus.stats_interval_s),
        tasks_cancel.clone(),
    ));
    tasks.close();

    metrics.running.set(true);
    tracing::info!(instance_id = %config.instance_id, "orion running");
    shutdown.cancelled().await;

    // Ordered shutdown.
    metrics.running.set(false);
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(config.shutdown_timeout_s);
    let left = || deadline.saturating_duration_since(Instant::now());
    let mut report = ShutdownReport::default();
    tracing::info!(timeout_s = config.shutdown_timeout_s, "shutting down");

    workers_cancel.cancel();
    if tokio::time::timeout(left(), workers.wait()).await.is_err() {
        report.late.push("workers");
    }
    if !stream.stop(left()).await {
        report.late.push("stream");
    }
    control_cancel.cancel();
    if tokio::time::timeout(left(), control_task).await.is_err() {
        report.late.push("control plane");
    }
    tasks_cancel.cancel();
    if tokio::time::timeout(left(), tasks.wait()).await.is_err() {
        report.late.push("tasks");
    }
    // A clean exit is not a lost connection: say offline ourselves (the broker
    // only publishes the last will when the connection dies).
    emitter.handle.publish_retained(
        config.status_topic(),
        presence::offline(&identity, "shutdown"),
    );
    if !emitter.disconnect(left().min(Duration::from_secs(2))).await {
        tracing::debug!("MQTT disconnect was not acknowledged");
    }
    health_cancel.cancel();
    if tokio::time::timeout(left(), health_task).await.is_err() {
        report.late.push("health http");
    }
    report.took = started.elapsed();
    Ok(report)
}

/// Waits until `ready()` or `timeout` or `cancel`, checking every 50 ms.
async fn wait_for(cancel: &CancellationToken, timeout: Duration, ready: impl Fn() -> bool) {
    let until = Instant::now() + timeout;
    while !ready() && Instant::now() < until && !cancel.is_cancelled() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads the newest-frame slot, gates by rate, maps accepted frames, picks the crop,
/// and publishes on the frame bus. Never waits for a worker.
struct FrameConsumer {
    gate: RateGate,
    roi: Arc<Mutex<RoiAttention>>,
    bus: FrameBus,
    metrics: Arc<Metrics>,
    width: u32,
    height: u32,
    instance_id: String,
    rate_hz: watch::Receiver<f64>,
    /// Converts the frames that are inferred (and only those) to RGB.
    rgb: RgbConverter,
}

impl FrameConsumer {
    async fn run(mut self, mut frames: FrameReceiver, cancel: CancellationToken) {
        let mut last_seq = frames.last_seq();
        loop {
            let captured = tokio::select! {
                _ = cancel.cancelled() => break,
                f = frames.next() => match f {
                    Some(f) => f,
                    None => break,
                },
            };
            if self.rate_hz.has_changed().unwrap_or(false) {
                let hz = *self.rate_hz.borrow_and_update();
                self.gate.set_rate(hz);
            }
            // Frames replaced in the slot before this task saw them were skipped
            // by the same rule as gated ones: not due for inference.
            let skipped = captured.seq.saturating_sub(last_seq + 1);
            last_seq = captured.seq;
            let published = self.consider(captured, skipped);
            if frames.paced() && published {
                // A paced file goes exactly as fast as the workers take frames.
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = self.bus.wait_taken() => {}
                }
            }
            frames.want_next();
        }
        tracing::info!("frame consumer stopped");
    }

    /// Gate, map, crop and publish one frame; true if it went to the bus.
    fn consider(&mut self, captured: CapturedFrame, skipped: u64) -> bool {
        if self.metrics.paused.get() {
            self.metrics.frames_paused.add(skipped + 1);
            return false;
        }
        if !self.gate.accept(captured.captured_instant) {
            self.metrics.frames_gated.add(skipped + 1);
            return false;
        }
        self.metrics.frames_gated.add(skipped);
        let frame = match Frame::convert(captured, self.width, self.height, &mut self.rgb) {
            Ok(f) => f,
            Err(e) => {
                self.metrics.frames_invalid.inc();
                tracing::warn!(error = %e, "frame discarded");
                return false;
            }
        };
        let roi = self.roi.lock().expect("roi attention poisoned").process();
        let job = Job {
            trace_id: format!("{}-{}", self.instance_id, frame.seq),
            roi,
            frame,
        };
        self.bus.publish(Arc::new(job));
        true
    }
}

/// Logs stream, frame bus and MQTT counters every `interval`.
async fn stats_logger(metrics: Arc<Metrics>, interval: Duration, cancel: CancellationToken) {
    let mut ticker = tokio::time::interval(interval);
    ticker.tick().await;
    let mut last_frames = metrics.frames_captured.get();
    let mut last_at = Instant::now();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = ticker.tick() => {}
        }
        let frames = metrics.frames_captured.get();
        let fps = (frames - last_frames) as f64 / last_at.elapsed().as_secs_f64();
        (last_frames, last_at) = (frames, Instant::now());
        tracing::info!(
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
                group = %g.name,
                sent = g.frames_sent.get(),
                dropped = g.frames_dropped.get(),
                drop_rate = format_args!("{:.3}", g.drop_rate()),
                "frame bus stats"
            );
        }
        for w in metrics.workers() {
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

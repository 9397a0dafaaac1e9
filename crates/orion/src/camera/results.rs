//! One camera's results: every worker's results for this camera's frames (of
//! every pool, routed here by `worker::ResultRoutes`), enriched into the
//! published inference message (person detections get their `track_id` from
//! the camera's tracker), handed to the camera's emitter with the events and
//! occupancy its signals produce (`tracking::room`). A tick keeps time
//! moving without results (visits end, rooms empty, on time).
//!
//! Owns the shape of the inference message (docs/results.md) and the camera's
//! Home Assistant discovery. It stops on cancel. It never waits for the
//! broker: the emitter's publish is non-blocking.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use orion_protocol::{BBox, Detection, ModelInfo, NormRect, RoiProcessing, Timing};
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::attention::RoiAttention;
use crate::control::RoomTable;
use crate::metrics::Metrics;
use crate::mqtt::emitter::EmitterHandle;
use crate::status::MqttStatus;
use crate::status::{CameraWatch, WorkerView};
use crate::tracking::room::{Output, RoomTracker, Sight, Stamp, Watching};
use crate::tracking::snapshot::Snapshot;
use crate::tracking::zones::{LookAreas, Zone};
use crate::worker::WorkerOutput;

/// How often time is advanced for the signals of cameras without results.
const TICK: Duration = Duration::from_secs(1);
/// The present people are saved at least this often while someone is there
/// (their places and unseen times move on).
const SNAPSHOT_EVERY: Duration = Duration::from_secs(30);

/// Published on `care/inferences/{instance_id}/{inference_type}`.
#[derive(Debug, Serialize)]
pub struct InferenceMessage<'a> {
    pub instance_id: &'a str,
    pub room_id: &'a str,
    pub inference_type: &'a str,
    /// When the message was built, RFC 3339 UTC.
    pub timestamp: String,
    /// When the frame was captured, RFC 3339 UTC.
    pub captured_at: String,
    pub frame_seq: u64,
    pub trace_id: &'a str,
    pub worker_id: &'a str,
    pub data: InferenceData<'a>,
    pub timing: &'a Timing,
    pub model: &'a ModelInfo,
    pub roi: &'a RoiProcessing,
    pub suggested_roi: Option<&'a NormRect>,
    /// Capture to hand-off to MQTT, milliseconds.
    pub e2e_latency_ms: f64,
    /// Capture until a worker started on the frame (waiting for a free worker).
    pub queue_ms: f64,
}

/// What a result found: a detector's boxes, or a worker's own data object.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum InferenceData<'a> {
    Detections {
        detections: Vec<TrackedDetection<'a>>,
        count: u32,
    },
    Custom(&'a serde_json::Map<String, serde_json::Value>),
}

/// Whether a detection touches an edge of the crop that is not an edge of the
/// frame (within 1 % of the frame): the person goes on beyond the crop.
fn cut_by_crop(detections: &[Detection], roi: &RoiProcessing, width: u32, height: u32) -> bool {
    let c = &roi.crop;
    let (fw, fh) = (f64::from(width), f64::from(height));
    let (x0, y0) = (f64::from(c.x), f64::from(c.y));
    let (x1, y1) = (x0 + f64::from(c.width), y0 + f64::from(c.height));
    let (ex, ey) = (0.01 * fw, 0.01 * fh);
    detections.iter().any(|d| {
        let b = &d.bbox;
        (x0 > 0.0 && b.x <= x0 + ex)
            || (y0 > 0.0 && b.y <= y0 + ey)
            || (x1 < fw && b.x + b.width >= x1 - ex)
            || (y1 < fh && b.y + b.height >= y1 - ey)
    })
}

/// What a result found, as published: a worker's own data, or its
/// detections; tracked ones (with `signals`) are the people who count (a weak
/// box only when it kept someone's track), with their track ids.
fn inference_data<'a>(
    r: &'a orion_protocol::InferenceResult,
    signals: Option<&Output>,
) -> InferenceData<'a> {
    if let Some(custom) = &r.data {
        return InferenceData::Custom(custom);
    }
    let detections: Vec<TrackedDetection> = r
        .detections
        .iter()
        .enumerate()
        .filter(|(i, _)| signals.is_none_or(|s| s.shown.get(*i).copied().unwrap_or(false)))
        .map(|(i, detection)| TrackedDetection {
            detection,
            track_id: signals
                .and_then(|s| s.track_ids.get(i).copied())
                .filter(|id| *id != 0),
            posture: signals
                .and_then(|s| s.postures.get(i).copied().flatten())
                .map(|p| p.as_str()),
        })
        .collect();
    // The people who count: those in ignore zones are listed, not counted.
    let count = match signals {
        Some(s) => s.counted.iter().filter(|c| **c).count() as u32,
        None => r.person_count,
    };
    InferenceData::Detections { detections, count }
}

/// A detection as published: the worker's fields and its track.
#[derive(Debug, Serialize)]
pub struct TrackedDetection<'a> {
    #[serde(flatten)]
    pub detection: &'a Detection,
    /// The person's track on this camera (unique for the daemon's lifetime);
    /// absent for types that are not tracked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub track_id: Option<u64>,
    /// The person's posture (`standing`, `sitting`, `lying`), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub posture: Option<&'static str>,
}

/// Where one camera's results go.
pub struct CameraResults {
    pub instance_id: String,
    pub room_id: String,
    pub metrics: Arc<Metrics>,
    pub emitter: EmitterHandle,
    /// The camera's MQTT connection (discovery goes out once per connection).
    pub mqtt: watch::Receiver<MqttStatus>,
    /// Auto-focus feedback (from `person_detector` results) goes here.
    pub roi: Arc<Mutex<RoiAttention>>,
    /// Tracks, events and occupancy from `person_detector` results.
    pub room: Mutex<RoomTracker>,
    /// Events go here before they are published (the camera's event
    /// publisher delivers them).
    pub outbox: Arc<crate::outbox::Outbox>,
    /// Events beyond it are not stored (a runaway model).
    pub event_rate: Mutex<crate::outbox::rate::EventRate>,
    /// The occupancy and the alert state last decided (JSON) by topic,
    /// `None` until decided: the camera's event publisher publishes them
    /// (retained) after the events before them, and again after every
    /// reconnection.
    pub states: tokio::sync::watch::Sender<crate::outbox::publisher::States>,
    /// The live view of this camera (when the UI is on): result messages go
    /// there too.
    pub live: Option<Arc<crate::live::LiveFeed>>,
    /// Person detectors run: the camera has tracks, events and occupancy
    /// (without them it says nothing rather than "empty").
    pub tracking: bool,
    /// The camera's states (paused, stream) and its person detectors'
    /// (whether the camera watches the room).
    pub watch: CameraWatch,
    pub detectors: Vec<WorkerView>,
    /// Where the workers look besides the crop (from the zones), sent
    /// along by the frame consumer.
    pub looks: watch::Sender<Arc<LookAreas>>,
    /// The frame's size (for the look areas).
    pub frame_size: (u32, u32),
    /// The present people, for the camera's presence keeper to save.
    pub snapshot: watch::Sender<Option<Snapshot>>,
    /// Home Assistant discovery prefix, when enabled.
    pub discovery: Option<String>,
    /// Falls are watched (`falls.enabled`).
    pub falls: bool,
    /// What discovery published, to send each message once.
    pub discovered: Mutex<Discovered>,
}

/// The Home Assistant discovery messages a camera published.
#[derive(Debug, Default)]
pub struct Discovered {
    /// Their topics (retained on the broker).
    pub topics: Vec<String>,
    /// The MQTT connection they went out on (`MqttStatus::connection`; 0:
    /// nothing published yet).
    pub connection: u64,
    /// Their payloads, by position in `topics`.
    pub payloads: Vec<Vec<u8>>,
}

impl CameraResults {
    fn room(&self) -> std::sync::MutexGuard<'_, RoomTracker> {
        self.room.lock().expect("room tracker poisoned")
    }

    /// Home Assistant discovery: published once per connection and whenever the
    /// zones change; the entities of zones that went away are removed (empty
    /// retained messages).
    fn publish_discovery(&self) {
        let Some(device) = self.device() else {
            return;
        };
        let connection = self.mqtt.borrow().connection;
        let configs = device.configs(&self.zones());
        let mut done = self.discovered.lock().expect("discovery poisoned");
        let topics: Vec<String> = configs.iter().map(|(t, _)| t.clone()).collect();
        let payloads: Vec<Vec<u8>> = configs.iter().map(|(_, p)| p.clone()).collect();
        if done.connection == connection && done.topics == topics && done.payloads == payloads {
            return;
        }
        for gone in done.topics.iter().filter(|t| !topics.contains(t)) {
            if !self.emitter.publish_retained(gone.clone(), Vec::new()) {
                return;
            }
        }
        // Each message once: all of them on a new connection (a broker without
        // persistence forgets retained ones), else only the new or changed ones
        // (a zone renamed `bed-1` -> `bed_1` keeps its topic, not its template).
        let new_connection = done.connection != connection;
        for (topic, payload) in configs {
            let sent = done
                .topics
                .iter()
                .position(|t| *t == topic)
                .and_then(|i| done.payloads.get(i))
                .is_some_and(|p| *p == payload);
            if (new_connection || !sent) && !self.emitter.publish_retained(topic, payload) {
                return;
            }
        }
        *done = Discovered {
            topics,
            connection,
            payloads,
        };
    }

    /// Takes over the discovery messages a previous run left on the broker: the
    /// next publication removes those of entities that no longer exist (a zone
    /// removed from the config while the daemon was stopped). What this run
    /// published already is not sent again.
    pub fn adopt_discovered(&self, topics: Vec<String>) {
        let mut done = self.discovered.lock().expect("discovery poisoned");
        if done.connection == 0 {
            // Nothing published yet: the first publication sends them all.
            done.topics = topics;
            done.payloads.clear();
            return;
        }
        for t in topics {
            if !done.topics.contains(&t) {
                done.topics.push(t);
            }
        }
    }

    /// The discovery device of this camera, when discovery is enabled.
    pub fn device(&self) -> Option<crate::homeassistant::Device<'_>> {
        self.discovery
            .as_deref()
            .map(|prefix| crate::homeassistant::Device {
                prefix,
                instance_id: &self.instance_id,
                room_id: &self.room_id,
                falls: self.falls,
            })
    }

    /// Removes what this camera left retained on the broker besides its
    /// presence: its occupancy and its Home Assistant entities (the camera goes
    /// away for good).
    pub fn remove_retained(&self) {
        for topic in [
            crate::topics::occupancy(&self.instance_id),
            crate::topics::alerts(&self.instance_id),
        ] {
            self.emitter.publish_retained(topic, Vec::new());
        }
        let topics =
            std::mem::take(&mut self.discovered.lock().expect("discovery poisoned").topics);
        for topic in topics {
            self.emitter.publish_retained(topic, Vec::new());
        }
    }

    /// Stores the events (serialized as `payloads`) in the outbox, within
    /// the event rate; says when a flood begins or ends.
    fn store_events(&self, out: &Output, payloads: Vec<Option<Vec<u8>>>) {
        let now = Instant::now();
        let mut rate = self.event_rate.lock().expect("event rate poisoned");
        let flood_before = rate.flooding(now);
        for (event, payload) in out.events.iter().zip(payloads) {
            let zone = match &event.detail {
                crate::tracking::room::Detail::Zone { zone, .. } => Some(zone.as_str()),
                _ => None,
            };
            if !rate.admit(now, event.kind, event.track_id, zone) {
                self.metrics.events_suppressed.inc();
                continue;
            }
            let Some(payload) = payload else {
                continue;
            };
            self.metrics.count_event(event.kind);
            self.outbox.append(
                &self.instance_id,
                crate::topics::events(&self.instance_id),
                payload,
            );
            if matches!(event.kind, "fall_detected" | "person_down") {
                tracing::warn!(camera = %self.instance_id, event = event.kind, track_id = ?event.track_id, "alert: someone is down");
            } else {
                tracing::info!(camera = %self.instance_id, event = event.kind, track_id = ?event.track_id, "event");
            }
        }
        let flood = rate.flooding(now);
        drop(rate);
        if flood != flood_before {
            if flood_before == 0 {
                tracing::warn!(camera = %self.instance_id, "event flood: more events than outbox.max_events_per_minute; the excess is not stored (counted in orion_events_suppressed_total)");
            } else if flood == 0 {
                tracing::info!(camera = %self.instance_id, "event flood over");
            }
            self.outbox.report_flood(&self.instance_id, flood);
        }
    }

    /// Hands what the signals produced to the camera's event publisher: events
    /// into the outbox (published QoS 1, not retained, never lost), then the
    /// occupancy and the alert state (retained, published after them).
    fn publish_signals(&self, out: &Output) {
        // Each serialized once: for the outbox, the retained occupancy and the
        // live view alike.
        let events: Vec<Option<Vec<u8>>> = out
            .events
            .iter()
            .map(|e| {
                serde_json::to_vec(e)
                    .map_err(|err| tracing::error!(error = %err, "cannot serialize event"))
                    .ok()
            })
            .collect();
        let occupancy = out
            .occupancy
            .as_ref()
            .and_then(|o| serde_json::to_vec(o).ok());
        let alerts = out.alerts.as_ref().and_then(|a| serde_json::to_vec(a).ok());
        if let Some(live) = &self.live {
            let shown: Vec<Vec<u8>> = events.iter().flatten().cloned().collect();
            live.offer_room(occupancy.as_deref(), &shown);
        }
        self.store_events(out, events);
        match out.night {
            Some(true) => {
                tracing::info!(camera = %self.instance_id, "night: the frames turned grayscale; the night thresholds apply")
            }
            Some(false) => {
                tracing::info!(camera = %self.instance_id, "day: the frames have colour again")
            }
            None => {}
        }
        for (topic, payload) in [
            (crate::topics::occupancy(&self.instance_id), occupancy),
            (crate::topics::alerts(&self.instance_id), alerts),
        ] {
            let Some(payload) = payload else {
                continue;
            };
            self.states.send_if_modified(|states| {
                let last = states.entry(topic).or_default();
                let changed = last.as_ref() != Some(&payload);
                *last = Some(payload);
                changed
            });
        }
        self.publish_discovery();
        self.metrics
            .tracks_active
            .set(self.room().active_tracks() as f64);
    }
}

impl RoomTable for CameraResults {
    fn zones(&self) -> Vec<Zone> {
        self.room().zones().to_vec()
    }

    fn room_status(&self) -> serde_json::Value {
        let room = self.room();
        serde_json::json!({
            "night": room.night(),
            "ignore_candidates": room.ignore_candidates(Instant::now()),
            "alerts": room.alerts().map_or(&[][..], |a| &a.alerts[..]),
        })
    }

    fn acknowledge(&self, alert_id: Option<&str>) -> Result<serde_json::Value, String> {
        let out = self.room().acknowledge(alert_id, Stamp::now())?;
        let acked: Vec<&str> = out
            .events
            .iter()
            .filter_map(|e| match &e.detail {
                crate::tracking::room::Detail::AlertEnded { alert_id, .. } => {
                    Some(alert_id.as_str())
                }
                _ => None,
            })
            .collect();
        let reply = serde_json::json!({ "acknowledged": acked });
        self.publish_signals(&out);
        Ok(reply)
    }

    /// Publishes what the change does: `zone_left` of people in a zone that
    /// went away, occupancy; the workers look at the new rest and exit
    /// zones.
    fn set_zones(&self, zones: Vec<Zone>) {
        let (width, height) = self.frame_size;
        self.looks
            .send_replace(Arc::new(LookAreas::of(&zones, width, height)));
        let out = self.room().set_zones(zones, Stamp::now());
        self.publish_signals(&out);
    }
}

impl CameraResults {
    /// Takes back the present people of the last run.
    pub fn restore(&self, snapshot: &Snapshot) {
        let out = self.room().restore(snapshot, Stamp::now());
        let taken = self.room().active_tracks();
        tracing::info!(
            people = taken,
            closed = out
                .events
                .iter()
                .filter(|e| e.kind == "person_left")
                .count(),
            "present people of the last run taken back"
        );
        self.publish_signals(&out);
    }

    /// Whether the camera watches its room now: not paused, its stream up,
    /// one of its person detectors up.
    fn watching(&self) -> Watching {
        if self.watch.paused() {
            Watching::Paused
        } else if !self.watch.streaming() || !self.detectors.iter().any(|w| w.status.borrow().up) {
            Watching::Unknown
        } else {
            Watching::Yes
        }
    }
}

impl CameraResults {
    /// Handles the camera's results until `cancel` (or until no worker can
    /// send any more); a tick keeps time moving without results.
    pub async fn run(
        self: Arc<Self>,
        mut results: mpsc::Receiver<WorkerOutput>,
        cancel: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(TICK);
        let mut kept_at = Instant::now();
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let output = tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tick.tick() => {
                    if self.tracking {
                        let watching = self.watching();
                        let out = self.room().on_tick(Stamp::now(), watching);
                        self.publish_signals(&out);
                        self.keep_snapshot(&mut kept_at);
                    }
                    continue;
                }
                o = results.recv() => match o {
                    Some(o) => o,
                    None => break,
                },
            };
            self.handle(&output);
        }
        if self.tracking {
            self.keep_snapshot(&mut kept_at);
        }
        tracing::info!("result handler stopped");
    }

    /// Hands the present people to the presence keeper when who is present
    /// (or where, or whether seen) changed, or every [`SNAPSHOT_EVERY`]
    /// while someone is.
    fn keep_snapshot(&self, kept_at: &mut Instant) {
        let snapshot = self.room().snapshot(Stamp::now());
        let due = !snapshot.people.is_empty() && kept_at.elapsed() >= SNAPSHOT_EVERY;
        let sent = self.snapshot.send_if_modified(|last| {
            let same = last.as_ref().is_some_and(|l| l.same_people(&snapshot));
            if same && !due {
                return false;
            }
            *last = Some(snapshot);
            true
        });
        if sent {
            *kept_at = Instant::now();
        }
    }

    /// The room's view of a person detector's result: tracks, events,
    /// occupancy.
    fn track(&self, o: &WorkerOutput) -> Output {
        let (r, frame) = (&o.result, &o.job.frame);
        let detections: Vec<(BBox, f64)> = r
            .detections
            .iter()
            .map(|d| (d.bbox, d.confidence))
            .collect();
        let keypoints: Vec<Option<&[orion_protocol::Keypoint]>> = r
            .detections
            .iter()
            .map(|d| d.keypoints.as_deref())
            .collect();
        let c = &o.job.roi.crop;
        let sight = Sight {
            detections: &detections,
            keypoints: &keypoints,
            model: &r.model.name,
            crop: BBox {
                x: f64::from(c.x),
                y: f64::from(c.y),
                width: f64::from(c.width),
                height: f64::from(c.height),
            },
            grayscale: o.job.grayscale,
        };
        let captured = Stamp {
            mono: frame.captured_instant,
            wall: frame.captured_at,
        };
        let mut room = self.room();
        // Watching again (a resume) shows in this result's occupancy, not a
        // tick later.
        room.set_watching(self.watching(), Stamp::now());
        room.on_result(captured, sight, Stamp::now())
    }

    fn handle(&self, o: &WorkerOutput) {
        let frame = &o.job.frame;
        let now = Instant::now();
        let e2e = now.saturating_duration_since(frame.captured_instant);
        let r = &o.result;
        if &*o.pool == crate::config::PERSON_DETECTOR {
            let cut = cut_by_crop(&r.detections, &o.job.roi, frame.width, frame.height);
            self.roi
                .lock()
                .expect("roi attention poisoned")
                .auto_focus
                .observe_result(r.suggested_roi, cut);
        }
        let tracked = &*o.pool == crate::config::PERSON_DETECTOR && r.data.is_none();
        let signals = tracked.then(|| self.track(o));
        let data = inference_data(r, signals.as_ref());
        let msg = InferenceMessage {
            instance_id: &self.instance_id,
            room_id: &self.room_id,
            inference_type: &r.inference_type,
            timestamp: humantime::format_rfc3339_micros(SystemTime::now()).to_string(),
            captured_at: humantime::format_rfc3339_micros(frame.captured_at).to_string(),
            frame_seq: r.frame_seq,
            trace_id: &o.job.trace_id,
            worker_id: &o.worker_id,
            data,
            timing: &r.timing,
            model: &r.model,
            roi: &o.job.roi,
            suggested_roi: r.suggested_roi.as_ref(),
            e2e_latency_ms: e2e.as_secs_f64() * 1e3,
            queue_ms: o
                .started_at
                .saturating_duration_since(frame.captured_instant)
                .as_secs_f64()
                * 1e3,
        };
        let payload = match serde_json::to_vec(&msg) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "cannot serialize inference message");
                return;
            }
        };
        self.metrics.e2e_latency.observe(e2e);
        if let Some(live) = &self.live {
            live.offer_result(&payload);
        }
        let topic = crate::topics::inferences(&self.instance_id, &r.inference_type);
        self.emitter.publish(topic, payload);
        // Events after the result they come from.
        if let Some(out) = &signals {
            self.publish_signals(out);
        }
    }
}

//! Presence: the retained `care/status/{instance_id}` message, so that a fleet
//! dashboard sees a dead sensor (the broker publishes the last will) or a dead
//! camera at once.
//!
//! The presence task samples the health state a few times a second and publishes
//! when it changed or after every (re)connection to the broker. It only reads
//! metrics and never waits for the broker.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::emitter::EmitterHandle;
use crate::health::metrics::Metrics;

const SAMPLE: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PresenceMessage {
    pub instance_id: String,
    pub room_id: String,
    /// `online` or `offline`.
    pub state: &'static str,
    /// `starting`, `streaming`, `stalled`, `reconnecting`, `failed` (reconnecting
    /// given up), or `unknown` (offline).
    pub camera: &'static str,
    /// `starting`, `running`, `paused`, or `stopped`.
    pub inference: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    pub timestamp: String,
}

/// The camera state as the status topic reports it.
pub fn camera_state(m: &Metrics, stall_timeout: Duration) -> &'static str {
    if m.stream_failed.get() {
        "failed"
    } else if m.stream_stalled.get() {
        "stalled"
    } else if m.stream_up.get() {
        match m.stream_last_frame.age() {
            Some(age) if age > stall_timeout => "stalled",
            _ => "streaming",
        }
    } else if m.frames_captured.get() == 0 && m.stream_reconnects.get() == 0 {
        "starting"
    } else {
        "reconnecting"
    }
}

fn inference_state(m: &Metrics) -> &'static str {
    match (m.running.get(), m.paused.get()) {
        (false, _) => "starting",
        (true, true) => "paused",
        (true, false) => "running",
    }
}

/// Offline presence: the last will (reason `connection_lost`) and the message
/// published at a clean shutdown (reason `shutdown`).
pub fn offline(instance_id: &str, room_id: &str, reason: &'static str) -> Vec<u8> {
    let msg = PresenceMessage {
        instance_id: instance_id.into(),
        room_id: room_id.into(),
        state: "offline",
        camera: "unknown",
        inference: "stopped",
        reason: Some(reason),
        timestamp: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
    };
    serde_json::to_vec(&msg).unwrap_or_default()
}

pub struct Presence {
    pub topic: String,
    pub instance_id: String,
    pub room_id: String,
    pub stall_timeout: Duration,
    pub metrics: Arc<Metrics>,
    pub emitter: EmitterHandle,
}

impl Presence {
    /// Publishes online presence on every change until `cancel`.
    pub async fn run(self, cancel: CancellationToken) {
        let mut last: Option<(&str, &str, u64)> = None;
        let mut ticker = tokio::time::interval(SAMPLE);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = ticker.tick() => {}
            }
            if !self.metrics.mqtt_connected.get() {
                continue;
            }
            let camera = camera_state(&self.metrics, self.stall_timeout);
            let inference = inference_state(&self.metrics);
            let now = (camera, inference, self.metrics.mqtt_connections.get());
            if last == Some(now) {
                continue;
            }
            let msg = PresenceMessage {
                instance_id: self.instance_id.clone(),
                room_id: self.room_id.clone(),
                state: "online",
                camera,
                inference,
                reason: None,
                timestamp: humantime::format_rfc3339_millis(std::time::SystemTime::now())
                    .to_string(),
            };
            let Ok(payload) = serde_json::to_vec(&msg) else {
                continue;
            };
            if self.emitter.publish_retained(self.topic.clone(), payload) {
                tracing::info!(camera, inference, "presence published");
                last = Some(now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn camera_states() {
        let m = Metrics::default();
        let stall = Duration::from_secs(10);
        assert_eq!(camera_state(&m, stall), "starting");
        m.stream_up.set(true);
        m.stream_last_frame.touch();
        m.frames_captured.inc();
        assert_eq!(camera_state(&m, stall), "streaming");
        m.stream_up.set(false);
        assert_eq!(camera_state(&m, stall), "reconnecting");
        let v: serde_json::Value =
            serde_json::from_slice(&offline("cam", "room", "shutdown")).unwrap();
        assert_eq!(
            (v["state"].as_str(), v["reason"].as_str()),
            (Some("offline"), Some("shutdown"))
        );
    }
}

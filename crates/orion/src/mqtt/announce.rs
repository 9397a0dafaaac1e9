//! The presence task of one camera: publishes its retained online presence
//! (`care/status/{instance_id}`, the messages of [`super::presence`]) when the
//! camera's state, privacy mode or inference rate changes and after every
//! (re)connection to the broker.
//!
//! Owns nothing but its last publication; it only reads state, never waits
//! for the broker. It stops on its token, and ends early (publishing nothing
//! more) once the camera stops: when the camera was running and is no more
//! (the camera's stop says `offline` itself, and the states its parts pass
//! through on the way down, `reconnecting`, `starting`, are not news), or
//! when the rate's owner, the control plane, is gone.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::emitter::EmitterHandle;
use super::presence::{Identity, PresenceMessage, rfc3339};
use crate::status::CameraWatch;

/// A refused publish is tried again after this.
const RETRY: Duration = Duration::from_secs(1);

pub struct Presence {
    pub topic: String,
    pub identity: Identity,
    /// The camera's state: presence wakes on its changes.
    pub status: CameraWatch,
    /// The effective inference rate (the control plane sets it).
    pub rate_hz: tokio::sync::watch::Receiver<f64>,
    pub emitter: EmitterHandle,
}

/// What a presence message says that can change while the camera runs.
#[derive(Clone, Copy, PartialEq)]
struct Said {
    camera: &'static str,
    inference: &'static str,
    privacy: bool,
    rate_hz: f64,
    /// The MQTT connection it was said on.
    connection: u64,
}

impl Presence {
    /// Publishes online presence on every change until `cancel`, woken by the
    /// camera's state; a publish the emitter refused is tried again after
    /// `RETRY`.
    pub async fn run(mut self, cancel: CancellationToken) {
        let mut last: Option<Said> = None;
        let mut since: Option<((&str, &str), String)> = None;
        let (mut first, mut refused, mut was_running) = (true, false, false);
        loop {
            if !std::mem::take(&mut first) {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = self.status.changed() => {}
                    r = self.rate_hz.changed() => if r.is_err() { break },
                    _ = tokio::time::sleep(RETRY), if refused => {}
                }
            }
            refused = false;
            if self.status.running() {
                was_running = true;
            } else if was_running {
                break;
            }
            let camera = self.status.camera_state();
            let inference = self.status.inference_state();
            if since
                .as_ref()
                .is_none_or(|(s, _)| *s != (camera, inference))
            {
                since = Some(((camera, inference), rfc3339(std::time::SystemTime::now())));
            }
            if !self.status.connected() {
                continue;
            }
            let now = Said {
                camera,
                inference,
                privacy: self.status.privacy(),
                rate_hz: *self.rate_hz.borrow(),
                connection: self.status.mqtt.borrow().connection,
            };
            if last == Some(now) {
                continue;
            }
            let mut msg = PresenceMessage::new(&self.identity, "online", camera, inference);
            msg.since = since.as_ref().map(|(_, t)| t.clone());
            msg.privacy = now.privacy;
            msg.rate_hz = Some(now.rate_hz);
            let Ok(payload) = serde_json::to_vec(&msg) else {
                continue;
            };
            if self.emitter.publish_retained(self.topic.clone(), payload) {
                tracing::info!(
                    camera,
                    inference,
                    privacy = now.privacy,
                    rate_hz = now.rate_hz,
                    "presence published"
                );
                last = Some(now);
            } else {
                refused = true;
            }
        }
    }
}

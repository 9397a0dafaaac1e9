//! The presence task of one camera: publishes its retained online presence
//! (`care/status/{instance_id}`, the messages of [`super::presence`]) when the
//! camera's state changes and after every (re)connection to the broker.
//!
//! Owns nothing but its last publication; it only reads state, never waits
//! for the broker, and stops on its token.

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
    pub emitter: EmitterHandle,
}

impl Presence {
    /// Publishes online presence on every change until `cancel`, woken by the
    /// camera's state; a publish the emitter refused is tried again after
    /// `RETRY`.
    pub async fn run(mut self, cancel: CancellationToken) {
        let mut last: Option<(&str, &str, u64)> = None;
        let mut since: Option<((&str, &str), String)> = None;
        let (mut first, mut refused) = (true, false);
        loop {
            if !std::mem::take(&mut first) {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = self.status.changed() => {}
                    _ = tokio::time::sleep(RETRY), if refused => {}
                }
            }
            refused = false;
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
            let now = (camera, inference, self.status.mqtt.borrow().connection);
            if last == Some(now) {
                continue;
            }
            let mut msg = PresenceMessage::new(&self.identity, "online", camera, inference);
            msg.since = since.as_ref().map(|(_, t)| t.clone());
            let Ok(payload) = serde_json::to_vec(&msg) else {
                continue;
            };
            if self.emitter.publish_retained(self.topic.clone(), payload) {
                tracing::info!(camera, inference, "presence published");
                last = Some(now);
            } else {
                refused = true;
            }
        }
    }
}

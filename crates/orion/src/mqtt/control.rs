//! The control handler: every message on `care/control/{instance_id}` gets exactly
//! one reply on `care/health/{instance_id}`, echoing its `request_id`.
//!
//! Owns the order of commands: one at a time, in arrival order. Parsing is
//! `crate::command`'s, execution is the control plane's; this task only connects them to
//! MQTT. It stops on cancel or when the emitter drops the channel.

use std::sync::Arc;
use std::time::SystemTime;

use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::emitter::EmitterHandle;
use crate::command::{self, ControlMessage, Reply};
use crate::control::{ControlPlane, Outcome};
use crate::health::Alert;
use crate::metrics::Metrics;

pub struct ControlHandler {
    pub plane: Arc<ControlPlane>,
    pub emitter: EmitterHandle,
    pub metrics: Arc<Metrics>,
    pub instance_id: String,
    pub health_topic: String,
    pub max_command_bytes: usize,
    /// Cancelled by the `shutdown` command, after its reply is queued.
    pub shutdown: CancellationToken,
    /// Rate limit of the "reply could not be sent" warning.
    pub reply_log: std::sync::Mutex<crate::logging::RateLimit>,
}

/// Longest wait for room in the MQTT client's queue for one reply.
const REPLY_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

impl ControlHandler {
    /// Answers control messages and publishes alerts until cancel (or until the
    /// emitter drops the message channel).
    pub async fn run(
        self,
        mut messages: mpsc::Receiver<ControlMessage>,
        mut alerts: mpsc::Receiver<Alert>,
        cancel: CancellationToken,
    ) {
        loop {
            let mut payload = tokio::select! {
                _ = cancel.cancelled() => break,
                Some(alert) = alerts.recv() => {
                    self.publish_alert(alert);
                    continue;
                }
                m = messages.recv() => match m {
                    Some(m) => m,
                    None => break,
                },
            };
            // Alerts go out while a command runs (a model swap can take two
            // startup timeouts): an operator must not wait for them.
            let reply = {
                let answer = self.answer(&payload);
                tokio::pin!(answer);
                loop {
                    tokio::select! {
                        r = &mut answer => break Some(r),
                        Some(alert) = alerts.recv() => self.publish_alert(alert),
                        _ = cancel.cancelled() => break None,
                    }
                }
            };
            let Some(reply) = reply else { break };
            let from = if payload.reply_to.is_some() {
                "live view"
            } else {
                "MQTT"
            };
            if let Some(to) = payload.reply_to.take() {
                let _ = to.send(reply.0.clone());
            }
            let shutdown = reply.1;
            self.publish(reply.0).await;
            if shutdown {
                tracing::info!(from, "shutdown requested");
                self.shutdown.cancel();
            }
        }
        tracing::info!("control handler stopped");
    }

    /// The reply for one queued control message.
    async fn answer(&self, payload: &ControlMessage) -> (Reply, bool) {
        if let Some(size) = payload.oversize {
            self.reject(
                None,
                None,
                format!(
                    "payload of {size} bytes exceeds the limit of {} bytes",
                    self.max_command_bytes
                ),
            )
        } else if payload.retained {
            // A retained command would run again at every start (a retained
            // `shutdown` would be a boot loop): commands are for now only.
            // Refused like any other refusal, echoing command and request_id.
            let (command, request_id) =
                match command::parse(&payload.payload, self.max_command_bytes) {
                    Ok(req) => (Some(req.name.to_string()), req.request_id),
                    Err(rej) => (rej.command, rej.request_id),
                };
            self.reject(
                command,
                request_id,
                "retained commands are ignored; publish commands without the retain flag".into(),
            )
        } else {
            self.handle(&payload.payload).await
        }
    }

    /// The reply for one message, and whether to shut down after sending it.
    pub async fn handle(&self, payload: &[u8]) -> (Reply, bool) {
        match command::parse(payload, self.max_command_bytes) {
            Ok(req) => {
                let outcome = self.plane.execute(&req.command).await;
                self.reply(Some(req.name.to_string()), req.request_id, outcome)
            }
            Err(rejection) => {
                self.reject(rejection.command, rejection.request_id, rejection.message)
            }
        }
    }

    fn reject(
        &self,
        command: Option<String>,
        request_id: Option<Value>,
        message: String,
    ) -> (Reply, bool) {
        let outcome = Outcome {
            success: false,
            message,
            data: Value::Null,
            shutdown: false,
        };
        self.reply(command, request_id, outcome)
    }

    fn reply(
        &self,
        command: Option<String>,
        request_id: Option<Value>,
        outcome: Outcome,
    ) -> (Reply, bool) {
        if outcome.success {
            self.metrics.control_commands.inc();
        } else {
            self.metrics.control_rejected.inc();
        }
        // Command names and messages can quote what the sender wrote: cut, and
        // escaped by the log writer.
        tracing::info!(
            command = %crate::logging::cut(command.as_deref().unwrap_or("?"), 64),
            success = outcome.success,
            message = %crate::logging::cut(&outcome.message, crate::logging::MAX_VALUE),
            "control command"
        );
        let kind = if command.as_deref() == Some("get_status") && outcome.success {
            "status"
        } else {
            "command_ack"
        };
        let reply = Reply {
            kind,
            instance_id: self.instance_id.clone(),
            command,
            success: outcome.success,
            message: outcome.message,
            data: outcome.data,
            request_id,
            timestamp: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
        };
        (reply, outcome.shutdown)
    }

    /// `{"type": "error", "source": ..., "id": ..., "message": ...}` on the health topic.
    fn publish_alert(&self, alert: Alert) {
        let msg = serde_json::json!({
            "type": "error",
            "instance_id": self.instance_id,
            "source": alert.source,
            "id": alert.id,
            "message": alert.message,
            "timestamp": humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
        });
        if !self
            .emitter
            .publish(self.health_topic.clone(), msg.to_string().into_bytes())
        {
            tracing::warn!("alert could not be published (broker away); it is in the log");
        }
    }

    /// Sends a reply; while connected it waits for room in the client's queue
    /// rather than dropping it (replies have priority over results, which are
    /// dropped when the queue is full).
    async fn publish(&self, reply: Reply) {
        match serde_json::to_vec(&reply) {
            Ok(payload) => {
                if !self
                    .emitter
                    .publish_reply(self.health_topic.clone(), payload, REPLY_WAIT)
                    .await
                {
                    self.metrics.control_replies_dropped.inc();
                    let mut log = self.reply_log.lock().unwrap_or_else(|p| p.into_inner());
                    if let Some(held_back) = log.allow(std::time::Instant::now()) {
                        tracing::warn!(
                            "reply could not be sent (broker away); counted in orion_control_replies_dropped_total{}",
                            log.and_more(held_back)
                        );
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot serialize reply"),
        }
    }
}

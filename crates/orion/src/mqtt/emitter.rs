//! MQTT emitter: publishes results (QoS 1) without ever blocking the data path.
//!
//! Owns the rumqttc client and its event loop, which runs in its own task and only
//! polls, tracks the connection and backs off between reconnects (1 s doubling to
//! 30 s). [`EmitterHandle::publish`] is non-blocking: while the broker is away, or
//! when the client's bounded queue is full, the message is dropped and counted,
//! never buffered without bound.

use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, Incoming, MqttOptions, Outgoing, QoS};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::health::metrics::Metrics;

/// Connection parameters.
#[derive(Debug, Clone)]
pub struct EmitterSettings {
    pub client_id: String,
    pub host: String,
    pub port: u16,
    pub keep_alive: Duration,
    /// Capacity of the client's request queue.
    pub max_pending: usize,
}

/// Cheap to clone; held by whoever publishes.
#[derive(Clone)]
pub struct EmitterHandle {
    client: AsyncClient,
    metrics: Arc<Metrics>,
}

/// The emitter: the handle plus its event loop task.
pub struct Emitter {
    pub handle: EmitterHandle,
    task: JoinHandle<()>,
    cancel: CancellationToken,
}

impl Emitter {
    /// Creates the client and starts its event loop task; connecting happens in
    /// the background (see [`Metrics::mqtt_connected`]).
    pub fn start(
        settings: &EmitterSettings,
        metrics: Arc<Metrics>,
        cancel: CancellationToken,
    ) -> Self {
        let mut opts = MqttOptions::new(&settings.client_id, &settings.host, settings.port);
        opts.set_keep_alive(settings.keep_alive);
        opts.set_clean_session(true);
        opts.set_max_packet_size(1024 * 1024, 1024 * 1024);
        let (client, eventloop) = AsyncClient::new(opts, settings.max_pending);
        let endpoint = format!("{}:{}", settings.host, settings.port);
        let task = tokio::spawn(poll(eventloop, metrics.clone(), endpoint, cancel.clone()));
        Self {
            handle: EmitterHandle { client, metrics },
            task,
            cancel,
        }
    }

    /// Sends DISCONNECT and waits (at most `timeout`) for the event loop to flush it
    /// and end; then stops the task in any case.
    pub async fn disconnect(self, timeout: Duration) -> bool {
        let Emitter {
            handle,
            mut task,
            cancel,
        } = self;
        let connected = handle.metrics.mqtt_connected.get();
        if connected
            && handle.client.try_disconnect().is_ok()
            && let Ok(r) = tokio::time::timeout(timeout, &mut task).await
        {
            handle.metrics.mqtt_connected.set(false);
            return r.is_ok();
        }
        cancel.cancel();
        let stopped = tokio::time::timeout(timeout, task).await.is_ok();
        handle.metrics.mqtt_connected.set(false);
        stopped && !connected
    }
}

impl EmitterHandle {
    /// Queues `payload` for `topic` at QoS 1 if connected; otherwise drops and
    /// counts it. Never waits.
    pub fn publish(&self, topic: String, payload: Vec<u8>) -> bool {
        if !self.metrics.mqtt_connected.get() {
            self.metrics.mqtt_dropped.inc();
            return false;
        }
        match self
            .client
            .try_publish(topic, QoS::AtLeastOnce, false, payload)
        {
            Ok(()) => {
                self.metrics.mqtt_published.inc();
                true
            }
            Err(e) => {
                self.metrics.mqtt_dropped.inc();
                tracing::debug!(error = %e, "publish dropped");
                false
            }
        }
    }
}

async fn poll(
    mut eventloop: EventLoop,
    metrics: Arc<Metrics>,
    endpoint: String,
    cancel: CancellationToken,
) {
    let mut backoff = Backoff::default();
    let mut outage_logged = false;
    loop {
        let event = tokio::select! {
            _ = cancel.cancelled() => break,
            e = eventloop.poll() => e,
        };
        match event {
            Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                metrics.mqtt_connected.set(true);
                backoff.reset();
                outage_logged = false;
                tracing::info!(broker = %endpoint, "connected to MQTT broker");
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                metrics.mqtt_connected.set(false);
                tracing::info!("disconnected from MQTT broker");
                break;
            }
            Ok(_) => {}
            Err(e) => {
                let was_connected = metrics.mqtt_connected.get();
                metrics.mqtt_connected.set(false);
                metrics.mqtt_reconnects.inc();
                if was_connected || !outage_logged {
                    tracing::warn!(broker = %endpoint, error = %e, retry_in_s = backoff.peek().as_secs_f64(), "MQTT connection lost");
                    outage_logged = true;
                } else {
                    tracing::debug!(broker = %endpoint, error = %e, "MQTT reconnect failed");
                }
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(backoff.next_delay()) => {}
                }
            }
        }
    }
    metrics.mqtt_connected.set(false);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn publishing_while_the_broker_is_away_drops_and_counts_without_waiting() {
        // A port with nothing listening: the event loop keeps failing to connect.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let metrics = Arc::new(Metrics::default());
        let emitter = Emitter::start(
            &EmitterSettings {
                client_id: "emitter-test".into(),
                host: "127.0.0.1".into(),
                port,
                keep_alive: Duration::from_secs(5),
                max_pending: 4,
            },
            metrics.clone(),
            CancellationToken::new(),
        );
        let started = std::time::Instant::now();
        for i in 0..1000 {
            assert!(!emitter.handle.publish("t".into(), vec![i as u8; 100]));
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "publish must not wait"
        );
        assert_eq!(metrics.mqtt_dropped.get(), 1000);
        assert_eq!(metrics.mqtt_published.get(), 0);
        // The event loop task stops on request even while reconnecting.
        assert!(
            tokio::time::timeout(
                Duration::from_secs(5),
                emitter.disconnect(Duration::from_secs(2))
            )
            .await
            .expect("disconnect returns"),
            "event loop stopped"
        );
        assert!(!metrics.mqtt_connected.get());
    }
}

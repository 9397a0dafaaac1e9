//! MQTT emitter: the daemon's one broker connection. Publishes results, replies
//! and presence without ever blocking the data path, and hands incoming control
//! messages to the control handler.
//!
//! Owns the rumqttc client and its event loop, which runs in its own task and only
//! polls: it tracks the connection, (re)subscribes to the control topic after every
//! CONNACK, forwards control messages into a bounded channel, and backs off between
//! reconnects (1 s doubling to 30 s). Publishing is non-blocking: while the broker
//! is away, or when the client's bounded queue is full, the message is dropped and
//! counted, never buffered without bound. The last will marks the sensor offline.

use std::sync::Arc;
use std::time::Duration;

use rumqttc::{
    AsyncClient, Event, EventLoop, Incoming, LastWill, MqttOptions, Outgoing, QoS,
    TlsConfiguration, Transport,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::health::metrics::Metrics;

/// Largest incoming packet accepted; a larger one (only possible on the control
/// topic) breaks the connection, which is then re-established.
pub const MAX_INCOMING_PACKET: usize = 4 * 1024 * 1024;
/// Largest outgoing packet (results and status replies are far smaller).
const MAX_OUTGOING_PACKET: usize = 1024 * 1024;

/// Connection parameters.
#[derive(Clone)]
pub struct EmitterSettings {
    pub client_id: String,
    pub host: String,
    pub port: u16,
    pub keep_alive: Duration,
    /// Capacity of the client's request queue.
    pub max_pending: usize,
    pub credentials: Option<(String, String)>,
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Published by the broker, retained, if the connection dies.
    pub last_will: Option<(String, Vec<u8>)>,
    /// Topic whose messages go to the control channel.
    pub control_topic: Option<String>,
}

/// A message that arrived on the control topic.
#[derive(Debug, Clone)]
pub struct ControlMessage {
    pub payload: Vec<u8>,
    /// Delivered from the broker's retained store rather than published now.
    pub retained: bool,
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
    /// the background (see [`Metrics::mqtt_connected`]). Control messages go to
    /// `control`, if given.
    pub fn start(
        settings: &EmitterSettings,
        metrics: Arc<Metrics>,
        control: Option<mpsc::Sender<ControlMessage>>,
        cancel: CancellationToken,
    ) -> Self {
        let mut opts = MqttOptions::new(&settings.client_id, &settings.host, settings.port);
        opts.set_keep_alive(settings.keep_alive);
        opts.set_clean_session(true);
        opts.set_max_packet_size(MAX_INCOMING_PACKET, MAX_OUTGOING_PACKET);
        if let Some((user, pass)) = &settings.credentials {
            opts.set_credentials(user, pass);
        }
        if let Some(tls) = &settings.tls {
            opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
                tls.clone(),
            )));
        }
        if let Some((topic, payload)) = &settings.last_will {
            opts.set_last_will(LastWill::new(
                topic,
                payload.clone(),
                QoS::AtLeastOnce,
                true,
            ));
        }
        let (client, eventloop) = AsyncClient::new(opts, settings.max_pending);
        let endpoint = format!("{}:{}", settings.host, settings.port);
        let task = tokio::spawn(poll(PollState {
            eventloop,
            client: client.clone(),
            metrics: metrics.clone(),
            endpoint,
            control_topic: settings.control_topic.clone(),
            control,
            cancel: cancel.clone(),
        }));
        Self {
            handle: EmitterHandle { client, metrics },
            task,
            cancel,
        }
    }

    /// Sends DISCONNECT and waits (at most `timeout`) for the event loop to flush
    /// what was queued before it and end; then stops the task in any case.
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
        self.send(topic, payload, false)
    }

    /// Like [`EmitterHandle::publish`], retained by the broker.
    pub fn publish_retained(&self, topic: String, payload: Vec<u8>) -> bool {
        self.send(topic, payload, true)
    }

    fn send(&self, topic: String, payload: Vec<u8>, retain: bool) -> bool {
        if !self.metrics.mqtt_connected.get() {
            self.metrics.mqtt_dropped.inc();
            return false;
        }
        match self
            .client
            .try_publish(topic, QoS::AtLeastOnce, retain, payload)
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

struct PollState {
    eventloop: EventLoop,
    client: AsyncClient,
    metrics: Arc<Metrics>,
    endpoint: String,
    control_topic: Option<String>,
    control: Option<mpsc::Sender<ControlMessage>>,
    cancel: CancellationToken,
}

async fn poll(mut s: PollState) {
    let mut backoff = Backoff::default();
    let mut outage_logged = false;
    loop {
        let event = tokio::select! {
            _ = s.cancel.cancelled() => break,
            e = s.eventloop.poll() => e,
        };
        match event {
            Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                // Clean session: subscriptions are gone after a reconnect.
                if let Some(topic) = &s.control_topic
                    && let Err(e) = s.client.try_subscribe(topic, QoS::AtLeastOnce)
                {
                    tracing::error!(error = %e, "cannot subscribe to the control topic");
                }
                s.metrics.mqtt_connections.inc();
                s.metrics.mqtt_connected.set(true);
                backoff.reset();
                outage_logged = false;
                tracing::info!(broker = %s.endpoint, "connected to MQTT broker");
            }
            Ok(Event::Incoming(Incoming::Publish(p))) => {
                if s.control_topic.as_deref() == Some(p.topic.as_str())
                    && let Some(control) = &s.control
                    && control
                        .try_send(ControlMessage {
                            payload: p.payload.to_vec(),
                            retained: p.retain,
                        })
                        .is_err()
                {
                    s.metrics.control_dropped.inc();
                    tracing::warn!("control queue full; command dropped");
                }
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                s.metrics.mqtt_connected.set(false);
                tracing::info!("disconnected from MQTT broker");
                break;
            }
            Ok(_) => {}
            Err(e) => {
                let was_connected = s.metrics.mqtt_connected.get();
                s.metrics.mqtt_connected.set(false);
                s.metrics.mqtt_reconnects.inc();
                if was_connected || !outage_logged {
                    tracing::warn!(broker = %s.endpoint, error = %e, retry_in_s = backoff.peek().as_secs_f64(), "MQTT connection lost");
                    outage_logged = true;
                } else {
                    tracing::debug!(broker = %s.endpoint, error = %e, "MQTT reconnect failed");
                }
                tokio::select! {
                    _ = s.cancel.cancelled() => break,
                    _ = tokio::time::sleep(backoff.next_delay()) => {}
                }
            }
        }
    }
    s.metrics.mqtt_connected.set(false);
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
                credentials: None,
                tls: None,
                last_will: None,
                control_topic: None,
            },
            metrics.clone(),
            None,
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

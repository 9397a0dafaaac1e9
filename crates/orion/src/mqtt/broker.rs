//! Embedded MQTT broker (rumqttd), so that the default config needs nothing else
//! running. Meant for demos and single-sensor setups; fleets use an external broker.
//!
//! The broker runs on its own threads for the life of the process: rumqttd has no
//! stop call, and the daemon only starts it once.

use std::collections::HashMap;
use std::net::SocketAddr;

use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error(
        "cannot start the embedded MQTT broker on {addr}: {cause} (is another broker running? set mqtt.broker to `mqtt://host:port` to use it)"
    )]
    Bind {
        addr: SocketAddr,
        cause: std::io::Error,
    },
    #[error("cannot start the embedded MQTT broker thread: {0}")]
    Thread(std::io::Error),
}

/// Starts the broker listening on `addr`.
pub fn start(addr: SocketAddr) -> Result<(), BrokerError> {
    // rumqttd only logs a failed bind from inside its server thread; check first so
    // that a taken port is a clear start-up error.
    std::net::TcpListener::bind(addr).map_err(|cause| BrokerError::Bind { addr, cause })?;
    let server = ServerSettings {
        name: "orion-embedded".into(),
        listen: addr,
        tls: None,
        next_connection_delay_ms: 1,
        connections: ConnectionSettings {
            connection_timeout_ms: 10_000,
            max_payload_size: 1024 * 1024,
            max_inflight_count: 100,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        },
    };
    let config = Config {
        id: 0,
        router: RouterConfig {
            max_connections: 1000,
            max_outgoing_packet_count: 200,
            // The router keeps a log of recent publishes per filter: bound it to a
            // few MiB instead of rumqttd's 100 MiB segments.
            max_segment_size: 1024 * 1024,
            max_segment_count: 4,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        },
        v4: Some(HashMap::from([("1".to_string(), server)])),
        ..Default::default()
    };
    std::thread::Builder::new()
        .name("orion-broker".into())
        .spawn(move || {
            let mut broker = Broker::new(config);
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, "embedded MQTT broker stopped");
            }
        })
        .map_err(BrokerError::Thread)?;
    tracing::info!(%addr, "embedded MQTT broker started");
    Ok(())
}

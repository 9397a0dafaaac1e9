//! Embedded MQTT broker (rumqttd), so that the default config needs nothing else
//! running. Meant for demos and single-sensor setups; fleets use an external broker.
//!
//! The broker runs on its own threads for the life of the process: rumqttd has no
//! stop call, and the daemon only starts it once.
//!
//! When the embedded address is already served by an MQTT broker (on Debian,
//! installing the `mosquitto` package starts one on 127.0.0.1:1883), the daemon
//! uses that broker instead and says so in one log line: the quick start then works
//! on such a host with no extra step. Anything else listening there is an error.
//!
//! The broker itself is the cargo feature `embedded-broker` (on by default);
//! built without it, the embedded address must be served by another broker.

use std::net::SocketAddr;
use std::time::Duration;

/// How long the probe of an address that is already in use waits for a CONNACK.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error(
        "cannot start the embedded MQTT broker on {addr}: {cause} (set mqtt.embedded_listen to a free address, or mqtt.broker to `mqtt://host:port` to use another broker)"
    )]
    Bind {
        addr: SocketAddr,
        cause: std::io::Error,
    },
    #[error(
        "cannot start the embedded MQTT broker on {addr}: the address is in use by a program that does not answer as an MQTT broker (set mqtt.embedded_listen to a free address)"
    )]
    NotABroker { addr: SocketAddr },
    #[error("cannot start the embedded MQTT broker thread: {0}")]
    Thread(std::io::Error),
    #[error(
        "no MQTT broker on {addr}, and this oriond was built without the embedded one (cargo feature `embedded-broker`): set mqtt.broker to `mqtt://host:port`"
    )]
    NotBuiltIn { addr: SocketAddr },
}

/// Which broker serves the embedded address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serving {
    /// The daemon's own broker, started now.
    Embedded,
    /// A broker that was already listening there (e.g. the system's Mosquitto).
    Existing,
}

/// Starts the broker listening on `addr`, or, when `addr` is in use by an MQTT
/// broker already, uses that one.
pub async fn start_or_join(addr: SocketAddr) -> Result<Serving, BrokerError> {
    // rumqttd cannot be stopped: after a config reload (SIGHUP) the broker this
    // process started is still there, and is simply used again.
    if started_here()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .contains(&addr)
    {
        return Ok(Serving::Embedded);
    }
    match start(addr) {
        Ok(()) => Ok(Serving::Embedded),
        Err(BrokerError::Bind { cause, .. }) if cause.kind() == std::io::ErrorKind::AddrInUse => {
            if speaks_mqtt(addr).await {
                tracing::info!(
                    %addr,
                    "an MQTT broker already listens on the embedded broker's address; using it instead of starting one"
                );
                Ok(Serving::Existing)
            } else {
                Err(BrokerError::NotABroker { addr })
            }
        }
        Err(e) => Err(e),
    }
}

/// True when an MQTT broker answers a CONNECT at `addr` (a CONNACK, also one that
/// refuses us: a broker that wants credentials is still a broker).
async fn speaks_mqtt(addr: SocketAddr) -> bool {
    use rumqttc::{ConnectionError, Event, Incoming, MqttOptions};
    let mut options = MqttOptions::new(
        format!("orion-probe-{}", std::process::id()),
        addr.ip().to_string(),
        addr.port(),
    );
    options.set_keep_alive(Duration::from_secs(5));
    let (client, mut events) = rumqttc::AsyncClient::new(options, 1);
    let answer = tokio::time::timeout(PROBE_TIMEOUT, async {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Incoming::ConnAck(_))) => return true,
                Ok(_) => {}
                Err(ConnectionError::ConnectionRefused(_)) => return true,
                Err(_) => return false,
            }
        }
    })
    .await
    .unwrap_or(false);
    if answer {
        let _ = client.try_disconnect();
        // Let the DISCONNECT go out; the answer does not depend on it.
        let _ = tokio::time::timeout(Duration::from_millis(200), events.poll()).await;
    }
    answer
}

/// Addresses of the brokers this process started (they live as long as it).
fn started_here() -> &'static std::sync::Mutex<Vec<SocketAddr>> {
    static STARTED: std::sync::OnceLock<std::sync::Mutex<Vec<SocketAddr>>> =
        std::sync::OnceLock::new();
    STARTED.get_or_init(Default::default)
}

/// Without the embedded broker: only a broker already there will do.
#[cfg(not(feature = "embedded-broker"))]
pub fn start(addr: SocketAddr) -> Result<(), BrokerError> {
    match std::net::TcpListener::bind(addr) {
        Err(cause) => Err(BrokerError::Bind { addr, cause }),
        Ok(_) => Err(BrokerError::NotBuiltIn { addr }),
    }
}

/// Starts the broker listening on `addr`.
#[cfg(feature = "embedded-broker")]
pub fn start(addr: SocketAddr) -> Result<(), BrokerError> {
    use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};

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
        v4: Some(std::collections::HashMap::from([("1".to_string(), server)])),
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
    started_here()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(addr);
    tracing::info!(%addr, "embedded MQTT broker started");
    Ok(())
}

//! MQTT: the broker connection (emitter), the control commands' handler,
//! presence, reconnection waits, TLS, and the embedded broker.

pub mod announce;
pub mod broker;
#[cfg(feature = "daemon")]
pub mod control;
pub mod emitter;
pub mod presence;
pub mod reconnect;
pub mod tls;

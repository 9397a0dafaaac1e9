//! MQTT: the broker connection (emitter), control commands and their handler,
//! presence, reconnection waits, TLS, and the embedded broker.

pub mod broker;
pub mod commands;
pub mod control;
pub mod emitter;
pub mod presence;
pub mod reconnect;
pub mod tls;

//! MQTT: the broker connection (emitter), control commands and their handler,
//! presence, TLS, and the embedded broker.

pub mod broker;
pub mod commands;
pub mod control;
pub mod emitter;
pub mod presence;
pub mod tls;

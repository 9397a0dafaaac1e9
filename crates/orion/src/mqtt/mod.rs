//! MQTT: the emitter (publishing results) and the embedded broker.
//!
//! The control handler joins this module with the control plane.

pub mod broker;
pub mod emitter;

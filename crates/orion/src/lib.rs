//! # Orion: an edge video sensor daemon
//!
//! Watches cameras (one or many per daemon), finds people with an ONNX model running in supervised worker
//! processes, and publishes detections over MQTT.
//!
//! ## Layout (the data flow of docs/design.md, one module per stage)
//! - [`config`]: the YAML schema, defaults, validate-all.
//! - [`stream`]: GStreamer sources (test, file, RTSP) -> newest-frame slot; warm-up.
//! - [`attention`]: the rate gate and ROI attention (crop + model size).
//! - [`camera`]: one camera's frame consumer (gate, pause, crop, publish).
//! - [`framebus`]: non-blocking fan-out of every camera's frames to the shared
//!   worker pools (newest frame per camera, longest-waiting camera first).
//! - [`worker`]: worker subprocesses (protocol in the `orion-protocol` crate) and
//!   their supervisors.
//! - [`collector`]: fan-in of results, enrichment into inference messages.
//! - [`mqtt`]: the broker connection (emitter), control commands and their
//!   handler, presence, TLS, the embedded broker.
//! - [`control`]: the control plane: applies commands to the running components.
//! - [`status`]: each camera's typed state (stream, MQTT, paused, running) on
//!   watch channels, published by its one owner.
//! - [`health`]: status model, metrics (counters), HTTP server.
//! - [`homeassistant`]: MQTT discovery messages (a device per camera).
//! - [`topics`]: the MQTT topic names, in one place.
//! - [`tracking`]: tracks, events and occupancy per camera.
//! - [`backoff`]: the retry delays every supervisor uses.
//! - [`logging`]: one escaped line per log event, long values cut, repeated
//!   warnings rate-limited.
//! - [`ctl`]: `orionctl`, the operator's client.
//! - [`orchestrator`]: start-up order, the frame consumer, stats, shutdown order.

pub mod attention;
pub mod backoff;
pub mod camera;
pub mod collector;
pub mod command;
pub mod config;
pub mod control;
pub mod ctl;
pub mod framebus;
pub mod health;
pub mod homeassistant;
pub mod http;
pub mod live;
pub mod logging;
pub mod metrics;
pub mod mqtt;
pub mod orchestrator;
pub mod outbox;
pub mod status;
pub mod stream;
pub mod topics;
pub mod tracking;
pub mod ui;
pub mod worker;

//! # Orion: an edge video sensor daemon
//!
//! Watches cameras (one or many per daemon), finds people with an ONNX model running in supervised worker
//! processes, and publishes detections over MQTT.
//!
//! ## Layout: floors of a house (docs/design.md), each module importing only
//! its own floor or those below (`scripts/check-structure.py` checks it)
//!
//! Foundation:
//! - [`logging`]: one escaped line per log event, long values cut, repeated
//!   warnings rate-limited.
//! - [`backoff`]: the retry delays every supervisor uses.
//! - [`topics`]: the MQTT topic names, in one place.
//! - [`metrics`]: counters, gauges and histograms (measurements only).
//! - [`tasks`]: a component's tasks, stopped by a deadline, then aborted.
//!
//! Domain (no transport; the config reads its file, nothing else does I/O):
//! - [`config`]: the YAML schema, defaults, validate-all.
//! - [`command`]: the control commands: parse, validate, name, the reply.
//! - [`tracking`]: tracks, events, zones and occupancy per camera.
//! - [`attention`]: the rate gate and ROI attention (crop + model size).
//! - [`homeassistant`]: MQTT discovery messages (a device per camera).
//! - [`status`]: each camera's typed state on watch channels, one owner each.
//! - [`health`]: the health model and the Prometheus exposition.
//!
//! Engines:
//! - [`stream`]: GStreamer sources (test, file, RTSP, USB) -> newest-frame slot.
//! - [`framebus`]: non-blocking fan-out of every camera's frames to the shared
//!   worker pools (newest frame per camera, longest-waiting camera first).
//! - [`worker`]: worker subprocesses (protocol in the `orion-protocol` crate),
//!   their supervisors, the routes of their results back to the cameras.
//! - [`live`]: a camera's live feed (JPEG frames and results for viewers).
//! - [`control`]: the control plane: applies commands to a running camera.
//!
//! Transports:
//! - [`mqtt`]: the broker connection (emitter), the control handler, presence,
//!   reconnection waits, TLS, the embedded broker.
//! - [`outbox`]: the persistent event outbox and each camera's event publisher.
//! - [`http`]: the HTTP server (health, readiness, metrics, the UI's routes).
//! - [`ui`]: the live view's page and API.
//!
//! Assembly and top:
//! - [`camera`]: one camera as one unit (`Camera::start`, `Camera::stop`).
//! - [`orchestrator`]: the shared parts, every camera, reload, shutdown order.
//! - [`ctl`]: `orionctl`, the operator's client.

pub mod attention;
pub mod backoff;
#[cfg(feature = "daemon")]
pub mod camera;
pub mod command;
pub mod config;
#[cfg(feature = "daemon")]
pub mod control;
pub mod ctl;
#[cfg(feature = "daemon")]
pub mod framebus;
pub mod health;
pub mod homeassistant;
#[cfg(feature = "daemon")]
pub mod http;
#[cfg(feature = "daemon")]
pub mod live;
pub mod logging;
pub mod metrics;
pub mod mqtt;
#[cfg(feature = "daemon")]
pub mod orchestrator;
#[cfg(feature = "daemon")]
pub mod outbox;
pub mod status;
#[cfg(feature = "daemon")]
pub mod stream;
pub mod tasks;
pub mod topics;
pub mod tracking;
#[cfg(feature = "daemon")]
pub mod ui;
#[cfg(feature = "daemon")]
pub mod worker;

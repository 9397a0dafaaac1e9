//! # orion-protocol: the worker wire contract
//!
//! Everything that crosses a worker's stdin/stdout, and nothing else:
//! - [`messages`]: the typed messages (daemon -> worker: `frame`, `command`;
//!   worker -> daemon: `ready`, `result`, `command_result`, `error`).
//! - [`codec`]: the framing, a 4-byte big-endian length followed by a MsgPack map,
//!   with a maximum length checked before anything is allocated.
//!
//! This crate never does I/O and never spawns anything: the daemon owns the
//! processes, this crate only turns messages into bytes and back. It is documented
//! for worker authors in `docs/worker-protocol.md`, and its golden byte fixtures in
//! `fixtures/` are checked by both the Rust and the Python test suites.

pub mod codec;
pub mod golden;
pub mod messages;

pub use codec::{CodecError, FrameReader, decode_from_worker, decode_to_worker, encode};
pub use messages::*;

/// Version of the wire contract; a worker announces the version it speaks in `ready`.
pub const PROTOCOL_VERSION: u32 = 1;

/// Default upper bound for one message body: a 4K RGB frame (3840 * 2160 * 3 bytes,
/// about 24 MiB) plus room for its metadata.
pub const DEFAULT_MAX_MESSAGE_LEN: usize = 32 * 1024 * 1024;

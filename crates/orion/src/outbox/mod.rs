//! The outbox: events (not raw results) are never lost to a broker outage or a
//! restart. Every event is stored on disk ([`store`]) before it is published and
//! removed only when the broker has acknowledged it; each camera's
//! [`publisher`] delivers its backlog in order, oldest first, then its current
//! occupancy. Each camera's events are held to a [`rate`] so that a runaway
//! model cannot flood it; the [`writer`] thread writes them, so that no disk
//! I/O runs on the async runtime. See docs/operations.md ("The outbox").

mod disk;
pub mod publisher;
pub mod rate;
pub mod store;
pub mod writer;

pub use publisher::EventPublisher;
pub use store::{Outbox, Record, Recovery};

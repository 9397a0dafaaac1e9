//! From boxes to care signals, per camera: the [`tracker`] follows people across
//! results; [`zones`] are the named regions of a view; [`room`] turns visits
//! into events and occupancy, knowing each person's body from their boxes
//! ([`bodies`]) and their [`posture`], and watches for [`falls`]; a
//! [`snapshot`] keeps the present people (and their alerts) across a restart.

pub mod bodies;
pub mod falls;
pub mod posture;
pub mod room;
pub mod snapshot;
pub mod tracker;
pub mod zones;

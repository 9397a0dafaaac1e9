//! From boxes to care signals, per camera: the [`tracker`] follows people across
//! results; [`zones`] are the named regions of a view; [`room`] turns visits
//! into events and occupancy.

pub mod room;
pub mod tracker;
pub mod zones;

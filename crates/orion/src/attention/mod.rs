//! Attention: which frames go to inference (the rate gate) and which part of each
//! frame the workers look at (ROI attention).
//!
//! Owns no tasks: the frame consumer calls into it for every frame, so everything
//! here is cheap and never blocks. A frame the gate rejects costs one comparison.

pub mod autofocus;
pub mod rate_gate;
pub mod roi;

pub use autofocus::AutoFocus;
pub use rate_gate::RateGate;
pub use roi::{ExternalRoi, RoiAttention};

//! Deterministic evaluation of noise predictors on held-out data.

pub mod heldout;

pub use heldout::{EvalLosses, EvalSet, EvalSetConfig, timestep_ranges};

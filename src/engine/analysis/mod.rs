//! The evidence views: gradient conflicts between timesteps, and what they are grouped by.

pub mod gradsim;
pub mod groups;

pub use gradsim::{GradSimConfig, GradSimResult, grad_similarity};
pub use groups::{Granularity, group_of};

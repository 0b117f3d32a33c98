//! Merging the experts back into one model, and the ensemble it is compared with.
//!
//! - [`structure`]: lining models up by key; projections count from the identity.
//! - [`task_vector`]: `tau_i = theta_i - theta` on the host, with statistics.
//! - [`method`]: task arithmetic, TIES, DARE and their settings; [`MergeSpec`].
//! - [`block_weights`]: per-block weights overriding the per-model ones.
//! - [`ties`], [`dare`]: the methods' processing of task vectors.
//! - [`arithmetic`]: `theta + sum_i w_i tau'_i` on the host (deterministic; exports).
//! - [`merger`]: the same on the device, for interactive weights.
//! - [`recipe`]: `recipe.json`, exports and exact reproduction.
//! - [`ensemble`]: the timestep-wise ensemble.

pub mod arithmetic;
pub use deme_formats::merge::block_weights;
pub mod dare;
pub mod drop_projections;
pub mod ensemble;
pub mod merger;
pub use deme_formats::merge::method;
pub mod recipe;
pub mod structure;
pub mod task_vector;
pub mod ties;

pub use arithmetic::merge_host;
pub use block_weights::{BlockWeight, BlockWeights};
pub use drop_projections::{DroppedProjections, drop_projections};
pub use ensemble::{
    TimestepEnsemble, expert_boundaries_of, expert_index, expert_range, expert_ranges_of,
    stored_boundaries,
};
pub use merger::{Mergeable, Merger};
pub use method::{DEFAULT_DARE_P, DEFAULT_TIES_K, MergeMethod, MergeSpec};
pub use recipe::{ExportReport, MergeJob, RECIPE_FILE, Recipe, export_merge, reproduce};
pub use task_vector::{HostTaskVectors, LabeledParams};

//! The merge settings a user writes down: method, per-model and per-block
//! weights, and the `recipe.json` that records one merge.
//!
//! - [`method`]: task arithmetic, TIES, DARE and their settings; [`MergeSpec`].
//! - [`block_weights`]: per-block weights overriding the per-model ones.
//! - [`recipe_file`]: `recipe.json`, parsed and checked.

pub mod block_weights;
pub mod method;
pub mod recipe_file;

pub use block_weights::{BlockWeight, BlockWeights};
pub use method::{DEFAULT_DARE_P, DEFAULT_TIES_K, MergeMethod, MergeSpec};
pub use recipe_file::{RECIPE_FILE, RECIPE_FORMAT_VERSION, Recipe, RecipeInput, safe_relative};

//! The gradient-conflict view: the base model's per-timestep gradient cosine
//! similarities as a K x K heatmap (hover for the values), the histogram of
//! pair similarities and the per-block breakdown, most conflicting first.
//!
//! - [`state`]: settings, the computation going, the result shown.
//! - [`page`]: the page and its controls.
//! - [`plots`]: the heatmap, the histogram and the blocks.
//! - [`job`]: the computation on a thread of its own, and of a training checkpoint.

pub mod job;
pub mod page;
pub mod plots;
pub mod state;

pub use page::GradSimAction;
pub use page::gradsim_page;
pub use plots::{FOCUS_RANGE, HEATMAP_LABEL, NOISY_CEILING};
pub use state::GradSimState;

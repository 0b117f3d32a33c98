//! The Merge view: the merge weights (sliders, locks, per-block weights,
//! method), previews of the base, the timestep-wise ensemble and the merge
//! side by side, held-out losses, undo and redo, and the grid search.
//!
//! - [`state`]: the merge being edited and its previews; [`history`]: undo
//!   and redo; [`weights`]: the rules of editing weights.
//! - [`page`], [`controls`]: the page and its controls.
//! - [`grid_panel`], [`grid_job`]: the grid search and its thread.

pub mod controls;
pub mod grid_job;
pub mod grid_panel;
pub mod history;
pub mod page;
pub mod state;
pub mod weights;

pub use page::{MergePage, merge_page};
pub use state::MergeState;

//! The task-vector view: how far each expert moved from the base (norms), how
//! aligned the experts' moves are (the N x N cosine table), and where in the
//! network the changes sit (per-group box plots of the magnitudes and
//! per-group norms). Computed in the background when first shown for a set,
//! again on Recompute or a change of grouping; exportable as PNG and CSV.
//!
//! - [`state`]: settings, the computation and export going, the result.
//! - [`page`]: the page and its controls.
//! - [`plots`]: the plots, their axes and paging.
//! - [`job`]: the computation and the export on threads of their own.

pub mod job;
pub mod page;
pub mod plots;
pub mod state;

pub use page::taskvec_page;
pub use plots::{COSINE_LABEL, PAGE_ROWS, fmt_value};
pub use state::{TaskVecAction, TaskVecState};

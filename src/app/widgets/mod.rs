//! Widgets more than one view draws.
//!
//! - [`heatmap`]: a cosine matrix with labels, colour bar and the cell under the pointer.
//! - [`palette`]: the colour of each expert or run, the same in every view.

pub mod heatmap;
pub mod palette;

//! Widgets more than one view draws.
//!
//! - [`heatmap`]: a cosine matrix with labels, colour bar and the cell under the pointer.
//! - [`export_row`]: an export off the UI thread and the note of how it went.
//! - [`palette`]: the colour of each expert or run, the same in every view.

pub mod export_row;
pub mod heatmap;
pub mod palette;

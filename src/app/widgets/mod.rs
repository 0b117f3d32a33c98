//! Widgets more than one view draws.
//!
//! - [`heatmap`]: a cosine matrix with labels, colour bar and the cell under the pointer.

pub mod heatmap;

//! Figures rendered to images without a GUI: colour maps, numbers, heatmaps.

pub mod colormap;
pub mod font;
pub mod heatmap;

pub use colormap::ColorMap;
pub use heatmap::{Heatmap, save_png_atomic};

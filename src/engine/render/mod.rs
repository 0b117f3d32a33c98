//! Figures rendered to images without a GUI: colour maps, fields, numbers, heatmaps, curves.

pub mod colormap;
pub mod field;
pub mod font;
pub mod heatmap;
pub mod line_plot;

pub use colormap::ColorMap;
pub use heatmap::{Heatmap, save_png_atomic};
pub use line_plot::{LinePlot, Series};

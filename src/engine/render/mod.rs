//! Figures rendered to images without a GUI: colour maps, fields, numbers, heatmaps, curves;
//! and the preview pass that lays sampled images out on the device.

pub mod colormap;
pub mod field;
pub mod font;
pub mod heatmap;
pub mod line_plot;
pub mod preview_pass;
pub mod texture_readback;

pub use colormap::ColorMap;
pub use heatmap::{Heatmap, save_png_atomic};
pub use line_plot::{LinePlot, Series};

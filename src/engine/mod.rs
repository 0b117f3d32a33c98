//! Everything that computes: diffusion math, models, data, training, checkpoints.
//! Nothing in here depends on the GUI.

pub mod analysis;
pub use deme_formats::checkpoint;
pub mod data;
pub mod device;
pub mod device_buffer;
pub mod diffusion;
pub mod eval;
pub mod grid_image;
pub mod kernels;
pub mod merge;
pub mod metric;
pub mod model;
pub mod model_card;
pub mod model_set;
pub mod model_spec;
pub mod output;
pub mod reduce;
pub mod render;
pub mod replicate;
pub mod search;
pub mod shared_wgpu;
pub mod stats;
pub mod store;
pub mod train;

//! Everything that computes: diffusion math, models, data, training, checkpoints.
//! Nothing in here depends on the GUI.

pub mod checkpoint;
pub mod data;
pub mod device;
pub mod diffusion;
pub mod grid_image;
pub mod model;
pub mod store;
pub mod train;

//! Datasets: the readers live in [`deme_formats::data`] (re-exported here);
//! [`items`] adds the model-aware train / validation split the trainers use.

pub use deme_formats::data::*;

pub mod items;

pub use items::{SPLIT_SEED, SplitItems, split_items};

//! Everything deme-studio reads from outside: safetensors files, diffusers
//! folders and their `config.json`, deme-studio's `deme.json`, merge recipes,
//! MNIST IDX, CIFAR-10 batches and image files.
//!
//! This crate has no compute dependencies, so its parsers can be fuzzed on
//! their own (see `fuzz/` and [`fuzzing`]) and tested quickly.
//!
//! - [`checkpoint`]: host tensors, safetensors, diffusers folders, metadata.
//! - [`data`]: datasets (embedded MNIST, IDX, CIFAR-10, image folders, 2D toys).
//! - [`groups`]: which block or layer a state-dict key belongs to.
//! - [`merge`]: merge methods, weights and recipes.

pub mod checkpoint;
pub mod data;
pub mod fuzzing;
pub mod groups;
pub mod input;
pub mod merge;

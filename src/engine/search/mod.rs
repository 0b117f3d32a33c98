//! Searching merge weights: lattices, strategies and the stream of results.

pub mod grid;

pub use grid::{GridEvent, GridPoint, GridResult, GridSpec, Score, Strategy, grid_search};

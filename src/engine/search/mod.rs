//! Searching merge weights: lattices, strategies and the stream of results.

pub mod cmaes;
pub mod coordinate;
pub mod grid;
pub mod lattice;
pub mod learned;
pub mod merge_weights;
pub mod objective;
pub mod scale;
pub mod strategy;

pub use grid::grid_search;
pub use lattice::{GridEvent, GridPoint, GridResult, GridSpec, Score};
pub use learned::{LearnedBlocks, LossGradient, learn_merge_weights};
pub use merge_weights::{MetricObjective, search_merge_weights, search_merge_weights_by_metric};
pub use objective::LossObjective;
pub use scale::{ScalePoint, search_scale};
pub use strategy::{CmaesSettings, LearnSettings, Strategy};

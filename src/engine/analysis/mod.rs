//! The evidence views: gradient conflicts between timesteps, the loss landscape
//! on the task-vector plane, task-vector statistics, and what they are grouped by.

pub mod gradsim;
pub mod gradsim_files;
pub use deme_formats::groups;
pub mod landscape;
pub mod landscape_files;
pub mod landscape_lattice;
pub mod landscape_plot;
pub mod npy;
pub mod range_split;
pub mod tv_stats;
pub mod tv_stats_files;

pub use gradsim::{GradSimConfig, GradSimResult, grad_similarity};
pub use groups::{Granularity, group_of};
pub use landscape::{
    Landscape, LandscapeConfig, LandscapeEvent, LandscapeGrid, LandscapeModels, Mark, MarkKind,
    MarkRequest, Plane, loss_landscape,
};
pub use tv_stats::{TvStats, tv_stats};

//! The Teaching view: 2D toy data and the toy MLP, where the whole method
//! takes seconds. One button pretrains a base and finetunes its experts in
//! the background while the data and the current samples are drawn as two
//! point clouds beside a loss curve; the finished set is saved into its own
//! folder and opened, so the Merge, Gradient-conflicts and Landscape views
//! work on it. Export writes the clouds and the losses as CSV and the clouds
//! as a PNG.
//!
//! - [`config`]: what a run trains and reports.
//! - [`job`]: the run on a thread of its own.
//! - [`state`]: settings, the run going, its curves and clouds.
//! - [`page`]: the page.
//! - [`plots`]: the clouds, the loss curves and their export.

pub mod config;
pub mod job;
pub mod page;
pub mod plots;
pub mod state;

pub use config::{TeachingConfig, TeachingJob};
pub use job::{run_teaching, teaching_task};
pub use page::{OPEN_LABEL, TRAIN_LABEL, run_notice, teaching_page};
pub use state::TeachingState;

//! The Train view: pretraining and DeMe finetuning with every engine setting,
//! play / pause / step / cancel, a row per run with its progress, live loss
//! curves, throughput, ETA, checkpoint previews and the CSV / PNG exports.
//!
//! - [`form`], [`form_ui`]: the settings form as data and as widgets.
//! - [`plan`]: what a job is and reports.
//! - [`job`]: the job on a thread of its own.
//! - [`control`]: pause, resume and single steps.
//! - [`state`]: the job going and its runs as the view shows them.
//! - [`page`]: the page.
//! - [`plots`]: the loss curves and their export.

pub mod control;
pub mod form;
pub mod form_ui;
pub mod job;
pub mod page;
pub mod plan;
pub mod plots;
pub mod state;

pub use page::{CSV_NAME, PNG_NAME, end_notice, train_page};
pub use state::{LossPoint, RunStatus, RunView, TrainState};

//! Task-vector statistics from the UI, on their own thread.

use super::events::Emitter;
use super::session::Session;

/// A task-vector computation to run.
#[derive(Debug, Clone)]
pub struct TaskVecJob {}

/// What the computation reports.
#[derive(Debug, Clone)]
pub enum TaskVecUpdate {}

/// Starts `job` on the open session's models (reports an error without one).
pub fn start_taskvec(_job: TaskVecJob, _session: Option<&Session>, _emit: &Emitter) {}

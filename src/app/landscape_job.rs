//! Loss-landscape computation from the UI, on its own thread.

use super::events::Emitter;
use super::session::Session;

/// A landscape computation to run.
#[derive(Debug, Clone)]
pub struct LandscapeJob {}

/// What the computation reports.
#[derive(Debug, Clone)]
pub enum LandscapeUpdate {}

/// Starts `job` on the open session's models (reports an error without one).
pub fn start_landscape(_job: LandscapeJob, _session: Option<&Session>, _emit: &Emitter) {}

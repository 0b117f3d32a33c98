//! The gradient-conflict computation from the UI: a named thread over a copy of
//! the base model, reporting progress and the result, cancellable between
//! backward passes.

use super::events::{Emitter, Event};
use super::session::GradSimInputs;
use crate::engine::analysis::GradSimConfig;
use crate::engine::analysis::gradsim::{
    GradSimProgress, GradSimResult, grad_similarity_any, gradsim_items,
};
use crate::engine::train::CancelToken;
use std::sync::Arc;
use std::thread::JoinHandle;

/// Points drawn for toy (point-cloud) datasets, as the CLI's default.
const TOY_POINTS: usize = 20_000;

/// A computation to run.
#[derive(Debug, Clone)]
pub struct GradSimJob {
    /// What to compute.
    pub config: GradSimConfig,
    /// Cancelled by the UI's Cancel button.
    pub cancel: CancelToken,
}

/// What the computation reports.
#[derive(Debug, Clone)]
pub enum GradSimUpdate {
    /// Loading the data.
    Preparing,
    /// Backward passes done.
    Progress(GradSimProgress),
    /// Finished, failed or cancelled.
    Finished(Result<Arc<GradSimResult>, String>),
}

/// Runs `job` on `inputs`, reporting through `on_update` (except the end).
pub fn run_gradsim(
    job: &GradSimJob,
    inputs: &GradSimInputs,
    on_update: &mut dyn FnMut(GradSimUpdate),
) -> anyhow::Result<GradSimResult> {
    on_update(GradSimUpdate::Preparing);
    let items = gradsim_items(&inputs.data, &inputs.spec, TOY_POINTS)?;
    let mut progress = |p: GradSimProgress| on_update(GradSimUpdate::Progress(p));
    grad_similarity_any(
        &inputs.model,
        &inputs.schedule,
        &items,
        &job.config,
        &job.cancel,
        &mut progress,
    )
}

/// Starts `job` on a thread named `gradsim`.
pub fn spawn_gradsim(job: GradSimJob, inputs: GradSimInputs, emit: Emitter) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name("gradsim".into())
        .spawn(move || {
            let mut on_update = |u| emit.emit(Event::GradSim(u));
            let result = run_gradsim(&job, &inputs, &mut on_update)
                .map(Arc::new)
                .map_err(|e| {
                    if job.cancel.is_cancelled() {
                        "cancelled".to_string()
                    } else {
                        format!("{e:#}")
                    }
                });
            emit.emit(Event::GradSim(GradSimUpdate::Finished(result)));
        })
        .expect("spawning the gradsim thread")
}

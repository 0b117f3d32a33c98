//! The gradient-conflict computation from the UI: a named thread over a copy of
//! the base model, reporting progress and the result, cancellable between
//! backward passes; and the same matrices of a training run's checkpoint,
//! taken on the training thread.

use super::events::{Emitter, Event};
use super::session::GradSimInputs;
use crate::engine::analysis::GradSimConfig;
use crate::engine::analysis::gradsim::{
    GradSimProgress, GradSimResult, grad_similarity_any, gradsim_items,
};
use crate::engine::diffusion::NoiseSchedule;
use crate::engine::store::load_model;
use crate::engine::train::BatchSampler;
use crate::engine::train::CancelToken;
use anyhow::Context;
use burn::tensor::Device;
use std::path::Path;
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
    /// A result computed elsewhere (a checkpoint of a training run), shown
    /// in place of the last one without touching a running computation.
    Live {
        /// The matrices.
        result: Arc<GradSimResult>,
        /// What they were taken of, e.g. `training run pretrain, step 20`.
        source: String,
    },
}

/// The caption of a result taken from a training run's checkpoint.
pub fn live_source(run: &str, step: u64) -> String {
    format!("training run {run}, step {step}")
}

/// The gradient cosine matrices of the checkpoint in `dir` on `items` (a run's
/// training data); `config`'s K timesteps are spread over `[0, timesteps)`.
/// Stops with an error when `cancel` is set.
pub fn checkpoint_gradsim(
    dir: &Path,
    items: &BatchSampler,
    config: &GradSimConfig,
    timesteps: usize,
    device: &Device,
    cancel: &CancelToken,
) -> anyhow::Result<GradSimResult> {
    let loaded = load_model(dir, device)
        .with_context(|| format!("loading the checkpoint {}", dir.display()))?;
    let schedule = NoiseSchedule::ddpm(timesteps);
    let config = GradSimConfig {
        timesteps: GradSimConfig::even_timesteps(config.timesteps.len().max(2), timesteps),
        ..config.clone()
    };
    grad_similarity_any(
        &loaded.model,
        &schedule,
        items,
        &config,
        cancel,
        &mut |_| {},
    )
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

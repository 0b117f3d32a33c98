//! The gradient-conflict computation from the UI: a named thread over a copy of
//! the base model, reporting progress and the result, cancellable between
//! backward passes; and the same matrices of a training run's checkpoint,
//! taken on the training thread.

use crate::app::job_slot::{Outcome, Sink};
use crate::app::session::GradSimInputs;
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

/// Where a computation reports: its progress, then its result.
pub type GradSimSink = Sink<GradSimUpdate, Arc<GradSimResult>>;

/// A computation to run.
#[derive(Debug, Clone)]
pub struct GradSimJob {
    /// What to compute.
    pub config: GradSimConfig,
    /// Cancelled by the UI's Cancel button.
    pub cancel: CancelToken,
    /// Where it reports.
    pub sink: GradSimSink,
}

/// What the computation reports before its end.
#[derive(Debug, Clone)]
pub enum GradSimUpdate {
    /// Loading the data.
    Preparing,
    /// Backward passes done.
    Progress(GradSimProgress),
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
pub fn spawn_gradsim(job: GradSimJob, inputs: GradSimInputs) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name("gradsim".into())
        .spawn(move || {
            let sink = job.sink.clone();
            let result = run_gradsim(&job, &inputs, &mut |u| sink.update(u)).map(Arc::new);
            sink.finish(Outcome::of(result, &job.cancel));
        })
        .expect("spawning the gradsim thread")
}

//! The pretraining loop: hand-written so every step can be streamed to a UI.
//!
//! AdamW with global gradient clipping, EMA weights, periodic atomic checkpoints,
//! resume from the last checkpoint, cancellation at step boundaries, and a hard
//! stop on a non-finite loss or gradient that leaves the last good checkpoint intact.

use super::batch::BatchSampler;
use super::cancel::CancelToken;
use super::events::TrainEvent;
use super::heldout_curve::HeldOutWatch;
use super::loss::eps_loss_per_sample;
use super::resume::RunStart;
use super::stepper::{CheckpointTarget, Stepper};
use super::train_config::TrainConfig;
use crate::engine::diffusion::NoiseSchedule;
use crate::engine::model::EpsModel;
use crate::engine::store::ModelSpec;
use anyhow::Result;
use std::path::Path;

/// Runs (or resumes) pretraining, saving into `out_dir`.
///
/// Returns the EMA model (or the raw one without EMA). On a non-finite loss the
/// run stops with an error and writes nothing, so the previous checkpoint stays
/// the latest; on cancel it saves a checkpoint and returns normally.
pub fn pretrain<M: EpsModel>(
    start: RunStart<M>,
    spec: &ModelSpec,
    data: &BatchSampler,
    config: &TrainConfig,
    out_dir: &Path,
    cancel: &CancelToken,
    on_event: &mut dyn FnMut(TrainEvent),
) -> Result<M> {
    pretrain_watched(start, spec, data, None, config, out_dir, cancel, on_event)
}

/// [`pretrain`], measuring the published weights' loss on a fixed set drawn from
/// `heldout` every `config.eval_every` steps (when both are set): each measurement
/// is a [`TrainEvent::HeldOut`] and a row of the run's
/// [`LOSS_CURVE_FILE`](super::heldout_curve::LOSS_CURVE_FILE).
#[allow(clippy::too_many_arguments)]
pub fn pretrain_watched<M: EpsModel>(
    start: RunStart<M>,
    spec: &ModelSpec,
    data: &BatchSampler,
    heldout: Option<&BatchSampler>,
    config: &TrainConfig,
    out_dir: &Path,
    cancel: &CancelToken,
    on_event: &mut dyn FnMut(TrainEvent),
) -> Result<M> {
    config.validate()?;
    let schedule = NoiseSchedule::ddpm(config.num_train_timesteps);
    let mut watch = match heldout {
        Some(val) if config.eval_every > 0 => Some(HeldOutWatch::new(
            val,
            &schedule,
            config,
            out_dir,
            start.step,
            &start.ema.devices()[0],
        )?),
        _ => None,
    };
    let target = CheckpointTarget {
        dir: out_dir.to_path_buf(),
        kind: "pretrain",
        timestep_range: None,
        data: Some(data.describe()),
        train_config: serde_json::to_value(config)?,
        parent: None,
        every: config.checkpoint_every,
    };
    let mut run = Stepper::new(start, spec, target, config.steps, config.ema_max_decay);
    on_event(run.started_event());
    while !run.is_done() {
        if cancel.is_cancelled() {
            run.cancel(on_event)?;
            return run.into_published();
        }
        let lr = config.lr_at(run.step_index());
        let mut batch_loss = f64::NAN;
        let loss = |model: &M, step: u64| {
            // one RNG stream per step: a resumed run draws exactly what an uninterrupted one would
            let mut rng = data.rng_for_step(config.seed, step);
            let batch = data.batch(
                &mut rng,
                config.batch_size,
                config.num_train_timesteps,
                &model.devices()[0],
            );
            Ok(eps_loss_per_sample(model, &schedule, batch.x0, batch.noise, &batch.t).mean())
        };
        run.step(lr, config.batch_size, loss, &mut |e| {
            if let TrainEvent::Step { loss, .. } = e {
                batch_loss = loss;
            }
            on_event(e)
        })?;
        if let Some(w) = watch.as_mut() {
            w.add_batch_loss(batch_loss);
            let step = run.step_index();
            if w.due(step, config.steps) {
                let loss = w.measure(step, lr, run.published()?, out_dir)?;
                on_event(TrainEvent::HeldOut { step, loss });
            }
        }
    }
    on_event(TrainEvent::Finished { step: config.steps });
    run.into_published()
}

/// [`pretrain`] for either model kind: from `model` (fresh), or with `resume`
/// from the run saved in `out_dir` (`model` gives the architecture).
#[allow(clippy::too_many_arguments)]
pub fn pretrain_any(
    model: crate::engine::store::AnyModel,
    resume: bool,
    spec: &ModelSpec,
    data: &BatchSampler,
    config: &TrainConfig,
    out_dir: &Path,
    cancel: &CancelToken,
    device: &burn::tensor::Device,
    on_event: &mut dyn FnMut(TrainEvent),
) -> Result<crate::engine::store::AnyModel> {
    use super::resume::{fresh_run, resume_run};
    use crate::engine::store::AnyModel;
    use anyhow::Context;
    #[allow(clippy::too_many_arguments)]
    fn run<M: EpsModel>(
        m: M,
        resume: bool,
        spec: &ModelSpec,
        data: &BatchSampler,
        config: &TrainConfig,
        out_dir: &Path,
        cancel: &CancelToken,
        device: &burn::tensor::Device,
        on_event: &mut dyn FnMut(TrainEvent),
    ) -> Result<M> {
        let start = if resume {
            resume_run(m, out_dir, config, device).context("resume")?
        } else {
            fresh_run(m, config, device)
        };
        pretrain(start, spec, data, config, out_dir, cancel, on_event)
    }
    Ok(match model {
        AnyModel::UNet(m) => AnyModel::UNet(run(
            m, resume, spec, data, config, out_dir, cancel, device, on_event,
        )?),
        AnyModel::Mlp(m) => AnyModel::Mlp(run(
            m, resume, spec, data, config, out_dir, cancel, device, on_event,
        )?),
    })
}

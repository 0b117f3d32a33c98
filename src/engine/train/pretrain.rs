//! The pretraining loop: hand-written so every step can be streamed to a UI.
//!
//! AdamW with global gradient clipping, EMA weights, periodic atomic checkpoints,
//! resume from the last checkpoint, cancellation at step boundaries, and a hard
//! stop on a non-finite loss or gradient that leaves the last good checkpoint intact.

use super::adamw::{AdamW, AdamWConfig};
use super::batch::BatchSampler;
use super::cancel::CancelToken;
use super::events::TrainEvent;
use super::heldout_curve::HeldOutWatch;
use super::loss::eps_loss_per_sample;
use super::stepper::{CheckpointTarget, Stepper, warmup_lr};
use crate::engine::diffusion::NoiseSchedule;
use crate::engine::model::EpsModel;
use crate::engine::store::ModelSpec;
use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Settings of a pretraining run (stored in each checkpoint's metadata).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Total optimizer steps (a resumed run continues up to this).
    pub steps: u64,
    /// Images per step.
    pub batch_size: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Linear warm-up steps from 0 to `lr`.
    pub warmup_steps: u64,
    /// Optimizer settings.
    pub adamw: AdamWConfig,
    /// Cap of the EMA decay (None: no EMA; checkpoints then hold the raw weights).
    pub ema_max_decay: Option<f64>,
    /// Save every this many steps (and at the end, and on cancel).
    pub checkpoint_every: u64,
    /// Seed of batches, timesteps and noise.
    pub seed: u64,
    /// Number of diffusion timesteps T.
    pub num_train_timesteps: usize,
    /// The last this many steps lower the learning rate linearly towards 0 (0: no decay).
    #[serde(default)]
    pub lr_decay_steps: u64,
    /// Measure the held-out loss every this many steps (0: never); see [`super::heldout_curve`].
    #[serde(default)]
    pub eval_every: u64,
    /// Samples of the fixed held-out set the loss is measured on.
    #[serde(default = "default_eval_samples")]
    pub eval_samples: usize,
}

fn default_eval_samples() -> usize {
    2000
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            steps: 2000,
            batch_size: 64,
            lr: 1e-3,
            warmup_steps: 100,
            adamw: AdamWConfig {
                weight_decay: 0.0,
                beta1: 0.9,
                ..AdamWConfig::default()
            },
            ema_max_decay: Some(0.999),
            checkpoint_every: 500,
            seed: 0,
            num_train_timesteps: 1000,
            lr_decay_steps: 0,
            eval_every: 0,
            eval_samples: default_eval_samples(),
        }
    }
}

impl TrainConfig {
    /// Checks every setting, with a message naming the bad one.
    pub fn validate(&self) -> Result<()> {
        if self.num_train_timesteps == 0 {
            bail!("the number of diffusion timesteps must be at least 1");
        }
        if self.steps == 0 {
            bail!("the number of steps must be at least 1");
        }
        if self.lr_decay_steps > self.steps {
            bail!(
                "the learning-rate decay ({} steps) cannot be longer than the run ({} steps)",
                self.lr_decay_steps,
                self.steps
            );
        }
        if self.eval_every > 0 && self.eval_samples == 0 {
            bail!("the held-out evaluation needs at least 1 sample");
        }
        super::stepper::check_step_settings(self.batch_size, self.lr, self.ema_max_decay)
    }

    /// Learning rate at `step` (0-based): linear warm-up from 0, then `lr`, then over
    /// the last `lr_decay_steps` steps a linear fall to `lr / lr_decay_steps` at the last step.
    pub fn lr_at(&self, step: u64) -> f64 {
        let decay_start = self.steps.saturating_sub(self.lr_decay_steps);
        let tail = if self.lr_decay_steps == 0 || step < decay_start {
            1.0
        } else {
            (self.steps.saturating_sub(step)) as f64 / self.lr_decay_steps as f64
        };
        warmup_lr(self.lr, self.warmup_steps, step) * tail
    }
}

/// Where a run starts from.
pub struct RunStart<M> {
    /// Weights being trained (on an autodiff device).
    pub model: M,
    /// EMA weights (plain device).
    pub ema: M,
    /// Optimizer state.
    pub optimizer: AdamW,
    /// Steps already done.
    pub step: u64,
}

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

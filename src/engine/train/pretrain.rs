//! The pretraining loop: hand-written so every step can be streamed to a UI.
//!
//! AdamW with global gradient clipping, EMA weights, periodic atomic checkpoints,
//! resume from the last checkpoint, cancellation at step boundaries, and a hard
//! stop on a non-finite loss or gradient that leaves the last good checkpoint intact.

use super::adamw::{AdamW, AdamWConfig};
use super::batch::BatchSampler;
use super::cancel::CancelToken;
use super::ema::{ema_decay, ema_update};
use super::events::{StopReason, TrainEvent};
use super::loss::eps_loss_per_sample;
use crate::engine::diffusion::NoiseSchedule;
use crate::engine::model::EpsModel;
use crate::engine::store::{ModelSpec, RunCheckpoint, TrainState};
use anyhow::{Context, Result, bail};
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Instant;

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
        }
    }
}

impl TrainConfig {
    /// Learning rate at `step` (0-based) with linear warm-up.
    pub fn lr_at(&self, step: u64) -> f64 {
        if self.warmup_steps == 0 {
            self.lr
        } else {
            self.lr * ((step + 1) as f64 / self.warmup_steps as f64).min(1.0)
        }
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
    let schedule = NoiseSchedule::linear(1e-4, 0.02, config.num_train_timesteps);
    let RunStart {
        mut model,
        mut ema,
        mut optimizer,
        step: first,
    } = start;
    on_event(TrainEvent::Started {
        first_step: first,
        total_steps: config.steps,
    });
    let save = |model: &M, ema: &M, optimizer: &AdamW, step: u64| -> Result<()> {
        let ckpt = RunCheckpoint {
            spec,
            weights: if config.ema_max_decay.is_some() {
                ema
            } else {
                model
            },
            kind: "pretrain",
            step,
            timestep_range: None,
            data: Some(data.describe()),
            train_config: serde_json::to_value(config)?,
            state: Some(TrainState { model, optimizer }),
        };
        ckpt.save(out_dir)
            .with_context(|| format!("saving checkpoint at step {step} to {}", out_dir.display()))
    };

    let mut window = Instant::now();
    let mut window_images = 0usize;
    for step in first..config.steps {
        if cancel.is_cancelled() {
            save(&model, &ema, &optimizer, step)?;
            on_event(TrainEvent::Checkpoint {
                step,
                path: out_dir.to_path_buf(),
            });
            on_event(TrainEvent::Stopped {
                step,
                reason: StopReason::Cancelled,
            });
            return Ok(if config.ema_max_decay.is_some() {
                ema
            } else {
                model.valid()
            });
        }
        // one RNG stream per step: a resumed run draws exactly what an uninterrupted one would
        let mut rng = data.rng_for_step(config.seed, step);
        let batch = data.batch(
            &mut rng,
            config.batch_size,
            config.num_train_timesteps,
            &model.devices()[0],
        );
        let loss: Tensor<1> =
            eps_loss_per_sample(&model, &schedule, batch.x0, batch.noise, &batch.t).mean();
        let loss_value = loss.clone().into_scalar::<f32>() as f64;
        if !loss_value.is_finite() {
            on_event(TrainEvent::Stopped {
                step,
                reason: StopReason::NonFinite,
            });
            bail!(
                "loss became {loss_value} at step {step}; stopped. The last good checkpoint in {} is intact",
                out_dir.display()
            );
        }
        if !loss.is_tracked() {
            bail!(
                "the model being trained is not tracked for gradients; start runs with fresh_run or resume_run"
            );
        }
        let grads = loss.backward();
        let lr = config.lr_at(step);
        let (next, stats) = match optimizer.step(model, &grads, lr) {
            Ok(v) => v,
            Err(e) => {
                on_event(TrainEvent::Stopped {
                    step,
                    reason: StopReason::NonFinite,
                });
                return Err(e.context(format!(
                    "at step {step}; the last good checkpoint in {} is intact",
                    out_dir.display()
                )));
            }
        };
        model = next;
        if let Some(max) = config.ema_max_decay {
            ema = ema_update(ema, &model, ema_decay(step, max));
        }
        window_images += config.batch_size;
        let elapsed = window.elapsed().as_secs_f64();
        let throughput = window_images as f64 / elapsed.max(1e-9);
        if elapsed > 2.0 {
            window = Instant::now();
            window_images = 0;
        }
        on_event(TrainEvent::Step {
            step: step + 1,
            total_steps: config.steps,
            loss: loss_value,
            grad_norm: stats.grad_norm,
            lr,
            images_per_sec: throughput,
        });
        let done = step + 1;
        if done % config.checkpoint_every == 0 || done == config.steps {
            save(&model, &ema, &optimizer, done)?;
            on_event(TrainEvent::Checkpoint {
                step: done,
                path: out_dir.to_path_buf(),
            });
        }
    }
    on_event(TrainEvent::Finished { step: config.steps });
    Ok(if config.ema_max_decay.is_some() {
        ema
    } else {
        model.valid()
    })
}

//! One training run advanced a step at a time: loss, backward, AdamW, EMA,
//! progress event, periodic checkpoint. Pretraining drives one of these; DeMe
//! finetuning drives several, one after another or interleaved.
//!
//! A non-finite loss or gradient stops the run with an error and writes nothing,
//! so the last good checkpoint stays the latest; a cancel saves first.

use super::adamw::AdamW;
use super::ema::{ema_decay, ema_update};
use super::events::{StopReason, TrainEvent};
use super::resume::RunStart;
use crate::engine::model::EpsModel;
use crate::engine::store::{ModelSpec, RunCheckpoint, TrainState};
use anyhow::{Context, Result, anyhow, bail};
use burn::tensor::Tensor;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Where a run writes its checkpoints and what their `deme.json` says.
#[derive(Debug, Clone)]
pub struct CheckpointTarget {
    /// The run's folder.
    pub dir: PathBuf,
    /// Metadata kind: `"pretrain"`, `"finetune"`.
    pub kind: &'static str,
    /// Timestep range the run trains on, when restricted (`hi` exclusive).
    pub timestep_range: Option<[usize; 2]>,
    /// Data description.
    pub data: Option<String>,
    /// The run's settings.
    pub train_config: serde_json::Value,
    /// The checkpoint the run started from.
    pub parent: Option<String>,
    /// Save every this many steps (and at the end, and on cancel).
    pub every: u64,
}

/// The raw weights (autodiff device) and their moving average (plain device).
struct Weights<M> {
    model: M,
    ema: M,
}

/// A run in progress: weights, EMA, optimizer and step count.
pub struct Stepper<'a, M> {
    spec: &'a ModelSpec,
    target: CheckpointTarget,
    /// `None` only after an optimizer step failed (the run is then over).
    weights: Option<Weights<M>>,
    optimizer: AdamW,
    step: u64,
    total_steps: u64,
    ema_max_decay: Option<f64>,
    window: Instant,
    window_images: usize,
}

impl<'a, M: EpsModel> Stepper<'a, M> {
    /// Takes over `start`; the run ends after `total_steps` steps.
    pub fn new(
        start: RunStart<M>,
        spec: &'a ModelSpec,
        target: CheckpointTarget,
        total_steps: u64,
        ema_max_decay: Option<f64>,
    ) -> Self {
        Self {
            spec,
            target,
            weights: Some(Weights {
                model: start.model,
                ema: start.ema,
            }),
            optimizer: start.optimizer,
            step: start.step,
            total_steps,
            ema_max_decay,
            window: Instant::now(),
            window_images: 0,
        }
    }

    /// Steps done so far (the index of the next step).
    pub fn step_index(&self) -> u64 {
        self.step
    }

    /// Steps the run ends at.
    pub fn total_steps(&self) -> u64 {
        self.total_steps
    }

    /// Whether all steps are done.
    pub fn is_done(&self) -> bool {
        self.step >= self.total_steps
    }

    /// The run's folder.
    pub fn dir(&self) -> &Path {
        &self.target.dir
    }

    /// The event announcing the steps still to run.
    pub fn started_event(&self) -> TrainEvent {
        TrainEvent::Started {
            first_step: self.step,
            total_steps: self.total_steps,
        }
    }

    fn weights(&self) -> Result<&Weights<M>> {
        self.weights
            .as_ref()
            .ok_or_else(|| anyhow!("the run in {} already failed", self.target.dir.display()))
    }

    /// Runs one step: `loss(model, step)` must return the batch's mean loss,
    /// tracked for gradients. Emits `Step` (and `Checkpoint` when one is due);
    /// on a non-finite loss or gradient emits `Stopped` and fails, writing nothing.
    pub fn step(
        &mut self,
        lr: f64,
        images: usize,
        loss: impl FnOnce(&M, u64) -> Result<Tensor<1>>,
        on_event: &mut dyn FnMut(TrainEvent),
    ) -> Result<()> {
        let step = self.step;
        let dir = self.target.dir.display().to_string();
        // steps count from 1 in every message, as in the progress lines
        let shown = step + 1;
        let loss = loss(&self.weights()?.model, step)?;
        let loss_value = loss.clone().into_scalar::<f32>() as f64;
        if !loss_value.is_finite() {
            on_event(TrainEvent::Stopped {
                step,
                reason: StopReason::NonFinite,
            });
            bail!(
                "loss became {loss_value} at step {shown}; stopped. {}",
                what_is_kept(&self.target.dir)
            );
        }
        if !loss.is_tracked() {
            bail!(
                "the model being trained is not tracked for gradients; start runs with fresh_run or resume_run"
            );
        }
        let grads = loss.backward();
        let Weights { model, mut ema } = self
            .weights
            .take()
            .ok_or_else(|| anyhow!("the run in {dir} already failed"))?;
        let (model, stats) = match self.optimizer.step(model, &grads, lr) {
            Ok(v) => v,
            Err(e) => {
                on_event(TrainEvent::Stopped {
                    step,
                    reason: StopReason::NonFinite,
                });
                return Err(e.context(format!(
                    "at step {shown}; stopped. {}",
                    what_is_kept(&self.target.dir)
                )));
            }
        };
        if let Some(max) = self.ema_max_decay {
            ema = ema_update(ema, &model, ema_decay(step, max));
        }
        self.weights = Some(Weights { model, ema });
        self.step = step + 1;

        self.window_images += images;
        let elapsed = self.window.elapsed().as_secs_f64();
        let throughput = self.window_images as f64 / elapsed.max(1e-9);
        if elapsed > 2.0 {
            self.window = Instant::now();
            self.window_images = 0;
        }
        on_event(TrainEvent::Step {
            step: self.step,
            total_steps: self.total_steps,
            loss: loss_value,
            grad_norm: stats.grad_norm,
            lr,
            images_per_sec: throughput,
        });
        if self.step.is_multiple_of(self.target.every.max(1)) || self.step == self.total_steps {
            self.save()?;
            on_event(TrainEvent::Checkpoint {
                step: self.step,
                path: self.target.dir.clone(),
            });
        }
        Ok(())
    }

    /// Writes the run's checkpoint at the current step.
    pub fn save(&self) -> Result<()> {
        let Weights { model, ema } = self.weights()?;
        let step = self.step;
        let t = &self.target;
        RunCheckpoint {
            spec: self.spec,
            weights: if self.ema_max_decay.is_some() {
                ema
            } else {
                model
            },
            kind: t.kind,
            step,
            timestep_range: t.timestep_range,
            data: t.data.clone(),
            train_config: t.train_config.clone(),
            parent: t.parent.clone(),
            state: Some(TrainState {
                model,
                optimizer: &self.optimizer,
            }),
        }
        .save(&t.dir)
        .with_context(|| format!("saving checkpoint at step {step} to {}", t.dir.display()))
    }

    /// Stops on request: saves, then emits `Checkpoint` and `Stopped`.
    pub fn cancel(&self, on_event: &mut dyn FnMut(TrainEvent)) -> Result<()> {
        self.save()?;
        on_event(TrainEvent::Checkpoint {
            step: self.step,
            path: self.target.dir.clone(),
        });
        on_event(TrainEvent::Stopped {
            step: self.step,
            reason: StopReason::Cancelled,
        });
        Ok(())
    }

    /// The weights the run would publish now: the EMA, or the raw weights without EMA
    /// (those still on the autodiff device).
    pub fn published(&self) -> Result<&M> {
        let Weights { model, ema } = self.weights()?;
        Ok(if self.ema_max_decay.is_some() {
            ema
        } else {
            model
        })
    }

    /// The weights the run publishes: the EMA, or the raw weights without EMA.
    pub fn into_published(self) -> Result<M> {
        let dir = self.target.dir.display().to_string();
        let Weights { model, ema } = self
            .weights
            .ok_or_else(|| anyhow!("the run in {dir} already failed"))?;
        Ok(if self.ema_max_decay.is_some() {
            ema
        } else {
            model.valid()
        })
    }
}

/// What a failed run leaves behind in `dir`, in words.
fn what_is_kept(dir: &std::path::Path) -> String {
    let meta = dir.join(crate::engine::store::META_FILE);
    match crate::engine::checkpoint::read_meta(&meta) {
        Ok(m) if dir.join(crate::engine::store::WEIGHTS_FILE).exists() => format!(
            "The last good checkpoint in {} (step {}) is intact",
            dir.display(),
            m.step
        ),
        _ => format!(
            "No checkpoint was due yet, so nothing was written to {}",
            dir.display()
        ),
    }
}

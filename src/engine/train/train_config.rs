//! The settings of a pretraining run, as stored in each checkpoint's metadata,
//! and its learning-rate schedule.

use super::adamw::AdamWConfig;
use super::step_settings::{check_step_settings, warmup_lr};
use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

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
        check_step_settings(self.batch_size, self.lr, self.ema_max_decay)
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

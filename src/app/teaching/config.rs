//! What a teaching run trains and what it reports: the settings, the point
//! clouds, the updates and the job.

use crate::app::job_slot::Sink;
use crate::engine::data::{TOY_DATA_SEED, ToyKind, sample_toy};
use crate::engine::model_set::ModelSet;
use crate::engine::train::CancelToken;
use anyhow::{Result, bail};
use burn::tensor::Tensor;
use std::path::PathBuf;
use std::sync::Arc;

pub(super) const T: usize = 1000;
/// Points drawn for the training data (as the CLI's `--toy-points`).
pub(super) const TOY_POINTS: usize = 20_000;
/// Fraction held out (as the CLI's `--val-fraction`).
pub(super) const VAL_FRACTION: f64 = 0.1;

/// Steps reported together.
pub const LOSS_BUNCH: usize = 32;

/// A 2D point.
pub type Point = [f32; 2];

/// What to train and how.
#[derive(Debug, Clone, PartialEq)]
pub struct TeachingConfig {
    /// The toy distribution.
    pub data: ToyKind,
    /// Pretraining steps of the base.
    pub base_steps: u64,
    /// Finetuning steps of each expert.
    pub expert_steps: u64,
    /// Number of experts N (timestep ranges).
    pub experts: usize,
    /// Points per step.
    pub batch_size: usize,
    /// Pretraining learning rate.
    pub base_lr: f64,
    /// Finetuning learning rate.
    pub expert_lr: f64,
    /// Cap of the EMA decay of the published weights (None: the raw weights).
    pub ema_max_decay: Option<f64>,
    /// Draw a sample cloud every this many steps.
    pub sample_every: u64,
    /// Points in a sample cloud (and in the data cloud shown).
    pub samples: usize,
    /// DDIM steps of a sample cloud.
    pub sample_steps: usize,
    /// Seed of the weights, batches and the sampling noise.
    pub seed: u64,
    /// Folder the run's own folder is made in.
    pub out_root: PathBuf,
}

impl TeachingConfig {
    /// Defaults that train a crisp moons model in seconds on a laptop CPU (with
    /// the `toy-mlp` preset; `tests/integration/toy_quality.rs` checks the clouds).
    pub fn new(out_root: PathBuf) -> Self {
        Self {
            data: ToyKind::TwoMoons,
            base_steps: 1200,
            expert_steps: 150,
            experts: 4,
            batch_size: 512,
            base_lr: 3e-3,
            expert_lr: 1e-3,
            ema_max_decay: Some(0.995),
            sample_every: 100,
            samples: 1000,
            sample_steps: 20,
            seed: 0,
            out_root,
        }
    }

    /// Checks the settings, naming the bad one.
    pub fn validate(&self) -> Result<()> {
        if self.base_steps == 0 || self.expert_steps == 0 {
            bail!("the base and every expert need at least one step");
        }
        if self.experts == 0 {
            bail!("at least one expert is needed");
        }
        if self.sample_every == 0 || self.samples == 0 || self.sample_steps == 0 {
            bail!("sampling needs at least one step, one point and one DDIM step");
        }
        Ok(())
    }

    /// Total optimizer steps (the experts' counted one after another).
    pub fn total_steps(&self) -> u64 {
        self.base_steps + self.expert_steps * self.experts as u64
    }
}

/// Which part of the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Pretraining the base on all timesteps.
    Base,
    /// Finetuning the experts, each on its timestep range (interleaved).
    Experts,
}

/// A point cloud drawn from the current weights.
#[derive(Debug, Clone)]
pub struct SampleCloud {
    /// Drawn during which stage (the experts' clouds come from their timestep-wise ensemble).
    pub stage: Stage,
    /// Steps of that stage done.
    pub step: u64,
    /// The points.
    pub points: Arc<Vec<Point>>,
}

/// What the background work reports to the Teaching view.
#[derive(Debug, Clone)]
pub enum TeachingUpdate {
    /// The run started: its folder and the data cloud.
    Started {
        /// Where the set is saved.
        dir: PathBuf,
        /// Points of the data distribution.
        data: Arc<Vec<Point>>,
    },
    /// Optimizer steps finished (sent in bunches of [`LOSS_BUNCH`], so that
    /// the window is not redrawn for every step).
    Losses {
        /// Which stage.
        stage: Stage,
        /// `(run, step, loss)`: the expert index in the experts stage (0 for
        /// the base), the steps of that run done, the batch's loss.
        losses: Vec<(usize, u64, f64)>,
    },
    /// A new sample cloud.
    Samples(SampleCloud),
}

/// Where a run reports: its progress, then the saved set.
pub type TeachingSink = Sink<TeachingUpdate, ModelSet>;

/// A run to start.
#[derive(Debug, Clone)]
pub struct TeachingJob {
    /// What to train.
    pub config: TeachingConfig,
    /// Cancelled by the view's Cancel button.
    pub cancel: CancelToken,
    /// Where it reports.
    pub sink: TeachingSink,
}

/// Host `[x, y]` pairs of a `[n, 2, 1, 1]` tensor.
pub fn to_points(x: &Tensor<4>) -> Result<Vec<Point>> {
    let values = x
        .clone()
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("reading samples back: {e:?}"))?;
    Ok(values.chunks_exact(2).map(|p| [p[0], p[1]]).collect())
}

/// The points of the data distribution (the dataset's first `n`).
pub fn data_points(kind: ToyKind, n: usize) -> Vec<Point> {
    sample_toy(kind, n, TOY_DATA_SEED)
        .points
        .chunks_exact(2)
        .map(|p| [p[0], p[1]])
        .collect()
}

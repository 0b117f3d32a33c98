//! What a training job is and reports: its kind and settings, its runs, its
//! updates and how it ended.

use super::control::Control;
use crate::app::job_slot::Sink;
use crate::app::preview::PreviewImage;
use crate::engine::analysis::{GradSimConfig, GradSimResult};
use crate::engine::data::DataSpec;
use crate::engine::model_set::ModelSet;
use crate::engine::train::{
    CancelToken, FinetuneConfig, LossParts, RunId, Schedule, TrainConfig, TrainEvent,
};
use std::path::PathBuf;
use std::sync::Arc;

/// How previews are sampled from each checkpoint.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PreviewConfig {
    /// Whether to sample at all.
    pub enabled: bool,
    /// Images per preview (toy runs draw 32 times as many points).
    pub samples: usize,
    /// DDIM steps.
    pub steps: usize,
    /// Seed of the starting noise (the same for every preview).
    pub seed: u64,
}

impl Default for PreviewConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            samples: 8,
            steps: 10,
            seed: 0,
        }
    }
}

/// Which run of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RunKey {
    /// The pretraining run.
    Pretrain,
    /// A finetune run (expert or baseline).
    Finetune(RunId),
}

impl std::fmt::Display for RunKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Pretrain => f.write_str("pretrain"),
            Self::Finetune(r) => write!(f, "{}", r.folder_name()),
        }
    }
}

/// What to train.
#[derive(Debug, Clone)]
pub enum JobKind {
    /// A model from scratch.
    Pretrain {
        /// Preset name or `config.json` path.
        model: String,
        /// Settings.
        config: TrainConfig,
    },
    /// DeMe experts (and/or the baseline) from a base.
    Finetune {
        /// The base model folder.
        base: PathBuf,
        /// Settings.
        config: FinetuneConfig,
        /// Step order.
        schedule: Schedule,
        /// Train the N experts.
        experts: bool,
        /// Train the baseline.
        baseline: bool,
    },
}

/// A training job started from the view.
#[derive(Debug, Clone)]
pub struct TrainJob {
    /// What to train.
    pub kind: JobKind,
    /// Training data.
    pub data: DataSpec,
    /// Output folder.
    pub out: PathBuf,
    /// Continue the run(s) in `out`.
    pub resume: bool,
    /// Held-out fraction of the data.
    pub val_fraction: f64,
    /// Points drawn for toy datasets.
    pub toy_points: usize,
    /// Checkpoint previews.
    pub preview: PreviewConfig,
    /// Gradient conflicts of the live run (see [`live_gradsim_run`]) at each
    /// of its checkpoints, sent to the Gradient-conflicts view; `None`: off.
    pub gradsim: Option<GradSimConfig>,
    /// Set by Cancel.
    pub cancel: CancelToken,
    /// Pause and step.
    pub control: Control,
    /// Where it reports.
    pub sink: TrainSink,
}

/// One run as planned: its folder, steps and timestep range.
#[derive(Debug, Clone, PartialEq)]
pub struct RunPlan {
    /// Which run.
    pub key: RunKey,
    /// Optimizer steps it ends at.
    pub total_steps: u64,
    /// Timesteps it trains on, `[lo, hi)`.
    pub range: [usize; 2],
    /// Its checkpoint folder.
    pub dir: PathBuf,
    /// Images per step.
    pub batch_size: usize,
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainOutcome {
    /// Whether it stopped on Cancel (checkpoints hold the step reached).
    pub cancelled: bool,
    /// A finished finetune's base and experts, ready for the merge view.
    pub set: Option<ModelSet>,
    /// The output folder.
    pub out: PathBuf,
}

/// What the job reports to the view.
#[derive(Debug, Clone)]
pub enum TrainUpdate {
    /// A stage before training (loading data or the base).
    Stage(String),
    /// Something worth knowing (e.g. a setting that does not apply).
    Note(String),
    /// The runs, once the data and model are ready.
    Plan(Vec<RunPlan>),
    /// An engine event of one run.
    Event {
        /// Which run.
        run: RunKey,
        /// What happened.
        event: TrainEvent,
        /// The loss split of a finetune step.
        parts: Option<LossParts>,
    },
    /// The thread is holding at the pause gate.
    Held,
    /// The thread left the pause gate.
    Released,
    /// Samples of a run's latest checkpoint.
    Preview {
        /// Which run.
        run: RunKey,
        /// The checkpoint's step.
        step: u64,
        /// The picture.
        image: Arc<PreviewImage>,
    },
    /// The gradient conflicts of the live run's latest checkpoint, for the
    /// Gradient-conflicts view.
    GradSim {
        /// The matrices.
        result: Arc<GradSimResult>,
        /// What they were taken of, e.g. `training run pretrain, step 20`.
        source: String,
    },
}

/// Where a job reports: its runs' events, then how it ended (a cancelled job
/// ends with an outcome that says so: every started run was saved).
pub type TrainSink = Sink<TrainUpdate, TrainOutcome>;

/// The run whose checkpoints get their gradient conflicts taken: the
/// pretrain run, or the first finetune run of the plan (the first expert, or the
/// baseline when it trains alone).
pub fn live_gradsim_run(plan: &[RunPlan]) -> Option<RunKey> {
    plan.first().map(|p| p.key)
}

//! Progress events a training job streams to its caller (CLI progress bar or GUI).

use std::path::PathBuf;

/// Why a run ended early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The caller cancelled; a checkpoint was written first.
    Cancelled,
    /// Loss or gradient was NaN/inf; nothing was written.
    NonFinite,
}

/// One thing that happened in a run.
#[derive(Debug, Clone, PartialEq)]
pub enum TrainEvent {
    /// The loop is about to run steps `first_step..total_steps`.
    Started {
        /// First step index (non-zero when resuming).
        first_step: u64,
        /// Final step count.
        total_steps: u64,
    },
    /// One optimizer step finished.
    Step {
        /// Steps done so far.
        step: u64,
        /// Final step count.
        total_steps: u64,
        /// Mean loss of the batch.
        loss: f64,
        /// Gradient norm before clipping.
        grad_norm: f64,
        /// Learning rate used.
        lr: f64,
        /// Recent throughput.
        images_per_sec: f64,
    },
    /// The published weights were measured on the run's held-out set.
    HeldOut {
        /// Steps done.
        step: u64,
        /// Mean held-out loss.
        loss: f64,
    },
    /// A checkpoint was written.
    Checkpoint {
        /// Steps it contains.
        step: u64,
        /// Folder written.
        path: PathBuf,
    },
    /// The run ended early.
    Stopped {
        /// Step at which it stopped.
        step: u64,
        /// Why.
        reason: StopReason,
    },
    /// All steps done.
    Finished {
        /// Steps done.
        step: u64,
    },
}

/// One of the runs of a finetune job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RunId {
    /// Expert `k` (0-based) of `N`, trained on `[k T / N, (k + 1) T / N)`; its
    /// folder is `expert_{k + 1}`, numbered from 1 like the paper's `theta_i`.
    Expert(usize),
    /// Plain finetuning of one copy on all timesteps, for comparison; folder `baseline`.
    Baseline,
}

impl RunId {
    /// The run's folder name inside the job's output folder.
    pub fn folder_name(&self) -> String {
        match self {
            Self::Expert(k) => format!("expert_{}", k + 1),
            Self::Baseline => "baseline".into(),
        }
    }
}

impl std::fmt::Display for RunId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Expert(k) => write!(f, "expert {}", k + 1),
            Self::Baseline => f.write_str("baseline"),
        }
    }
}

/// The two terms of a DeMe step's loss (host values).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossParts {
    /// `mean || eps - eps_i(x_t, t) ||^2`.
    pub eps: f64,
    /// `mean || eps_frozen(x_t, t) - eps_i(x_t, t) ||^2`, when its weight is not 0.
    pub consistency: Option<f64>,
}

/// Something that happened in one run of a finetune job.
#[derive(Debug, Clone, PartialEq)]
pub struct FinetuneEvent {
    /// Which run.
    pub run: RunId,
    /// What happened, as in pretraining.
    pub event: TrainEvent,
    /// The loss split, on `Step` events.
    pub parts: Option<LossParts>,
}

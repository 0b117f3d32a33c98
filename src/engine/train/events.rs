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

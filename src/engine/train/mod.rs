//! Training: the epsilon objective, AdamW, EMA, batches, the pretraining loop and
//! DeMe decoupled finetuning.

pub mod adamw;
pub mod batch;
pub mod cancel;
pub mod consistency;
pub mod ema;
pub mod events;
pub mod finetune;
pub mod finetune_config;
pub mod heldout_curve;
pub mod loss;
pub mod pretrain;
pub mod resume;
pub mod step_settings;
pub mod stepper;
pub mod timesteps;
pub mod train_config;

pub use adamw::{AdamW, AdamWConfig};
pub use batch::BatchSampler;
pub use cancel::CancelToken;
pub use consistency::{FinetuneLoss, finetune_loss};
pub use events::{FinetuneEvent, LossParts, RunId, StopReason, TrainEvent};
pub use finetune::{
    FinetuneJob, FinetuneModel, FinetuneOutcome, Schedule, finetune, finetune_any, run_dir,
    start_model, stored_config,
};
pub use finetune_config::FinetuneConfig;
pub use heldout_curve::{CurvePoint, HeldOutWatch, last_quarter_improvement};
pub use pretrain::{pretrain, pretrain_any, pretrain_watched};
pub use resume::{RunStart, fresh_run, fresh_start, resume_run, resume_start};
pub use timesteps::{
    MixMode, TimestepDraw, TimestepRange, TimestepSampler, check_boundaries, fmt_boundaries,
    parse_boundaries, ranges_of, uniform_boundaries,
};
pub use train_config::TrainConfig;

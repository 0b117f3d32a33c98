//! Training: the epsilon objective, AdamW, EMA, batches, and the pretraining loop.

pub mod adamw;
pub mod batch;
pub mod cancel;
pub mod ema;
pub mod events;
pub mod loss;
pub mod pretrain;
pub mod resume;

pub use adamw::{AdamW, AdamWConfig};
pub use batch::BatchSampler;
pub use cancel::CancelToken;
pub use events::{StopReason, TrainEvent};
pub use pretrain::{RunStart, TrainConfig, pretrain};
pub use resume::{fresh_run, resume_run};

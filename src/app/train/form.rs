//! The Train view's settings form as data: what to train (a base, or DeMe
//! experts from a base), on which data, where to, and every setting of the
//! engine's pretraining and finetuning; turned into a [`TrainJob`] on Start.

use super::control::Control;
use super::plan::{JobKind, PreviewConfig, TrainJob};
use crate::app::job_slot::Sink;
use crate::engine::checkpoint::DEFAULT_IMAGE_PRESET;
use crate::engine::data::DataSpec;
use crate::engine::store::ModelSpec;
use crate::engine::train::{CancelToken, FinetuneConfig, Schedule, TrainConfig, parse_boundaries};
use anyhow::{Result, bail};
use std::path::PathBuf;

/// Label of the checkbox that takes gradient conflicts at each checkpoint.
pub const GRADSIM_LIVE_LABEL: &str = "Gradient conflicts at each checkpoint";

/// Pretrain a base, or finetune experts from one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TrainMode {
    /// Train a model from scratch.
    Pretrain,
    /// DeMe: finetune N timestep-range experts from a base.
    #[default]
    Finetune,
}

/// Which finetune runs to train.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BaselineChoice {
    /// The N experts only.
    #[default]
    ExpertsOnly,
    /// The experts and the plain-finetuning baseline.
    WithBaseline,
    /// Only the baseline.
    BaselineOnly,
}

/// Everything the form edits.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainForm {
    /// Pretrain or finetune.
    pub mode: TrainMode,
    /// Dataset (`mnist`, `cifar10:PATH`, `images:PATH`, `idx:PATH`, `toy:NAME`).
    pub data: String,
    /// Model to pretrain: a preset name or a `config.json` path.
    pub model: String,
    /// Base model folder to finetune.
    pub base: String,
    /// Output folder (pretrain: the model folder; finetune: holds `expert_i`).
    pub out: String,
    /// Continue the run found in the output folder.
    pub resume: bool,
    /// Pretraining settings.
    pub pretrain: TrainConfig,
    /// Finetuning settings.
    pub finetune: FinetuneConfig,
    /// The experts' range boundaries as typed (`0,120,400,1000`); empty for N
    /// uniform ranges.
    pub boundaries: String,
    /// Step order of the finetune runs.
    pub schedule: Schedule,
    /// Which finetune runs.
    pub baseline: BaselineChoice,
    /// Fraction of the data held out (never trained on).
    pub val_fraction: f64,
    /// Points drawn for toy datasets.
    pub toy_points: usize,
    /// Sample previews at each checkpoint.
    pub preview: PreviewConfig,
    /// Take the gradient conflicts of one run at each checkpoint (the
    /// settings come from the Gradient-conflicts view on Start).
    pub gradsim_live: bool,
}

impl Default for TrainForm {
    fn default() -> Self {
        Self {
            mode: TrainMode::default(),
            data: "mnist".into(),
            model: DEFAULT_IMAGE_PRESET.into(),
            base: String::new(),
            out: String::new(),
            resume: false,
            pretrain: TrainConfig::default(),
            finetune: FinetuneConfig {
                checkpoint_every: 50,
                ..FinetuneConfig::default()
            },
            boundaries: String::new(),
            schedule: Schedule::Interleaved,
            baseline: BaselineChoice::ExpertsOnly,
            val_fraction: 0.1,
            toy_points: 20_000,
            preview: PreviewConfig::default(),
            gradsim_live: false,
        }
    }
}

/// A fresh output folder under the system's temporary folder.
pub fn default_out(mode: TrainMode) -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let name = match mode {
        TrainMode::Pretrain => format!("base-{secs}"),
        TrainMode::Finetune => format!("deme-{secs}"),
    };
    std::env::temp_dir()
        .join("deme-studio-runs")
        .join(name)
        .display()
        .to_string()
}

impl TrainForm {
    /// The finetuning settings with the typed boundaries (which set N), checked.
    pub fn finetune_config(&self) -> Result<FinetuneConfig> {
        let mut c = self.finetune.clone();
        let typed = self.boundaries.trim();
        if !typed.is_empty() {
            let b = parse_boundaries(typed)?;
            c.experts = b.len().saturating_sub(1);
            c.boundaries = Some(b);
        }
        c.validate()?;
        Ok(c)
    }

    /// Checks the settings and builds the job they describe.
    pub fn job(&self) -> Result<TrainJob> {
        let data: DataSpec = self.data.trim().parse()?;
        let out = self.out.trim();
        if out.is_empty() {
            bail!("choose an output folder");
        }
        if !(0.0..1.0).contains(&self.val_fraction) {
            bail!(
                "the held-out fraction must be in [0, 1), not {}",
                self.val_fraction
            );
        }
        if matches!(data, DataSpec::Toy(_)) && self.toy_points == 0 {
            bail!("toy datasets need at least one point");
        }
        let kind = match self.mode {
            TrainMode::Pretrain => {
                let model = self.model.trim().to_string();
                ModelSpec::from_arg(&model)?;
                self.pretrain.validate()?;
                if self.pretrain.checkpoint_every == 0 {
                    bail!("checkpoint every must be at least 1");
                }
                JobKind::Pretrain {
                    model,
                    config: self.pretrain.clone(),
                }
            }
            TrainMode::Finetune => {
                let base = PathBuf::from(self.base.trim());
                if self.base.trim().is_empty() {
                    bail!("choose the base model folder to finetune");
                }
                if !base.join("config.json").is_file() {
                    bail!("{} is not a model folder (no config.json)", base.display());
                }
                let config = self.finetune_config()?;
                JobKind::Finetune {
                    base,
                    config,
                    schedule: self.schedule,
                    experts: self.baseline != BaselineChoice::BaselineOnly,
                    baseline: self.baseline != BaselineChoice::ExpertsOnly,
                }
            }
        };
        Ok(TrainJob {
            kind,
            data,
            out: PathBuf::from(out),
            resume: self.resume,
            val_fraction: self.val_fraction,
            toy_points: self.toy_points,
            preview: self.preview,
            gradsim: None,
            cancel: CancelToken::new(),
            control: Control::default(),
            sink: Sink::discard(),
        })
    }
}

/// What the form asks the app to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormAction {
    /// Open a folder dialog for the output folder.
    BrowseOut,
    /// Open a folder dialog for the base model.
    BrowseBase,
}

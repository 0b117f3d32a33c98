//! Settings of a `replicate` run.

use super::arms::{Arm, ArmKind};
use crate::engine::data::DataSpec;
use crate::engine::metric::features::FeatureTrainConfig;
use crate::engine::search::{GridSpec, LossObjective, Strategy};
use crate::engine::train::{FinetuneConfig, TrainConfig};
use anyhow::{Result, bail};
use serde::Serialize;
use std::path::PathBuf;

/// Where the pretrained model comes from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum BaseSource {
    /// Load this model folder (ours or diffusers).
    Load(PathBuf),
    /// Pretrain this model (preset or config.json) into `OUT/base`.
    Pretrain {
        /// A preset name or a config.json path.
        model: String,
        /// Pretraining settings.
        train: TrainConfig,
    },
}

/// Everything a `replicate` run does, with the defaults of the embedded MNIST demo.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplicateConfig {
    /// Dataset (its held-out split is never trained on).
    pub data: DataSpec,
    /// Fraction of the data held out.
    pub val_fraction: f64,
    /// The pretrained model.
    pub base: BaseSource,
    /// Decoupled finetuning (also gives the plain-finetune baseline its budget:
    /// N x `steps_per_expert` steps on all timesteps).
    pub finetune: FinetuneConfig,
    /// The merge-weight lattice (its `n` is the number of experts).
    pub grid: GridSpec,
    /// How the merge-weight lattice is searched.
    pub strategy: Strategy,
    /// What the search minimises.
    pub objective: LossObjective,
    /// Held-out samples in the search objective.
    pub search_samples: usize,
    /// Seed of the search's evaluation set.
    pub search_seed: u64,
    /// Held-out samples in the reported losses (a fresh set, not the one searched on).
    pub report_samples: usize,
    /// Seed of the reported evaluation set.
    pub report_seed: u64,
    /// Generated images per model for the sample metric (0: no sample metric).
    pub metric_samples: usize,
    /// DDIM steps used to generate them.
    pub metric_ddim_steps: usize,
    /// Training steps of the metric's feature network (cached per setting).
    pub metric_feature_steps: usize,
    /// Where the feature network is cached (None: the default cache folder).
    pub metric_cache_dir: Option<PathBuf>,
    /// Seed of the initial noise (shared by every model).
    pub sample_seed: u64,
    /// Images in each model's sample grid PNG.
    pub grid_images: usize,
    /// Points drawn for toy datasets.
    pub toy_points: usize,
    /// Finetuning seeds: every finetune, search and measurement runs once per seed.
    pub seeds: Vec<u64>,
    /// Extra arms compared beside the main job (ablations, sweeps, reweighting).
    pub arms: Vec<Arm>,
    /// Bootstrap resamples behind each interval of the report.
    pub resamples: usize,
    /// Pairs of rows compared beside the merged model's comparisons, each the first
    /// row minus the second (e.g. `["ablation-n1", "plain-finetune"]`). They train
    /// nothing: a finished run given more pairs reads its units back and adds them.
    pub compare: Vec<[String; 2]>,
}

impl Default for ReplicateConfig {
    fn default() -> Self {
        let finetune = FinetuneConfig {
            steps_per_expert: 100,
            batch_size: 32,
            lr: 1e-4,
            ema_max_decay: Some(0.99),
            checkpoint_every: 100,
            ..FinetuneConfig::default()
        };
        Self {
            data: DataSpec::Mnist,
            val_fraction: 0.1,
            base: BaseSource::Pretrain {
                model: crate::engine::checkpoint::DEFAULT_IMAGE_PRESET.into(),
                train: TrainConfig {
                    steps: 1200,
                    batch_size: 32,
                    checkpoint_every: 300,
                    ..TrainConfig::default()
                },
            },
            grid: GridSpec {
                n: finetune.experts,
                lo: 0.0,
                hi: 2.0,
                step: 0.1,
                sum_to_one: false,
            },
            finetune,
            strategy: Strategy::Coordinate { sweeps: 4 },
            objective: LossObjective::Balanced,
            search_samples: 256,
            search_seed: 1234,
            report_samples: 512,
            report_seed: 4321,
            metric_samples: 2000,
            metric_ddim_steps: 50,
            metric_feature_steps: FeatureTrainConfig::default().steps,
            metric_cache_dir: None,
            sample_seed: 7,
            grid_images: 64,
            toy_points: 20_000,
            seeds: vec![0],
            arms: Vec::new(),
            resamples: 200,
            compare: Vec::new(),
        }
    }
}

impl ReplicateConfig {
    /// Checks the settings before any work, naming the bad one.
    pub fn validate(&self) -> Result<()> {
        if self.grid.n != self.finetune.experts {
            bail!(
                "the search lattice has {} weights but there are {} experts",
                self.grid.n,
                self.finetune.experts
            );
        }
        self.finetune.validate()?;
        self.grid.validate_for(self.strategy)?;
        if let Strategy::Learned(s) = self.strategy
            && s.per_block
        {
            bail!(
                "replicate merges with one weight per expert; per-block learned weights are a grid-search option (--learn-per-block)"
            );
        }
        if self.resamples < 10 {
            bail!(
                "the intervals need at least 10 bootstrap resamples, not {}",
                self.resamples
            );
        }
        if self.seeds.is_empty() {
            bail!("a replication needs at least one seed");
        }
        let mut seen = std::collections::BTreeSet::new();
        if let Some(s) = self.seeds.iter().find(|s| !seen.insert(**s)) {
            bail!("seed {s} is given twice");
        }
        let mut names = std::collections::BTreeSet::new();
        for arm in &self.arms {
            if !names.insert(arm.name.as_str()) {
                bail!("the arm `{}` is given twice", arm.name);
            }
            if let ArmKind::Deme { config } = &arm.kind {
                config.validate()?;
            }
        }
        Ok(())
    }
}

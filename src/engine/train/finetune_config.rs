//! Settings of a DeMe finetune job (stored in each checkpoint's `deme.json`).
//!
//! Every DeMe technique can be switched off on its own, so the paper's ablation
//! (Table 3) can be rerun: `experts = 1` is the traditional paradigm,
//! `p = 0` turns off probabilistic sampling, `consistency_weight = 0` the
//! consistency loss and `projection = false` the channel-wise projection.

use super::adamw::AdamWConfig;
use super::events::RunId;
use super::loss::LossWeighting;
use super::step_settings::{check_step_settings, warmup_lr};
use super::timesteps::{
    MixMode, TimestepRange, TimestepSampler, check_boundaries, ranges_of, uniform_boundaries,
};
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// Settings of decoupled finetuning and of its plain-finetuning baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FinetuneConfig {
    /// Number of experts N (timestep ranges).
    pub experts: usize,
    /// Probability of drawing a timestep from all of `[0, T)` instead of the expert's range.
    pub p: f64,
    /// One coin per batch (the authors' way) or per sample.
    pub mix: MixMode,
    /// Antithetic timesteps: the second half of a batch gets `lo + hi - 1 - t`.
    pub antithetic: bool,
    /// Weight lambda of the consistency loss against the frozen pretrained model.
    pub consistency_weight: f64,
    /// Identity-initialised channel-wise projections (UNet only).
    pub projection: bool,
    /// Optimizer steps of each expert (the baseline gets `experts` times as many).
    pub steps_per_expert: u64,
    /// Images per step.
    pub batch_size: usize,
    /// Learning rate.
    pub lr: f64,
    /// Linear warm-up steps from 0 to `lr`.
    pub warmup_steps: u64,
    /// Optimizer settings.
    pub adamw: AdamWConfig,
    /// Cap of the EMA decay (None: no EMA; checkpoints then hold the raw weights).
    pub ema_max_decay: Option<f64>,
    /// Save every this many steps (and at the end, and on cancel).
    pub checkpoint_every: u64,
    /// Seed of batches, timesteps and noise (each run derives its own stream).
    pub seed: u64,
    /// Number of diffusion timesteps T.
    pub num_train_timesteps: usize,
    /// Give the baseline the consistency loss too (with `consistency_weight`).
    pub baseline_consistency: bool,
    /// Give the baseline channel-wise projections too.
    pub baseline_projection: bool,
    /// Per-timestep weights of the noise-prediction loss (every run).
    pub loss_weighting: LossWeighting,
    /// The experts' range boundaries `0 = b_0 < ... < b_N = T` when they are
    /// not the uniform `k T / N` (expert `k` owns `[b_k, b_(k+1))`).
    pub boundaries: Option<Vec<usize>>,
}

impl Default for FinetuneConfig {
    /// The authors' settings: N = 4, p = 0.3 per batch, antithetic, lambda = 1,
    /// projection on, AdamW (0.95, 0.999) with weight decay 1e-6, lr 5e-5, clip 1.0, EMA.
    fn default() -> Self {
        Self {
            experts: 4,
            p: 0.3,
            mix: MixMode::PerBatch,
            antithetic: true,
            consistency_weight: 1.0,
            projection: true,
            steps_per_expert: 500,
            batch_size: 64,
            lr: 5e-5,
            warmup_steps: 0,
            adamw: AdamWConfig::default(),
            ema_max_decay: Some(0.9999),
            checkpoint_every: 500,
            seed: 0,
            num_train_timesteps: 1000,
            baseline_consistency: false,
            baseline_projection: false,
            loss_weighting: LossWeighting::Uniform,
            boundaries: None,
        }
    }
}

/// Fields that may change when a run is resumed.
const RESUMABLE_CHANGES: [&str; 2] = ["steps_per_expert", "checkpoint_every"];

/// Fields the baseline's training never reads (its timesteps are uniform over
/// all of `[0, T)`, its projection and consistency have their own switches).
const EXPERT_ONLY: [&str; 4] = ["p", "mix", "projection", "boundaries"];

/// Fields the experts' training never reads.
const BASELINE_ONLY: [&str; 2] = ["baseline_consistency", "baseline_projection"];

impl FinetuneConfig {
    /// Checks every setting, with a message naming the bad one.
    pub fn validate(&self) -> Result<()> {
        let t = self.num_train_timesteps;
        if t == 0 {
            bail!("the number of diffusion timesteps must be at least 1");
        }
        if self.experts == 0 || self.experts > t {
            bail!(
                "the number of experts must be between 1 and T = {t}, not {}",
                self.experts
            );
        }
        if let Some(b) = &self.boundaries {
            check_boundaries(b, t)?;
            if b.len() != self.experts + 1 {
                bail!(
                    "{} range boundaries give {} experts, but the job has {}",
                    b.len(),
                    b.len() - 1,
                    self.experts
                );
            }
        }
        if !(0.0..=1.0).contains(&self.p) {
            bail!("p must be in [0, 1], not {}", self.p);
        }
        if !(self.consistency_weight.is_finite() && self.consistency_weight >= 0.0) {
            bail!(
                "the consistency weight lambda must be finite and >= 0, not {}",
                self.consistency_weight
            );
        }
        if self.steps_per_expert == 0 {
            bail!("steps per expert must be at least 1");
        }
        check_step_settings(self.batch_size, self.lr, self.ema_max_decay)?;
        if self.checkpoint_every == 0 {
            bail!("checkpoint_every must be at least 1");
        }
        self.loss_weighting.validate()
    }

    /// The runs of the job: the experts, then (when asked) the baseline.
    pub fn runs(&self, experts: bool, baseline: bool) -> Vec<RunId> {
        let mut runs: Vec<RunId> = if experts {
            (0..self.experts).map(RunId::Expert).collect()
        } else {
            Vec::new()
        };
        if baseline {
            runs.push(RunId::Baseline);
        }
        runs
    }

    /// The timesteps a run specialises in (all of `[0, T)` for the baseline).
    pub fn range_of(&self, run: RunId) -> Result<TimestepRange> {
        match run {
            RunId::Expert(k) => match &self.boundaries {
                Some(b) => TimestepRange::between(k, b),
                None => TimestepRange::of_expert(k, self.experts, self.num_train_timesteps),
            },
            RunId::Baseline => Ok(TimestepRange::all(self.num_train_timesteps)),
        }
    }

    /// The experts' range boundaries (the uniform ones unless set).
    pub fn expert_boundaries(&self) -> Vec<usize> {
        self.boundaries
            .clone()
            .unwrap_or_else(|| uniform_boundaries(self.experts, self.num_train_timesteps))
    }

    /// The experts' ranges `[lo, hi)`, in expert order.
    pub fn expert_ranges(&self) -> Vec<[usize; 2]> {
        ranges_of(&self.expert_boundaries())
    }

    /// How a run draws its timesteps.
    pub fn sampler_of(&self, run: RunId) -> Result<TimestepSampler> {
        match run {
            RunId::Expert(_) => TimestepSampler::new(
                self.range_of(run)?,
                self.num_train_timesteps,
                self.p,
                self.mix,
                self.antithetic,
            ),
            RunId::Baseline => TimestepSampler::uniform(self.num_train_timesteps, self.antithetic),
        }
    }

    /// Steps of a run: `steps_per_expert`, or `experts * steps_per_expert` for the baseline.
    pub fn steps_of(&self, run: RunId) -> u64 {
        match run {
            RunId::Expert(_) => self.steps_per_expert,
            RunId::Baseline => self.steps_per_expert * self.experts as u64,
        }
    }

    /// The consistency weight a run uses.
    pub fn lambda_of(&self, run: RunId) -> f64 {
        match run {
            RunId::Expert(_) => self.consistency_weight,
            RunId::Baseline if self.baseline_consistency => self.consistency_weight,
            RunId::Baseline => 0.0,
        }
    }

    /// Whether a run gets channel-wise projections.
    pub fn projection_of(&self, run: RunId) -> bool {
        match run {
            RunId::Expert(_) => self.projection,
            RunId::Baseline => self.baseline_projection,
        }
    }

    /// The seed of a run's batch stream: a mix of `seed` and the run, so each run
    /// draws the same batches whatever order the runs are trained in.
    pub fn seed_of(&self, run: RunId) -> u64 {
        let tag = match run {
            RunId::Expert(k) => k as u64 + 1,
            RunId::Baseline => u64::MAX,
        };
        splitmix64(self.seed ^ splitmix64(tag))
    }

    /// The learning rate at `step` (0-based).
    pub fn lr_at(&self, step: u64) -> f64 {
        warmup_lr(self.lr, self.warmup_steps, step)
    }

    /// The settings a run's metadata file (`meta_path`) saved as its `train_config`.
    pub fn saved(train_config: serde_json::Value, meta_path: &std::path::Path) -> Result<Self> {
        serde_json::from_value(train_config)
            .with_context(|| format!("{}: unreadable finetune settings", meta_path.display()))
    }

    /// The settings in which `other` differs from `self`, ignoring those a resume
    /// may change (`steps_per_expert`, `checkpoint_every`), as `name: this vs other` lines.
    pub fn differences(&self, other: &Self) -> Result<Vec<String>> {
        self.differences_except(other, &[])
    }

    /// [`Self::differences`] in what `run`'s training reads: a baseline
    /// trained beside uniform ranges serves as well beside any others (the
    /// same seed, budget and optimizer give the same model), so a resume or a
    /// copied baseline is not refused for the experts' settings.
    pub fn differences_for(&self, run: RunId, other: &Self) -> Result<Vec<String>> {
        match run {
            RunId::Expert(_) => self.differences_except(other, &BASELINE_ONLY),
            RunId::Baseline => {
                let mut ignored = EXPERT_ONLY.to_vec();
                if self.lambda_of(run) == other.lambda_of(run) {
                    ignored.push("consistency_weight");
                }
                self.differences_except(other, &ignored)
            }
        }
    }

    /// [`Self::differences`], also leaving out the fields named in `ignored`.
    fn differences_except(&self, other: &Self, ignored: &[&str]) -> Result<Vec<String>> {
        let a = serde_json::to_value(self)?;
        let b = serde_json::to_value(other)?;
        let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
            bail!("finetune settings do not serialise to a JSON object");
        };
        Ok(a.iter()
            .filter(|(k, _)| !RESUMABLE_CHANGES.contains(&k.as_str()))
            .filter(|(k, _)| !ignored.contains(&k.as_str()))
            .filter_map(|(k, va)| {
                let vb = b.get(k).unwrap_or(&serde_json::Value::Null);
                (va != vb).then(|| format!("{k}: {va} vs {vb}"))
            })
            .collect())
    }
}

/// SplitMix64's finaliser: a cheap bijective scrambling of a 64-bit value.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_authors_and_valid() {
        let c = FinetuneConfig::default();
        c.validate().unwrap();
        assert_eq!((c.experts, c.p, c.consistency_weight), (4, 0.3, 1.0));
        assert!(c.antithetic && c.projection && c.mix == MixMode::PerBatch);
        assert_eq!((c.adamw.beta1, c.adamw.beta2), (0.95, 0.999));
        assert_eq!(c.adamw.weight_decay, 1e-6);
        assert_eq!(c.adamw.max_grad_norm, Some(1.0));
        assert_eq!(c.lr, 5e-5);
        assert!(c.ema_max_decay.is_some());
    }

    #[test]
    fn runs_ranges_and_steps() {
        let c = FinetuneConfig {
            experts: 3,
            steps_per_expert: 10,
            ..FinetuneConfig::default()
        };
        assert_eq!(
            c.runs(true, true),
            vec![
                RunId::Expert(0),
                RunId::Expert(1),
                RunId::Expert(2),
                RunId::Baseline
            ]
        );
        assert_eq!(c.runs(false, true), vec![RunId::Baseline]);
        assert_eq!(
            c.range_of(RunId::Expert(2)).unwrap().to_array(),
            [666, 1000]
        );
        assert_eq!(c.range_of(RunId::Baseline).unwrap().to_array(), [0, 1000]);
        assert_eq!(c.steps_of(RunId::Expert(1)), 10);
        assert_eq!(c.steps_of(RunId::Baseline), 30);
        assert_eq!(c.lambda_of(RunId::Baseline), 0.0);
        assert!(!c.projection_of(RunId::Baseline));
        let seeds: std::collections::BTreeSet<u64> =
            c.runs(true, true).iter().map(|&r| c.seed_of(r)).collect();
        assert_eq!(seeds.len(), 4, "each run has its own stream");
    }

    #[test]
    fn bad_settings_name_themselves() {
        let bad = |f: &dyn Fn(&mut FinetuneConfig), word: &str| {
            let mut c = FinetuneConfig::default();
            f(&mut c);
            let e = format!("{:#}", c.validate().unwrap_err());
            assert!(e.contains(word), "{e}");
        };
        bad(&|c| c.experts = 0, "experts");
        bad(&|c| c.p = 1.2, "p must");
        bad(&|c| c.consistency_weight = -1.0, "lambda");
        bad(&|c| c.steps_per_expert = 0, "steps");
        bad(&|c| c.lr = 0.0, "learning rate");
    }

    #[test]
    fn a_run_is_compared_on_what_its_training_reads() {
        let a = FinetuneConfig::default();
        let b = FinetuneConfig {
            p: 0.0,
            projection: false,
            boundaries: Some(vec![0, 350, 550, 700, 1000]),
            consistency_weight: 0.5,
            baseline_projection: true,
            ..a.clone()
        };
        // the baseline reads none of the experts' settings (nor the
        // consistency weight while it has no consistency loss) but its own
        let d = a.differences_for(RunId::Baseline, &b).unwrap();
        assert_eq!(d.len(), 1, "{d:?}");
        assert!(d[0].starts_with("baseline_projection"), "{d:?}");
        let with_consistency = |c: &FinetuneConfig| FinetuneConfig {
            baseline_consistency: true,
            ..c.clone()
        };
        let d = with_consistency(&a)
            .differences_for(
                RunId::Baseline,
                &FinetuneConfig {
                    baseline_projection: false,
                    ..with_consistency(&b)
                },
            )
            .unwrap();
        assert_eq!(d.len(), 1, "{d:?}");
        assert!(d[0].starts_with("consistency_weight"), "{d:?}");
        // an expert reads all of them but the baseline's switches
        let d = a.differences_for(RunId::Expert(0), &b).unwrap();
        assert_eq!(d.len(), 4, "{d:?}");
        assert!(!d.iter().any(|l| l.starts_with("baseline_")), "{d:?}");
        // both read the learning rate and the seed
        let c = FinetuneConfig {
            lr: 1e-4,
            seed: 7,
            ..b
        };
        assert_eq!(a.differences_for(RunId::Baseline, &c).unwrap().len(), 3);
    }

    #[test]
    fn differences_ignore_what_a_resume_may_change() {
        let a = FinetuneConfig::default();
        let mut b = a.clone();
        b.steps_per_expert = 9999;
        b.checkpoint_every = 7;
        assert!(a.differences(&b).unwrap().is_empty());
        b.p = 0.5;
        b.projection = false;
        let d = a.differences(&b).unwrap();
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(d.iter().any(|l| l.starts_with("p: 0.3 vs 0.5")), "{d:?}");
    }
}

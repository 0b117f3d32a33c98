//! `deme-studio replicate`: the whole DeMe pipeline on one dataset (the embedded
//! MNIST by default) in one command, writing a report folder in the form of the
//! paper's Table 1. Interrupted runs continue where they stopped.

use super::progress::bar;
use super::resolve_device;
use crate::engine::data::DataSpec;
use crate::engine::device::DeviceChoice;
use crate::engine::replicate::{BaseSource, ReplicateConfig, ReplicateEvent, arms, replicate};
use crate::engine::search::{GridEvent, LossObjective};
use crate::engine::train::{CancelToken, TrainEvent};
use anyhow::Result;
use clap::Args;
use indicatif::ProgressBar;
use std::path::PathBuf;
use std::time::Instant;

/// The held-out-loss figure the merge-weight search minimises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ObjectiveChoice {
    /// The mean over timestep ranges of the loss relative to the base's.
    Balanced,
    /// The loss over all timesteps.
    Plain,
}

/// Arguments of `replicate`.
#[derive(Debug, Args)]
pub struct ReplicateArgs {
    /// Report folder (also holds the base, the experts, the baseline and the merge).
    #[arg(long)]
    pub out: PathBuf,
    /// Dataset.
    #[arg(long, default_value = "mnist")]
    pub data: DataSpec,
    /// The pretrained model folder (ours or diffusers). Default: the shipped base
    /// (`assets/mnist-tiny/base`) for the embedded MNIST, a fresh pretraining otherwise.
    #[arg(long, conflicts_with = "pretrain")]
    pub base: Option<PathBuf>,
    /// Pretrain the base into OUT/base (with --model, --pretrain-steps and
    /// --pretrain-batch-size) instead of loading one.
    #[arg(long)]
    pub pretrain: bool,
    /// Model to pretrain (preset or config.json).
    #[arg(long, default_value = crate::engine::checkpoint::DEFAULT_IMAGE_PRESET)]
    pub model: String,
    /// Pretraining steps.
    #[arg(long, default_value_t = 1200, value_parser = super::limits::steps)]
    pub pretrain_steps: u64,
    /// Pretraining batch size.
    #[arg(long, default_value_t = 32, value_parser = super::limits::batch_size)]
    pub pretrain_batch_size: usize,
    /// Number of experts N (timestep ranges).
    #[arg(long, default_value_t = 4, value_parser = super::limits::ranges)]
    pub experts: usize,
    /// The experts' range boundaries instead of N uniform ranges, e.g.
    /// 0,120,400,1000 (N + 1 values from 0 to T; `gradsim --suggest-ranges`
    /// proposes them). Sets the number of experts.
    #[arg(long, value_parser = super::finetune::boundaries_arg, conflicts_with = "experts")]
    pub boundaries: Option<super::finetune::Boundaries>,
    /// Finetuning steps per expert (the baseline gets N times as many). Default: as
    /// many as --budget-share of the base's pretraining images asks for.
    #[arg(long, value_parser = super::limits::steps)]
    pub steps_per_expert: Option<u64>,
    /// Each expert's finetuning images as a share of the images the base was
    /// pretrained on (the paper: 20K finetuning iterations per expert against 800K of
    /// pretraining at one batch size, 2.5%).
    #[arg(long, default_value_t = 0.025)]
    pub budget_share: f64,
    /// Finetuning batch size (the shipped base's pretraining batch size: the
    /// budget share then compares steps at one batch size, as the paper's does).
    #[arg(long, default_value_t = 64, value_parser = super::limits::batch_size)]
    pub batch_size: usize,
    /// Finetuning learning rate.
    #[arg(long, default_value_t = 1e-4)]
    pub lr: f64,
    /// Finest spacing of the merge-weight lattice.
    #[arg(long, default_value_t = 0.1)]
    pub grid_step: f64,
    /// Largest merge weight: the lattice spans [0, GRID_MAX] for each weight.
    #[arg(long, default_value_t = 2.0)]
    pub grid_max: f64,
    /// What the search minimises: balanced (each timestep range's loss relative to
    /// the base's, averaged over ranges) or plain (the loss over all t, set mostly by small t).
    #[arg(long, value_enum, default_value = "balanced")]
    pub objective: ObjectiveChoice,
    /// Only merge weights summing to 1 (with the refine or exhaustive strategy).
    #[arg(long)]
    pub sum_to_one: bool,
    /// How the merge-weight lattice is searched.
    #[arg(long, value_enum, default_value = "coordinate")]
    pub strategy: super::grid_search::StrategyArg,
    /// Settings of learned weights.
    #[command(flatten)]
    pub learn: super::grid_search::LearnArgs,
    /// Settings of CMA-ES.
    #[command(flatten)]
    pub cmaes: super::grid_search::CmaesArgs,
    /// Held-out samples in the search objective.
    #[arg(long, default_value_t = 256, value_parser = super::limits::eval_samples)]
    pub search_samples: usize,
    /// Held-out samples in the reported losses.
    #[arg(long, default_value_t = 512, value_parser = super::limits::eval_samples)]
    pub report_samples: usize,
    /// Generated images per model for the sample metric (0: none).
    #[arg(long, default_value_t = 2000, value_parser = super::limits::images_or_none)]
    pub metric_samples: usize,
    /// DDIM steps for the generated images.
    #[arg(long, default_value_t = 50, value_parser = super::limits::sampler_steps)]
    pub ddim_steps: usize,
    /// Folder of the metric's trained feature network (default: ~/.cache/deme-studio).
    /// A report folder kept for later runs keeps its own, so that its stored
    /// measurements stay comparable with new ones.
    #[arg(long)]
    pub metric_cache: Option<PathBuf>,
    /// Images in each sample grid.
    #[arg(long, default_value_t = 64, value_parser = super::limits::images)]
    pub grid_images: usize,
    /// Finetuning seeds: a count (3: seeds 0, 1, 2) or a list (0,5,9). Every finetune,
    /// search and measurement runs once per seed; figures are means over seeds and the
    /// intervals draw seeds too.
    #[arg(long, default_value = "1")]
    pub seeds: String,
    /// Add the ablation rows of the paper's Table 3: N = 1 with consistency loss and
    /// projection, p = 0, and no consistency loss (each with the same step budget).
    #[arg(long)]
    pub ablation: bool,
    /// Add the loss-reweighting baselines of the paper's Table 1: plain finetunes with
    /// Min-SNR-5 and P2 (gamma 1, k 1) weighting.
    #[arg(long)]
    pub reweighting: bool,
    /// Add one DeMe arm per value: n=2,4,8 (experts, same total budget) or
    /// p=0,0.1,0.5 (probabilistic sampling); repeat for both.
    #[arg(long)]
    pub sweep: Vec<String>,
    /// Add a DeMe arm on these range boundaries (e.g. the conflict-driven ones of
    /// `gradsim --suggest-ranges`: 0,350,550,700,1000) with the main job's total
    /// budget, compared with the main job's ranges; repeat for more.
    #[arg(long, value_parser = super::finetune::boundaries_arg)]
    pub arm_boundaries: Vec<super::finetune::Boundaries>,
    /// Also compare row A with row B (A minus B, with its interval and verdict), beside
    /// the merged model's comparisons: e.g. `--compare ablation-n1:plain-finetune`;
    /// repeat for more. Trains nothing: a finished run given more pairs reads its
    /// units back and adds them to the report.
    #[arg(long, value_name = "A:B", value_parser = compare_pair)]
    pub compare: Vec<[String; 2]>,
}

/// Parses `A:B` into the two row names.
fn compare_pair(s: &str) -> Result<[String; 2], String> {
    match s.split_once(':') {
        Some((a, b)) if !a.trim().is_empty() && !b.trim().is_empty() => {
            Ok([a.trim().to_string(), b.trim().to_string()])
        }
        _ => Err(format!(
            "expected two row names as A:B (e.g. ablation-n1:plain-finetune), not `{s}`"
        )),
    }
}

/// Images the base was pretrained on: steps x batch size, from its `deme.json`
/// (a loaded base) or from the pretraining settings.
fn base_images(base: &BaseSource) -> Result<u64> {
    match base {
        BaseSource::Pretrain { train, .. } => Ok(train.steps * train.batch_size as u64),
        BaseSource::Load(dir) => {
            let no_record = || {
                anyhow::anyhow!(
                    "{} has no record of its pretraining (deme.json with its step and batch \
                     size); give --steps-per-expert",
                    dir.display()
                )
            };
            let meta_path = dir.join(crate::engine::store::META_FILE);
            if !meta_path.exists() {
                return Err(no_record());
            }
            let meta = crate::engine::checkpoint::read_meta(&meta_path)?;
            let batch = meta
                .train_config
                .get("batch_size")
                .and_then(|b| b.as_u64())
                .ok_or_else(no_record)?;
            Ok(meta.step * batch)
        }
    }
}

/// Finetuning steps per expert that give it `share` of the base's pretraining images.
fn budget_steps(base: &BaseSource, share: f64, batch_size: usize) -> Result<u64> {
    if !(share > 0.0 && share <= 1.0) {
        anyhow::bail!("--budget-share must lie in (0, 1], not {share}");
    }
    let images = base_images(base)? as f64 * share;
    Ok(((images / batch_size as f64).round() as u64).max(1))
}

/// Seeds from `3` (0, 1, 2) or `0,5,9`.
fn parse_seeds(text: &str) -> Result<Vec<u64>> {
    let bad = || anyhow::anyhow!("--seeds takes a count (3) or a list (0,5,9), not `{text}`");
    if text.contains(',') {
        text.split(',')
            .map(|v| v.trim().parse::<u64>().map_err(|_| bad()))
            .collect()
    } else {
        let n: u64 = text.trim().parse().map_err(|_| bad())?;
        if n == 0 {
            return Err(bad());
        }
        Ok((0..n).collect())
    }
}

impl ReplicateArgs {
    /// The engine settings these arguments describe.
    pub fn config(&self) -> Result<ReplicateConfig> {
        let mut c = ReplicateConfig {
            data: self.data.clone(),
            ..ReplicateConfig::default()
        };
        let shipped =
            || crate::engine::model_set::default_set().map(|set| BaseSource::Load(set.base));
        c.base = match &self.base {
            Some(p) => BaseSource::Load(p.clone()),
            None if !self.pretrain && self.data == DataSpec::Mnist => {
                shipped().ok_or_else(|| {
                    anyhow::anyhow!(
                        "the shipped base (assets/mnist-tiny/base) was not found: \
                     name one with --base, or pretrain one with --pretrain"
                    )
                })?
            }
            None => match c.base {
                BaseSource::Pretrain { mut train, .. } => {
                    train.steps = self.pretrain_steps;
                    train.batch_size = self.pretrain_batch_size;
                    BaseSource::Pretrain {
                        model: self.model.clone(),
                        train,
                    }
                }
                other => other,
            },
        };
        let boundaries = self.boundaries.clone().map(|b| b.0);
        let experts = match &boundaries {
            Some(b) => b.len().saturating_sub(1),
            None => self.experts,
        };
        c.finetune.experts = experts;
        c.finetune.boundaries = boundaries;
        c.finetune.steps_per_expert = match self.steps_per_expert {
            Some(s) => s,
            None => budget_steps(&c.base, self.budget_share, self.batch_size)?,
        };
        c.finetune.batch_size = self.batch_size;
        c.finetune.lr = self.lr;
        if matches!(self.data, DataSpec::Toy(_)) {
            c.finetune.projection = false;
            c.metric_samples = 0;
        }
        c.grid.n = experts;
        c.grid.step = self.grid_step;
        c.grid.hi = self.grid_max;
        c.objective = match self.objective {
            ObjectiveChoice::Balanced => LossObjective::Balanced,
            ObjectiveChoice::Plain => LossObjective::Plain,
        };
        c.grid.sum_to_one = self.sum_to_one;
        c.strategy = self
            .strategy
            .strategy(3, self.learn.settings(), self.cmaes.settings());
        c.search_samples = self.search_samples;
        c.report_samples = self.report_samples;
        c.metric_samples = c.metric_samples.min(self.metric_samples);
        c.metric_ddim_steps = self.ddim_steps;
        c.metric_cache_dir = self.metric_cache.clone();
        c.grid_images = self.grid_images;
        c.seeds = parse_seeds(&self.seeds)?;
        if self.ablation {
            c.arms.extend(arms::ablations(&c.finetune));
        }
        if self.reweighting {
            c.arms.extend(arms::reweighting(&c.finetune));
        }
        for s in &self.sweep {
            c.arms.extend(arms::sweep(s, &c.finetune)?);
        }
        for b in &self.arm_boundaries {
            c.arms.push(arms::ranges(&b.0, &c.finetune)?);
        }
        c.compare = self.compare.clone();
        Ok(c)
    }
}

/// Runs `replicate`.
pub fn run(args: ReplicateArgs, device: DeviceChoice) -> Result<()> {
    // Ctrl-C stops the job at its next step or point and keeps what it did; installed
    // before anything is printed, so a signal sent after the first line is never lost
    let cancel = CancelToken::new();
    super::interrupt::install(&cancel);
    let config = args.config()?;
    let compute = resolve_device(device)?;
    let started = Instant::now();
    let mut pb: Option<ProgressBar> = None;
    let mut on_event = |e: ReplicateEvent| match e {
        ReplicateEvent::Stage(s) => {
            if let Some(p) = pb.take() {
                p.finish_and_clear();
            }
            eprintln!("[{:>5.0} s] {s}", started.elapsed().as_secs_f64());
        }
        ReplicateEvent::Note(s) => eprintln!("note: {s}"),
        ReplicateEvent::Train(TrainEvent::Step {
            step,
            total_steps,
            loss,
            images_per_sec,
            ..
        }) => {
            let p = pb.get_or_insert_with(|| bar(total_steps, "pretrain"));
            p.set_position(step);
            p.set_message(format!("loss {loss:.4} {images_per_sec:.0} img/s"));
            if super::progress::log_line_due(step, total_steps) {
                eprintln!(
                    "pretrain step {step}/{total_steps}: loss {loss:.4} {images_per_sec:.0} img/s"
                );
            }
        }
        ReplicateEvent::Finetune(f) => {
            if let TrainEvent::Step {
                step,
                total_steps,
                loss,
                ..
            } = f.event
            {
                if super::progress::log_line_due(step, total_steps) {
                    eprintln!("{} step {step}/{total_steps}: loss {loss:.4}", f.run);
                }
                // one bar per stage, counting the steps of all its runs
                let p = pb.get_or_insert_with(|| bar(0, "finetune"));
                p.inc_length(1);
                p.inc(1);
                p.set_message(format!("{} loss {loss:.4}", f.run));
            }
        }
        ReplicateEvent::Search(GridEvent::Level { points, .. }) => {
            pb.get_or_insert_with(|| bar(0, "search"))
                .inc_length(points as u64);
        }
        ReplicateEvent::Search(GridEvent::Point { best, done, .. }) => {
            let p = pb.get_or_insert_with(|| bar(0, "search"));
            p.set_position(done as u64);
            p.set_message(format!("best {:.5}", best.score.loss));
        }
        ReplicateEvent::Sampling(model, done, total) => {
            let p = pb.get_or_insert_with(|| bar(total as u64, "sample"));
            p.set_length(total as u64);
            p.set_position(done as u64);
            p.set_message(model);
        }
        ReplicateEvent::Train(_) => {}
    };
    let report = replicate(&config, &args.out, &compute.device, &cancel, &mut on_event)?;
    if let Some(p) = pb.take() {
        p.finish_and_clear();
    }
    for row in &report.rows {
        eprintln!(
            "{:<48} held-out loss {:.5}{}",
            row.description,
            row.loss,
            row.frechet
                .map(|f| format!("  Frechet distance {f:.3}"))
                .unwrap_or_default()
        );
    }
    for v in report.verdicts() {
        eprintln!("{v}");
    }
    eprintln!(
        "wrote {} ({:.0} s in all)",
        args.out.join("report.md").display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrap {
        #[command(flatten)]
        args: ReplicateArgs,
    }

    fn config(extra: &[&str]) -> Result<ReplicateConfig> {
        let argv = ["replicate", "--out", "rep"].iter().chain(extra);
        Wrap::try_parse_from(argv)?.args.config()
    }

    #[test]
    fn mnist_starts_from_the_shipped_base_unless_told_otherwise() {
        match config(&[]).unwrap().base {
            BaseSource::Load(p) => assert!(p.ends_with("mnist-tiny/base"), "{}", p.display()),
            other => panic!("expected the shipped base, got {other:?}"),
        }
        match config(&["--base", "elsewhere", "--steps-per-expert", "5"])
            .unwrap()
            .base
        {
            BaseSource::Load(p) => assert_eq!(p, PathBuf::from("elsewhere")),
            other => panic!("expected --base, got {other:?}"),
        }
        match config(&["--pretrain", "--pretrain-steps", "77"])
            .unwrap()
            .base
        {
            BaseSource::Pretrain { train, .. } => assert_eq!(train.steps, 77),
            other => panic!("expected a pretraining, got {other:?}"),
        }
        assert!(matches!(
            config(&["--data", "toy:moons"]).unwrap().base,
            BaseSource::Pretrain { .. }
        ));
        assert!(config(&["--pretrain", "--base", "x"]).is_err());
    }

    #[test]
    fn arm_boundaries_add_a_ranges_arm_beside_the_uniform_main_job() {
        let c = config(&["--arm-boundaries", "0,350,550,700,1000", "--ablation"]).unwrap();
        assert_eq!(
            c.finetune.boundaries, None,
            "the main job keeps uniform ranges"
        );
        let arm = c.arms.last().unwrap();
        assert_eq!(arm.name, "ranges-0-350-550-700-1000");
        c.validate().unwrap();
        assert!(config(&["--arm-boundaries", "0,1200"]).is_err());
    }

    #[test]
    fn compare_takes_pairs_of_row_names() {
        let c = config(&[
            "--compare",
            "ablation-n1:plain-finetune",
            "--compare",
            "ensemble:pretrained",
        ])
        .unwrap();
        assert_eq!(
            c.compare,
            [
                ["ablation-n1".to_string(), "plain-finetune".to_string()],
                ["ensemble".to_string(), "pretrained".to_string()]
            ]
        );
        for bad in ["merged", "merged:", ":merged", ""] {
            assert!(config(&["--compare", bad]).is_err(), "{bad}");
        }
    }

    #[test]
    fn boundaries_set_the_experts_and_their_ranges() {
        let c = config(&["--boundaries", "0,120,1000"]).unwrap();
        assert_eq!((c.finetune.experts, c.grid.n), (2, 2));
        assert_eq!(c.finetune.expert_ranges(), vec![[0, 120], [120, 1000]]);
        assert!(config(&["--boundaries", "0,120,1000", "--experts", "3"]).is_err());
        let e = config(&["--boundaries", "0,1200"])
            .unwrap()
            .validate()
            .unwrap_err();
        assert!(format!("{e:#}").contains("end at T = 1000"), "{e:#}");
    }

    #[test]
    fn the_expert_budget_is_a_share_of_the_base_images() {
        let c = config(&[
            "--pretrain",
            "--pretrain-steps",
            "1000",
            "--pretrain-batch-size",
            "64",
            "--batch-size",
            "32",
        ])
        .unwrap();
        // 2.5% of 64,000 images at batch 32
        assert_eq!(c.finetune.steps_per_expert, 50);
        let c = config(&[
            "--pretrain",
            "--pretrain-steps",
            "1000",
            "--budget-share",
            "0.1",
        ])
        .unwrap();
        // 10% of 32,000 images at the default batch of 64
        assert_eq!(c.finetune.steps_per_expert, 50);
        let c = config(&["--steps-per-expert", "7"]).unwrap();
        assert_eq!(c.finetune.steps_per_expert, 7);
        assert!(config(&["--pretrain", "--budget-share", "0"]).is_err());
        // the shipped base records its pretraining
        let shipped = config(&[]).unwrap();
        assert!(shipped.finetune.steps_per_expert >= 1);
        // a base without a record needs the steps said
        let tmp = tempfile::tempdir().unwrap();
        let e = config(&["--base", tmp.path().to_str().unwrap()]).unwrap_err();
        assert!(e.to_string().contains("give --steps-per-expert"), "{e}");
    }

    #[test]
    fn seeds_are_a_count_or_a_list() {
        assert_eq!(parse_seeds("3").unwrap(), vec![0, 1, 2]);
        assert_eq!(parse_seeds("0, 5,9").unwrap(), vec![0, 5, 9]);
        for bad in ["0", "x", "1,,2", "-1"] {
            assert!(parse_seeds(bad).is_err(), "{bad}");
        }
    }
}

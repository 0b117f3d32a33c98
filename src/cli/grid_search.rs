//! `deme-studio grid-search`: search the merge weights w_i on a lattice, scored by
//! the held-out diffusion loss with fixed items, noise and timesteps.

use super::progress::{bar, log_line_due};
use super::resolve_device;
use crate::engine::checkpoint::write_atomic_bytes;
use crate::engine::data::{DataSpec, split_items};
use crate::engine::device::DeviceChoice;
use crate::engine::diffusion::NoiseSchedule;
use crate::engine::eval::{EvalSet, EvalSetConfig};
use crate::engine::merge::{Mergeable, Merger, expert_ranges_of};
use crate::engine::metric::features::FeatureTrainConfig;
use crate::engine::metric::{SampleMetric, default_cache_dir};
use crate::engine::replicate::samples::initial_noise;
use crate::engine::search::{
    CmaesSettings, GridEvent, GridResult, GridSpec, LearnSettings, LearnedBlocks, LossObjective,
    MetricObjective, Strategy, search_merge_weights, search_merge_weights_by_metric,
};
use crate::engine::store::load_model;
use crate::engine::train::CancelToken;
use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use std::fmt::Write as _;
use std::path::PathBuf;

/// How the lattice is visited.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum StrategyArg {
    /// Every point, coarse sub-lattices first.
    Exhaustive,
    /// Coarse lattice, then refine around the best points.
    Refine,
    /// One weight at a time over all its values, sweeping until nothing moves.
    Coordinate,
    /// No lattice: gradient descent on the weights (the held-out loss is
    /// differentiable in them), fitted on half the search samples and stopped on
    /// the other half.
    Learned,
    /// No lattice: the CMA evolution strategy, derivative-free, for any
    /// objective (the Frechet distance too); the step is its resolution.
    Cmaes,
}

impl StrategyArg {
    /// The engine strategy (`keep` for refine; coordinate sweeps at most 8 times;
    /// `learn` for learned weights, `cmaes` for CMA-ES).
    pub fn strategy(self, keep: usize, learn: LearnSettings, cmaes: CmaesSettings) -> Strategy {
        match self {
            StrategyArg::Exhaustive => Strategy::Exhaustive,
            StrategyArg::Refine => Strategy::Refine { keep },
            StrategyArg::Coordinate => Strategy::Coordinate { sweeps: 8 },
            StrategyArg::Learned => Strategy::Learned(learn),
            StrategyArg::Cmaes => Strategy::Cmaes(cmaes),
        }
    }
}

/// Settings of `--strategy learned`.
#[derive(Debug, Args)]
pub struct LearnArgs {
    /// Most gradient steps of `--strategy learned`.
    #[arg(long, default_value_t = LearnSettings::default().steps, value_parser = super::limits::step_count)]
    pub learn_steps: usize,
    /// Initial step size of `--strategy learned` (Adam, in weight units, decaying linearly to 0).
    #[arg(long, default_value_t = LearnSettings::default().lr)]
    pub learn_lr: f64,
    /// `--strategy learned` stops after this many steps without a better validation score.
    #[arg(long, default_value_t = LearnSettings::default().patience, value_parser = super::limits::step_count)]
    pub learn_patience: usize,
}

impl LearnArgs {
    /// The engine's settings.
    pub fn settings(&self) -> LearnSettings {
        LearnSettings {
            steps: self.learn_steps,
            lr: self.learn_lr,
            patience: self.learn_patience,
            per_block: false,
        }
    }
}

/// Settings of `--strategy cmaes`.
#[derive(Debug, Args)]
pub struct CmaesArgs {
    /// Most merges scored by `--strategy cmaes`.
    #[arg(long, default_value_t = CmaesSettings::default().evaluations, value_parser = super::limits::step_count)]
    pub cmaes_evals: usize,
    /// Initial step of `--strategy cmaes`, as a fraction of hi - lo.
    #[arg(long, default_value_t = CmaesSettings::default().sigma)]
    pub cmaes_sigma: f64,
    /// Seed of the weights `--strategy cmaes` samples.
    #[arg(long, default_value_t = CmaesSettings::default().seed)]
    pub cmaes_seed: u64,
}

impl CmaesArgs {
    /// The engine's settings.
    pub fn settings(&self) -> CmaesSettings {
        CmaesSettings {
            evaluations: self.cmaes_evals,
            sigma: self.cmaes_sigma,
            seed: self.cmaes_seed,
            ..CmaesSettings::default()
        }
    }
}

/// What scores a merge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ObjectiveArg {
    /// The held-out diffusion loss (fast, deterministic); mostly set by small t.
    Loss,
    /// The mean over timestep ranges of the held-out loss relative to the base's
    /// in that range: every range counts alike.
    Balanced,
    /// The Frechet distance of images generated from the merge to the held-out
    /// images (the sample metric; deterministic, much slower per point).
    Frechet,
}

/// Arguments of `grid-search`.
#[derive(Debug, Args)]
pub struct GridSearchArgs {
    /// The pretrained base model folder.
    #[arg(long)]
    pub base: PathBuf,
    /// Expert folders, comma-separated, in timestep-range order.
    #[arg(long, value_delimiter = ',', required = true)]
    pub experts: Vec<PathBuf>,
    /// Dataset whose held-out split scores the merges.
    #[arg(long, default_value = "mnist")]
    pub data: DataSpec,
    /// Smallest weight.
    #[arg(long, default_value_t = 0.0)]
    pub lo: f64,
    /// Largest weight.
    #[arg(long, default_value_t = 1.0)]
    pub hi: f64,
    /// Finest lattice spacing.
    #[arg(long, default_value_t = 0.1)]
    pub step: f64,
    /// Only weights summing to 1.
    #[arg(long)]
    pub sum_to_one: bool,
    /// Visit every point, refine around the best, scan one weight at a time,
    /// descend the gradient (learned) or sample (cmaes).
    #[arg(long, value_enum, default_value = "refine")]
    pub strategy: StrategyArg,
    /// Best points each refinement looks around.
    #[arg(long, default_value_t = 3, value_parser = super::limits::repeats)]
    pub keep: usize,
    /// Settings of learned weights.
    #[command(flatten)]
    pub learn: LearnArgs,
    /// Settings of CMA-ES.
    #[command(flatten)]
    pub cmaes: CmaesArgs,
    /// With `--strategy learned`: one weight per expert and block, written as
    /// `block_weights.json` for `merge --block-weights`.
    #[arg(long)]
    pub learn_per_block: bool,
    /// What scores a merge.
    #[arg(long, value_enum, default_value = "loss")]
    pub objective: ObjectiveArg,
    /// Held-out samples in the loss objective.
    #[arg(long, default_value_t = 256, value_parser = super::limits::eval_samples)]
    pub samples: usize,
    /// Images generated per point with `--objective frechet`.
    #[arg(long, default_value_t = 64, value_parser = super::limits::images_or_none)]
    pub metric_samples: usize,
    /// DDIM steps of those images.
    #[arg(long, default_value_t = 10, value_parser = super::limits::sampler_steps)]
    pub metric_steps: usize,
    /// Training steps of the sample metric's feature network (trained once, cached).
    #[arg(long, default_value_t = FeatureTrainConfig::default().steps, value_parser = super::limits::step_count)]
    pub feature_steps: usize,
    /// Seed of the evaluation set.
    #[arg(long, default_value_t = 1234)]
    pub seed: u64,
    /// Fraction of the data held out (must match training to stay unseen).
    #[arg(long, default_value_t = 0.1)]
    pub val_fraction: f64,
    /// Number of points drawn for toy datasets.
    #[arg(long, default_value_t = 20_000, value_parser = super::limits::toy_points)]
    pub toy_points: usize,
    /// Output folder: grid.json and grid.csv.
    #[arg(long)]
    pub out: PathBuf,
}

/// Runs `grid-search`.
pub fn run(args: GridSearchArgs, device: DeviceChoice) -> Result<()> {
    // Ctrl-C stops the job at its next step or point and keeps what it did; installed
    // before anything is printed, so a signal sent after the first line is never lost
    let cancel = CancelToken::new();
    super::interrupt::install(&cancel);
    crate::engine::output::ensure_writable_folder(&args.out)?;
    let compute = resolve_device(device)?;
    let dev = &compute.device;
    let base = load_model(&args.base, dev)?;
    let experts = args
        .experts
        .iter()
        .map(|p| load_model(p, dev))
        .collect::<Result<Vec<_>>>()?;
    let labels: Vec<String> = args
        .experts
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let pairs: Vec<(&str, _)> = labels
        .iter()
        .zip(&experts)
        .map(|(l, e)| (l.as_str(), &e.model))
        .collect();
    let base_label = args.base.display().to_string();
    let mut merger = Merger::new((base_label.as_str(), &base.model), &pairs)?;
    let items = split_items(&args.data, &base.spec, args.val_fraction, args.toy_points)?;
    let schedule = NoiseSchedule::ddpm(1000);
    let eval = EvalSet::new(
        &items.val,
        &schedule,
        EvalSetConfig {
            samples: args.samples,
            seed: args.seed,
            ..EvalSetConfig::default()
        },
        dev,
    )?;
    let n = experts.len();
    // the ranges the experts were finetuned on (their deme.json), else uniform
    let stored: Vec<_> = experts.iter().map(|e| e.timestep_range()).collect();
    let ranges = expert_ranges_of(&stored, schedule.num_train_timesteps());
    let spec = GridSpec {
        n,
        lo: args.lo,
        hi: args.hi,
        step: args.step,
        sum_to_one: args.sum_to_one,
    };
    let strategy = args.strategy.strategy(
        args.keep,
        LearnSettings {
            per_block: args.learn_per_block,
            ..args.learn.settings()
        },
        args.cmaes.settings(),
    );
    if args.learn_per_block && !matches!(strategy, Strategy::Learned(_)) {
        bail!("--learn-per-block goes with --strategy learned");
    }
    spec.validate_for(strategy)?;
    if matches!(strategy, Strategy::Learned(_)) && args.objective == ObjectiveArg::Frechet {
        bail!(
            "--strategy learned follows the gradient of the held-out loss; the Frechet distance has none: use --objective loss or balanced, or --strategy cmaes (derivative-free)"
        );
    }
    let base_loss = eval.evaluate(&|x, t| base.model.predict_eps(x, t))?;
    eprintln!(
        "base: held-out loss {:.5} (per range {})",
        base_loss.mean(),
        fmt_ranges(&base_loss.per_ranges(&ranges))
    );
    let metric = match args.objective {
        ObjectiveArg::Loss | ObjectiveArg::Balanced => None,
        ObjectiveArg::Frechet => Some(frechet_setup(&args, &base, &schedule, dev)?),
    };
    let pb = bar(0, "grid");
    let mut on_event = |e: GridEvent| match e {
        GridEvent::Level { points, .. } => pb.inc_length(points as u64),
        GridEvent::Point { best, done, .. } => {
            pb.set_position(done as u64);
            pb.set_message(format!(
                "best {:.5} at {}",
                best.score.loss,
                fmt_weights(&best.weights)
            ));
            if log_line_due(done as u64, pb.length().unwrap_or(0)) {
                eprintln!(
                    "grid: {done} points, best {:.5} at {}",
                    best.score.loss,
                    fmt_weights(&best.weights)
                );
            }
        }
    };
    let keep_going = || !cancel.is_cancelled();
    let result = match &metric {
        None => search_merge_weights(
            &mut merger,
            &eval,
            match args.objective {
                ObjectiveArg::Balanced => LossObjective::Balanced,
                _ => LossObjective::Plain,
            },
            &ranges,
            &spec,
            strategy,
            &keep_going,
            &mut on_event,
        )?,
        Some((metric, base_fd)) => {
            let shape = base.spec.item_shape();
            let objective = MetricObjective {
                metric,
                noise: initial_noise(args.metric_samples, shape, args.seed),
                shape,
                schedule: &schedule,
                steps: args.metric_steps,
                device: dev.clone(),
            };
            eprintln!("base: Frechet distance {base_fd:.3}");
            search_merge_weights_by_metric(
                &mut merger,
                &objective,
                &spec,
                strategy,
                &keep_going,
                &mut on_event,
            )?
        }
    };
    pb.finish_and_clear();
    write_results(&result, &args.out)?;
    if args.learn_per_block {
        let blocks = LearnedBlocks::of(merger.keys(), n);
        let path = args.out.join("block_weights.json");
        let json =
            serde_json::to_string_pretty(&blocks.block_weights(&result.best_point().weights))?;
        write_atomic_bytes(&path, json.as_bytes())?;
        eprintln!(
            "per-block weights of the best step: {} (merge --block-weights {})",
            path.display(),
            path.display()
        );
    }
    let best = result.best_point();
    match &metric {
        None if matches!(strategy, Strategy::Learned(_)) => eprintln!(
            "best of {} steps: w = {} objective {:.5} on the validation half of the samples; per range {}",
            result.points.len(),
            fmt_weights(&best.weights),
            best.score.loss,
            fmt_ranges(&best.score.per_range)
        ),
        None => eprintln!(
            "best of {} points: w = {} held-out loss {:.5} (base {:.5}); per range {}",
            result.points.len(),
            fmt_weights(&best.weights),
            best.score.loss,
            base_loss.mean(),
            fmt_ranges(&best.score.per_range)
        ),
        Some((_, base_fd)) => eprintln!(
            "best of {} points: w = {} Frechet distance {:.3} (base {base_fd:.3})",
            result.points.len(),
            fmt_weights(&best.weights),
            best.score.loss,
        ),
    }
    if result.cancelled {
        bail!(
            "cancelled after {} points: {} holds them (grid.json says \"cancelled\": true)",
            result.points.len(),
            args.out.display()
        );
    }
    eprintln!("wrote {}", args.out.display());
    Ok(())
}

/// The sample metric of `args.data` at the model's image shape, and the
/// base model's distance under the same settings as every point.
fn frechet_setup(
    args: &GridSearchArgs,
    base: &crate::engine::store::LoadedModel,
    schedule: &NoiseSchedule,
    dev: &burn::tensor::Device,
) -> Result<(SampleMetric, f64)> {
    if args.metric_samples < 2 || args.metric_steps == 0 {
        bail!("--objective frechet needs --metric-samples >= 2 and --metric-steps >= 1");
    }
    let shape = base.spec.item_shape();
    let metric = SampleMetric::for_dataset(
        &args.data,
        shape,
        args.val_fraction,
        FeatureTrainConfig {
            steps: args.feature_steps,
            ..FeatureTrainConfig::default()
        },
        default_cache_dir().as_deref(),
        dev,
    )?;
    eprintln!(
        "sample metric: {} generated images per point (DDIM {} steps) against {} held-out images; feature network held-out accuracy {:.1}%",
        args.metric_samples,
        args.metric_steps,
        metric.real_count(),
        100.0 * metric.accuracy
    );
    let images = crate::engine::replicate::samples::generate(
        &|x, t| base.model.predict_eps(x, t),
        &initial_noise(args.metric_samples, shape, args.seed),
        shape,
        schedule,
        args.metric_steps,
        dev,
        &CancelToken::new(),
        &mut |_, _| {},
    )?;
    let base_fd = metric.score(&images, dev)?;
    Ok((metric, base_fd))
}

/// Writes `grid.json` and `grid.csv` (each atomically), holding exactly the
/// points of `result`.
fn write_results(result: &GridResult, dir: &std::path::Path) -> Result<()> {
    let Some(first) = result.points.first() else {
        bail!("no point was scored");
    };
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    write_atomic_bytes(
        dir.join("grid.json"),
        serde_json::to_string_pretty(result)?.as_bytes(),
    )?;
    let n = first.weights.len();
    let r = first.score.per_range.len();
    let mut csv = String::new();
    for i in 0..n {
        let _ = write!(csv, "w{},", i + 1);
    }
    csv.push_str("loss");
    for i in 0..r {
        let _ = write!(csv, ",loss_range{}", i + 1);
    }
    csv.push_str(",level\n");
    for p in &result.points {
        for w in &p.weights {
            let _ = write!(csv, "{w},");
        }
        let _ = write!(csv, "{}", p.score.loss);
        for l in &p.score.per_range {
            let _ = write!(csv, ",{l}");
        }
        let _ = writeln!(csv, ",{}", p.level);
    }
    write_atomic_bytes(dir.join("grid.csv"), csv.as_bytes())
}

fn fmt_weights(w: &[f64]) -> String {
    w.iter()
        .map(|v| format!("{v:.2}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn fmt_ranges(v: &[f64]) -> String {
    v.iter()
        .map(|l| format!("{l:.5}"))
        .collect::<Vec<_>>()
        .join(" ")
}

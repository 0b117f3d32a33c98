//! `deme-studio finetune`: DeMe decoupled finetuning of a pretrained checkpoint
//! into N experts (and optionally the plain-finetuning baseline), one progress
//! bar per run, resumable, and Ctrl-C-safe: the first Ctrl-C saves every started
//! run at its current step (a second one quits at once; checkpoints are written
//! atomically, so the last complete ones stay loadable either way).

use super::interrupt;
use super::progress::bar;
use super::resolve_device;
use super::train::training_items;
use crate::engine::data::DataSpec;
use crate::engine::device::DeviceChoice;
use crate::engine::store::{AnyModel, load_model};
use crate::engine::train::loss::LossWeighting;
use crate::engine::train::{
    CancelToken, FinetuneConfig, FinetuneEvent, FinetuneJob, MixMode, RunId, Schedule, TrainEvent,
    finetune_any, parse_boundaries, stored_config,
};
use anyhow::{Context, Result, bail};
use clap::Args;
use indicatif::{MultiProgress, ProgressBar};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

/// Arguments of `finetune`. Settings left out take the authors' defaults, or on
/// `--resume` the values the run was started with.
#[derive(Debug, Args)]
pub struct FinetuneArgs {
    /// The pretrained checkpoint (a model folder, ours or diffusers).
    #[arg(long)]
    pub base: PathBuf,
    /// Dataset: mnist (embedded), cifar10:PATH, images:PATH, idx:PATH or toy:NAME.
    #[arg(long, default_value = "mnist")]
    pub data: DataSpec,
    /// Output folder; runs go to expert_1 .. expert_N and baseline inside it.
    #[arg(long)]
    pub out: PathBuf,
    /// Number of experts N (timestep ranges) [default: 4].
    #[arg(long, value_parser = super::limits::ranges)]
    pub experts: Option<usize>,
    /// The experts' range boundaries instead of N uniform ranges, e.g.
    /// 0,120,400,1000 (N + 1 values from 0 to T; `gradsim --suggest-ranges`
    /// proposes them from the gradient conflicts).
    #[arg(long, value_parser = boundaries_arg, conflicts_with = "experts")]
    pub boundaries: Option<Boundaries>,
    /// Probability of drawing a timestep from all of [0, T) [default: 0.3].
    #[arg(long)]
    pub p: Option<f64>,
    /// Flip the range-or-all coin per sample instead of per batch.
    #[arg(long)]
    pub per_sample: bool,
    /// Draw every timestep independently (no antithetic pairs).
    #[arg(long)]
    pub no_antithetic: bool,
    /// Weight of the consistency loss against the frozen base [default: 1.0].
    #[arg(long)]
    pub lambda: Option<f64>,
    /// No channel-wise projections (they never apply to the toy MLP).
    #[arg(long)]
    pub no_projection: bool,
    /// Optimizer steps per expert [default: 500].
    #[arg(long, value_parser = super::limits::steps)]
    pub steps_per_expert: Option<u64>,
    /// Images per step [default: 64].
    #[arg(long, value_parser = super::limits::batch_size)]
    pub batch_size: Option<usize>,
    /// Learning rate [default: 5e-5].
    #[arg(long)]
    pub lr: Option<f64>,
    /// EMA decay cap, 0 disables EMA [default: 0.9999].
    #[arg(long)]
    pub ema: Option<f64>,
    /// Checkpoint every N steps of a run [default: 500].
    #[arg(long, value_parser = super::limits::steps)]
    pub checkpoint_every: Option<u64>,
    /// Seed of batches, timesteps and noise [default: 0].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Run order: interleaved (all runs progress together) or sequential (one model in memory).
    #[arg(long, default_value_t = Schedule::Interleaved)]
    pub schedule: Schedule,
    /// Also finetune one copy on all timesteps for N x steps-per-expert steps.
    #[arg(long)]
    pub baseline: bool,
    /// Only the baseline, no experts.
    #[arg(long, conflicts_with = "baseline")]
    pub baseline_only: bool,
    /// Give the baseline the consistency loss too.
    #[arg(long)]
    pub baseline_consistency: bool,
    /// Give the baseline channel-wise projections too.
    #[arg(long)]
    pub baseline_projection: bool,
    /// Per-timestep weights of the noise-prediction loss, for every run: uniform,
    /// min-snr[:GAMMA] (Min-SNR-gamma, default 5) or p2[:GAMMA,K] (P2, default 1,1).
    #[arg(long)]
    pub loss_weighting: Option<LossWeighting>,
    /// Continue the runs found in --out (with the same --baseline / --baseline-only);
    /// settings not given are read back from the runs, --steps-per-expert may grow.
    #[arg(long)]
    pub resume: bool,
    /// Fraction of the data held out for validation (as in `train`, never trained on).
    #[arg(long, default_value_t = 0.1)]
    pub val_fraction: f64,
    /// Number of points drawn for toy datasets.
    #[arg(long, default_value_t = 20_000, value_parser = super::limits::toy_points)]
    pub toy_points: usize,
}

/// A `--boundaries` list (`0,120,400,1000`).
#[derive(Debug, Clone, PartialEq)]
pub struct Boundaries(pub Vec<usize>);

/// Parses `--boundaries`.
pub fn boundaries_arg(text: &str) -> Result<Boundaries, String> {
    parse_boundaries(text)
        .map(Boundaries)
        .map_err(|e| e.to_string())
}

/// The settings: defaults (or the stored ones on resume) overridden by the flags given.
fn settings(args: &FinetuneArgs, stored: Option<FinetuneConfig>, mlp: bool) -> FinetuneConfig {
    let resumed = stored.is_some();
    let mut c = stored.unwrap_or_default();
    if mlp && !resumed {
        c.projection = false;
    }
    set(&mut c.experts, args.experts);
    if let Some(Boundaries(b)) = &args.boundaries {
        // the boundaries say how many experts there are
        c.experts = b.len().saturating_sub(1);
        c.boundaries = Some(b.clone());
    }
    set(&mut c.p, args.p);
    set(&mut c.consistency_weight, args.lambda);
    set(&mut c.steps_per_expert, args.steps_per_expert);
    set(&mut c.batch_size, args.batch_size);
    set(&mut c.lr, args.lr);
    set(&mut c.checkpoint_every, args.checkpoint_every);
    set(&mut c.seed, args.seed);
    if let Some(e) = args.ema {
        c.ema_max_decay = (e > 0.0).then_some(e);
    }
    if args.per_sample {
        c.mix = MixMode::PerSample;
    }
    if args.no_antithetic {
        c.antithetic = false;
    }
    if args.no_projection {
        c.projection = false;
    }
    if args.baseline_consistency {
        c.baseline_consistency = true;
    }
    if args.baseline_projection {
        c.baseline_projection = true;
    }
    set(&mut c.loss_weighting, args.loss_weighting);
    c
}

/// Overwrites `slot` when a value was given.
fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
}

/// Losses seen by one run, for the closing summary.
#[derive(Default)]
struct RunLog {
    losses: Vec<f64>,
    eps: Vec<f64>,
    consistency: Vec<f64>,
}

fn mean_of(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// Runs `finetune`.
pub fn run(args: FinetuneArgs, device: DeviceChoice) -> Result<()> {
    // Ctrl-C stops the job at its next step or point and keeps what it did; installed
    // before anything is printed, so a signal sent after the first line is never lost
    let cancel = CancelToken::new();
    interrupt::install(&cancel);
    let stored = if args.resume {
        let s = stored_config(&args.out).context("--resume")?;
        if s.is_none() {
            bail!(
                "--resume: {} holds no finetune run to continue",
                args.out.display()
            );
        }
        s
    } else {
        None
    };
    let compute = resolve_device(device)?;
    let base = load_model(&args.base, &compute.device)
        .with_context(|| format!("loading the base checkpoint {}", args.base.display()))?;
    let mlp = matches!(base.model, AnyModel::Mlp(_));
    let config = settings(&args, stored, mlp);
    config.validate()?;
    if mlp && (config.projection || config.baseline_projection) {
        bail!(
            "channel-wise projection does not apply to the toy MLP (it has no feature channels); drop --baseline-projection"
        );
    }
    match (&args.data, mlp) {
        (DataSpec::Toy(_), false) => bail!(
            "dataset `{}` holds 2D points, but the base is an image UNet; toy data finetunes a toy-mlp base",
            args.data
        ),
        (DataSpec::Toy(_), true) => {}
        (_, true) => bail!(
            "dataset `{}` holds images, but the base is a toy MLP; it finetunes on toy:NAME points",
            args.data
        ),
        (_, false) => {}
    }
    let items = training_items(&args.data, &base.spec, args.val_fraction, args.toy_points)?;
    if let Some(trained_on) = base.meta.as_ref().and_then(|m| m.data.as_ref())
        && *trained_on != args.data.to_string()
    {
        eprintln!(
            "note: the base was trained on `{trained_on}`, this finetune uses `{}`",
            args.data
        );
    }

    let (experts, baseline) = (!args.baseline_only, args.baseline || args.baseline_only);
    let runs = config.runs(experts, baseline);
    let job = FinetuneJob {
        spec: &base.spec,
        base_path: &args.base,
        data: &items,
        config: &config,
        out_dir: &args.out,
        experts,
        baseline,
        schedule: args.schedule,
        resume: args.resume,
    };
    eprintln!(
        "finetuning {} on {} ({} items): {} expert(s) x {} steps{}, batch {}, p {} {}, {}antithetic, lambda {}, projection {}, {} schedule",
        args.base.display(),
        args.data,
        items.len(),
        if experts { config.experts } else { 0 },
        config.steps_per_expert,
        if baseline {
            format!(" + baseline x {} steps", config.steps_of(RunId::Baseline))
        } else {
            String::new()
        },
        config.batch_size,
        config.p,
        config.mix,
        if config.antithetic { "" } else { "no " },
        config.consistency_weight,
        if config.projection { "on" } else { "off" },
        args.schedule,
    );

    let multi = MultiProgress::new();
    let mut bars: BTreeMap<RunId, ProgressBar> = BTreeMap::new();
    for &run in &runs {
        let range = config.range_of(run)?;
        let pb = multi.add(bar(config.steps_of(run), &run.to_string()));
        pb.set_message(format!("t in {range}"));
        bars.insert(run, pb);
    }
    let mut logs: BTreeMap<RunId, RunLog> = BTreeMap::new();
    let mut images = 0usize;
    let started = Instant::now();
    let mut on_event = |e: FinetuneEvent| {
        let Some(pb) = bars.get(&e.run) else {
            return;
        };
        match e.event {
            TrainEvent::Started { first_step, .. } => pb.set_position(first_step),
            TrainEvent::Step { step, loss, .. } => {
                images += config.batch_size;
                let log = logs.entry(e.run).or_default();
                log.losses.push(loss);
                pb.set_position(step);
                let detail = match e.parts {
                    Some(p) => {
                        log.eps.push(p.eps);
                        match p.consistency {
                            Some(c) => {
                                log.consistency.push(c);
                                format!(" (eps {:.4} + cons {c:.2e})", p.eps)
                            }
                            None => String::new(),
                        }
                    }
                    None => String::new(),
                };
                pb.set_message(format!("loss {loss:.4}{detail}"));
            }
            TrainEvent::Checkpoint { step, path } => pb.println(format!(
                "{}: checkpoint at step {step}: {}",
                e.run,
                path.display()
            )),
            TrainEvent::Stopped { step, reason } => {
                pb.println(format!("{}: stopped at step {step}: {reason:?}", e.run))
            }
            TrainEvent::Finished { .. } => pb.finish(),
            TrainEvent::HeldOut { .. } => {}
        }
    };
    let outcome = finetune_any(base.model, &job, &compute.device, &cancel, &mut on_event)?;
    let wall = started.elapsed().as_secs_f64();
    for pb in bars.values() {
        pb.finish_and_clear();
    }
    for (run, log) in &logs {
        let k = log.losses.len().min(10);
        let cons = if log.consistency.is_empty() {
            String::new()
        } else {
            format!(
                ", consistency last {k} mean {:.3e}",
                mean_of(&log.consistency[log.consistency.len() - k..])
            )
        };
        eprintln!(
            "{run} t in {}: {} steps, loss first {k} mean {:.4}, last {k} mean {:.4} (eps {:.4}{cons})",
            config.range_of(*run)?,
            log.losses.len(),
            mean_of(&log.losses[..k]),
            mean_of(&log.losses[log.losses.len() - k..]),
            mean_of(&log.eps[log.eps.len().saturating_sub(k)..]),
        );
    }
    eprintln!(
        "{images} images in {wall:.1} s ({:.0} images/s)",
        images as f64 / wall.max(1e-9)
    );
    if outcome.cancelled {
        bail!(
            "cancelled: every started run was saved at its current step in {}; continue with --resume",
            args.out.display()
        );
    }
    eprintln!("saved {}", args.out.display());
    Ok(())
}

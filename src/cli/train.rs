//! `deme-studio train`: pretrain a model on a dataset, with resume and Ctrl-C-safe checkpoints.

use super::progress::bar;
use super::resolve_device;
use crate::engine::data::{DataSpec, split_items};
use crate::engine::device::DeviceChoice;
use crate::engine::model::EpsModel;
use crate::engine::output::{ensure_writable_folder, refuse_existing_model};
use crate::engine::store::{AnyModel, ModelSpec};
use crate::engine::train::heldout_curve::{LOSS_CURVE_FILE, read_curve};
use crate::engine::train::{
    BatchSampler, CancelToken, RunStart, TrainConfig, TrainEvent, fresh_run,
    last_quarter_improvement, pretrain_watched, resume_run,
};
use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use clap::Args;
use std::path::{Path, PathBuf};

/// Arguments of `train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Dataset: mnist (embedded), cifar10:PATH, images:PATH, idx:PATH or toy:NAME
    /// (moons, swissroll, 8gaussians, checkerboard).
    #[arg(long, default_value = "mnist")]
    pub data: DataSpec,
    /// Model: a preset (mnist-tiny, mnist-small, ddpm-cifar10-32, toy-mlp) or a diffusers config.json.
    /// Defaults to mnist-tiny for images and toy-mlp for toy data.
    #[arg(long)]
    pub model: Option<String>,
    /// Total optimizer steps.
    #[arg(long, default_value_t = 2000, value_parser = super::limits::steps)]
    pub steps: u64,
    /// Output folder (a diffusers model folder plus training state).
    #[arg(long)]
    pub out: PathBuf,
    /// Batch size.
    #[arg(long, default_value_t = 64, value_parser = super::limits::batch_size)]
    pub batch_size: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Linear warm-up steps.
    #[arg(long, default_value_t = 100, value_parser = super::limits::steps_or_none)]
    pub warmup: u64,
    /// EMA decay cap (0 disables EMA).
    #[arg(long, default_value_t = 0.999)]
    pub ema: f64,
    /// Checkpoint every N steps.
    #[arg(long, default_value_t = 500, value_parser = super::limits::steps)]
    pub checkpoint_every: u64,
    /// Seed for initialisation, batches and noise.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Fraction of the data held out for validation (never trained on).
    #[arg(long, default_value_t = 0.1)]
    pub val_fraction: f64,
    /// Continue the run found in --out.
    #[arg(long, conflicts_with = "overwrite")]
    pub resume: bool,
    /// Start afresh in an --out that already holds a model, replacing it.
    #[arg(long)]
    pub overwrite: bool,
    /// Number of points drawn for toy datasets.
    #[arg(long, default_value_t = 20_000, value_parser = super::limits::toy_points)]
    pub toy_points: usize,
    /// Lower the learning rate linearly towards 0 over the last N steps (0: constant).
    #[arg(long, default_value_t = 0, value_parser = super::limits::steps_or_none)]
    pub lr_decay_steps: u64,
    /// Measure the held-out loss every N steps into OUT/loss_curve.csv and .png (0: never).
    #[arg(long, default_value_t = 0, value_parser = super::limits::steps_or_none)]
    pub eval_every: u64,
    /// Samples (item, noise, timestep) of the fixed held-out set measured by --eval-every.
    #[arg(long, default_value_t = 2000, value_parser = super::limits::eval_samples)]
    pub eval_samples: usize,
}

/// Loads the data for `spec`, adapted to the model's input, as the training split.
pub fn training_items(
    data: &DataSpec,
    spec: &ModelSpec,
    val_fraction: f64,
    toy_points: usize,
) -> Result<BatchSampler> {
    Ok(split_items(data, spec, val_fraction, toy_points)?.train)
}

fn start<M: EpsModel>(
    model: M,
    dir: &Path,
    resume: bool,
    config: &TrainConfig,
    device: &Device,
) -> Result<RunStart<M>> {
    if resume {
        let s = resume_run(model, dir, config, device).context("--resume")?;
        eprintln!("resuming at step {}", s.step);
        Ok(s)
    } else {
        Ok(fresh_run(model, config, device))
    }
}

/// Runs `train`.
pub fn run(args: TrainArgs, device: DeviceChoice) -> Result<()> {
    // Ctrl-C stops the job at its next step or point and keeps what it did; installed
    // before anything is printed, so a signal sent after the first line is never lost
    let cancel = CancelToken::new();
    super::interrupt::install(&cancel);
    let model_arg = args.model.clone().unwrap_or_else(|| match args.data {
        DataSpec::Toy(_) => "toy-mlp".into(),
        _ => crate::engine::checkpoint::DEFAULT_IMAGE_PRESET.into(),
    });
    let spec = ModelSpec::from_arg(&model_arg)?;
    if !args.resume && !args.overwrite {
        refuse_existing_model(
            &args.out,
            "pass --resume to continue its training run, --overwrite to replace it, or choose \
             another --out",
        )?;
    }
    ensure_writable_folder(&args.out)?;
    let split = split_items(&args.data, &spec, args.val_fraction, args.toy_points)?;
    let items = split.train;
    if args.eval_every > 0 && split.val.is_empty() {
        bail!("--eval-every measures the held-out items, but --val-fraction leaves none");
    }
    let compute = resolve_device(device)?;
    let config = TrainConfig {
        steps: args.steps,
        batch_size: args.batch_size,
        lr: args.lr,
        warmup_steps: args.warmup,
        ema_max_decay: (args.ema > 0.0).then_some(args.ema),
        checkpoint_every: args.checkpoint_every.max(1),
        seed: args.seed,
        lr_decay_steps: args.lr_decay_steps,
        eval_every: args.eval_every,
        eval_samples: args.eval_samples,
        ..TrainConfig::default()
    };
    config.validate()?;
    eprintln!(
        "training {model_arg} on {} ({} items) for {} steps, batch {}",
        args.data,
        items.len(),
        args.steps,
        args.batch_size
    );
    let pb = bar(args.steps, "train");
    let mut on_event = |e: TrainEvent| match e {
        TrainEvent::Started { first_step, .. } => pb.set_position(first_step),
        TrainEvent::Step {
            step,
            loss,
            images_per_sec,
            ..
        } => {
            pb.set_position(step);
            pb.set_message(format!("loss {loss:.4} {images_per_sec:.0} img/s"));
            if super::progress::log_line_due(step, args.steps) {
                eprintln!(
                    "step {step}/{}: loss {loss:.4} {images_per_sec:.0} img/s",
                    args.steps
                );
            }
        }
        TrainEvent::Checkpoint { step, path } => {
            pb.println(format!("checkpoint at step {step}: {}", path.display()))
        }
        TrainEvent::Stopped { step, reason } => {
            pb.println(format!("stopped at step {step}: {reason:?}"))
        }
        TrainEvent::HeldOut { step, loss } => {
            pb.println(format!("step {step}: held-out loss {loss:.5}"))
        }
        TrainEvent::Finished { .. } => pb.finish(),
    };
    let heldout = (args.eval_every > 0).then_some(&split.val);
    let model = spec.build(args.seed, &compute.device)?;
    match model {
        AnyModel::UNet(m) => {
            let s = start(m, &args.out, args.resume, &config, &compute.device)?;
            pretrain_watched(
                s,
                &spec,
                &items,
                heldout,
                &config,
                &args.out,
                &cancel,
                &mut on_event,
            )?;
        }
        AnyModel::Mlp(m) => {
            let s = start(m, &args.out, args.resume, &config, &compute.device)?;
            pretrain_watched(
                s,
                &spec,
                &items,
                heldout,
                &config,
                &args.out,
                &cancel,
                &mut on_event,
            )?;
        }
    }
    eprintln!("saved {}", args.out.display());
    if args.eval_every > 0 {
        report_plateau(&args.out)?;
    }
    Ok(())
}

/// Prints how much the held-out loss still fell over the last quarter of the run.
fn report_plateau(out: &Path) -> Result<()> {
    let curve = read_curve(&out.join(LOSS_CURVE_FILE))?;
    match last_quarter_improvement(&curve) {
        Some(r) => eprintln!(
            "held-out loss over the last quarter of the steps: {:+.2}% ({})",
            -100.0 * r,
            if r < 0.01 {
                "plateaued: under 1% improvement"
            } else {
                "still improving by 1% or more"
            }
        ),
        None => eprintln!("the loss curve is too short to judge a plateau"),
    }
    Ok(())
}

//! DeMe decoupled finetuning (paper section 3.2): from a pretrained model, N
//! copies, copy `i` trained mostly on its timestep range with probabilistic
//! sampling, a consistency loss against the frozen pretrained model and optional
//! channel-wise projections; plus the paper's baseline, one copy finetuned on all
//! timesteps for as many iterations as the N experts together.
//!
//! Each run writes its own checkpoint folder `OUT/expert_{i}` (or `OUT/baseline`):
//! a diffusers folder plus `deme.json` (kind `finetune`, the timestep range, the
//! settings, the base as parent) and `train_state.safetensors`, so every run is
//! resumable. Runs go one after another or interleaved step by step; each run
//! draws its batches from its own seeded stream, so both orders give the same
//! weights. A cancel saves every started, unfinished run; a NaN/inf loss stops
//! the job and writes nothing, leaving the last good checkpoints as they were.

use super::batch::BatchSampler;
use super::cancel::CancelToken;
use super::consistency::finetune_loss;
use super::events::{FinetuneEvent, LossParts, RunId, TrainEvent};
use super::finetune_config::FinetuneConfig;
use super::resume::{fresh_start, resume_start};
use super::stepper::{CheckpointTarget, Stepper};
use super::timesteps::TimestepSampler;
use crate::engine::checkpoint::read_meta;
use crate::engine::diffusion::NoiseSchedule;
use crate::engine::model::{EpsModel, ToyMlp, UNet2DModel};
use crate::engine::store::{AnyModel, META_FILE, ModelSpec, TRAIN_STATE_FILE, WEIGHTS_FILE};
use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use std::cell::Cell;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// A model DeMe can finetune: an [`EpsModel`] that may gain channel-wise projections.
pub trait FinetuneModel: EpsModel {
    /// Fails with a clear message when models of `spec` cannot carry projections.
    fn check_projection(spec: &ModelSpec) -> Result<()>;

    /// Adds identity-initialised projections; a model that already has them keeps them.
    fn add_projections(self, spec: &ModelSpec, device: &Device) -> Result<Self>;
}

impl FinetuneModel for UNet2DModel {
    fn check_projection(spec: &ModelSpec) -> Result<()> {
        match spec {
            ModelSpec::UNet(_) => Ok(()),
            ModelSpec::Mlp(_) => bail!("a UNet2DModel was given with a toy MLP config"),
        }
    }

    fn add_projections(self, spec: &ModelSpec, device: &Device) -> Result<Self> {
        let ModelSpec::UNet(config) = spec else {
            bail!("a UNet2DModel was given with a toy MLP config");
        };
        Ok(if self.adapter_list.is_empty() {
            self.with_projections(config, device)
        } else {
            self
        })
    }
}

impl FinetuneModel for ToyMlp {
    fn check_projection(_: &ModelSpec) -> Result<()> {
        bail!(
            "channel-wise projection does not apply to the toy MLP (it has no feature channels); \
             turn projection off (--no-projection)"
        )
    }

    fn add_projections(self, spec: &ModelSpec, _: &Device) -> Result<Self> {
        Self::check_projection(spec)?;
        Ok(self)
    }
}

/// The weights a run starts from: `base`, with identity projections added when
/// `projection` is set (which leaves its output unchanged).
pub fn start_model<M: FinetuneModel>(
    base: &M,
    projection: bool,
    spec: &ModelSpec,
    device: &Device,
) -> Result<M> {
    if projection {
        base.clone().add_projections(spec, device)
    } else {
        Ok(base.clone())
    }
}

/// In which order the runs of a job take their steps. Both give the same weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Schedule {
    /// Each run to its end before the next starts (one model in memory at a time).
    Sequential,
    /// One step of each expert in turn (the baseline takes N steps per turn), so
    /// all runs progress together; every run is in memory at once.
    #[default]
    Interleaved,
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Sequential => "sequential",
            Self::Interleaved => "interleaved",
        })
    }
}

impl FromStr for Schedule {
    type Err = anyhow::Error;

    /// Parses `sequential` or `interleaved`.
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "sequential" => Ok(Self::Sequential),
            "interleaved" => Ok(Self::Interleaved),
            _ => bail!("`{s}` is not a schedule (sequential or interleaved)"),
        }
    }
}

/// What a finetune job does and where.
#[derive(Clone, Copy)]
pub struct FinetuneJob<'a> {
    /// Architecture of the base model.
    pub spec: &'a ModelSpec,
    /// Where the base model was loaded from (recorded as each run's parent).
    pub base_path: &'a Path,
    /// Training items, already fitted to the model's input.
    pub data: &'a BatchSampler,
    /// Settings.
    pub config: &'a FinetuneConfig,
    /// Output folder; runs go to `expert_{i}` and `baseline` inside it.
    pub out_dir: &'a Path,
    /// Train the N experts.
    pub experts: bool,
    /// Train the baseline.
    pub baseline: bool,
    /// Order of the steps.
    pub schedule: Schedule,
    /// Continue runs found in `out_dir` (without it, existing runs are refused).
    pub resume: bool,
}

/// What a finished or cancelled job hands back.
#[derive(Debug)]
pub struct FinetuneOutcome<M> {
    /// The published weights (EMA when enabled) of every run that was started, in run order.
    pub models: Vec<(RunId, M)>,
    /// Whether the job stopped on a cancel (the runs' folders hold partial checkpoints).
    pub cancelled: bool,
}

impl<M> FinetuneOutcome<M> {
    fn map<N>(self, f: impl Fn(M) -> N) -> FinetuneOutcome<N> {
        FinetuneOutcome {
            models: self.models.into_iter().map(|(r, m)| (r, f(m))).collect(),
            cancelled: self.cancelled,
        }
    }
}

/// The folder of `run` inside `out_dir`.
pub fn run_dir(out_dir: &Path, run: RunId) -> PathBuf {
    out_dir.join(run.folder_name())
}

/// The settings stored by an earlier job in `out_dir` (read from the first run
/// folder that has them), if any.
pub fn stored_config(out_dir: &Path) -> Result<Option<FinetuneConfig>> {
    let Ok(entries) = std::fs::read_dir(out_dir) else {
        return Ok(None);
    };
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("expert_") || n == "baseline")
        })
        .collect();
    dirs.sort();
    for dir in dirs {
        let meta_path = dir.join(META_FILE);
        if !meta_path.exists() {
            continue;
        }
        let meta = read_meta(&meta_path)?;
        if meta.kind == "finetune" {
            return FinetuneConfig::saved(meta.train_config, &meta_path).map(Some);
        }
    }
    Ok(None)
}

/// Finetunes `base` (on the plain `device`) as `job` says, streaming events.
pub fn finetune<M: FinetuneModel>(
    base: M,
    job: &FinetuneJob,
    device: &Device,
    cancel: &CancelToken,
    on_event: &mut dyn FnMut(FinetuneEvent),
) -> Result<FinetuneOutcome<M>> {
    let config = job.config;
    config.validate()?;
    if job.data.item_shape != job.spec.item_shape() {
        bail!(
            "the data items have shape {:?}, the model expects {:?}",
            job.data.item_shape,
            job.spec.item_shape()
        );
    }
    if job.data.is_empty() {
        bail!("there is no training data");
    }
    let runs = config.runs(job.experts, job.baseline);
    if runs.is_empty() {
        bail!("nothing to train: neither the experts nor the baseline were asked for");
    }
    if runs.iter().any(|&r| config.projection_of(r)) {
        M::check_projection(job.spec)?;
    }
    let parent = std::fs::canonicalize(job.base_path)
        .unwrap_or_else(|_| job.base_path.to_path_buf())
        .display()
        .to_string();
    // check every folder before training anything
    let mut plan = Vec::with_capacity(runs.len());
    for run in runs {
        let resumable = preflight(job, run, &parent).with_context(|| format!("{run}"))?;
        plan.push((run, resumable));
    }
    let ctx = Shared {
        job,
        frozen: base.valid(),
        schedule: NoiseSchedule::ddpm(config.num_train_timesteps),
        parent,
        device,
    };
    match job.schedule {
        Schedule::Sequential => sequential(&base, &ctx, plan, cancel, on_event),
        Schedule::Interleaved => interleaved(&base, &ctx, plan, cancel, on_event),
    }
}

/// [`finetune`] for a model of either architecture.
pub fn finetune_any(
    base: AnyModel,
    job: &FinetuneJob,
    device: &Device,
    cancel: &CancelToken,
    on_event: &mut dyn FnMut(FinetuneEvent),
) -> Result<FinetuneOutcome<AnyModel>> {
    Ok(match base {
        AnyModel::UNet(m) => finetune(m, job, device, cancel, on_event)?.map(AnyModel::UNet),
        AnyModel::Mlp(m) => finetune(m, job, device, cancel, on_event)?.map(AnyModel::Mlp),
    })
}

/// Whether `run` resumes from its folder; refuses folders that cannot be used.
fn preflight(job: &FinetuneJob, run: RunId, parent: &str) -> Result<bool> {
    let dir = run_dir(job.out_dir, run);
    let has_state = dir.join(TRAIN_STATE_FILE).exists();
    let has_weights = dir.join(WEIGHTS_FILE).exists();
    if !job.resume {
        if has_state || has_weights {
            bail!(
                "{} already holds a finetune run: pass --resume to continue it, or choose another output folder",
                dir.display()
            );
        }
        return Ok(false);
    }
    if !has_state {
        if has_weights {
            bail!(
                "{} holds a model but no {TRAIN_STATE_FILE} to resume from",
                dir.display()
            );
        }
        return Ok(false);
    }
    let meta_path = dir.join(META_FILE);
    if !meta_path.exists() {
        // the first save was cut short after the train state: that state is all there is
        return Ok(true);
    }
    let meta = read_meta(&meta_path)?;
    if meta.kind != "finetune" {
        bail!(
            "{} holds a `{}` checkpoint, not a finetune run",
            dir.display(),
            meta.kind
        );
    }
    let expected = match run {
        RunId::Expert(_) => Some(job.config.range_of(run)?.to_array()),
        RunId::Baseline => None,
    };
    if meta.timestep_range != expected {
        bail!(
            "{} was trained on timesteps {:?}, this job expects {:?} (a different number of experts?)",
            dir.display(),
            meta.timestep_range,
            expected
        );
    }
    let stored = FinetuneConfig::saved(meta.train_config, &meta_path)?;
    let differences = stored.differences_for(run, job.config)?;
    if !differences.is_empty() {
        bail!(
            "{} was trained with other settings (saved vs now: {}); resume with the same settings",
            dir.display(),
            differences.join(", ")
        );
    }
    if let Some(p) = meta.parent
        && p != parent
    {
        bail!(
            "{} was finetuned from {p}, not from {parent}",
            dir.display()
        );
    }
    Ok(true)
}

/// What every run of a job shares.
struct Shared<'a, M> {
    job: &'a FinetuneJob<'a>,
    /// The pretrained model, on the plain device, never updated.
    frozen: M,
    schedule: NoiseSchedule,
    parent: String,
    device: &'a Device,
}

/// One run in progress.
struct Member<'a, M> {
    run: RunId,
    stepper: Stepper<'a, M>,
    sampler: TimestepSampler,
    lambda: f64,
    seed: u64,
    /// Steps per turn when interleaved.
    quota: u64,
}

fn emit(on_event: &mut dyn FnMut(FinetuneEvent), run: RunId, event: TrainEvent) {
    on_event(FinetuneEvent {
        run,
        event,
        parts: None,
    });
}

impl<'a, M: FinetuneModel> Member<'a, M> {
    fn open(run: RunId, resumable: bool, base: &M, ctx: &Shared<'a, M>) -> Result<Self> {
        let job = ctx.job;
        let c = job.config;
        let dir = run_dir(job.out_dir, run);
        let template = start_model(base, c.projection_of(run), job.spec, ctx.device)?;
        let start = if resumable {
            resume_start(template, &dir, c.adamw, ctx.device)
                .with_context(|| format!("resuming {run} from {}", dir.display()))?
        } else {
            fresh_start(template, c.adamw, ctx.device)
        };
        let target = CheckpointTarget {
            dir,
            kind: "finetune",
            timestep_range: match run {
                RunId::Expert(_) => Some(c.range_of(run)?.to_array()),
                RunId::Baseline => None,
            },
            data: Some(job.data.describe()),
            train_config: serde_json::to_value(c)?,
            parent: Some(ctx.parent.clone()),
            every: c.checkpoint_every,
        };
        Ok(Self {
            run,
            stepper: Stepper::new(start, job.spec, target, c.steps_of(run), c.ema_max_decay),
            sampler: c.sampler_of(run)?,
            lambda: c.lambda_of(run),
            seed: c.seed_of(run),
            quota: match run {
                RunId::Expert(_) => 1,
                RunId::Baseline => c.experts as u64,
            },
        })
    }

    fn is_done(&self) -> bool {
        self.stepper.is_done()
    }

    fn started(&self, on_event: &mut dyn FnMut(FinetuneEvent)) {
        emit(on_event, self.run, self.stepper.started_event());
        if self.is_done() {
            self.finished(on_event);
        }
    }

    fn finished(&self, on_event: &mut dyn FnMut(FinetuneEvent)) {
        let step = self.stepper.total_steps();
        emit(on_event, self.run, TrainEvent::Finished { step });
    }

    /// One optimizer step; emits `Finished` after the last.
    fn step(&mut self, ctx: &Shared<'a, M>, on_event: &mut dyn FnMut(FinetuneEvent)) -> Result<()> {
        let c = ctx.job.config;
        let data = ctx.job.data;
        let run = self.run;
        let (sampler, lambda, seed) = (self.sampler, self.lambda, self.seed);
        let parts: Cell<Option<LossParts>> = Cell::new(None);
        let loss = |model: &M, step: u64| -> Result<_> {
            // one RNG stream per run and step: resumed or reordered runs draw the same batches
            let mut rng = data.rng_for_step(seed, step);
            let n = c.batch_size;
            let batch = data.batch_with(&mut rng, n, &model.devices()[0], |rng| {
                sampler.sample(rng, n)
            });
            let loss = finetune_loss(
                model,
                &ctx.frozen,
                lambda,
                c.loss_weighting,
                &ctx.schedule,
                batch.x0,
                batch.noise,
                &batch.t,
            );
            parts.set(Some(loss.parts()?));
            Ok(loss.total)
        };
        let mut sink = |event: TrainEvent| {
            let parts = match event {
                TrainEvent::Step { .. } => parts.get(),
                _ => None,
            };
            on_event(FinetuneEvent { run, event, parts });
        };
        let lr = c.lr_at(self.stepper.step_index());
        self.stepper
            .step(lr, c.batch_size, loss, &mut sink)
            .with_context(|| format!("{run}"))?;
        if self.is_done() {
            self.finished(on_event);
        }
        Ok(())
    }

    fn cancel(&self, on_event: &mut dyn FnMut(FinetuneEvent)) -> Result<()> {
        let run = self.run;
        self.stepper
            .cancel(&mut |e| emit(on_event, run, e))
            .with_context(|| format!("{run}"))
    }

    fn into_published(self) -> Result<(RunId, M)> {
        Ok((self.run, self.stepper.into_published()?))
    }
}

fn sequential<M: FinetuneModel>(
    base: &M,
    ctx: &Shared<'_, M>,
    plan: Vec<(RunId, bool)>,
    cancel: &CancelToken,
    on_event: &mut dyn FnMut(FinetuneEvent),
) -> Result<FinetuneOutcome<M>> {
    let mut models = Vec::with_capacity(plan.len());
    for (run, resumable) in plan {
        let mut member = Member::open(run, resumable, base, ctx)?;
        member.started(on_event);
        while !member.is_done() {
            if cancel.is_cancelled() {
                member.cancel(on_event)?;
                models.push(member.into_published()?);
                return Ok(FinetuneOutcome {
                    models,
                    cancelled: true,
                });
            }
            member.step(ctx, on_event)?;
        }
        models.push(member.into_published()?);
    }
    Ok(FinetuneOutcome {
        models,
        cancelled: false,
    })
}

fn interleaved<M: FinetuneModel>(
    base: &M,
    ctx: &Shared<'_, M>,
    plan: Vec<(RunId, bool)>,
    cancel: &CancelToken,
    on_event: &mut dyn FnMut(FinetuneEvent),
) -> Result<FinetuneOutcome<M>> {
    let mut members = plan
        .into_iter()
        .map(|(run, resumable)| Member::open(run, resumable, base, ctx))
        .collect::<Result<Vec<_>>>()?;
    for member in &members {
        member.started(on_event);
    }
    let mut cancelled = false;
    'turns: while members.iter().any(|m| !m.is_done()) {
        for member in members.iter_mut() {
            for _ in 0..member.quota {
                if member.is_done() {
                    break;
                }
                if cancel.is_cancelled() {
                    cancelled = true;
                    break 'turns;
                }
                member.step(ctx, on_event)?;
            }
        }
    }
    if cancelled {
        for member in members.iter().filter(|m| !m.is_done()) {
            member.cancel(on_event)?;
        }
    }
    Ok(FinetuneOutcome {
        models: members
            .into_iter()
            .map(Member::into_published)
            .collect::<Result<_>>()?,
        cancelled,
    })
}

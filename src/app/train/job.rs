//! Background work of the Train view: pretraining or DeMe finetuning on a
//! thread named `train`, streaming the engine's events, holding at the
//! pause gate between steps, sampling previews from each saved checkpoint
//! and, when asked, taking one run's gradient conflicts at each checkpoint
//! for the Gradient-conflicts view.

use super::plan::{
    JobKind, PreviewConfig, RunKey, RunPlan, TrainJob, TrainOutcome, TrainUpdate, live_gradsim_run,
};
use crate::app::gradsim::job::{checkpoint_gradsim, live_source};
use crate::app::job_slot::Outcome;
use crate::app::preview::PreviewImage;
use crate::engine::data::{DataSpec, split_items};
use crate::engine::diffusion::{
    DdimConfig, NoiseSchedule, NoiseSource, SamplerKind, SeededNoise, sample,
};
use crate::engine::model_set::ModelSet;
use crate::engine::store::{AnyModel, ModelSpec, load_model};
use crate::engine::train::{
    BatchSampler, CancelToken, FinetuneConfig, FinetuneEvent, FinetuneJob, LossParts, RunId,
    Schedule, StopReason, TrainConfig, TrainEvent, finetune_any, pretrain_any, run_dir,
};
use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;

/// Samples `preview` from the checkpoint in `dir`; `None` when cancelled.
pub fn sample_checkpoint(
    dir: &Path,
    preview: &PreviewConfig,
    timesteps: usize,
    device: &Device,
    cancel: &CancelToken,
) -> Result<Option<PreviewImage>> {
    let loaded = load_model(dir, device)
        .with_context(|| format!("loading the checkpoint {}", dir.display()))?;
    let [c, h, w] = loaded.spec.item_shape();
    let points = matches!(loaded.spec, ModelSpec::Mlp(_));
    let n = preview.samples.max(1) * if points { 32 } else { 1 };
    let x = SeededNoise::new(preview.seed).next([n, c, h, w], device);
    let schedule = NoiseSchedule::ddpm(timesteps);
    let kind = SamplerKind::Ddim(DdimConfig {
        steps: preview.steps.clamp(1, timesteps),
        clip_sample: !points,
        ..DdimConfig::default()
    });
    let model = loaded.model;
    let mut noise = SeededNoise::new(0);
    let out = sample(
        kind,
        &schedule,
        x,
        &mut noise,
        &mut |x, t| model.eps(x, &vec![t as f32; n]),
        &mut |_, _, _| !cancel.is_cancelled(),
    );
    out.map(|x| PreviewImage::from_tensor(&x)).transpose()
}

/// The reporting side of a running job.
struct Reporter<'a> {
    job: &'a TrainJob,
    device: &'a Device,
    timesteps: usize,
    cancelled: bool,
    /// The run's training data (for the gradient conflicts).
    items: Option<Arc<BatchSampler>>,
    /// The run whose gradient conflicts are taken.
    live_run: Option<RunKey>,
}

impl Reporter<'_> {
    fn send(&self, u: TrainUpdate) {
        self.job.sink.update(u);
    }

    fn on_event(&mut self, run: RunKey, event: TrainEvent, parts: Option<LossParts>) {
        let step_done = matches!(event, TrainEvent::Step { .. });
        let checkpoint = match &event {
            TrainEvent::Checkpoint { step, path } => Some((*step, path.clone())),
            TrainEvent::Stopped {
                reason: StopReason::Cancelled,
                ..
            } => {
                self.cancelled = true;
                None
            }
            _ => None,
        };
        self.send(TrainUpdate::Event { run, event, parts });
        if let Some((step, path)) = checkpoint {
            self.preview(run, step, &path);
            self.gradsim(run, step, &path);
        }
        if step_done {
            let sink = &self.job.sink;
            self.job.control.wait(
                &self.job.cancel,
                &mut || sink.update(TrainUpdate::Held),
                &mut || sink.update(TrainUpdate::Released),
            );
        }
    }

    fn preview(&self, run: RunKey, step: u64, dir: &Path) {
        if !self.job.preview.enabled {
            return;
        }
        // a cancel still saves; its preview is skipped so the thread ends at once
        let never = CancelToken::new();
        let cancel = if self.job.cancel.is_cancelled() {
            return;
        } else {
            &never
        };
        match sample_checkpoint(dir, &self.job.preview, self.timesteps, self.device, cancel) {
            Ok(Some(image)) => self.send(TrainUpdate::Preview {
                run,
                step,
                image: Arc::new(image),
            }),
            Ok(None) => {}
            Err(e) => self.send(TrainUpdate::Note(format!("{run}: no preview: {e:#}"))),
        }
    }
}

impl Reporter<'_> {
    /// Sets the plan's runs and the one whose gradient conflicts are taken.
    fn plan(&mut self, plan: Vec<RunPlan>, items: &Arc<BatchSampler>) {
        if self.job.gradsim.is_some() {
            self.live_run = live_gradsim_run(&plan);
            self.items = Some(items.clone());
        }
        self.send(TrainUpdate::Plan(plan));
    }

    /// Takes the gradient conflicts of the checkpoint in `dir` when `run` is
    /// the live run; skipped after Cancel, stopped by a Cancel meanwhile.
    fn gradsim(&self, run: RunKey, step: u64, dir: &Path) {
        let (Some(config), Some(items)) = (&self.job.gradsim, &self.items) else {
            return;
        };
        if self.live_run != Some(run) || self.job.cancel.is_cancelled() {
            return;
        }
        match checkpoint_gradsim(
            dir,
            items,
            config,
            self.timesteps,
            self.device,
            &self.job.cancel,
        ) {
            Ok(result) => self.send(TrainUpdate::GradSim {
                result: Arc::new(result),
                source: live_source(&run.to_string(), step),
            }),
            Err(_) if self.job.cancel.is_cancelled() => {}
            Err(e) => self.send(TrainUpdate::Note(format!(
                "{run}: no gradient conflicts: {e:#}"
            ))),
        }
    }
}

fn run_pretrain(r: &mut Reporter, model: &str, config: &TrainConfig) -> Result<TrainOutcome> {
    let job = r.job;
    let spec = ModelSpec::from_arg(model)?;
    if !job.resume {
        crate::engine::output::refuse_existing_model(
            &job.out,
            "tick Resume to continue its training run, or choose another output folder",
        )?;
    }
    crate::engine::output::ensure_writable_folder(&job.out)?;
    r.send(TrainUpdate::Stage(format!("loading {}", job.data)));
    let items = Arc::new(split_items(&job.data, &spec, job.val_fraction, job.toy_points)?.train);
    r.timesteps = config.num_train_timesteps;
    r.plan(
        vec![RunPlan {
            key: RunKey::Pretrain,
            total_steps: config.steps,
            range: [0, config.num_train_timesteps],
            dir: job.out.clone(),
            batch_size: config.batch_size,
        }],
        &items,
    );
    r.send(TrainUpdate::Stage("training".into()));
    let device = r.device.clone();
    let mut on_event = |e: TrainEvent| r.on_event(RunKey::Pretrain, e, None);
    pretrain_any(
        spec.build(config.seed, &device)?,
        job.resume,
        &spec,
        &items,
        config,
        &job.out,
        &job.cancel,
        &device,
        &mut on_event,
    )?;
    Ok(TrainOutcome {
        cancelled: r.cancelled,
        set: None,
        out: job.out.clone(),
    })
}

fn run_finetune(
    r: &mut Reporter,
    base_path: &Path,
    config: &FinetuneConfig,
    schedule: Schedule,
    experts: bool,
    baseline: bool,
) -> Result<TrainOutcome> {
    let job = r.job;
    r.send(TrainUpdate::Stage(format!(
        "loading the base {}",
        base_path.display()
    )));
    let base = load_model(base_path, r.device)
        .with_context(|| format!("loading the base {}", base_path.display()))?;
    let mlp = matches!(base.model, AnyModel::Mlp(_));
    let mut config = config.clone();
    if mlp && (config.projection || config.baseline_projection) {
        config.projection = false;
        config.baseline_projection = false;
        r.send(TrainUpdate::Note(
            "channel-wise projection does not apply to the toy MLP: turned off".into(),
        ));
    }
    match (&job.data, mlp) {
        (DataSpec::Toy(_), false) => bail!(
            "dataset `{}` holds 2D points, but the base is an image UNet",
            job.data
        ),
        (DataSpec::Toy(_), true) | (_, false) => {}
        (_, true) => bail!(
            "dataset `{}` holds images, but the base is a toy MLP (it finetunes on toy:NAME points)",
            job.data
        ),
    }
    r.send(TrainUpdate::Stage(format!("loading {}", job.data)));
    let items =
        Arc::new(split_items(&job.data, &base.spec, job.val_fraction, job.toy_points)?.train);
    r.timesteps = config.num_train_timesteps;
    let runs = config.runs(experts, baseline);
    let plan = runs
        .iter()
        .map(|&run| {
            Ok(RunPlan {
                key: RunKey::Finetune(run),
                total_steps: config.steps_of(run),
                range: config.range_of(run)?.to_array(),
                dir: run_dir(&job.out, run),
                batch_size: config.batch_size,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    r.plan(plan, &items);
    r.send(TrainUpdate::Stage("training".into()));
    let ft = FinetuneJob {
        spec: &base.spec,
        base_path,
        data: &items,
        config: &config,
        out_dir: &job.out,
        experts,
        baseline,
        schedule,
        resume: job.resume,
    };
    let device = r.device.clone();
    let mut on_event = |e: FinetuneEvent| r.on_event(RunKey::Finetune(e.run), e.event, e.parts);
    let outcome = finetune_any(base.model, &ft, &device, &job.cancel, &mut on_event)?;
    let set = (experts && !outcome.cancelled).then(|| ModelSet {
        base: base_path.to_path_buf(),
        experts: (0..config.experts)
            .map(|k| run_dir(&job.out, RunId::Expert(k)))
            .collect(),
    });
    Ok(TrainOutcome {
        cancelled: outcome.cancelled,
        set,
        out: job.out.clone(),
    })
}

/// Runs `job` on the calling thread, reporting through its sink (except the end).
pub fn run_train(job: &TrainJob, device: &Device) -> Result<TrainOutcome> {
    let mut r = Reporter {
        job,
        device,
        timesteps: 1000,
        cancelled: false,
        items: None,
        live_run: None,
    };
    match &job.kind {
        JobKind::Pretrain { model, config } => run_pretrain(&mut r, model, config),
        JobKind::Finetune {
            base,
            config,
            schedule,
            experts,
            baseline,
        } => run_finetune(&mut r, base, config, *schedule, *experts, *baseline),
    }
}

/// Starts `job` on a thread named `train`; a panic inside is reported as a failure.
pub fn spawn_train(job: TrainJob, device: Device) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("train".into())
        .spawn(move || {
            let result =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_train(&job, &device)));
            // an error is a failure even after Cancel: a cancelled job ends
            // with an outcome that says so
            let outcome = match result {
                Ok(Ok(outcome)) => Outcome::Done(outcome),
                Ok(Err(e)) => Outcome::Failed(format!("{e:#}")),
                Err(panic) => Outcome::Failed(format!(
                    "the training thread failed: {}",
                    panic
                        .downcast_ref::<String>()
                        .map(String::as_str)
                        .or_else(|| panic.downcast_ref::<&str>().copied())
                        .unwrap_or("panic")
                )),
            };
            job.sink.finish(outcome);
        })
}

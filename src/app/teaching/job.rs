//! Background work of the Teaching view: a toy-MLP base pretrained on 2D
//! points and finetuned into DeMe experts, in a few seconds, on a named
//! thread. Training runs in chunks of [`TeachingConfig::sample_every`] steps
//! (each chunk resumes the run saved by the one before, which is exact: batches,
//! learning rate and EMA depend only on the step index); after each chunk the
//! current weights draw a point cloud from one fixed noise, so the view can
//! show the samples take the shape of the data.

use super::config::{
    LOSS_BUNCH, Point, SampleCloud, Stage, T, TOY_POINTS, TeachingConfig, TeachingJob,
    TeachingUpdate, VAL_FRACTION, data_points, to_points,
};
use crate::app::job_slot::{Outcome, Task};
use crate::engine::data::{DataSpec, ToyKind, split_items};
use crate::engine::diffusion::{DdimConfig, NoiseSchedule, SamplerKind, SeededNoise, sample};
use crate::engine::merge::TimestepEnsemble;
use crate::engine::model::{EpsModel, ToyMlp};
use crate::engine::model_set::{ModelSet, expert_folders};
use crate::engine::store::{AnyModel, ModelSpec};
use crate::engine::train::{
    BatchSampler, CancelToken, FinetuneConfig, FinetuneEvent, FinetuneJob, RunId, Schedule,
    TrainConfig, TrainEvent, finetune_any, fresh_run, pretrain, resume_run,
};
use anyhow::{Context, Result, bail};
use burn::tensor::{Device, Tensor, TensorData};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Deterministic DDIM (no clipping: points are not bounded like pixels) from
/// the fixed noise `x_t` with `eps(x, t)`.
fn ddim_points(
    schedule: &NoiseSchedule,
    steps: usize,
    x_t: Tensor<4>,
    eps: &dyn Fn(Tensor<4>, usize) -> Tensor<4>,
) -> Result<Vec<Point>> {
    let kind = SamplerKind::Ddim(DdimConfig {
        steps,
        clip_sample: false,
        ..DdimConfig::default()
    });
    let mut noise = SeededNoise::new(0); // DDIM at eta 0 never asks
    let mut model = |x: Tensor<4>, t: usize| eps(x, t);
    let out = sample(
        kind,
        schedule,
        x_t,
        &mut noise,
        &mut model,
        &mut |_, _, _| true,
    )
    .context("sampling stopped")?;
    to_points(&out)
}

/// The fixed starting noise of every sample cloud of a run.
fn start_noise(n: usize, seed: u64, device: &Device) -> Tensor<4> {
    let values = SeededNoise::new(seed ^ 0x5eed).next_vec(n * 2);
    Tensor::from_data(TensorData::new(values, [n, 2, 1, 1]), device)
}

/// A fresh folder for one run inside `root`.
fn run_folder(root: &Path, kind: ToyKind) -> Result<PathBuf> {
    std::fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
    let dir = tempfile::Builder::new()
        .prefix(&format!("{}-", kind.name()))
        .tempdir_in(root)
        .with_context(|| format!("creating a run folder in {}", root.display()))?;
    Ok(dir.keep())
}

/// Losses waiting to be sent.
struct Bunch<'a> {
    stage: Stage,
    losses: Vec<(usize, u64, f64)>,
    on_update: &'a mut dyn FnMut(TeachingUpdate),
}

impl<'a> Bunch<'a> {
    fn new(stage: Stage, on_update: &'a mut dyn FnMut(TeachingUpdate)) -> Self {
        Self {
            stage,
            losses: Vec::with_capacity(LOSS_BUNCH),
            on_update,
        }
    }

    fn push(&mut self, run: usize, step: u64, loss: f64) {
        self.losses.push((run, step, loss));
        if self.losses.len() >= LOSS_BUNCH {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if !self.losses.is_empty() {
            let losses = std::mem::take(&mut self.losses);
            (self.on_update)(TeachingUpdate::Losses {
                stage: self.stage,
                losses,
            });
        }
    }
}

struct Run<'a> {
    config: &'a TeachingConfig,
    device: &'a Device,
    cancel: &'a CancelToken,
    schedule: NoiseSchedule,
    noise: Tensor<4>,
    on_update: &'a mut dyn FnMut(TeachingUpdate),
}

impl Run<'_> {
    fn check_cancel(&self) -> Result<()> {
        if self.cancel.is_cancelled() {
            bail!("cancelled");
        }
        Ok(())
    }

    fn cloud(
        &mut self,
        stage: Stage,
        step: u64,
        eps: &dyn Fn(Tensor<4>, usize) -> Tensor<4>,
    ) -> Result<()> {
        let points = ddim_points(
            &self.schedule,
            self.config.sample_steps,
            self.noise.clone(),
            eps,
        )?;
        (self.on_update)(TeachingUpdate::Samples(SampleCloud {
            stage,
            step,
            points: Arc::new(points),
        }));
        Ok(())
    }

    /// Pretrains the base into `dir`, a chunk at a time; returns its published weights.
    fn base(&mut self, spec: &ModelSpec, data: &BatchSampler, dir: &Path) -> Result<ToyMlp> {
        let c = self.config;
        let AnyModel::Mlp(template) = spec.build(c.seed, self.device)? else {
            bail!("the teaching model is not the toy MLP");
        };
        let mut train = TrainConfig {
            steps: 0,
            batch_size: c.batch_size,
            lr: c.base_lr,
            warmup_steps: (c.base_steps / 20).min(100),
            ema_max_decay: c.ema_max_decay,
            checkpoint_every: u64::MAX,
            seed: c.seed,
            ..TrainConfig::default()
        };
        let mut published = template.clone();
        let mut done = 0;
        while done < c.base_steps {
            self.check_cancel()?;
            train.steps = (done + c.sample_every).min(c.base_steps);
            let start = if done == 0 {
                fresh_run(template.clone(), &train, self.device)
            } else {
                resume_run(template.clone(), dir, &train, self.device)?
            };
            let mut losses = Bunch::new(Stage::Base, &mut *self.on_update);
            let mut on_event = |e: TrainEvent| {
                if let TrainEvent::Step { step, loss, .. } = e {
                    losses.push(0, step, loss);
                }
            };
            let trained = pretrain(start, spec, data, &train, dir, self.cancel, &mut on_event);
            losses.flush();
            published = trained?;
            self.check_cancel()?;
            done = train.steps;
            let model = published.clone();
            self.cloud(Stage::Base, done, &|x, t| {
                let n = x.dims()[0];
                model.eps(x, &vec![t as f32; n])
            })?;
        }
        Ok(published)
    }

    /// Finetunes the experts of `base` into `out`, a chunk at a time.
    fn experts(
        &mut self,
        spec: &ModelSpec,
        data: &BatchSampler,
        base: ToyMlp,
        base_dir: &Path,
        out: &Path,
    ) -> Result<()> {
        let c = self.config;
        let mut ft = FinetuneConfig {
            experts: c.experts,
            projection: false,
            steps_per_expert: 0,
            batch_size: c.batch_size,
            lr: c.expert_lr,
            ema_max_decay: c.ema_max_decay,
            checkpoint_every: u64::MAX,
            seed: c.seed,
            ..FinetuneConfig::default()
        };
        let mut done = 0;
        while done < c.expert_steps {
            self.check_cancel()?;
            ft.steps_per_expert = (done + c.sample_every).min(c.expert_steps);
            let job = FinetuneJob {
                spec,
                base_path: base_dir,
                data,
                config: &ft,
                out_dir: out,
                experts: true,
                baseline: false,
                schedule: Schedule::Interleaved,
                resume: done > 0,
            };
            let mut losses = Bunch::new(Stage::Experts, &mut *self.on_update);
            let mut on_event = |e: FinetuneEvent| {
                if let (RunId::Expert(i), TrainEvent::Step { step, loss, .. }) = (e.run, e.event) {
                    losses.push(i, step, loss);
                }
            };
            let trained = finetune_any(
                AnyModel::Mlp(base.clone()),
                &job,
                self.device,
                self.cancel,
                &mut on_event,
            );
            losses.flush();
            let outcome = trained?;
            self.check_cancel()?;
            done = ft.steps_per_expert;
            let models: Vec<AnyModel> = outcome.models.into_iter().map(|(_, m)| m).collect();
            let ensemble = TimestepEnsemble::new(models, T)?;
            self.cloud(Stage::Experts, done, &|x, t| ensemble.eps(x, t))?;
        }
        Ok(())
    }
}

/// Trains the set of `job` on `device`, reporting through `on_update` (except
/// the end); returns the saved set. A cancelled run's folder is removed.
pub fn run_teaching(
    job: &TeachingJob,
    device: &Device,
    on_update: &mut dyn FnMut(TeachingUpdate),
) -> Result<ModelSet> {
    let c = &job.config;
    c.validate()?;
    let dir = run_folder(&c.out_root, c.data)?;
    let result = train_into(job, device, &dir, on_update);
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

fn train_into(
    job: &TeachingJob,
    device: &Device,
    dir: &Path,
    on_update: &mut dyn FnMut(TeachingUpdate),
) -> Result<ModelSet> {
    let c = &job.config;
    on_update(TeachingUpdate::Started {
        dir: dir.to_path_buf(),
        data: Arc::new(data_points(c.data, c.samples)),
    });
    let spec = ModelSpec::from_arg("toy-mlp")?;
    let data = split_items(&DataSpec::Toy(c.data), &spec, VAL_FRACTION, TOY_POINTS)?.train;
    let mut run = Run {
        config: c,
        device,
        cancel: &job.cancel,
        schedule: NoiseSchedule::ddpm(T),
        noise: start_noise(c.samples, c.seed, device),
        on_update,
    };
    let base_dir = dir.join("base");
    let base = run.base(&spec, &data, &base_dir)?;
    let experts_dir = dir.join("deme");
    run.experts(&spec, &data, base, &base_dir, &experts_dir)?;
    let experts = expert_folders(&experts_dir);
    if experts.len() != c.experts {
        bail!(
            "{} expert folders were written, {} expected",
            experts.len(),
            c.experts
        );
    }
    Ok(ModelSet {
        base: base_dir,
        experts,
    })
}

/// `job` as a task for a thread of its own (named `teaching`).
pub fn teaching_task(job: TeachingJob, device: Device) -> Task {
    Task::new("teaching", move || {
        let sink = job.sink.clone();
        let result = run_teaching(&job, &device, &mut |u| sink.update(u));
        sink.finish(Outcome::of(result, &job.cancel));
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::job_slot::Sink;
    use std::time::Instant;

    fn tiny(root: &Path) -> TeachingConfig {
        TeachingConfig {
            base_steps: 60,
            expert_steps: 20,
            batch_size: 32,
            sample_every: 20,
            samples: 64,
            sample_steps: 5,
            ..TeachingConfig::new(root.to_path_buf())
        }
    }

    fn run(config: TeachingConfig, cancel: CancelToken) -> (Result<ModelSet>, Vec<TeachingUpdate>) {
        let mut updates = Vec::new();
        let job = TeachingJob {
            config,
            cancel,
            sink: Sink::discard(),
        };
        let r = run_teaching(&job, &Device::flex(), &mut |u| updates.push(u));
        (r, updates)
    }

    #[test]
    fn a_tiny_run_streams_losses_and_clouds_and_saves_a_set() {
        let root = tempfile::tempdir().unwrap();
        let (set, updates) = run(tiny(root.path()), CancelToken::new());
        let set = set.unwrap();
        let Some(TeachingUpdate::Started { dir, data }) = updates.first() else {
            panic!("starts with Started");
        };
        assert_eq!(data.len(), 64);
        assert_eq!(ModelSet::discover(dir), Some(set.clone()));
        assert_eq!(set.experts.len(), 4);
        let losses = |s: Stage| {
            updates
                .iter()
                .filter_map(|u| match u {
                    TeachingUpdate::Losses { stage, losses } if *stage == s => Some(losses),
                    _ => None,
                })
                .flatten()
                .filter(|l| l.2.is_finite())
                .count()
        };
        assert_eq!(losses(Stage::Base), 60);
        assert_eq!(losses(Stage::Experts), 4 * 20);
        let clouds: Vec<(Stage, u64, usize)> = updates
            .iter()
            .filter_map(|u| match u {
                TeachingUpdate::Samples(c) => Some((c.stage, c.step, c.points.len())),
                _ => None,
            })
            .collect();
        assert_eq!(
            clouds,
            vec![
                (Stage::Base, 20, 64),
                (Stage::Base, 40, 64),
                (Stage::Base, 60, 64),
                (Stage::Experts, 20, 64),
            ]
        );
        // the saved models load and say what they are
        let base = crate::engine::store::load_model(&set.base, &Device::flex()).unwrap();
        assert!(matches!(base.model, AnyModel::Mlp(_)));
        let meta = base.meta.unwrap();
        assert_eq!((meta.kind.as_str(), meta.step), ("pretrain", 60));
        assert_eq!(meta.data.as_deref(), Some("toy:moons"));
        let e4 = crate::engine::store::load_model(&set.experts[3], &Device::flex()).unwrap();
        let meta = e4.meta.unwrap();
        assert_eq!((meta.step, meta.timestep_range), (20, Some([750, 1000])));
    }

    #[test]
    fn a_cancelled_run_removes_its_folder() {
        let root = tempfile::tempdir().unwrap();
        let cancel = CancelToken::new();
        cancel.cancel();
        let (r, updates) = run(tiny(root.path()), cancel);
        assert_eq!(r.unwrap_err().to_string(), "cancelled");
        assert!(
            !updates
                .iter()
                .any(|u| matches!(u, TeachingUpdate::Samples(_)))
        );
        assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);
        let mut bad = tiny(root.path());
        bad.sample_every = 0;
        assert!(run(bad, CancelToken::new()).0.is_err());
    }

    /// The time of a run with the view's defaults (`cargo test --lib
    /// teaching::job -- --ignored --nocapture`).
    #[test]
    #[ignore]
    fn time_of_the_defaults() {
        let root = tempfile::tempdir().unwrap();
        let mut config = TeachingConfig::new(root.path().to_path_buf());
        let env = |k: &str| std::env::var(k).ok();
        if let Some(v) = env("TEACH_DATA") {
            config.data = v.parse().unwrap();
        }
        if let Some(v) = env("TEACH_BASE") {
            config.base_steps = v.parse().unwrap();
        }
        if let Some(v) = env("TEACH_EXPERT") {
            config.expert_steps = v.parse().unwrap();
        }
        if let Some(v) = env("TEACH_BATCH") {
            config.batch_size = v.parse().unwrap();
        }
        if let Some(v) = env("TEACH_LR") {
            config.base_lr = v.parse().unwrap();
        }
        if let Some(v) = env("TEACH_DDIM") {
            config.sample_steps = v.parse().unwrap();
        }
        if let Some(v) = env("TEACH_EMA") {
            config.ema_max_decay = v.parse().ok().filter(|&d: &f64| d > 0.0);
        }
        eprintln!("{config:?}");
        let mut last = None;
        let mut marks = Vec::new();
        let t0 = Instant::now();
        let mut updates = 0;
        let job = TeachingJob {
            config,
            cancel: CancelToken::new(),
            sink: Sink::discard(),
        };
        let r = run_teaching(&job, &Device::flex(), &mut |u| {
            updates += 1;
            if let TeachingUpdate::Samples(c) = &u {
                marks.push((c.stage, c.step, t0.elapsed().as_secs_f64()));
                if c.stage == Stage::Base {
                    last = Some(c.points.clone());
                }
            }
        });
        let set = r.unwrap();
        if let Some(out) = env("TEACH_PNG") {
            let base: Vec<f32> = last.unwrap().iter().flatten().copied().collect();
            let img = crate::app::preview::scatter_picture(&base, 300, 3.0);
            crate::app::preview::save_stacked_png(&[&img], Path::new(&out)).unwrap();
        }
        eprintln!("{set:?}");
        for m in &marks {
            eprintln!("{m:?}");
        }
        eprintln!(
            "total {:.2} s, {updates} updates",
            t0.elapsed().as_secs_f64()
        );
    }
}

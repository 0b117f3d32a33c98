//! A loaded model set on the compute device: base, experts, the merger with
//! its current merged model, the timestep-wise ensemble and the held-out
//! evaluation set. No threads and no UI here; the worker drives it.

use super::preview::Panel;
use crate::engine::analysis::{Granularity, group_of};
use crate::engine::data::{DataSpec, split_items};
use crate::engine::diffusion::{
    DdimConfig, NoiseSchedule, NoiseSource, SamplerKind, SeededNoise, sample,
};
use crate::engine::eval::{EvalLosses, EvalSet, EvalSetConfig};
use crate::engine::merge::{MergeSpec, Mergeable, Merger, TimestepEnsemble, expert_boundaries_of};
use crate::engine::model_card::Projections;
use crate::engine::model_set::{ModelSet, folder_name};
use crate::engine::store::{AnyModel, LoadedModel, ModelSpec, load_model};
use crate::engine::train::ranges_of;
use anyhow::{Context, Result, bail};
use burn::tensor::{Device, Tensor};
use std::cell::RefCell;
use std::path::PathBuf;
use std::sync::Arc;

/// Timesteps of the DDPM schedule every model here was trained with.
pub const NUM_TRAIN_TIMESTEPS: usize = 1000;
/// Fraction of the data the CLI holds out (`--val-fraction`'s default).
pub const VAL_FRACTION: f64 = 0.1;

/// What the UI shows about one model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSummary {
    /// `base` or `expert i`.
    pub role: String,
    /// Folder name.
    pub name: String,
    /// Folder.
    pub path: PathBuf,
    /// Number of parameter values.
    pub params: usize,
    /// One line on the architecture.
    pub architecture: String,
    /// `config.json`, pretty-printed.
    pub config_json: String,
    /// How it was made (`pretrain`, `finetune`, ...), from `deme.json`.
    pub kind: Option<String>,
    /// Optimiser steps, from `deme.json`.
    pub step: Option<u64>,
    /// Timestep range it was finetuned on, from `deme.json`.
    pub timestep_range: Option<[usize; 2]>,
    /// Training data, from `deme.json`.
    pub data: Option<String>,
    /// Its channel-wise projections, if it carries any.
    pub projections: Option<Projections>,
}

/// What the UI learns about a loaded set.
#[derive(Debug, Clone, PartialEq)]
pub struct SetInfo {
    /// The folders.
    pub set: ModelSet,
    /// Base first, then the experts.
    pub models: Vec<ModelSummary>,
    /// Block prefixes of the merged model (for per-block weights).
    pub blocks: Vec<String>,
    /// Expert timestep ranges `[lo, hi)`.
    pub ranges: Vec<[usize; 2]>,
    /// `[c, h, w]` of one sample.
    pub item_shape: [usize; 3],
    /// The held-out set behind the loss readout, or why there is none.
    pub eval: Result<String, String>,
}

impl SetInfo {
    /// Number of experts N.
    pub fn num_experts(&self) -> usize {
        self.set.experts.len()
    }
}

fn summarize(role: String, path: &std::path::Path, m: &LoadedModel) -> Result<ModelSummary> {
    let architecture = match &m.spec {
        ModelSpec::UNet(c) => format!(
            "UNet2DModel {}x{}x{}, widths {:?}, {} layer(s) per block",
            c.in_channels,
            c.sample_size.unwrap_or(32),
            c.sample_size.unwrap_or(32),
            c.block_out_channels,
            c.layers_per_block
        ),
        ModelSpec::Mlp(c) => format!("ToyMlp {}-D points, hidden {}", c.dim, c.hidden),
    };
    Ok(ModelSummary {
        role,
        name: folder_name(path),
        path: path.to_path_buf(),
        params: m.model.num_params(),
        architecture,
        config_json: m.spec.to_config_json()?,
        kind: m.meta.as_ref().map(|x| x.kind.clone()),
        step: m.meta.as_ref().map(|x| x.step),
        timestep_range: m.meta.as_ref().and_then(|x| x.timestep_range),
        data: m.meta.as_ref().and_then(|x| x.data.clone()),
        projections: Projections::of_params(&m.model.export()),
    })
}

/// Models on the device and what is computed from them.
pub struct Session {
    info: SetInfo,
    device: Device,
    schedule: NoiseSchedule,
    base: AnyModel,
    merger: Merger<AnyModel>,
    merged: Option<AnyModel>,
    ensemble: TimestepEnsemble<AnyModel>,
    eval: Option<Arc<EvalSet>>,
    /// The base's architecture and training data (or why it is unknown).
    data: (ModelSpec, Result<DataSpec, String>),
}

/// What a gradient-similarity computation needs from a session.
#[derive(Clone)]
pub struct GradSimInputs {
    /// The base model (shares device memory with the session's).
    pub model: AnyModel,
    /// Its architecture.
    pub spec: ModelSpec,
    /// The data it was trained on.
    pub data: DataSpec,
    /// The DDPM schedule.
    pub schedule: NoiseSchedule,
}

/// What a loss landscape needs from a session (models share device memory).
#[derive(Clone)]
pub struct LandscapeInputs {
    /// The base model.
    pub base: AnyModel,
    /// The N experts, in order.
    pub experts: Vec<AnyModel>,
    /// Folder names: base first, then the experts.
    pub labels: Vec<String>,
    /// The base's architecture.
    pub spec: ModelSpec,
    /// The base's training data (whose held-out split is scored), or why it is unknown.
    pub data: Result<DataSpec, String>,
    /// The DDPM schedule.
    pub schedule: NoiseSchedule,
    /// The experts' timestep ranges (the per-range surfaces).
    pub ranges: Vec<[usize; 2]>,
    /// Where the models live.
    pub device: Device,
}

impl Session {
    /// Loads `set` onto `device` and prepares merging, the ensemble and the
    /// held-out set (`eval_samples` samples). `progress` gets a line per model.
    pub fn load(
        set: &ModelSet,
        device: &Device,
        eval_samples: usize,
        progress: &mut dyn FnMut(String),
    ) -> Result<Self> {
        if set.experts.is_empty() {
            bail!("a merge needs at least one expert folder");
        }
        progress(format!("base {}", set.base.display()));
        let base = load_model(&set.base, device)
            .with_context(|| format!("loading the base {}", set.base.display()))?;
        let mut models = vec![summarize("base".into(), &set.base, &base)?];
        let mut experts = Vec::with_capacity(set.experts.len());
        for (i, path) in set.experts.iter().enumerate() {
            progress(format!(
                "expert {}/{} {}",
                i + 1,
                set.experts.len(),
                path.display()
            ));
            let e = load_model(path, device)
                .with_context(|| format!("loading expert {} {}", i + 1, path.display()))?;
            if e.spec != base.spec {
                bail!(
                    "expert {} ({}) has another architecture (config.json) than the base ({}): \
                     experts must be finetuned from this base",
                    i + 1,
                    path.display(),
                    set.base.display()
                );
            }
            models.push(summarize(format!("expert {}", i + 1), path, &e)?);
            experts.push(e);
        }
        let labels = set.labels();
        let pairs: Vec<(&str, &AnyModel)> = labels[1..]
            .iter()
            .zip(&experts)
            .map(|(l, e)| (l.as_str(), &e.model))
            .collect();
        let merger = Merger::new((labels[0].as_str(), &base.model), &pairs)?;
        let mut blocks: Vec<String> = Vec::new();
        for (k, _) in merger.keys() {
            let b = group_of(k, Granularity::Block);
            if !blocks.contains(&b) {
                blocks.push(b);
            }
        }
        // the ranges the experts were finetuned on, when their deme.json says so
        let stored: Vec<Option<[usize; 2]>> = experts.iter().map(|e| e.timestep_range()).collect();
        let boundaries = expert_boundaries_of(&stored, NUM_TRAIN_TIMESTEPS);
        let ensemble = TimestepEnsemble::with_boundaries(
            experts.into_iter().map(|e| e.model).collect(),
            boundaries.clone(),
        )?;
        let schedule = NoiseSchedule::ddpm(NUM_TRAIN_TIMESTEPS);
        progress("held-out set".into());
        let data = (
            base.spec.clone(),
            training_data(&base).map_err(|e| format!("{e:#}")),
        );
        let (eval, eval_note) = match build_eval(&base, &schedule, eval_samples, device) {
            Ok((set, what)) => (Some(Arc::new(set)), Ok(what)),
            Err(e) => (None, Err(format!("{e:#}"))),
        };
        let info = SetInfo {
            set: set.clone(),
            models,
            blocks,
            ranges: ranges_of(&boundaries),
            item_shape: base.spec.item_shape(),
            eval: eval_note,
        };
        Ok(Self {
            info,
            device: device.clone(),
            schedule,
            base: base.model,
            merger,
            merged: None,
            ensemble,
            eval,
            data,
        })
    }

    /// What was loaded.
    pub fn info(&self) -> &SetInfo {
        &self.info
    }

    /// The fixed starting noise `x_T` of `n` samples from `seed`.
    pub fn start_noise(&self, n: usize, seed: u64) -> Tensor<4> {
        let [c, h, w] = self.info.item_shape;
        SeededNoise::new(seed).next([n, c, h, w], &self.device)
    }

    /// Re-merges the merged model in place for `spec`.
    pub fn merge(&mut self, spec: &MergeSpec) -> Result<()> {
        let merged = match self.merged.take() {
            Some(m) => self.merger.merge_into(m, spec),
            None => self.merger.merge(spec),
        }?;
        self.merged = Some(merged);
        Ok(())
    }

    fn predictor(&self, panel: Panel) -> Result<&AnyModel> {
        match panel {
            Panel::Base => Ok(&self.base),
            Panel::Merged => self
                .merged
                .as_ref()
                .context("nothing merged yet: merge before sampling"),
            Panel::Ensemble => bail!("the ensemble is not one model"),
        }
    }

    /// Deterministic DDIM (eta 0) from `x_t` in `steps` steps with `panel`'s
    /// model. After each step `on_step(k, of, x0_hat)` gets that step's
    /// denoised estimate `x0_hat = (x_t - sqrt(1 - a_t) eps) / sqrt(a_t)`,
    /// clamped to [-1, 1] for images (a recognisable picture from the first step on);
    /// returning `false` cancels (`Ok(None)`). Returns the final sample.
    pub fn sample(
        &self,
        panel: Panel,
        steps: usize,
        x_t: Tensor<4>,
        on_step: &mut dyn FnMut(usize, usize, &Tensor<4>) -> bool,
    ) -> Result<Option<Tensor<4>>> {
        // 2D points are not bounded like pixels: no clipping of x0 for them
        let points = self.info.item_shape[1..] == [1, 1];
        let kind = SamplerKind::Ddim(DdimConfig {
            steps: steps.max(1),
            clip_sample: !points,
            ..DdimConfig::default()
        });
        let n = x_t.dims()[0];
        // DDIM at eta 0 draws no noise; the source is never asked
        let mut noise = SeededNoise::new(0);
        let model = match panel {
            Panel::Ensemble => None,
            _ => Some(self.predictor(panel)?),
        };
        let estimate: RefCell<Option<Tensor<4>>> = RefCell::new(None);
        let alphas = &self.schedule.alphas_cumprod;
        let mut eps_fn = |x: Tensor<4>, t: usize| {
            let eps = match model {
                Some(m) => m.eps(x.clone(), &vec![t as f32; n]),
                None => self.ensemble.eps(x.clone(), t),
            };
            let a = alphas[t.min(alphas.len() - 1)];
            let x0 =
                (x - eps.clone().mul_scalar((1.0 - a).sqrt() as f32)).div_scalar(a.sqrt() as f32);
            let x0 = if points { x0 } else { x0.clamp(-1.0, 1.0) };
            *estimate.borrow_mut() = Some(x0);
            eps
        };
        let mut step = |k: usize, of: usize, x: &Tensor<4>| {
            let e = estimate.borrow();
            on_step(k, of, e.as_ref().unwrap_or(x))
        };
        Ok(sample(
            kind,
            &self.schedule,
            x_t,
            &mut noise,
            &mut eps_fn,
            &mut step,
        ))
    }

    /// Held-out losses of `panel`'s predictor (`None` without a held-out set).
    pub fn evaluate(&self, panel: Panel) -> Result<Option<EvalLosses>> {
        let Some(eval) = &self.eval else {
            return Ok(None);
        };
        let losses = if panel == Panel::Ensemble {
            eval.evaluate(&|x, t| self.ensemble.eps_batch(x, t))?
        } else {
            let model = self.predictor(panel)?;
            eval.evaluate(&|x, t| model.predict_eps(x, t))?
        };
        Ok(Some(losses))
    }

    /// What a gradient-similarity computation of the base needs, or why it cannot run.
    pub fn gradsim_inputs(&self) -> Result<GradSimInputs, String> {
        let (spec, data) = &self.data;
        Ok(GradSimInputs {
            model: self.base.clone(),
            spec: spec.clone(),
            data: data.clone()?,
            schedule: self.schedule.clone(),
        })
    }

    /// Copies of what a loss landscape needs.
    pub fn landscape_inputs(&self) -> LandscapeInputs {
        let (spec, data) = &self.data;
        LandscapeInputs {
            base: self.base.clone(),
            experts: self.ensemble.experts().to_vec(),
            labels: self.info.set.labels(),
            spec: spec.clone(),
            data: data.clone(),
            schedule: self.schedule.clone(),
            ranges: self.info.ranges.clone(),
            device: self.device.clone(),
        }
    }

    /// Copies of the base and the experts, in range order (models share
    /// device memory until changed).
    pub fn base_and_experts(&self) -> (AnyModel, Vec<AnyModel>) {
        (self.base.clone(), self.ensemble.experts().to_vec())
    }

    /// Copies of what a grid search needs (models share device memory until changed).
    pub fn grid_inputs(&self) -> Option<(AnyModel, Vec<AnyModel>, Arc<EvalSet>)> {
        Some((
            self.base.clone(),
            self.ensemble.experts().to_vec(),
            self.eval.clone()?,
        ))
    }
}

/// The base's training data: `deme.json`'s `data`, else embedded MNIST for
/// 1-channel images.
fn training_data(base: &LoadedModel) -> Result<DataSpec> {
    let recorded = base.meta.as_ref().and_then(|m| m.data.clone());
    Ok(match (&recorded, &base.spec) {
        (Some(d), _) => d
            .parse()
            .with_context(|| format!("the base's deme.json names data `{d}`"))?,
        (None, ModelSpec::UNet(c)) if c.in_channels == 1 => DataSpec::Mnist,
        (None, _) => bail!("the base has no deme.json naming its training data"),
    })
}

/// The held-out set of the base's training data (see [`training_data`]).
fn build_eval(
    base: &LoadedModel,
    schedule: &NoiseSchedule,
    samples: usize,
    device: &Device,
) -> Result<(EvalSet, String)> {
    let data = training_data(base)?;
    let items = split_items(&data, &base.spec, VAL_FRACTION, 20_000)?;
    let config = EvalSetConfig {
        samples: samples.max(1),
        batch_size: samples.clamp(1, 64),
        ..EvalSetConfig::default()
    };
    let set = EvalSet::new(&items.val, schedule, config, device)?;
    let what = format!("{} held-out samples of `{data}`", set.len());
    Ok((set, what))
}

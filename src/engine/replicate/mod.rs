//! The whole DeMe pipeline in one call (`deme-studio replicate`): pretrain (or
//! load) a base, finetune N timestep-range experts and the plain-finetune
//! baseline, search the merge weights on held-out loss, merge, and compare
//! pretrained / plain finetune / ensemble / merged on held-out loss and the
//! sample metric, in the form of the paper's Table 1.
//!
//! Every stage writes into the output folder and is skipped (or resumed) when
//! its result is already there, so an interrupted run continues where it stopped;
//! a finished unit of a seed (its main job or one arm) is read back from its
//! records and measurements, with or without its models' weights, and keeps the
//! times it was recorded with (see `seed_run.rs`).

pub mod arms;
pub mod compare;
pub mod config;
pub mod measure;
mod records;
pub mod report;
pub mod samples;
mod seed_run;

pub use arms::Arm;
pub use config::{BaseSource, ReplicateConfig};
pub use measure::Measurements;
pub use report::{Budget, Report, ReportRow, SeedSearch, StageTimes};

use seed_run::{SeedResult, SeedRun};

use crate::engine::checkpoint::{META_FILE_NAME, content_hash, read_meta, write_atomic_bytes};
use crate::engine::data::split_items;
use crate::engine::eval::{EvalSet, EvalSetConfig};
use crate::engine::metric::features::FeatureTrainConfig;
use crate::engine::metric::{LabelSummary, SampleMetric, default_cache_dir};
use crate::engine::search::GridEvent;
use crate::engine::store::{AnyModel, ModelSpec, TRAIN_STATE_FILE, load_model};
use crate::engine::train::{CancelToken, FinetuneEvent, TrainEvent, pretrain_any};
use anyhow::{Context, Result, bail};
use burn::tensor::{Device, Tensor};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The name of the row of the model before finetuning.
const PRETRAINED_ROW: &str = "pretrained";

/// Sub-folders of the output folder.
pub mod layout {
    /// The pretrained model (when pretrained here).
    pub const BASE: &str = "base";
    /// A finetune job (in each seed's folder, and in each arm's): `expert_1..N`
    /// and/or `baseline`.
    pub const FINETUNE: &str = "deme";
    /// The merged model and its recipe (with `merged.search.json` beside it).
    pub const MERGED: &str = "merged";
    /// The extra arms, one folder each, in each seed's folder.
    pub const ARMS: &str = "arms";
    /// Each model's measurements (the pretrained model's in the report folder, the
    /// others' in each seed's folder).
    pub const MEASUREMENTS: &str = "measurements";
    /// Each finished unit's record (`main.json`, `ARM.json`: the base's content hash
    /// and the unit's seconds), in each seed's folder.
    pub const UNITS: &str = "units";
    /// The plain finetune with its task vector scaled by the searched alpha.
    pub const SCALED: &str = "plain-finetune-scaled";
    /// The report.
    pub const REPORT_MD: &str = "report.md";
    /// The report's numbers.
    pub const REPORT_JSON: &str = "report.json";
}

/// Progress of a run.
#[derive(Debug)]
pub enum ReplicateEvent {
    /// A stage begins (one line of text).
    Stage(String),
    /// Pretraining progress.
    Train(TrainEvent),
    /// Finetuning progress.
    Finetune(FinetuneEvent),
    /// Search progress.
    Search(GridEvent),
    /// Sampling progress: model, images done, images in all.
    Sampling(String, usize, usize),
    /// Something worth telling (a skipped stage, a missing metric).
    Note(String),
}

/// Runs the pipeline into `out` and writes `report.md` and `report.json` there.
pub fn replicate(
    config: &ReplicateConfig,
    out: &Path,
    device: &Device,
    cancel: &CancelToken,
    on_event: &mut dyn FnMut(ReplicateEvent),
) -> Result<Report> {
    config.validate()?;
    let mut row_names = vec![PRETRAINED_ROW.to_string()];
    row_names.extend(seed_run::row_names(config));
    compare::check_pairs(&config.compare, &row_names)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut seconds = StageTimes::default();

    let started = Instant::now();
    let base_dir = ensure_base(config, out, device, cancel, on_event)?;
    seconds.pretrain = started.elapsed().as_secs_f64();
    let base = load_model(&base_dir, device)
        .with_context(|| format!("loading the base {}", base_dir.display()))?;
    // a folder holding another base's replication is refused before anything in it
    // is measured or trained again
    let base_hash = content_hash(&base_dir)?;
    if let Some(m) = Measurements::load(&out.join(layout::MEASUREMENTS), PRETRAINED_ROW)?
        && !m.key.ends_with(&format!("|{base_hash}|"))
    {
        bail!(
            "{} holds a replication of another base model than {}; choose another output folder",
            out.display(),
            base_dir.display()
        );
    }
    if matches!(base.model, AnyModel::Mlp(_)) && config.finetune.projection {
        bail!("channel-wise projection does not apply to the toy MLP; turn projection off");
    }
    let items = split_items(
        &config.data,
        &base.spec,
        config.val_fraction,
        config.toy_points,
    )?;
    let schedule = crate::engine::diffusion::NoiseSchedule::linear(
        1e-4,
        0.02,
        config.finetune.num_train_timesteps,
    );
    let eval_set = |samples, seed| {
        EvalSet::new(
            &items.val,
            &schedule,
            EvalSetConfig {
                samples,
                seed,
                ..EvalSetConfig::default()
            },
            device,
        )
    };
    let search_set = eval_set(config.search_samples, config.search_seed)?;
    let report_set = eval_set(config.report_samples, config.report_seed)?;
    let metric = build_metric(config, &base.spec, device, on_event);
    let measure = Measurer {
        report_set: &report_set,
        metric: metric.as_ref(),
        noise: samples::initial_noise(
            config.metric_samples.max(config.grid_images),
            base.spec.item_shape(),
            config.sample_seed,
        ),
        shape: base.spec.item_shape(),
        schedule: &schedule,
        config,
        device,
        cancel,
    };
    let ranges = config.finetune.expert_ranges();

    let started = Instant::now();
    let pretrained = measure.row(
        &out.join(layout::MEASUREMENTS),
        PRETRAINED_ROW,
        &[&base_dir],
        Some(&out.join("pretrained.png")),
        &|x, t| base.model.eps(x, t),
        on_event,
    )?;
    seconds.evaluate += started.elapsed().as_secs_f64();

    let mut seeds = Vec::with_capacity(config.seeds.len());
    for (k, &seed) in config.seeds.iter().enumerate() {
        let ctx = SeedRun {
            config,
            base_dir: &base_dir,
            base: &base,
            items: &items,
            search_set: &search_set,
            dir: out.join(format!("seed-{seed}")),
            seed,
            // the sample grids of the first seed are the report's pictures
            pictures: (k == 0).then(|| out.to_path_buf()),
            device,
            cancel,
        };
        seeds.push(ctx.run(&measure, &mut seconds, on_event)?);
    }

    let started = Instant::now();
    on_event(ReplicateEvent::Stage("bootstrap intervals".into()));
    let names: Vec<(String, String)> = seeds[0]
        .rows
        .iter()
        .map(|(m, d)| (m.name.clone(), d.clone()))
        .collect();
    let row_seeds = |name| row_of_seeds(name, &seeds, &pretrained);
    let mut all_rows = vec![(
        PRETRAINED_ROW.to_string(),
        "Before finetuning (pretrained)".to_string(),
    )];
    all_rows.extend(names);
    let mut rows: Vec<ReportRow> = all_rows
        .iter()
        .map(|(name, description)| {
            ReportRow::over_seeds(name, description, &row_seeds(name).seeds, &ranges)
        })
        .collect();
    if let Some(m) = metric.as_ref() {
        for row in &mut rows {
            let parts = row_seeds(&row.name)
                .seeds
                .iter()
                .filter_map(|s| s.features.as_ref())
                .map(|f| m.labels_of_features(f, device))
                .collect::<Result<Vec<_>>>()?;
            if !parts.is_empty() {
                row.labels = Some(LabelSummary::pooled(&parts));
            }
            let at_floor = row_seeds(&row.name)
                .seeds
                .iter()
                .filter_map(|s| s.features.as_ref())
                .map(|f| m.frechet_at_floor_size(f))
                .collect::<Result<Option<Vec<f64>>>>()?;
            row.frechet_at_floor_size = at_floor
                .filter(|v| !v.is_empty())
                .map(|v| v.iter().sum::<f64>() / v.len() as f64);
        }
    }
    let (merged_name, others) = all_rows.split_last().context("no rows were evaluated")?;
    let others: Vec<compare::RowSeeds> = others.iter().map(|(name, _)| row_seeds(name)).collect();
    let mut comparisons = compare::compare_with_merged(
        &row_seeds(&merged_name.0),
        &others,
        &ranges,
        metric.as_ref(),
        config.resamples,
    )?;
    for [a, b] in &config.compare {
        comparisons.push(compare::compare_pair(
            &row_seeds(a),
            &row_seeds(b),
            &ranges,
            metric.as_ref(),
            config.resamples,
        )?);
    }
    seconds.evaluate += started.elapsed().as_secs_f64();

    let report = Report {
        ranges,
        rows,
        comparisons,
        confidence: compare::CONFIDENCE,
        resamples: config.resamples,
        searches: seeds.into_iter().map(|s| s.search).collect(),
        search_objective: config.objective,
        search_strategy: config.strategy,
        metric_real_images: metric.as_ref().map_or(0, |m| m.real_count()),
        metric_samples: if metric.is_some() {
            config.metric_samples
        } else {
            0
        },
        metric_feature_accuracy: metric.as_ref().map(|m| m.accuracy),
        metric_floor: match &metric {
            Some(m) => Some(m.floor()?),
            None => None,
        },
        metric_real_labels: metric.as_ref().map(|m| m.real_labels.clone()),
        budget: Budget {
            base_images: base
                .meta
                .as_ref()
                .and_then(|m| Some(m.step * m.train_config.get("batch_size")?.as_u64()?)),
            expert_images: config.finetune.steps_per_expert * config.finetune.batch_size as u64,
        },
        seconds,
        config: serde_json::to_value(config)?,
    };
    write_atomic_bytes(out.join(layout::REPORT_MD), report.to_markdown().as_bytes())?;
    write_atomic_bytes(
        out.join(layout::REPORT_JSON),
        serde_json::to_string_pretty(&report)?.as_bytes(),
    )?;
    Ok(report)
}

/// Row `name` of every seed (the pretrained model's one measurement for each seed).
fn row_of_seeds<'a>(
    name: &'a str,
    seeds: &'a [SeedResult],
    pretrained: &'a Measurements,
) -> compare::RowSeeds<'a> {
    compare::RowSeeds {
        name,
        seeds: seeds
            .iter()
            .map(|s| {
                if name == PRETRAINED_ROW {
                    pretrained
                } else {
                    &s.rows
                        .iter()
                        .find(|(m, _)| m.name == name)
                        .expect("every seed has every row")
                        .0
                }
            })
            .collect(),
    }
}

/// Measures models for the report: the fixed evaluation set, the metric and the
/// shared initial noise.
struct Measurer<'a> {
    report_set: &'a EvalSet,
    metric: Option<&'a SampleMetric>,
    noise: Vec<f32>,
    shape: [usize; 3],
    schedule: &'a crate::engine::diffusion::NoiseSchedule,
    config: &'a ReplicateConfig,
    device: &'a Device,
    cancel: &'a CancelToken,
}

impl Measurer<'_> {
    /// What a measurement depends on besides the models: every evaluation setting
    /// and the metric's feature network.
    fn settings_key(&self) -> String {
        let c = self.config;
        format!(
            "v2|report {} {}|samples {} ddim {} seed {}|metric {}|",
            c.report_samples,
            c.report_seed,
            c.metric_samples,
            c.metric_ddim_steps,
            c.sample_seed,
            self.metric.map_or("none", |m| m.fingerprint.as_str())
        )
    }

    /// What a measurement of the models in `model_dirs` depends on: the settings
    /// and their weights.
    fn key(&self, model_dirs: &[&Path]) -> Result<String> {
        let mut text = self.settings_key();
        for d in model_dirs {
            text += &content_hash(d)?;
            text.push('|');
        }
        Ok(text)
    }

    /// The stored measurement `name` in `dir` when it was taken with these
    /// settings, of whatever models (for a unit whose models were dropped after it
    /// was measured); with `picture`, its sample grid must be there too.
    fn stored(
        &self,
        dir: &Path,
        name: &str,
        picture: Option<&Path>,
    ) -> Result<Option<Measurements>> {
        Ok(Measurements::load(dir, name)?.filter(|m| {
            m.key.starts_with(&self.settings_key()) && picture.is_none_or(Path::exists)
        }))
    }

    /// The measurements of `eps` (the models in `model_dirs`) as row `name`, read
    /// from `dir` when an earlier run took them with the same key; with `picture`,
    /// its sample grid is written there.
    fn row(
        &self,
        dir: &Path,
        name: &str,
        model_dirs: &[&Path],
        picture: Option<&Path>,
        eps: &dyn Fn(Tensor<4>, &[f32]) -> Tensor<4>,
        on_event: &mut dyn FnMut(ReplicateEvent),
    ) -> Result<Measurements> {
        let key = self.key(model_dirs)?;
        if let Some(m) = Measurements::load(dir, name)?
            && m.key == key
            && picture.is_none_or(Path::exists)
        {
            return Ok(m);
        }
        if self.cancel.is_cancelled() {
            bail!("cancelled before measuring {name}; run again to continue");
        }
        let losses = self.report_set.evaluate(eps)?;
        let images = samples::generate(
            eps,
            &self.noise,
            self.shape,
            self.schedule,
            self.config.metric_ddim_steps,
            self.device,
            self.cancel,
            &mut |done, total| on_event(ReplicateEvent::Sampling(name.into(), done, total)),
        )?;
        if let Some(png) = picture {
            samples::save_grid(png, &images, self.config.grid_images, self.shape)?;
        }
        let features = match self.metric {
            Some(m) if self.config.metric_samples >= 2 => {
                let per: usize = self.shape.iter().product();
                Some(m.features(&images[..self.config.metric_samples * per], self.device)?)
            }
            _ => None,
        };
        let frechet = match (self.metric, &features) {
            (Some(m), Some(f)) => Some(m.frechet_of_features(f)?),
            _ => None,
        };
        let m = Measurements {
            name: name.into(),
            key,
            losses,
            features,
            frechet,
        };
        m.save(dir)?;
        Ok(m)
    }
}

/// The base model folder: the given one, or `OUT/base` pretrained (or resumed) here.
fn ensure_base(
    config: &ReplicateConfig,
    out: &Path,
    device: &Device,
    cancel: &CancelToken,
    on_event: &mut dyn FnMut(ReplicateEvent),
) -> Result<PathBuf> {
    let (model, train) = match &config.base {
        BaseSource::Load(path) => {
            on_event(ReplicateEvent::Note(format!(
                "using the pretrained base {}",
                path.display()
            )));
            return Ok(path.clone());
        }
        BaseSource::Pretrain { model, train } => (model, train),
    };
    let dir = out.join(layout::BASE);
    let meta_path = dir.join(META_FILE_NAME);
    let done_steps = if meta_path.exists() {
        read_meta(&meta_path)?.step
    } else {
        0
    };
    if done_steps >= train.steps {
        on_event(ReplicateEvent::Note(format!(
            "{} already holds the base pretrained for {done_steps} steps",
            dir.display()
        )));
        return Ok(dir);
    }
    let spec = ModelSpec::from_arg(model)?;
    let items = split_items(&config.data, &spec, config.val_fraction, config.toy_points)?;
    on_event(ReplicateEvent::Stage(format!(
        "pretraining {model} for {} steps (batch {})",
        train.steps, train.batch_size
    )));
    let resume = dir.join(TRAIN_STATE_FILE).exists();
    let mut forward = |e: TrainEvent| on_event(ReplicateEvent::Train(e));
    pretrain_any(
        spec.build(train.seed, device)?,
        resume,
        &spec,
        &items.train,
        train,
        &dir,
        cancel,
        device,
        &mut forward,
    )?;
    if cancel.is_cancelled() {
        bail!("cancelled during pretraining (saved; run again to continue)");
    }
    Ok(dir)
}

/// The sample metric, or `None` (with a note) when the data or settings rule it out.
fn build_metric(
    config: &ReplicateConfig,
    spec: &ModelSpec,
    device: &Device,
    on_event: &mut dyn FnMut(ReplicateEvent),
) -> Option<SampleMetric> {
    if config.metric_samples == 0 {
        return None;
    }
    on_event(ReplicateEvent::Stage(
        "preparing the sample metric (feature network, cached after the first run)".into(),
    ));
    let cache = config.metric_cache_dir.clone().or_else(default_cache_dir);
    match SampleMetric::for_dataset(
        &config.data,
        spec.item_shape(),
        config.val_fraction,
        FeatureTrainConfig {
            steps: config.metric_feature_steps,
            ..FeatureTrainConfig::default()
        },
        cache.as_deref(),
        device,
    ) {
        Ok(m) => Some(m),
        Err(e) => {
            on_event(ReplicateEvent::Note(format!(
                "no sample metric for this run: {e:#}"
            )));
            None
        }
    }
}

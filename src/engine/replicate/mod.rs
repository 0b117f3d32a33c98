//! The whole DeMe pipeline in one call (`deme-studio replicate`): pretrain (or
//! load) a base, finetune N timestep-range experts and the plain-finetune
//! baseline, search the merge weights on held-out loss, merge, and compare
//! pretrained / plain finetune / ensemble / merged on held-out loss and the
//! sample metric, in the form of the paper's Table 1.
//!
//! Every stage writes into the output folder and is skipped (or resumed) when
//! its result is already there, so an interrupted run continues where it stopped.

pub mod compare;
pub mod config;
pub mod report;
pub mod samples;

pub use config::{BaseSource, ReplicateConfig};
pub use report::{Report, ReportRow, StageTimes};

use crate::engine::checkpoint::{META_FILE_NAME, read_meta, write_atomic_bytes};
use crate::engine::data::{SplitItems, split_items};
use crate::engine::eval::{EvalLosses, EvalSet, EvalSetConfig, timestep_ranges};
use crate::engine::merge::{MergeJob, MergeSpec, Merger, TimestepEnsemble, export_merge};
use crate::engine::metric::features::FeatureTrainConfig;
use crate::engine::metric::{SampleMetric, default_cache_dir};
use crate::engine::search::{GridEvent, search_merge_weights, search_scale};
use crate::engine::store::{AnyModel, ModelSpec, TRAIN_STATE_FILE, load_model};
use crate::engine::train::{
    CancelToken, FinetuneEvent, FinetuneJob, RunId, Schedule, TrainEvent, finetune_any,
    pretrain_any, run_dir, stored_config,
};
use anyhow::{Context, Result, bail};
use burn::tensor::{Device, Tensor};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Sub-folders of the output folder.
pub mod layout {
    /// The pretrained model (when pretrained here).
    pub const BASE: &str = "base";
    /// The finetune job: `expert_1..N` and `baseline`.
    pub const FINETUNE: &str = "deme";
    /// The merged model and its recipe.
    pub const MERGED: &str = "merged";
    /// The plain finetune with its task vector scaled by the searched alpha.
    pub const SCALED: &str = "plain-finetune-scaled";
    /// The search table.
    pub const SEARCH: &str = "search.json";
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
    if config.grid.n != config.finetune.experts {
        bail!(
            "the search lattice has {} weights but there are {} experts",
            config.grid.n,
            config.finetune.experts
        );
    }
    config.finetune.validate()?;
    config.grid.validate_for(config.strategy)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut seconds = StageTimes::default();

    let started = Instant::now();
    let base_dir = ensure_base(config, out, device, cancel, on_event)?;
    seconds.pretrain = started.elapsed().as_secs_f64();
    let base = load_model(&base_dir, device)
        .with_context(|| format!("loading the base {}", base_dir.display()))?;
    if matches!(base.model, AnyModel::Mlp(_)) && config.finetune.projection {
        bail!("channel-wise projection does not apply to the toy MLP; turn projection off");
    }
    let items = split_items(
        &config.data,
        &base.spec,
        config.val_fraction,
        config.toy_points,
    )?;

    let started = Instant::now();
    let ft_dir = out.join(layout::FINETUNE);
    finetune_stage(
        config,
        &base_dir,
        &base.spec,
        base.model.clone(),
        &items,
        &ft_dir,
        device,
        cancel,
        on_event,
    )?;
    seconds.finetune = started.elapsed().as_secs_f64();

    let n = config.finetune.experts;
    let expert_dirs: Vec<PathBuf> = (0..n).map(|i| run_dir(&ft_dir, RunId::Expert(i))).collect();
    let experts = expert_dirs
        .iter()
        .map(|p| load_model(p, device).map(|l| l.model))
        .collect::<Result<Vec<_>>>()?;
    let baseline = load_model(&run_dir(&ft_dir, RunId::Baseline), device)?.model;

    let started = Instant::now();
    on_event(ReplicateEvent::Stage("searching the merge weights".into()));
    let schedule = crate::engine::diffusion::NoiseSchedule::linear(
        1e-4,
        0.02,
        config.finetune.num_train_timesteps,
    );
    let search_set = EvalSet::new(
        &items.val,
        &schedule,
        EvalSetConfig {
            samples: config.search_samples,
            seed: config.search_seed,
            ..EvalSetConfig::default()
        },
        device,
    )?;
    let labels: Vec<String> = expert_dirs
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let pairs: Vec<(&str, &AnyModel)> = labels.iter().map(String::as_str).zip(&experts).collect();
    let mut merger = Merger::new(("base", &base.model), &pairs)?;
    let keep_going = || !cancel.is_cancelled();
    let search = search_merge_weights(
        &mut merger,
        &search_set,
        config.objective,
        &config.grid,
        config.strategy,
        &keep_going,
        &mut |e| on_event(ReplicateEvent::Search(e)),
    )?;
    drop(merger);
    if cancel.is_cancelled() {
        bail!("cancelled during the merge-weight search; run again to continue");
    }
    write_atomic_bytes(
        out.join(layout::SEARCH),
        serde_json::to_string_pretty(&search)?.as_bytes(),
    )?;
    let best = search.best_point().clone();
    let merged_dir = out.join(layout::MERGED);
    export_merge(
        &MergeJob {
            base: base_dir.clone(),
            experts: expert_dirs.clone(),
            spec: MergeSpec::task_arithmetic(best.weights.iter().map(|&v| v as f32).collect()),
            output: None,
        },
        &merged_dir,
        &mut |_| {},
    )?;
    let merged = load_model(&merged_dir, device)?.model;

    // the control: the plain finetune's own task vector, its scale searched the same way
    on_event(ReplicateEvent::Stage(
        "searching the scale of the plain finetune's task vector".into(),
    ));
    let baseline_dir = run_dir(&ft_dir, RunId::Baseline);
    let alphas: Vec<f64> = (0..config.grid.ticks())
        .map(|k| config.grid.lo + k as f64 * config.grid.step)
        .collect();
    let scale_points = {
        let label = baseline_dir.display().to_string();
        let mut one = Merger::new(("base", &base.model), &[(label.as_str(), &baseline)])?;
        search_scale(
            &mut one,
            &search_set,
            config.objective,
            n,
            &alphas,
            &keep_going,
        )?
    };
    let alpha = scale_points[0].alpha;
    let scaled_dir = out.join(layout::SCALED);
    export_merge(
        &MergeJob {
            base: base_dir.clone(),
            experts: vec![baseline_dir],
            spec: MergeSpec::task_arithmetic(vec![alpha as f32]),
            output: None,
        },
        &scaled_dir,
        &mut |_| {},
    )?;
    let scaled = load_model(&scaled_dir, device)?.model;
    seconds.search = started.elapsed().as_secs_f64();

    let started = Instant::now();
    on_event(ReplicateEvent::Stage(
        "evaluating on a fresh held-out set".into(),
    ));
    let report_set = EvalSet::new(
        &items.val,
        &schedule,
        EvalSetConfig {
            samples: config.report_samples,
            seed: config.report_seed,
            ..EvalSetConfig::default()
        },
        device,
    )?;
    let ensemble = TimestepEnsemble::new(experts, config.finetune.num_train_timesteps)?;
    let predictors: [(&str, String, &dyn Fn(Tensor<4>, &[f32]) -> Tensor<4>); 5] = [
        (
            "pretrained",
            "Before finetuning (pretrained)".to_string(),
            &|x, t| base.model.eps(x, t),
        ),
        (
            "plain-finetune",
            format!(
                "Plain finetuning (all t, {} steps)",
                config.finetune.steps_of(RunId::Baseline)
            ),
            &|x, t| baseline.eps(x, t),
        ),
        (
            "plain-finetune-scaled",
            format!("Plain finetuning, task vector scaled by the searched alpha = {alpha:.2}"),
            &|x, t| scaled.eps(x, t),
        ),
        (
            "ensemble",
            format!("DeMe before merge (timestep-wise ensemble of {n})"),
            &|x, t| ensemble.eps_batch(x, t),
        ),
        ("merged", "DeMe after merge".to_string(), &|x, t| {
            merged.eps(x, t)
        }),
    ];
    let metric = build_metric(config, &base.spec, device, on_event);
    let item_shape = base.spec.item_shape();
    let noise = samples::initial_noise(
        config.metric_samples.max(config.grid_images),
        item_shape,
        config.sample_seed,
    );
    let mut rows = Vec::with_capacity(predictors.len());
    let mut measured = Vec::with_capacity(predictors.len());
    for (name, description, eps) in predictors {
        let losses: EvalLosses = report_set.evaluate(eps)?;
        let images = samples::generate(
            eps,
            &noise,
            item_shape,
            &schedule,
            config.metric_ddim_steps,
            device,
            cancel,
            &mut |done, total| on_event(ReplicateEvent::Sampling(name.into(), done, total)),
        )?;
        let png = format!("{name}.png");
        samples::save_grid(&out.join(&png), &images, config.grid_images, item_shape)?;
        let features = match &metric {
            Some(m) if config.metric_samples >= 2 => {
                let per: usize = item_shape.iter().product();
                Some(m.features(&images[..config.metric_samples * per], device)?)
            }
            _ => None,
        };
        let frechet = match (&metric, &features) {
            (Some(m), Some(f)) => Some(m.frechet_of_features(f)?),
            _ => None,
        };
        rows.push(ReportRow {
            name: name.into(),
            description,
            loss: losses.mean(),
            loss_per_range: losses.per_range(n),
            frechet,
            grid_png: Some(png),
        });
        measured.push(compare::Measurements {
            name: name.into(),
            losses,
            features,
        });
    }
    let ranges = timestep_ranges(n, config.finetune.num_train_timesteps);
    let (merged_m, others) = measured.split_last().context("no rows were evaluated")?;
    let others: Vec<&compare::Measurements> = others.iter().collect();
    let comparisons = compare::compare_with_merged(merged_m, &others, &ranges, metric.as_ref())?;
    seconds.evaluate = started.elapsed().as_secs_f64();

    let report = Report {
        ranges,
        comparisons,
        confidence: compare::CONFIDENCE,
        resamples: compare::RESAMPLES,
        rows,
        weights: best.weights.clone(),
        search_points: search.points.len(),
        search_loss: best.score.loss,
        search_objective: config.objective,
        search_strategy: config.strategy,
        scale_alpha: alpha,
        metric_real_images: metric.as_ref().map_or(0, |m| m.real_count()),
        metric_samples: if metric.is_some() {
            config.metric_samples
        } else {
            0
        },
        metric_feature_accuracy: metric.as_ref().map(|m| m.accuracy),
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

/// Finetunes (or resumes) the N experts and the baseline in `ft_dir`.
#[allow(clippy::too_many_arguments)]
fn finetune_stage(
    config: &ReplicateConfig,
    base_dir: &Path,
    spec: &ModelSpec,
    base: AnyModel,
    items: &SplitItems,
    ft_dir: &Path,
    device: &Device,
    cancel: &CancelToken,
    on_event: &mut dyn FnMut(ReplicateEvent),
) -> Result<()> {
    let resume = stored_config(ft_dir)?.is_some();
    let c = &config.finetune;
    on_event(ReplicateEvent::Stage(format!(
        "{} {} experts x {} steps and the plain-finetune baseline x {} steps (batch {})",
        if resume { "resuming" } else { "finetuning" },
        c.experts,
        c.steps_per_expert,
        c.steps_of(RunId::Baseline),
        c.batch_size
    )));
    let job = FinetuneJob {
        spec,
        base_path: base_dir,
        data: &items.train,
        config: c,
        out_dir: ft_dir,
        experts: true,
        baseline: true,
        schedule: Schedule::Interleaved,
        resume,
    };
    let outcome = finetune_any(base, &job, device, cancel, &mut |e| {
        on_event(ReplicateEvent::Finetune(e))
    })?;
    if outcome.cancelled || cancel.is_cancelled() {
        bail!("cancelled during finetuning (saved; run again to continue)");
    }
    Ok(())
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

//! One seed's share of a replication, unit by unit: first the main job (the experts
//! and the plain-finetune baseline, the merge-weight search, the scaled control),
//! then each extra arm, every unit trained, searched and measured before the next
//! one starts. An interrupted unit resumes its finetuning from the runs' last
//! checkpoints, keeps a finished search and every model already measured, and
//! redoes only the search or measurement it was in.
//!
//! A unit whose model weights were dropped after it was measured (a report folder
//! kept with its run metadata, search records and measurements only) is read back
//! from those instead of being trained again: its runs' metadata must say they
//! finished with the same settings from the same base, and its measurements and
//! searches must have been taken with this run's evaluation and search settings.

use super::arms::{Arm, ArmKind};
use super::layout;
use super::records::{ScaleRecord, SearchRecord};
use super::report::MERGED_ROW;
use super::{Measurements, Measurer, ReplicateConfig, ReplicateEvent, SeedSearch, StageTimes};
use crate::engine::checkpoint::{content_hash, read_meta, write_atomic_bytes};
use crate::engine::data::SplitItems;
use crate::engine::eval::EvalSet;
use crate::engine::merge::{MergeJob, MergeSpec, Merger, TimestepEnsemble, export_merge};
use crate::engine::search::{GridSpec, search_merge_weights, search_scale};
use crate::engine::store::{AnyModel, LoadedModel, META_FILE, load_model};
use crate::engine::train::{
    CancelToken, FinetuneConfig, FinetuneJob, RunId, Schedule, finetune_any, run_dir, stored_config,
};
use anyhow::{Context, Result, bail};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The rows of the main job, in table order around the arms: these two first, the
/// last two after the arms (the merged model is the table's last row).
const MAIN_HEAD: [&str; 2] = ["plain-finetune", "plain-finetune-scaled"];
const MAIN_TAIL: [&str; 2] = ["ensemble", MERGED_ROW];

/// The rows one seed of `config` gives, in table order (without the pretrained row).
pub fn row_names(config: &ReplicateConfig) -> Vec<String> {
    let arms = config.arms.iter().map(|a| a.name.as_str());
    MAIN_HEAD
        .into_iter()
        .chain(arms)
        .chain(MAIN_TAIL)
        .map(str::to_string)
        .collect()
}

/// What one seed's runs produced.
pub(super) struct SeedResult {
    /// Its rows (measurements and description), in table order, without the pretrained row.
    pub rows: Vec<(Measurements, String)>,
    /// Its searches.
    pub search: SeedSearch,
}

/// One seed's share of the pipeline.
pub(super) struct SeedRun<'a> {
    pub config: &'a ReplicateConfig,
    pub base_dir: &'a Path,
    pub base: &'a LoadedModel,
    pub items: &'a SplitItems,
    pub search_set: &'a EvalSet,
    pub dir: PathBuf,
    pub seed: u64,
    /// Where the sample grids go (the report folder for the first seed).
    pub pictures: Option<PathBuf>,
    pub device: &'a Device,
    pub cancel: &'a CancelToken,
}

/// What a finished unit leaves in `seed-S/units/UNIT.json` ([`layout::UNITS`]):
/// the base it was finetuned from (its content hash) and the wall seconds of its
/// stages, so that a unit read back from its measurements is known to come from
/// this base and its times still count in the report.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct UnitRecord {
    base: String,
    finetune: f64,
    search: f64,
    evaluate: f64,
}

impl UnitRecord {
    fn add_to(&self, s: &mut StageTimes) {
        s.finetune += self.finetune;
        s.search += self.search;
        s.evaluate += self.evaluate;
    }
}

/// A model to measure: its row, the folders it is made of, and its noise predictor.
struct Predictor<'a> {
    name: String,
    description: String,
    dirs: Vec<PathBuf>,
    eps: Box<dyn Fn(Tensor<4>, &[f32]) -> Tensor<4> + 'a>,
}

/// A unit read back from its measurements.
struct ReadBack {
    /// Its rows, in the order asked for.
    rows: Vec<Measurements>,
    record: UnitRecord,
}

/// The main job's results.
struct MainUnit {
    /// Its rows, in the order of `MAIN_HEAD` then `MAIN_TAIL`.
    rows: Vec<(Measurements, String)>,
    weights: Vec<f64>,
    points: usize,
    value: f64,
    alpha: f64,
}

impl SeedRun<'_> {
    /// Runs (or reads back) every unit of this seed.
    pub fn run(
        &self,
        measure: &Measurer,
        seconds: &mut StageTimes,
        on_event: &mut dyn FnMut(ReplicateEvent),
    ) -> Result<SeedResult> {
        let main = FinetuneConfig {
            seed: self.seed,
            ..self.config.finetune.clone()
        };
        let mut head = self.main_unit(&main, measure, seconds, on_event)?;
        let tail = head.rows.split_off(MAIN_HEAD.len());
        let mut rows = head.rows;
        let mut arm_weights = Vec::new();
        for arm in &self.config.arms {
            let (row, weights) = self.arm_unit(arm, &main, measure, seconds, on_event)?;
            rows.push(row);
            if let Some(w) = weights {
                arm_weights.push((arm.name.clone(), w));
            }
        }
        rows.extend(tail);
        Ok(SeedResult {
            rows,
            search: SeedSearch {
                seed: self.seed,
                weights: head.weights,
                points: head.points,
                value: head.value,
                alpha: head.alpha,
                arm_weights,
            },
        })
    }

    fn tag(&self) -> String {
        format!("seed {}", self.seed)
    }

    /// The sample grid of row `name` (first seed only).
    fn picture(&self, name: &str) -> Option<PathBuf> {
        self.pictures
            .as_ref()
            .map(|d| d.join(format!("{name}.png")))
    }

    fn unit_path(&self, unit: &str) -> PathBuf {
        self.dir.join(layout::UNITS).join(format!("{unit}.json"))
    }

    /// Records a finished unit and adds its times to `seconds`.
    fn finish_unit(
        &self,
        unit: &str,
        mut record: UnitRecord,
        seconds: &mut StageTimes,
    ) -> Result<()> {
        record.base = content_hash(self.base_dir)?;
        let path = self.unit_path(unit);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        write_atomic_bytes(&path, serde_json::to_string_pretty(&record)?.as_bytes())?;
        record.add_to(seconds);
        Ok(())
    }

    /// The main job: experts and baseline, the merge, the scaled control, measured.
    fn main_unit(
        &self,
        main: &FinetuneConfig,
        measure: &Measurer,
        seconds: &mut StageTimes,
        on_event: &mut dyn FnMut(ReplicateEvent),
    ) -> Result<MainUnit> {
        let n = main.experts;
        let tag = self.tag();
        let ft_dir = self.dir.join(layout::FINETUNE);
        let merged_dir = self.dir.join(layout::MERGED);
        let scaled_dir = self.dir.join(layout::SCALED);
        let descriptions = [
            format!(
                "Plain finetuning (all t, {} steps)",
                main.steps_of(RunId::Baseline)
            ),
            "Plain finetuning, task vector scaled by a searched alpha".to_string(),
            format!("DeMe before merge (timestep-wise ensemble of {n})"),
            "DeMe after merge".to_string(),
        ];
        let names: Vec<&str> = MAIN_HEAD.iter().chain(&MAIN_TAIL).copied().collect();

        let runs = main.runs(true, true);
        if let Some(measured) =
            self.measured_before("main", &ft_dir, main, &runs, &names, measure)?
            && let Some(search) = SearchRecord::read_matching(&merged_dir, &self.search_settings(n))
            && let Some(scale) = ScaleRecord::read_matching(&scaled_dir, &self.scale_settings())
        {
            on_event(ReplicateEvent::Note(format!(
                "{tag}: the main job was measured before; read back"
            )));
            measured.record.add_to(seconds);
            return Ok(MainUnit {
                rows: measured.rows.into_iter().zip(descriptions).collect(),
                weights: search.weights(),
                points: search.result.points.len(),
                value: search.value(),
                alpha: scale.alpha(),
            });
        }

        let mut times = UnitRecord::default();
        let started = Instant::now();
        self.finetune(main, true, true, &ft_dir, &tag, on_event)?;
        times.finetune = started.elapsed().as_secs_f64();

        let started = Instant::now();
        on_event(ReplicateEvent::Stage(format!(
            "{tag}: searching the merge weights"
        )));
        let expert_dirs: Vec<PathBuf> =
            (0..n).map(|i| run_dir(&ft_dir, RunId::Expert(i))).collect();
        let (weights, points, value) =
            self.search_and_merge(&expert_dirs, &merged_dir, on_event)?;
        // the control: the plain finetune's own task vector, its scale searched the same way
        let baseline_dir = run_dir(&ft_dir, RunId::Baseline);
        let alpha = self.scale(&baseline_dir, &scaled_dir)?;
        times.search = started.elapsed().as_secs_f64();

        let started = Instant::now();
        on_event(ReplicateEvent::Stage(format!(
            "{tag}: evaluating the main job's models"
        )));
        let load = |p: &Path| load_model(p, self.device).map(|l| l.model);
        let baseline = load(&baseline_dir)?;
        let scaled = load(&scaled_dir)?;
        let merged = load(&merged_dir)?;
        let experts = expert_dirs
            .iter()
            .map(|p| load(p))
            .collect::<Result<Vec<_>>>()?;
        let ensemble = TimestepEnsemble::with_boundaries(experts, main.expert_boundaries())?;
        let [plain_d, scaled_d, ensemble_d, merged_d] = descriptions;
        let predictors = vec![
            Predictor {
                name: MAIN_HEAD[0].into(),
                description: plain_d,
                dirs: vec![baseline_dir.clone()],
                eps: Box::new(|x, t| baseline.eps(x, t)),
            },
            Predictor {
                name: MAIN_HEAD[1].into(),
                description: scaled_d,
                dirs: vec![scaled_dir.clone()],
                eps: Box::new(|x, t| scaled.eps(x, t)),
            },
            Predictor {
                name: MAIN_TAIL[0].into(),
                description: ensemble_d,
                dirs: expert_dirs.clone(),
                eps: Box::new(|x, t| ensemble.eps_batch(x, t)),
            },
            Predictor {
                name: MAIN_TAIL[1].into(),
                description: merged_d,
                dirs: vec![merged_dir.clone()],
                eps: Box::new(|x, t| merged.eps(x, t)),
            },
        ];
        let rows = self.measure_all(&predictors, measure, on_event)?;
        times.evaluate = started.elapsed().as_secs_f64();
        self.finish_unit("main", times, seconds)?;
        Ok(MainUnit {
            rows,
            weights,
            points,
            value,
            alpha,
        })
    }

    /// One extra arm: trained, merged (DeMe arms, with their weights returned) and
    /// measured.
    fn arm_unit(
        &self,
        arm: &Arm,
        main: &FinetuneConfig,
        measure: &Measurer,
        seconds: &mut StageTimes,
        on_event: &mut dyn FnMut(ReplicateEvent),
    ) -> Result<((Measurements, String), Option<Vec<f64>>)> {
        let dir = self.dir.join(layout::ARMS).join(&arm.name);
        let ft_dir = dir.join(layout::FINETUNE);
        let merged_dir = dir.join(layout::MERGED);
        let label = format!("{}, {}", self.tag(), arm.name);
        let (c, experts) = match &arm.kind {
            ArmKind::Plain { weighting } => (
                FinetuneConfig {
                    loss_weighting: *weighting,
                    ..main.clone()
                },
                false,
            ),
            ArmKind::Deme { config } => (
                FinetuneConfig {
                    seed: self.seed,
                    ..config.clone()
                },
                true,
            ),
        };
        let runs = c.runs(experts, !experts);

        if let Some(mut measured) =
            self.measured_before(&arm.name, &ft_dir, &c, &runs, &[arm.name.as_str()], measure)?
        {
            let weights = if experts {
                SearchRecord::read_matching(&merged_dir, &self.search_settings(c.experts))
                    .map(|s| Some(s.weights()))
            } else {
                Some(None)
            };
            if let (Some(weights), Some(m)) = (weights, measured.rows.pop()) {
                on_event(ReplicateEvent::Note(format!(
                    "{label}: measured before; read back"
                )));
                measured.record.add_to(seconds);
                return Ok(((m, arm.description.clone()), weights));
            }
        }

        let mut times = UnitRecord::default();
        let started = Instant::now();
        self.finetune(&c, experts, !experts, &ft_dir, &label, on_event)?;
        times.finetune = started.elapsed().as_secs_f64();

        let started = Instant::now();
        let (model_dir, weights) = if experts {
            on_event(ReplicateEvent::Stage(format!(
                "{label}: searching the merge weights"
            )));
            let expert_dirs: Vec<PathBuf> = runs.iter().map(|&r| run_dir(&ft_dir, r)).collect();
            let (w, _, _) = self.search_and_merge(&expert_dirs, &merged_dir, on_event)?;
            (merged_dir, Some(w))
        } else {
            (run_dir(&ft_dir, RunId::Baseline), None)
        };
        times.search = started.elapsed().as_secs_f64();

        let started = Instant::now();
        on_event(ReplicateEvent::Stage(format!("{label}: evaluating")));
        let model = load_model(&model_dir, self.device)?.model;
        let predictor = Predictor {
            name: arm.name.clone(),
            description: arm.description.clone(),
            dirs: vec![model_dir],
            eps: Box::new(|x, t| model.eps(x, t)),
        };
        let mut rows = self.measure_all(&[predictor], measure, on_event)?;
        times.evaluate = started.elapsed().as_secs_f64();
        self.finish_unit(&arm.name, times, seconds)?;
        let row = rows.pop().context("one arm gives one row")?;
        Ok((row, weights))
    }

    /// Measures each predictor (or reads its stored measurement), in order.
    fn measure_all(
        &self,
        predictors: &[Predictor],
        measure: &Measurer,
        on_event: &mut dyn FnMut(ReplicateEvent),
    ) -> Result<Vec<(Measurements, String)>> {
        let mdir = self.dir.join(layout::MEASUREMENTS);
        let mut rows = Vec::with_capacity(predictors.len());
        for p in predictors {
            let png = self.picture(&p.name);
            let dirs: Vec<&Path> = p.dirs.iter().map(PathBuf::as_path).collect();
            let m = measure.row(
                &mdir,
                &p.name,
                &dirs,
                png.as_deref(),
                p.eps.as_ref(),
                on_event,
            )?;
            rows.push((m, p.description.clone()));
        }
        Ok(rows)
    }

    /// The rows `names` of unit `unit` read back from what it left: the unit
    /// finished from this base (its record says), every run of `runs` in `ft_dir`
    /// finished (its metadata says) with settings `c`, and every row was measured
    /// with this run's evaluation settings (and has its sample grid, for the first
    /// seed). Its models' weights may be gone (a folder kept in a repository) or
    /// still there: either way nothing is redone and the record's times stand.
    /// `None` when any of that fails: the unit is then trained, searched and
    /// measured as usual.
    fn measured_before(
        &self,
        unit: &str,
        ft_dir: &Path,
        c: &FinetuneConfig,
        runs: &[RunId],
        names: &[&str],
        measure: &Measurer,
    ) -> Result<Option<ReadBack>> {
        let record = deme_formats::input::read_text(&self.unit_path(unit))
            .ok()
            .and_then(|t| serde_json::from_str::<UnitRecord>(&t).ok());
        let Some(record) = record else {
            return Ok(None);
        };
        if record.base != content_hash(self.base_dir)? {
            bail!(
                "{} was finetuned from another base model than {}; choose another output folder",
                self.unit_path(unit).display(),
                self.base_dir.display()
            );
        }
        for &run in runs {
            let dir = run_dir(ft_dir, run);
            let meta_path = dir.join(META_FILE);
            if !meta_path.exists() {
                return Ok(None);
            }
            let meta = read_meta(&meta_path)?;
            if meta.kind != "finetune" || meta.step != c.steps_of(run) {
                return Ok(None);
            }
            let stored = FinetuneConfig::saved(meta.train_config, &meta_path)?;
            if !stored.differences_for(run, c)?.is_empty() {
                return Ok(None);
            }
        }
        let mdir = self.dir.join(layout::MEASUREMENTS);
        let mut rows = Vec::with_capacity(names.len());
        for name in names {
            match measure.stored(&mdir, name, self.picture(name).as_deref())? {
                Some(m) => rows.push(m),
                None => return Ok(None),
            }
        }
        Ok(Some(ReadBack { rows, record }))
    }

    /// Finetunes (or resumes) a job's experts and/or baseline in `dir`.
    fn finetune(
        &self,
        c: &FinetuneConfig,
        experts: bool,
        baseline: bool,
        dir: &Path,
        label: &str,
        on_event: &mut dyn FnMut(ReplicateEvent),
    ) -> Result<()> {
        let resume = stored_config(dir)?.is_some();
        let what = match (experts, baseline) {
            (true, true) => format!(
                "{} experts x {} steps and the plain-finetune baseline x {} steps",
                c.experts,
                c.steps_per_expert,
                c.steps_of(RunId::Baseline)
            ),
            (true, false) => format!("{} experts x {} steps", c.experts, c.steps_per_expert),
            _ => format!("one model on all t x {} steps", c.steps_of(RunId::Baseline)),
        };
        on_event(ReplicateEvent::Stage(format!(
            "{label}: {} {what} (batch {})",
            if resume { "resuming" } else { "finetuning" },
            c.batch_size
        )));
        let job = FinetuneJob {
            spec: &self.base.spec,
            base_path: self.base_dir,
            data: &self.items.train,
            config: c,
            out_dir: dir,
            experts,
            baseline,
            schedule: Schedule::Interleaved,
            resume,
        };
        let outcome = finetune_any(
            self.base.model.clone(),
            &job,
            self.device,
            self.cancel,
            &mut |e| on_event(ReplicateEvent::Finetune(e)),
        )?;
        if outcome.cancelled || self.cancel.is_cancelled() {
            bail!("cancelled during finetuning (saved; run again to continue)");
        }
        Ok(())
    }

    /// The settings part of a merge-weight search's key over `n` experts.
    fn search_settings(&self, n: usize) -> String {
        let c = self.config;
        let grid = GridSpec { n, ..c.grid };
        format!(
            "v2|{grid:?}|{:?}|{:?}|{:?}|{} {}|",
            c.strategy,
            c.objective,
            c.finetune.expert_ranges(),
            c.search_samples,
            c.search_seed
        )
    }

    /// The settings part of the scale search's key.
    fn scale_settings(&self) -> String {
        let c = self.config;
        format!(
            "v1|alphas {} {} {}|{:?}|{:?}|{} {}|",
            c.grid.lo,
            c.grid.step,
            c.grid.ticks(),
            c.objective,
            c.finetune.expert_ranges(),
            c.search_samples,
            c.search_seed
        )
    }

    /// Searches the scale alpha of the task vector of `model_dir` on the search set
    /// (the lattice's values) and writes the scaled model to `out`, unless a finished
    /// search of the same model and settings is there.
    fn scale(&self, model_dir: &Path, out: &Path) -> Result<f64> {
        let config = self.config;
        let key = format!("{}{}|", self.scale_settings(), content_hash(model_dir)?);
        if let Some(done) = ScaleRecord::read_matching(out, &key)
            && done.key == key
            && out.join(crate::engine::merge::RECIPE_FILE).exists()
        {
            return Ok(done.alpha());
        }
        let model = load_model(model_dir, self.device)?.model;
        let alphas: Vec<f64> = (0..config.grid.ticks())
            .map(|k| config.grid.lo + k as f64 * config.grid.step)
            .collect();
        let points = {
            let label = model_dir.display().to_string();
            let mut one = Merger::new(("base", &self.base.model), &[(label.as_str(), &model)])?;
            let keep_going = || !self.cancel.is_cancelled();
            search_scale(
                &mut one,
                self.search_set,
                config.objective,
                &config.finetune.expert_ranges(),
                &alphas,
                &keep_going,
            )?
        };
        let alpha = points[0].alpha;
        export_merge(
            &MergeJob {
                base: self.base_dir.to_path_buf(),
                experts: vec![model_dir.to_path_buf()],
                spec: MergeSpec::task_arithmetic(vec![alpha as f32]),
                output: None,
                drop_projections: false,
            },
            out,
            &mut |_| {},
        )?;
        ScaleRecord {
            key,
            alpha_bits: alpha.to_bits(),
        }
        .write(out)?;
        Ok(alpha)
    }

    /// Searches the merge weights of `expert_dirs` on the search set and writes the
    /// merge to `out` (its `search.json` beside it), unless a finished search of the
    /// same experts and settings is there. Returns the weights, the number of points
    /// scored and the objective there.
    fn search_and_merge(
        &self,
        expert_dirs: &[PathBuf],
        out: &Path,
        on_event: &mut dyn FnMut(ReplicateEvent),
    ) -> Result<(Vec<f64>, usize, f64)> {
        let config = self.config;
        let grid = GridSpec {
            n: expert_dirs.len(),
            ..config.grid
        };
        let mut key = self.search_settings(expert_dirs.len());
        for d in expert_dirs {
            key += &content_hash(d)?;
            key.push('|');
        }
        if let Some(done) = SearchRecord::read_matching(out, &key)
            && done.key == key
            && out.join(crate::engine::merge::RECIPE_FILE).exists()
        {
            return Ok((done.weights(), done.result.points.len(), done.value()));
        }
        let experts = expert_dirs
            .iter()
            .map(|p| load_model(p, self.device).map(|l| l.model))
            .collect::<Result<Vec<_>>>()?;
        let labels: Vec<String> = expert_dirs
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        let pairs: Vec<(&str, &AnyModel)> =
            labels.iter().map(String::as_str).zip(&experts).collect();
        let mut merger = Merger::new(("base", &self.base.model), &pairs)?;
        let keep_going = || !self.cancel.is_cancelled();
        let search = search_merge_weights(
            &mut merger,
            self.search_set,
            config.objective,
            &config.finetune.expert_ranges(),
            &grid,
            config.strategy,
            &keep_going,
            &mut |e| on_event(ReplicateEvent::Search(e)),
        )?;
        drop(merger);
        if self.cancel.is_cancelled() {
            bail!("cancelled during the merge-weight search; run again to continue");
        }
        let best = search.best_point().clone();
        export_merge(
            &MergeJob {
                base: self.base_dir.to_path_buf(),
                experts: expert_dirs.to_vec(),
                spec: MergeSpec::task_arithmetic(best.weights.iter().map(|&v| v as f32).collect()),
                output: None,
                drop_projections: false,
            },
            out,
            &mut |_| {},
        )?;
        let points = search.points.len();
        SearchRecord {
            key,
            weights_bits: best.weights.iter().map(|w| w.to_bits()).collect(),
            value_bits: best.score.loss.to_bits(),
            result: search,
        }
        .write(out)?;
        Ok((best.weights, points, best.score.loss))
    }
}

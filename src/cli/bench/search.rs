//! `bench search`: the cost of learned merge weights (one per expert, and one per
//! expert and block) and of CMA-ES (at the coordinate search's number of merges)
//! against the coordinate search, on a real model set (the
//! shipped default unless given), as the wall time each takes to reach the
//! coordinate search's final held-out objective on a separate report set.
//!
//! Every method searches on the same search set; the report set (other items,
//! noise and timesteps) judges where each one got. For a learned run the time to
//! reach is the elapsed search time at its first step (or point) whose report-set
//! objective is at or below the coordinate search's (the report evaluations
//! themselves happen after the timed run).

use super::emit;
use crate::engine::data::{DataSpec, split_items};
use crate::engine::device::ComputeDevice;
use crate::engine::diffusion::NoiseSchedule;
use crate::engine::eval::{EvalSet, EvalSetConfig};
use crate::engine::merge::{MergeSpec, Mergeable, Merger, expert_ranges_of};
use crate::engine::model_set::default_set;
use crate::engine::search::{
    CmaesSettings, GridEvent, GridResult, GridSpec, LearnSettings, LearnedBlocks, LossObjective,
    Strategy, search_merge_weights,
};
use crate::engine::store::{AnyModel, load_model};
use anyhow::{Context, Result, bail};
use clap::Args;
use std::path::PathBuf;
use std::time::Instant;

/// Seed of the report set that judges every run.
const REPORT_SEED: u64 = 4321;

/// Arguments of `bench search`.
#[derive(Debug, Args)]
pub struct SearchCase {
    /// The base model folder (default: the shipped set's).
    #[arg(long, requires = "experts")]
    pub base: Option<PathBuf>,
    /// Expert folders, comma-separated (default: the shipped set's).
    #[arg(long, value_delimiter = ',')]
    pub experts: Vec<PathBuf>,
    /// Held-out samples the searches score on.
    #[arg(long, default_value_t = 256)]
    pub samples: usize,
    /// Seed of the search set (its items, noise and nothing else); the report set
    /// stays the same, so runs with several seeds compare on one yardstick.
    #[arg(long, default_value_t = 1234)]
    pub seed: u64,
    /// Held-out samples of the report set that judges the results.
    #[arg(long, default_value_t = 512)]
    pub report_samples: usize,
    /// The objective: the balanced loss (as `replicate`) or the plain one.
    #[arg(long, default_value = "balanced")]
    pub objective: String,
    /// Largest weight: every method searches [0, HI].
    #[arg(long, default_value_t = 2.0)]
    pub hi: f64,
    /// Lattice spacing of the coordinate search.
    #[arg(long, default_value_t = 0.1)]
    pub step: f64,
}

/// One method's run: the steps' weights with their elapsed seconds.
struct Run {
    result: GridResult,
    elapsed: Vec<f64>,
    seconds: f64,
}

fn timed_search(
    merger: &mut Merger<AnyModel>,
    eval: &EvalSet,
    objective: LossObjective,
    ranges: &[[usize; 2]],
    spec: &GridSpec,
    strategy: Strategy,
) -> Result<Run> {
    let start = Instant::now();
    let mut elapsed = Vec::new();
    let mut on_event = |e: GridEvent| {
        if let GridEvent::Point { .. } = e {
            elapsed.push(start.elapsed().as_secs_f64());
        }
    };
    let result = search_merge_weights(
        merger,
        eval,
        objective,
        ranges,
        spec,
        strategy,
        &|| true,
        &mut on_event,
    )?;
    let seconds = start.elapsed().as_secs_f64();
    Ok(Run {
        result,
        elapsed,
        seconds,
    })
}

/// The elapsed search time at the first point of `run` whose report-set
/// objective (`judged`, evaluated after the timed run) is at or below `target`.
fn time_to_reach(
    run: &Run,
    target: f64,
    judged: &mut dyn FnMut(&[f64]) -> Result<f64>,
) -> Result<Option<f64>> {
    for (p, t) in run.result.points.iter().zip(&run.elapsed) {
        if judged(&p.weights)? <= target {
            return Ok(Some(*t));
        }
    }
    Ok(None)
}

/// Runs `bench search`.
pub fn run(c: SearchCase, compute: &ComputeDevice) -> Result<()> {
    let device = &compute.device;
    let (base_dir, expert_dirs) = match c.base {
        Some(b) => (b, c.experts),
        None => {
            let set =
                default_set().context("no shipped default set was found (assets/mnist-tiny)")?;
            (set.base, set.experts)
        }
    };
    let objective = match c.objective.as_str() {
        "balanced" => LossObjective::Balanced,
        "plain" => LossObjective::Plain,
        other => bail!("--objective is balanced or plain, not `{other}`"),
    };
    let base = load_model(&base_dir, device)?;
    let experts = expert_dirs
        .iter()
        .map(|p| load_model(p, device))
        .collect::<Result<Vec<_>>>()?;
    let pairs: Vec<(&str, &AnyModel)> = experts.iter().map(|e| ("expert", &e.model)).collect();
    let mut merger = Merger::new(("base", &base.model), &pairs)?;
    let n = experts.len();
    let stored: Vec<_> = experts.iter().map(|e| e.timestep_range()).collect();
    let ranges = expert_ranges_of(&stored, 1000);
    let items = split_items(&DataSpec::Mnist, &base.spec, 0.1, 20_000)?;
    let schedule = NoiseSchedule::ddpm(1000);
    let set = |samples, seed| {
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
    if c.seed == REPORT_SEED {
        bail!("--seed {REPORT_SEED} is the report set's own seed; choose another");
    }
    let search_set = set(c.samples, c.seed)?;
    let report_set = set(c.report_samples, REPORT_SEED)?;
    let base_per_range = {
        let m = merger.merge(&MergeSpec::task_arithmetic(vec![0.0; n]))?;
        report_set
            .evaluate(&|x, t| m.predict_eps(x, t))?
            .per_range(n)
    };
    let judge = |merger: &mut Merger<AnyModel>, spec: MergeSpec| -> Result<f64> {
        let m = merger.merge(&spec)?;
        let l = report_set.evaluate(&|x, t| m.predict_eps(x, t))?;
        Ok(objective.value(l.mean(), &l.per_ranges(&ranges), &base_per_range))
    };
    let per_model = |w: &[f64]| MergeSpec::task_arithmetic(w.iter().map(|&v| v as f32).collect());
    let spec = GridSpec {
        n,
        lo: 0.0,
        hi: c.hi,
        step: c.step,
        sum_to_one: false,
    };

    let coordinate = timed_search(
        &mut merger,
        &search_set,
        objective,
        &ranges,
        &spec,
        Strategy::Coordinate { sweeps: 4 },
    )?;
    let target = judge(
        &mut merger,
        per_model(&coordinate.result.best_point().weights),
    )?;
    let mut lines = vec![serde_json::json!({
        "method": "coordinate", "points": coordinate.result.points.len(),
        // a point: one forward pass over the search set (plus the base's once)
        "forward_pass_equivalents": coordinate.result.points.len() + 1,
        "seconds": coordinate.seconds, "report_objective": target,
        "weights": coordinate.result.best_point().weights,
    })];
    let blocks = LearnedBlocks::of(merger.keys(), n);
    for per_block in [false, true] {
        let settings = LearnSettings {
            per_block,
            ..LearnSettings::default()
        };
        let run = timed_search(
            &mut merger,
            &search_set,
            objective,
            &ranges,
            &spec,
            Strategy::Learned(settings),
        )?;
        let spec_of = |w: &[f64]| {
            if per_block {
                blocks.spec(w)
            } else {
                per_model(w)
            }
        };
        let reached = time_to_reach(&run, target, &mut |w| judge(&mut merger, spec_of(w)))?;
        let final_objective = judge(&mut merger, spec_of(&run.result.best_point().weights))?;
        let steps = run.result.points.len() - 1;
        lines.push(serde_json::json!({
            "method": if per_block { "learned per block" } else { "learned per model" },
            "weights_learned": run.result.best_point().weights.len(),
            "steps": steps,
            // the base on both halves, the start on the check half, then per
            // step a forward and backward pass (about three forward passes' work)
            // on one half and a forward pass on the other
            "forward_pass_equivalents": 1.5 + 2.0 * steps as f64,
            "seconds": run.seconds,
            "report_objective": final_objective,
            "seconds_to_reach_coordinate": reached,
            "time_ratio_to_reach": reached.map(|r| r / coordinate.seconds),
            "time_ratio_whole_run": run.seconds / coordinate.seconds,
        }));
    }
    // CMA-ES at the coordinate search's number of merges scored
    let budget = coordinate.result.points.len();
    let run = timed_search(
        &mut merger,
        &search_set,
        objective,
        &ranges,
        &spec,
        Strategy::Cmaes(CmaesSettings {
            evaluations: budget,
            seed: c.seed,
            ..CmaesSettings::default()
        }),
    )?;
    let reached = time_to_reach(&run, target, &mut |w| judge(&mut merger, per_model(w)))?;
    lines.push(serde_json::json!({
        "method": "cma-es",
        "points": run.result.points.len(),
        "forward_pass_equivalents": run.result.points.len() + 1,
        "seconds": run.seconds,
        "report_objective": judge(&mut merger, per_model(&run.result.best_point().weights))?,
        "weights": run.result.best_point().weights,
        "seconds_to_reach_coordinate": reached,
        "time_ratio_to_reach": reached.map(|r| r / coordinate.seconds),
        "time_ratio_whole_run": run.seconds / coordinate.seconds,
    }));
    emit(
        serde_json::json!({
            "case": "search", "base": base_dir, "experts": n,
            "objective": c.objective, "samples": c.samples, "seed": c.seed,
            "report_samples": c.report_samples, "bounds": [0.0, c.hi],
            "methods": lines,
        }),
        compute,
    );
    Ok(())
}

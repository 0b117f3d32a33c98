//! The grid search the app, `grid-search` and `replicate` share: task-arithmetic
//! merges re-merged in place and scored by their held-out loss or, optionally,
//! by the sample metric of images generated from them.

use super::grid::grid_search;
use super::lattice::{GridEvent, GridResult, GridSpec, Score};
use super::learned::{LossGradient, learn_merge_weights};
use super::objective::LossObjective;
use super::strategy::Strategy;
use crate::engine::diffusion::NoiseSchedule;
use crate::engine::eval::EvalSet;
use crate::engine::merge::{MergeSpec, Mergeable, Merger};
use crate::engine::metric::SampleMetric;
use crate::engine::replicate::samples::generate;
use crate::engine::train::CancelToken;
use anyhow::Result;
use burn::tensor::Device;

/// Searches task-arithmetic weights over `spec`, scoring each point by the
/// held-out loss on `eval` (the figure `objective` names; per timestep range,
/// `ranges` being the experts' ranges, alongside). [`Strategy::Learned`] descends the gradient
/// instead, fitting on half of `eval` and scoring on the other half.
pub fn search_merge_weights<M: LossGradient>(
    merger: &mut Merger<M>,
    eval: &EvalSet,
    objective: LossObjective,
    ranges: &[[usize; 2]],
    spec: &GridSpec,
    strategy: Strategy,
    keep_going: &dyn Fn() -> bool,
    on_event: &mut dyn FnMut(GridEvent),
) -> Result<GridResult> {
    if let Strategy::Learned(settings) = strategy {
        return learn_merge_weights(
            merger, eval, objective, ranges, spec, settings, keep_going, on_event,
        );
    }
    let n = merger.num_experts();
    let base_per_range = match objective {
        LossObjective::Plain => Vec::new(),
        LossObjective::Balanced => {
            // all weights 0: the base itself
            let base = merger.merge(&MergeSpec::task_arithmetic(vec![0.0; n]))?;
            eval.evaluate(&|x, t| base.predict_eps(x, t))?
                .per_ranges(ranges)
        }
    };
    let mut objective = |merged: &M| -> Result<Score> {
        let losses = eval.evaluate(&|x, t| merged.predict_eps(x, t))?;
        let per_range = losses.per_ranges(ranges);
        Ok(Score {
            loss: objective.value(losses.mean(), &per_range, &base_per_range),
            per_range,
        })
    };
    search_merges(merger, spec, strategy, keep_going, on_event, &mut objective)
}

/// Re-merges in place at each point of the search and scores the merge with
/// `objective`.
fn search_merges<M: Mergeable>(
    merger: &mut Merger<M>,
    spec: &GridSpec,
    strategy: Strategy,
    keep_going: &dyn Fn() -> bool,
    on_event: &mut dyn FnMut(GridEvent),
    objective: &mut dyn FnMut(&M) -> Result<Score>,
) -> Result<GridResult> {
    let n = merger.num_experts();
    let mut merged = merger.merge(&MergeSpec::task_arithmetic(vec![0.0; n]))?;
    let mut score = |w: &[f64]| -> Result<Score> {
        let weights = MergeSpec::task_arithmetic(w.iter().map(|&v| v as f32).collect());
        merged = merger.merge_into(merged.clone(), &weights)?;
        objective(&merged)
    };
    grid_search(spec, strategy, &mut score, keep_going, on_event)
}

/// The sample-metric objective: the Frechet distance to the held-out images of
/// a fixed set of images generated from each merge (deterministic DDIM from
/// the same initial noise for every point), as `replicate` reports it.
pub struct MetricObjective<'a> {
    /// The metric (feature network and held-out statistics).
    pub metric: &'a SampleMetric,
    /// Initial noise of the generated images (NCHW values of `shape`).
    pub noise: Vec<f32>,
    /// Image shape `[c, h, w]`.
    pub shape: [usize; 3],
    /// The diffusion schedule.
    pub schedule: &'a NoiseSchedule,
    /// DDIM steps per image.
    pub steps: usize,
    /// Where to compute.
    pub device: Device,
}

/// Searches task-arithmetic weights over `spec`, scoring each point by the
/// sample metric of its merge (lower is better; no per-range breakdown).
pub fn search_merge_weights_by_metric<M: Mergeable>(
    merger: &mut Merger<M>,
    objective: &MetricObjective,
    spec: &GridSpec,
    strategy: Strategy,
    keep_going: &dyn Fn() -> bool,
    on_event: &mut dyn FnMut(GridEvent),
) -> Result<GridResult> {
    let never = CancelToken::new();
    let mut score = |merged: &M| -> Result<Score> {
        let images = generate(
            &|x, t| merged.predict_eps(x, t),
            &objective.noise,
            objective.shape,
            objective.schedule,
            objective.steps,
            &objective.device,
            &never,
            &mut |_, _| {},
        )?;
        Ok(Score {
            loss: objective.metric.score(&images, &objective.device)?,
            per_range: Vec::new(),
        })
    };
    search_merges(merger, spec, strategy, keep_going, on_event, &mut score)
}

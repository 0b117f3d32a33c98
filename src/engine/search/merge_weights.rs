//! The grid search the app, `grid-search` and `replicate` share: task-arithmetic
//! merges re-merged in place and scored by their held-out loss.

use super::grid::{GridEvent, GridResult, GridSpec, Score, Strategy, grid_search};
use crate::engine::eval::EvalSet;
use crate::engine::merge::{MergeSpec, Mergeable, Merger};
use anyhow::Result;

/// Searches task-arithmetic weights over `spec`, scoring each point by the
/// held-out loss on `eval` (overall and per timestep range, one range per expert).
pub fn search_merge_weights<M: Mergeable>(
    merger: &mut Merger<M>,
    eval: &EvalSet,
    spec: &GridSpec,
    strategy: Strategy,
    keep_going: &dyn Fn() -> bool,
    on_event: &mut dyn FnMut(GridEvent),
) -> Result<GridResult> {
    let n = merger.num_experts();
    let mut merged = merger.merge(&MergeSpec::task_arithmetic(vec![0.0; n]))?;
    let mut score = |w: &[f64]| -> Result<Score> {
        let weights = MergeSpec::task_arithmetic(w.iter().map(|&v| v as f32).collect());
        merged = merger.merge_into(merged.clone(), &weights)?;
        let losses = eval.evaluate(&|x, t| merged.predict_eps(x, t))?;
        Ok(Score {
            loss: losses.mean(),
            per_range: losses.per_range(n),
        })
    };
    grid_search(spec, strategy, &mut score, keep_going, on_event)
}

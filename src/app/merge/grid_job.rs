//! Grid search from the UI: a named thread with its own merger over copies of
//! the models, scoring lattice points on the shared held-out set, streaming
//! each result, cancellable between points.

use crate::app::job_slot::{Outcome, Sink};
use crate::engine::eval::EvalSet;
use crate::engine::merge::Merger;
use crate::engine::search::{
    GridEvent, GridResult, GridSpec, LossObjective, Strategy, search_merge_weights,
};
use crate::engine::store::AnyModel;
use crate::engine::train::CancelToken;
use anyhow::Result;
use std::sync::Arc;
use std::thread::JoinHandle;

/// Where a search reports: each level and point, then the result (a
/// cancelled search ends with what it scored).
pub type GridSink = Sink<GridEvent, GridResult>;

/// A search to run.
#[derive(Debug, Clone)]
pub struct GridJob {
    /// The lattice.
    pub spec: GridSpec,
    /// How it is visited.
    pub strategy: Strategy,
    /// Set to stop after the point being scored.
    pub cancel: CancelToken,
    /// Where it reports.
    pub sink: GridSink,
}

fn run(
    job: &GridJob,
    base: AnyModel,
    experts: Vec<AnyModel>,
    eval: &EvalSet,
    ranges: &[[usize; 2]],
) -> Result<GridResult> {
    let labels: Vec<String> = (1..=experts.len()).map(|i| format!("expert {i}")).collect();
    let pairs: Vec<(&str, &AnyModel)> = labels.iter().map(String::as_str).zip(&experts).collect();
    let mut merger = Merger::new(("base", &base), &pairs)?;
    drop(pairs);
    drop(experts); // the merger holds the task vectors now
    let cancel = job.cancel.clone();
    let keep_going = move || !cancel.is_cancelled();
    let mut on_event = |e| job.sink.update(e);
    search_merge_weights(
        &mut merger,
        eval,
        LossObjective::Plain,
        ranges,
        &job.spec,
        job.strategy,
        &keep_going,
        &mut on_event,
    )
}

/// Starts `job` on a thread named `grid-search` (`ranges`: the experts'
/// timestep ranges, for the per-range losses).
pub fn spawn_grid(
    job: GridJob,
    base: AnyModel,
    experts: Vec<AnyModel>,
    eval: Arc<EvalSet>,
    ranges: Vec<[usize; 2]>,
) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name("grid-search".into())
        .spawn(move || {
            // a cancelled search ends with what it scored: an error is a failure
            let outcome = match run(&job, base, experts, &eval, &ranges) {
                Ok(r) => Outcome::Done(r),
                Err(e) => Outcome::Failed(format!("{e:#}")),
            };
            job.sink.finish(outcome);
        })
        .expect("spawning the grid-search thread")
}

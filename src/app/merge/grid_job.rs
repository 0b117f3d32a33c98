//! Grid search from the UI: a named thread with its own merger over copies of
//! the models, scoring lattice points on the shared held-out set, streaming
//! each result, cancellable between points.

use crate::app::events::{Emitter, Event, GridUpdate};
use crate::engine::eval::EvalSet;
use crate::engine::merge::Merger;
use crate::engine::search::{GridSpec, LossObjective, Strategy, search_merge_weights};
use crate::engine::store::AnyModel;
use anyhow::Result;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

/// A search to run.
#[derive(Debug, Clone)]
pub struct GridJob {
    /// The lattice.
    pub spec: GridSpec,
    /// How it is visited.
    pub strategy: Strategy,
    /// Set to stop after the point being scored.
    pub cancel: Arc<AtomicBool>,
}

fn run(
    job: &GridJob,
    base: AnyModel,
    experts: Vec<AnyModel>,
    eval: &EvalSet,
    emit: &Emitter,
) -> Result<crate::engine::search::GridResult> {
    let labels: Vec<String> = (1..=experts.len()).map(|i| format!("expert {i}")).collect();
    let pairs: Vec<(&str, &AnyModel)> = labels.iter().map(String::as_str).zip(&experts).collect();
    let mut merger = Merger::new(("base", &base), &pairs)?;
    drop(pairs);
    drop(experts); // the merger holds the task vectors now
    let cancel = job.cancel.clone();
    let keep_going = move || !cancel.load(Ordering::Relaxed);
    let mut on_event = |e| emit.emit(Event::Grid(GridUpdate::Event(e)));
    search_merge_weights(
        &mut merger,
        eval,
        LossObjective::Plain,
        &job.spec,
        job.strategy,
        &keep_going,
        &mut on_event,
    )
}

/// Starts `job` on a thread named `grid-search`.
pub fn spawn_grid(
    job: GridJob,
    base: AnyModel,
    experts: Vec<AnyModel>,
    eval: Arc<EvalSet>,
    emit: Emitter,
) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name("grid-search".into())
        .spawn(move || {
            let result = run(&job, base, experts, &eval, &emit).map_err(|e| format!("{e:#}"));
            emit.emit(Event::Grid(GridUpdate::Finished(result)));
        })
        .expect("spawning the grid-search thread")
}

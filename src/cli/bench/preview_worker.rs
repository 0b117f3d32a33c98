//! The app's merge worker driven from a benchmark: open a set, request merged
//! previews and time their pictures, as the merge view does.

use crate::app::events::{Emitter, Event};
use crate::app::merge_worker::{Command, MergeWorker, PreviewRequest};
use crate::app::preview::Panel;
use crate::app::settings::PreviewSettings;
use crate::engine::device::ComputeDevice;
use crate::engine::merge::MergeSpec;
use crate::engine::model_set::{ModelSet, default_set};
use anyhow::{Result, anyhow, bail};
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

/// The set in `dir` (a base and its experts, as the app opens it), or the shipped one.
pub fn the_set(dir: Option<&Path>) -> Result<ModelSet> {
    match dir {
        Some(dir) => ModelSet::discover(dir)
            .ok_or_else(|| anyhow!("{} holds no base and experts", dir.display())),
        None => default_set().ok_or_else(|| anyhow!("the shipped model set was not found")),
    }
}

/// A merge worker with a set open.
pub struct OpenSet {
    /// The worker.
    pub worker: MergeWorker,
    /// Its events.
    pub events: Receiver<Event>,
    /// Experts in the set.
    pub experts: usize,
    /// The preview settings in use (the app's defaults).
    pub settings: PreviewSettings,
}

/// Waits (at most ten minutes) for the first event `f` accepts; a failed load is an error.
pub fn wait_for(
    events: &Receiver<Event>,
    what: &str,
    mut f: impl FnMut(&Event) -> bool,
) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let e = events
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .map_err(|_| anyhow!("timed out waiting for {what}"))?;
        if let Event::LoadFailed { message, .. } = &e {
            bail!("loading failed: {message}");
        }
        if f(&e) {
            return Ok(());
        }
    }
}

/// Starts a worker on `compute` and opens `set` in it (returns once loaded).
pub fn open(set: &ModelSet, compute: &ComputeDevice) -> Result<OpenSet> {
    let settings = PreviewSettings::default();
    let (emitter, events) = Emitter::channel(Arc::new(|| {}));
    let worker = MergeWorker::spawn(compute.device.clone(), settings, None, emitter);
    worker.send(Command::Load(set.clone()));
    wait_for(&events, "the models", |e| matches!(e, Event::Loaded(_)))?;
    Ok(OpenSet {
        worker,
        events,
        experts: set.experts.len(),
        settings,
    })
}

impl OpenSet {
    /// Requests the merge of `weights` with `steps` DDIM steps; returns the
    /// seconds from the request to its first picture and to its last.
    pub fn preview(&self, weights: Vec<f32>, steps: usize) -> Result<(f64, f64)> {
        let submitted = Instant::now();
        let generation = self.worker.request(PreviewRequest {
            spec: MergeSpec::task_arithmetic(weights),
            steps,
            submitted,
            evaluate: false,
        });
        let mut first = None;
        wait_for(&self.events, "the merged preview", |e| match e {
            Event::Preview(p) if p.panel == Panel::Merged && p.generation == generation => {
                first.get_or_insert(submitted.elapsed().as_secs_f64());
                p.done
            }
            _ => false,
        })?;
        let done = submitted.elapsed().as_secs_f64();
        Ok((first.unwrap_or(done), done))
    }

    /// Waits until the base and ensemble panels have been sampled and scored,
    /// as they are while the user first looks at the window.
    pub fn settle(&self) -> Result<()> {
        let mut refs = 0;
        wait_for(&self.events, "the reference panels", |e| {
            if matches!(e, Event::Loss(l) if l.panel != Panel::Merged) {
                refs += 1;
            }
            refs == 2
        })
    }
}

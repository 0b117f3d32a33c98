//! The gradient-conflict view's state: settings, the computation going, the
//! result shown and where it comes from.

use super::job::{GradSimJob, GradSimUpdate};
use crate::app::job_slot::{JobSlot, Outcome, Report, Waker};
use crate::app::session::NUM_TRAIN_TIMESTEPS;
use crate::engine::analysis::gradsim::GradSimResult;
use crate::engine::analysis::{GradSimConfig, Granularity};
use std::sync::Arc;

/// Settings, progress and result of the view.
#[derive(Debug)]
pub struct GradSimState {
    /// Number of timesteps K (evenly spaced over [0, T)).
    pub k: usize,
    /// Number of fixed batches M the gradients are averaged over.
    pub batches: usize,
    /// Samples per batch.
    pub batch_size: usize,
    /// The computation going: `(done, total)` backward passes.
    pub(super) job: JobSlot<GradSimUpdate, Arc<GradSimResult>, (usize, usize)>,
    pub(super) result: Option<Arc<GradSimResult>>,
    /// Where the shown result comes from when not from Compute (a training
    /// run's checkpoint); `None`: the open set's base.
    pub(super) source: Option<String>,
    /// Why the last computation failed.
    pub error: Option<String>,
    /// The heatmap cell under the pointer, `(row, column)`.
    pub(super) hovered: Option<(usize, usize)>,
    /// Folder the Export button writes into.
    pub export_dir: String,
    /// Show the cosines relative to the noise ceiling, `S_kl / sqrt(c_k c_l)`.
    pub relative: bool,
    /// Number of ranges N the view suggests from the conflicts.
    pub suggest_n: usize,
}

impl Default for GradSimState {
    fn default() -> Self {
        Self {
            // measured on the shipped base (docs/let-the-data-choose/heatmap-noise-ceiling.md):
            // 1,024 samples per timestep bring the median noise ceiling to about 0.8
            k: 10,
            batches: 8,
            batch_size: 128,
            job: JobSlot::default(),
            result: None,
            source: None,
            error: None,
            hovered: None,
            export_dir: "gradient-conflicts".into(),
            relative: false,
            suggest_n: 4,
        }
    }
}

impl GradSimState {
    /// The last result.
    pub fn result(&self) -> Option<&Arc<GradSimResult>> {
        self.result.as_ref()
    }

    /// Where the shown result comes from: `None` for the open set's base
    /// (Compute), else e.g. `training run pretrain, step 20`.
    pub fn source(&self) -> Option<&str> {
        self.source.as_deref()
    }

    /// What the shown result was taken of, for the caption.
    pub fn caption(&self) -> String {
        match &self.source {
            Some(s) => format!("Showing: {s} (updated at each checkpoint)"),
            None => "Showing: the base of the open model set".into(),
        }
    }

    /// Shows a result taken elsewhere (a training run's checkpoint) in place
    /// of the last one; a running computation keeps going, and its result
    /// replaces this one when it ends.
    pub fn show_live(&mut self, result: Arc<GradSimResult>, source: String) {
        if self.result.as_ref().is_none_or(|r| r.k() != result.k()) {
            self.hovered = None;
        }
        self.result = Some(result);
        self.source = Some(source);
        if !self.job.is_running() {
            self.error = None;
        }
    }

    /// Whether a computation runs.
    pub fn is_running(&self) -> bool {
        self.job.is_running()
    }

    /// `(done, total)` backward passes of the running computation.
    pub fn progress(&self) -> Option<(usize, usize)> {
        self.job.progress().copied()
    }

    /// The configuration the settings describe.
    pub fn config(&self) -> GradSimConfig {
        GradSimConfig {
            timesteps: GradSimConfig::even_timesteps(self.k.max(2), NUM_TRAIN_TIMESTEPS),
            batches: self.batches.max(1),
            batch_size: self.batch_size.max(1),
            granularity: Granularity::Block,
            ..GradSimConfig::default()
        }
    }

    /// Marks a computation as started (a running one is cancelled) and
    /// returns the job to run, reporting to this view through `waker`.
    pub fn start(&mut self, waker: &Waker) -> GradSimJob {
        let config = self.config();
        let total = config.batches * config.timesteps.len();
        let (cancel, sink) = self.job.start((0, total), waker);
        self.error = None;
        GradSimJob {
            config,
            cancel,
            sink,
        }
    }

    /// Forgets the result (another model set was opened).
    pub fn reset(&mut self) {
        self.job.clear();
        self.result = None;
        self.source = None;
        self.error = None;
        self.hovered = None;
    }

    /// Applies what the running computation reported since the last frame.
    pub fn poll(&mut self) {
        for report in self.job.poll() {
            match report {
                Report::Update(GradSimUpdate::Preparing) => {}
                Report::Update(GradSimUpdate::Progress(p)) => {
                    if let Some(progress) = self.job.progress_mut() {
                        *progress = (p.done, p.total);
                    }
                }
                Report::Finished(Outcome::Done(r)) => {
                    self.result = Some(r);
                    self.source = None;
                    self.hovered = None;
                }
                Report::Finished(Outcome::Cancelled) => self.error = Some("cancelled".into()),
                Report::Finished(Outcome::Failed(e)) => self.error = Some(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::analysis::gradsim::GradSimProgress;

    fn result(k: usize) -> Arc<GradSimResult> {
        let cosine = (0..k * k)
            .map(|n| if n / k == n % k { 1.0 } else { 0.5 })
            .collect();
        Arc::new(GradSimResult {
            timesteps: GradSimConfig::even_timesteps(k, NUM_TRAIN_TIMESTEPS),
            cosine,
            norms: vec![1.0; k],
            groups: Vec::new(),
            exact: true,
            config: GradSimConfig::default(),
            ceiling: None,
            stderr: None,
        })
    }

    #[test]
    fn a_live_result_shows_with_its_source() {
        let mut s = GradSimState::default();
        assert!(s.source().is_none());
        assert!(s.caption().contains("the base"));
        s.show_live(result(3), "training run pretrain, step 8".into());
        assert_eq!(s.result().map(|r| r.k()), Some(3));
        assert_eq!(s.source(), Some("training run pretrain, step 8"));
        assert!(s.caption().contains("training run pretrain, step 8"));
        assert!(!s.is_running());
        s.show_live(result(4), "training run pretrain, step 16".into());
        assert_eq!(s.result().map(|r| r.k()), Some(4));
        assert_eq!(s.source(), Some("training run pretrain, step 16"));
    }

    #[test]
    fn a_live_result_leaves_a_running_compute_alone_and_its_result_wins() {
        let mut s = GradSimState::default();
        let job = s.start(&Waker::new(|| {}));
        job.sink.update(GradSimUpdate::Progress(GradSimProgress {
            done: 3,
            total: 10,
        }));
        s.poll();
        s.show_live(result(3), "training run expert_0, step 50".into());
        assert!(s.is_running());
        assert_eq!(s.progress(), Some((3, 10)));
        assert!(!job.cancel.is_cancelled());
        assert_eq!(s.source(), Some("training run expert_0, step 50"));
        job.sink.update(GradSimUpdate::Progress(GradSimProgress {
            done: 4,
            total: 10,
        }));
        s.poll();
        assert_eq!(s.progress(), Some((4, 10)));
        job.sink.finish(Outcome::Done(result(10)));
        s.poll();
        assert!(!s.is_running());
        assert_eq!(s.result().map(|r| r.k()), Some(10));
        assert!(s.source().is_none(), "Compute's result is of the base");
        // and a later live update replaces Compute's
        s.show_live(result(5), "training run expert_0, step 100".into());
        assert_eq!(s.result().map(|r| r.k()), Some(5));
        assert!(s.source().is_some());
    }

    #[test]
    fn a_cancelled_or_failed_compute_keeps_the_live_result() {
        let mut s = GradSimState::default();
        s.show_live(result(3), "training run pretrain, step 8".into());
        let job = s.start(&Waker::new(|| {}));
        s.job.cancel();
        job.sink
            .finish(Outcome::of(Err(anyhow::anyhow!("stopped")), &job.cancel));
        s.poll();
        assert_eq!(s.error.as_deref(), Some("cancelled"));
        assert_eq!(s.result().map(|r| r.k()), Some(3));
        assert_eq!(s.source(), Some("training run pretrain, step 8"));
        // a live update clears the stale error; reset forgets everything
        s.show_live(result(3), "training run pretrain, step 16".into());
        assert!(s.error.is_none());
        s.reset();
        assert!(s.result().is_none() && s.source().is_none());
    }
}

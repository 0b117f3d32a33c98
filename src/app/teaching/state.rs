//! The Teaching view's state: settings, the run going, its curves and clouds,
//! the saved set and the export.

use super::config::{
    Point, SampleCloud, Stage, TeachingConfig, TeachingJob, TeachingUpdate, data_points,
};
use super::plots::export_plots;
use crate::app::job_slot::{JobSlot, Outcome, Report, Task, Waker};
pub use crate::app::widgets::export_row::{ExportRow, Written};
use crate::engine::data::ToyKind;
use crate::engine::model_set::ModelSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// State of the Teaching view: settings, the live run, its curves and clouds.
#[derive(Debug)]
pub struct TeachingState {
    /// What the next run trains.
    pub config: TeachingConfig,
    /// The run going, with the time it started.
    pub(super) job: JobSlot<TeachingUpdate, ModelSet, Instant>,
    /// The run's folder (also of a finished or cancelled run).
    pub(super) dir: Option<PathBuf>,
    pub(super) data: Option<Arc<Vec<Point>>>,
    /// The chosen distribution's points before any run (what will be learnt).
    pub(super) preview: Option<(ToyKind, Arc<Vec<Point>>)>,
    pub(super) samples: Option<SampleCloud>,
    pub(super) clouds: usize,
    pub(super) base_loss: Vec<(u64, f64)>,
    pub(super) expert_loss: Vec<Vec<(u64, f64)>>,
    /// The base steps of the run shown (the experts' curves start there).
    pub(super) shown_base_steps: u64,
    pub(super) saved: Option<ModelSet>,
    pub(super) took: Option<Duration>,
    /// Why the last run failed (`cancelled` when it was).
    pub error: Option<String>,
    /// Folder the Export button writes into.
    pub export_dir: String,
    /// The export of the plots.
    pub export: ExportRow,
}

impl Default for TeachingState {
    fn default() -> Self {
        Self {
            config: TeachingConfig::new(std::env::temp_dir().join("deme-studio-teaching")),
            job: JobSlot::default(),
            dir: None,
            data: None,
            preview: None,
            samples: None,
            clouds: 0,
            base_loss: Vec::new(),
            expert_loss: Vec::new(),
            shown_base_steps: 0,
            saved: None,
            took: None,
            error: None,
            export_dir: "teaching".into(),
            export: ExportRow::default(),
        }
    }
}

impl TeachingState {
    /// Forgets results tied to the open model set (the trained sets stay on disk).
    pub fn reset(&mut self) {}

    /// Whether a run is in progress.
    pub fn is_running(&self) -> bool {
        self.job.is_running()
    }

    /// `(done, total)` optimizer steps of the run shown, the experts' counted one after another.
    pub fn progress(&self) -> (u64, u64) {
        let done = self.base_loss.last().map_or(0, |l| l.0)
            + self
                .expert_loss
                .iter()
                .map(|e| e.last().map_or(0, |l| l.0))
                .sum::<u64>();
        (done, self.config.total_steps())
    }

    /// The latest sample cloud.
    pub fn samples(&self) -> Option<&SampleCloud> {
        self.samples.as_ref()
    }

    /// Sample clouds received in the run shown.
    pub fn clouds(&self) -> usize {
        self.clouds
    }

    /// The data cloud of the run shown, else of the chosen distribution.
    pub fn data(&self) -> Option<&[Point]> {
        self.data
            .as_deref()
            .or(self.preview.as_ref().map(|(_, d)| d.as_ref()))
            .map(|d| d.as_slice())
    }

    /// Draws the chosen distribution's points when no run has been shown yet
    /// (or the choice changed since).
    pub(super) fn refresh_preview(&mut self) {
        let kind = self.config.data;
        if self.preview.as_ref().is_none_or(|(k, _)| *k != kind) {
            self.preview = Some((kind, Arc::new(data_points(kind, self.config.samples))));
        }
    }

    /// The folder of the run shown.
    pub fn dir(&self) -> Option<&PathBuf> {
        self.dir.as_ref()
    }

    /// The last set trained to the end.
    pub fn saved(&self) -> Option<&ModelSet> {
        self.saved.as_ref()
    }

    /// Marks a run as started (a run going is cancelled) and returns the
    /// job to run, reporting to this view through `waker`.
    pub fn start(&mut self, waker: &Waker) -> TeachingJob {
        let (cancel, sink) = self.job.start(Instant::now(), waker);
        self.dir = None;
        self.data = None;
        self.samples = None;
        self.clouds = 0;
        self.base_loss.clear();
        self.expert_loss = vec![Vec::new(); self.config.experts];
        self.shown_base_steps = self.config.base_steps;
        self.took = None;
        self.error = None;
        self.export.clear();
        TeachingJob {
            config: self.config.clone(),
            cancel,
            sink,
        }
    }

    /// Applies what the run reported since the last frame; returns its end
    /// when it ended.
    pub fn poll(&mut self) -> Option<Outcome<ModelSet>> {
        let started = self.job.progress().copied();
        let mut end = None;
        for report in self.job.poll() {
            match report {
                Report::Update(u) => self.apply(u),
                Report::Finished(outcome) => {
                    self.took = started.map(|t| t.elapsed());
                    match &outcome {
                        Outcome::Done(set) => self.saved = Some(set.clone()),
                        Outcome::Cancelled => {
                            self.error = Some("cancelled".into());
                            self.dir = None;
                        }
                        Outcome::Failed(e) => {
                            self.error = Some(e.clone());
                            self.dir = None;
                        }
                    }
                    end = Some(outcome);
                }
            }
        }
        end
    }

    fn apply(&mut self, update: TeachingUpdate) {
        match update {
            TeachingUpdate::Started { dir, data } => {
                self.dir = Some(dir);
                self.data = Some(data);
            }
            TeachingUpdate::Losses { stage, losses } => {
                for (run, step, loss) in losses {
                    match stage {
                        Stage::Base => self.base_loss.push((step, loss)),
                        Stage::Experts => {
                            if let Some(e) = self.expert_loss.get_mut(run) {
                                e.push((step, loss));
                            }
                        }
                    }
                }
            }
            TeachingUpdate::Samples(cloud) => {
                self.samples = Some(cloud);
                self.clouds += 1;
            }
        }
    }

    /// Starts writing [`super::plots::EXPORT_FILES`] of the run shown into the export
    /// folder; returns the task to run (`None` without a folder).
    pub fn export(&mut self, waker: &Waker) -> Option<Task> {
        let dir = PathBuf::from(self.export_dir.trim());
        if self.export_dir.trim().is_empty() {
            self.export.refuse("choose a folder to export into");
            return None;
        }
        let data = self.data().unwrap_or_default().to_vec();
        let samples = self
            .samples
            .as_ref()
            .map(|c| c.points.clone())
            .unwrap_or_default();
        let (base_loss, expert_loss) = (self.base_loss.clone(), self.expert_loss.clone());
        Some(self.export.start(
            waker,
            "teaching-export",
            "exporting the teaching plots failed".into(),
            move || {
                export_plots(&dir, &data, &samples, &base_loss, &expert_loss)?;
                Ok(Written::said(format!(
                    "exported the teaching plots to {}",
                    dir.display()
                )))
            },
        ))
    }
}

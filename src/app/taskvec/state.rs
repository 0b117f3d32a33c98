//! The task-vector view's state: settings, the computation and the export
//! going, the last result.

use super::job::{EXPORT_FILES, TaskVecJob, TaskVecProgress, TaskVecResult, export_taskvec};
use crate::app::job_slot::{JobSlot, Outcome, Report, Task, Waker};
use crate::app::notice::Notice;
use crate::app::widgets::export_row::{ExportRow, Written};
use crate::engine::analysis::Granularity;
use crate::engine::analysis::tv_stats::TvStats;
use std::path::PathBuf;
use std::sync::Arc;

/// Settings, progress and result of the view.
#[derive(Debug)]
pub struct TaskVecState {
    /// Per block or per layer.
    pub granularity: Granularity,
    /// Only groups whose name contains this (case-insensitive) are plotted.
    pub filter: String,
    /// Magnitudes on a log10 axis.
    pub log_scale: bool,
    /// Page of the per-group plots ([`PAGE_ROWS`] groups a page).
    pub page: usize,
    /// Folder the export writes into.
    pub export_dir: String,
    /// Why the last computation failed.
    pub error: Option<String>,
    pub(super) job: JobSlot<TaskVecProgress, TaskVecResult, TaskVecProgress>,
    pub(super) result: Option<TaskVecResult>,
    /// Whether this set was computed once (so failures are not retried by themselves).
    pub(super) started: bool,
    /// The export of the statistics.
    pub export: ExportRow,
    /// The cosine cell under the pointer, `(row, column)`.
    pub(super) hovered: Option<(usize, usize)>,
}

impl Default for TaskVecState {
    fn default() -> Self {
        Self {
            granularity: Granularity::Block,
            filter: String::new(),
            log_scale: true,
            page: 0,
            export_dir: std::env::current_dir()
                .map(|d| d.join("task-vectors").display().to_string())
                .unwrap_or_default(),
            error: None,
            job: JobSlot::default(),
            result: None,
            started: false,
            export: ExportRow::default(),
            hovered: None,
        }
    }
}

/// What the view asks the app to do.
#[derive(Debug)]
pub enum TaskVecAction {
    /// Start this computation.
    Compute(TaskVecJob),
    /// Run this export of the result (it reports to the view).
    Export(Task),
    /// Open a folder dialog for the export.
    PickFolder,
}

impl TaskVecState {
    /// The last statistics.
    pub fn stats(&self) -> Option<&Arc<TvStats>> {
        self.result.as_ref().map(|r| &r.stats)
    }

    /// The last result with its timing.
    pub fn result(&self) -> Option<&TaskVecResult> {
        self.result.as_ref()
    }

    /// Whether a computation runs.
    pub fn is_running(&self) -> bool {
        self.job.is_running()
    }

    /// Whether an export runs.
    pub fn is_exporting(&self) -> bool {
        self.export.is_running()
    }

    /// Progress of the running computation.
    pub fn progress(&self) -> Option<&TaskVecProgress> {
        self.job.progress()
    }

    /// Marks a computation as started (cancelling one still running) and
    /// returns the job to run, reporting to this view through `waker`.
    pub fn start(&mut self, waker: &Waker) -> TaskVecJob {
        let progress = TaskVecProgress {
            done: 0,
            total: 1,
            stage: "waiting for the models".into(),
        };
        let (cancel, sink) = self.job.start(progress, waker);
        self.started = true;
        self.error = None;
        TaskVecJob {
            granularity: self.granularity,
            cancel,
            sink,
        }
    }

    /// Forgets the result (another model set was opened).
    pub fn reset(&mut self) {
        self.job.clear();
        self.result = None;
        self.error = None;
        self.export.clear();
        self.started = false;
        self.hovered = None;
        self.page = 0;
    }

    /// Whether the view should start a computation by itself (a set is open
    /// and nothing was computed for it yet).
    pub fn wants_auto_start(&self) -> bool {
        !self.started && !self.job.is_running() && self.result.is_none()
    }

    /// Applies what the computation and the export reported since the last
    /// frame; returns what the status bar should say of it.
    pub fn poll(&mut self) -> Vec<Notice> {
        let mut notices = Vec::new();
        for report in self.job.poll() {
            match report {
                Report::Update(p) => {
                    if let Some(progress) = self.job.progress_mut() {
                        *progress = p;
                    }
                }
                Report::Finished(Outcome::Done(r)) => {
                    self.result = Some(r);
                    self.hovered = None;
                }
                Report::Finished(Outcome::Cancelled) => self.error = Some("cancelled".into()),
                Report::Finished(Outcome::Failed(e)) => {
                    notices.push(Notice::error(format!("task vectors: {e}")));
                    self.error = Some(e);
                }
            }
        }
        notices.extend(self.export.poll());
        notices
    }

    /// Starts the export of the statistics into the export folder; returns
    /// the task to run (`None` without a result or a folder).
    pub fn export(&mut self, waker: &Waker) -> Option<TaskVecAction> {
        let stats = self.stats()?.clone();
        let dir = self.export_dir.trim();
        if dir.is_empty() {
            self.export.refuse("choose a folder to export into");
            return None;
        }
        let dir = PathBuf::from(dir);
        let failed = format!("exporting to {} failed", dir.display());
        Some(TaskVecAction::Export(self.export.start(
            waker,
            "taskvec-export",
            failed,
            move || {
                export_taskvec(&stats, &dir)?;
                Ok(Written {
                    note: format!("wrote {} into {}", EXPORT_FILES.join(", "), dir.display()),
                    notice: format!("exported the task-vector statistics to {}", dir.display()),
                })
            },
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::job_slot::{Outcome, Waker};

    #[test]
    fn stale_reports_are_ignored() {
        let mut s = TaskVecState::default();
        let waker = Waker::new(|| {});
        let first = s.start(&waker);
        let second = s.start(&waker);
        assert!(first.cancel.is_cancelled());
        first.sink.finish(Outcome::Cancelled);
        s.poll();
        assert!(s.is_running());
        assert_eq!(s.error, None);
        second.sink.finish(Outcome::Failed("boom".into()));
        s.poll();
        assert!(!s.is_running());
        assert_eq!(s.error.as_deref(), Some("boom"));
        assert!(!s.wants_auto_start());
        s.reset();
        assert!(s.wants_auto_start());
    }
}

//! An export a view runs off the UI thread, and the note of how the last one
//! went, shown under the view's Export button and in the status bar.

use crate::app::job_slot::{JobSlot, Outcome, Report, Task, Waker};
use crate::app::notice::Notice;
use std::fmt;

/// What an export wrote: the note under the button and the status-bar text.
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    /// Shown under the button, e.g. `wrote a.csv, b.png into out/`.
    pub note: String,
    /// Said in the status bar, e.g. `exported the plots to out/`.
    pub notice: String,
}

impl Written {
    /// The same words under the button and in the status bar.
    pub fn said(text: impl Into<String>) -> Self {
        let text = text.into();
        Self {
            note: text.clone(),
            notice: text,
        }
    }
}

/// The export going, if any, and the note of the last one.
#[derive(Default)]
pub struct ExportRow {
    job: JobSlot<(), Written, ()>,
    /// What the last export wrote, or why it failed.
    pub note: Option<Result<String, String>>,
}

impl fmt::Debug for ExportRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ExportRow(running: {}, note: {:?})",
            self.is_running(),
            self.note
        )
    }
}

impl ExportRow {
    /// Whether an export runs.
    pub fn is_running(&self) -> bool {
        self.job.is_running()
    }

    /// Starts an export named `name`: `write` writes the files and says what
    /// it wrote; an error reads `failed: why`. Returns the task to run.
    pub fn start(
        &mut self,
        waker: &Waker,
        name: &'static str,
        failed: String,
        write: impl FnOnce() -> anyhow::Result<Written> + Send + 'static,
    ) -> Task {
        let (_, sink) = self.job.start((), waker);
        self.note = None;
        Task::new(name, move || {
            sink.finish(match write() {
                Ok(w) => Outcome::Done(w),
                Err(e) => Outcome::Failed(format!("{failed}: {e:#}")),
            })
        })
    }

    /// Refuses to export: `why` becomes the note.
    pub fn refuse(&mut self, why: impl Into<String>) {
        self.note = Some(Err(why.into()));
    }

    /// Forgets the note.
    pub fn clear(&mut self) {
        self.note = None;
    }

    /// Applies the end of the export; returns what the status bar says of it.
    pub fn poll(&mut self) -> Option<Notice> {
        let mut notice = None;
        for report in self.job.poll() {
            let Report::Finished(outcome) = report else {
                continue;
            };
            self.note = Some(match outcome {
                Outcome::Done(w) => {
                    notice = Some(Notice::info(w.notice));
                    Ok(w.note)
                }
                Outcome::Cancelled => Err("cancelled".into()),
                Outcome::Failed(e) => {
                    notice = Some(Notice::error(e.clone()));
                    Err(e)
                }
            });
        }
        notice
    }

    /// The note under the button: what was written, or the error in red.
    pub fn note_ui(&self, ui: &mut egui::Ui) {
        match &self.note {
            Some(Ok(text)) => {
                ui.label(text);
            }
            Some(Err(e)) => {
                ui.colored_label(ui.visuals().error_fg_color, e);
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(
        row: &mut ExportRow,
        write: impl FnOnce() -> anyhow::Result<Written> + Send + 'static,
    ) -> Option<Notice> {
        let task = row.start(
            &Waker::new(|| {}),
            "test-export",
            "exporting failed".into(),
            write,
        );
        assert!(row.is_running());
        (task.run)();
        row.poll()
    }

    #[test]
    fn a_done_export_notes_what_it_wrote_and_a_failed_one_why() {
        let mut row = ExportRow::default();
        let n = run(&mut row, || {
            Ok(Written {
                note: "wrote a.csv".into(),
                notice: "exported".into(),
            })
        });
        assert_eq!(n, Some(Notice::info("exported")));
        assert_eq!(row.note, Some(Ok("wrote a.csv".into())));
        assert!(!row.is_running());
        let n = run(&mut row, || anyhow::bail!("disk full"));
        assert_eq!(n, Some(Notice::error("exporting failed: disk full")));
        assert_eq!(row.note, Some(Err("exporting failed: disk full".into())));
        row.refuse("choose a folder");
        assert_eq!(row.note, Some(Err("choose a folder".into())));
    }
}

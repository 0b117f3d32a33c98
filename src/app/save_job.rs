//! Files written off the UI thread: saving the merge, exporting the previews,
//! a gradient-conflict result or a landscape. Each is a [`SaveJob`] (what the
//! status bar says while it runs, and a writer) run on a named thread that
//! reports [`JobEvent`]s.

use super::events::{Emitter, Event, JobEvent};
use super::preview::save_stacked_png;
use crate::engine::analysis::GradSimResult;
use crate::engine::analysis::gradsim_files::write_gradsim_files;
use crate::engine::analysis::landscape::Landscape;
use crate::engine::analysis::landscape_files::write_landscape_files;
use crate::engine::merge::{MergeJob, export_merge};
use anyhow::Result;
use egui::ColorImage;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

/// Reports a stage of a save (shown in the status bar).
pub type Progress<'a> = &'a mut dyn FnMut(&str);

type Writer = Box<dyn FnOnce(Progress) -> Result<String> + Send>;

/// A save to run off the UI thread.
pub struct SaveJob {
    /// Name of the thread it runs on.
    thread: &'static str,
    /// What the status bar says while it runs (None: nothing).
    pub busy: Option<String>,
    /// Start of the message when it fails, e.g. `exporting the previews failed`.
    failed: String,
    /// Writes the files; returns what to say when done.
    write: Writer,
}

impl fmt::Debug for SaveJob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SaveJob({})", self.thread)
    }
}

impl SaveJob {
    /// Saves the merge `job` into `out` (host merge, bit-exact and reproducible).
    pub fn merge(job: MergeJob, out: PathBuf) -> Self {
        Self {
            thread: "save-merge",
            busy: Some(format!("saving the merge to {}", out.display())),
            failed: "saving the merge failed".into(),
            write: Box::new(move |progress| {
                let r = export_merge(&job, &out, progress)?;
                Ok(format!(
                    "saved the merge to {} ({} values; recipe {}){}",
                    r.dir.display(),
                    r.num_values,
                    r.recipe_path.display(),
                    match &r.projections {
                        Some(_) =>
                            "; it has channel-wise projections: load it in diffusers \
                             with the deme_unet.py saved beside it (see its README.md)",
                        None => "",
                    }
                ))
            }),
        }
    }

    /// Writes `images` one above the other as the PNG `path`.
    pub fn previews(images: Vec<ColorImage>, path: PathBuf) -> Self {
        Self {
            thread: "export-png",
            busy: None,
            failed: "exporting the previews failed".into(),
            write: Box::new(move |_| {
                let refs: Vec<&ColorImage> = images.iter().collect();
                save_stacked_png(&refs, &path)?;
                Ok(format!("exported the previews to {}", path.display()))
            }),
        }
    }

    /// Writes a gradient-conflict result into `dir` (the `gradsim` command's files).
    pub fn gradsim(result: Arc<GradSimResult>, dir: PathBuf) -> Self {
        Self {
            thread: "export-gradsim",
            busy: Some(format!("exporting to {}", dir.display())),
            failed: "exporting the gradient conflicts failed".into(),
            write: Box::new(move |_| {
                write_gradsim_files(&result, &dir)?;
                Ok(format!(
                    "exported the gradient conflicts to {}",
                    dir.display()
                ))
            }),
        }
    }

    /// Writes a landscape into `dir` (the `landscape` command's files).
    pub fn landscape(ls: Arc<Landscape>, dir: PathBuf) -> Self {
        Self {
            thread: "export-landscape",
            busy: Some(format!("exporting the landscape to {}…", dir.display())),
            failed: "exporting the landscape failed".into(),
            write: Box::new(move |_| {
                let files = write_landscape_files(&ls, &dir)?;
                Ok(format!(
                    "exported the landscape to {} ({} files: CSV, JSON, and a PNG and a numpy grid per surface)",
                    dir.display(),
                    files.len()
                ))
            }),
        }
    }
}

/// Runs `job` on a thread of its own, reporting its stages and its end.
pub fn spawn_save(job: SaveJob, emit: Emitter) {
    let SaveJob {
        thread,
        failed,
        write,
        ..
    } = job;
    let _ = std::thread::Builder::new()
        .name(thread.into())
        .spawn(move || {
            let progress_emit = emit.clone();
            let mut progress =
                |s: &str| progress_emit.emit(Event::Job(JobEvent::Progress(s.to_string())));
            let event = match write(&mut progress) {
                Ok(done) => JobEvent::Done(done),
                Err(e) => JobEvent::Failed(format!("{failed}: {e:#}")),
            };
            emit.emit(Event::Job(event));
        });
}

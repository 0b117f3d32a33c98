//! Saving the merge (checkpoint + recipe) and exporting the preview grid, each
//! on a named thread reporting [`JobEvent`]s.

use super::events::{Emitter, Event, JobEvent};
use super::preview::save_stacked_png;
use crate::engine::merge::{MergeJob, export_merge};
use egui::ColorImage;
use std::path::PathBuf;

/// Writes the merge `job` into `out` (host merge, bit-exact and reproducible).
pub fn spawn_save_merge(job: MergeJob, out: PathBuf, emit: Emitter) {
    let _ = std::thread::Builder::new()
        .name("save-merge".into())
        .spawn(move || {
            let progress_emit = emit.clone();
            let mut progress =
                |s: &str| progress_emit.emit(Event::Job(JobEvent::Progress(s.to_string())));
            let event = match export_merge(&job, &out, &mut progress) {
                Ok(r) => JobEvent::Done(format!(
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
                )),
                Err(e) => JobEvent::Failed(format!("saving the merge failed: {e:#}")),
            };
            emit.emit(Event::Job(event));
        });
}

/// Writes `images` one above the other as the PNG `path`.
pub fn spawn_export_png(images: Vec<ColorImage>, path: PathBuf, emit: Emitter) {
    let _ = std::thread::Builder::new()
        .name("export-png".into())
        .spawn(move || {
            let refs: Vec<&ColorImage> = images.iter().collect();
            let event = match save_stacked_png(&refs, &path) {
                Ok(()) => JobEvent::Done(format!("exported the previews to {}", path.display())),
                Err(e) => JobEvent::Failed(format!("exporting the previews failed: {e:#}")),
            };
            emit.emit(Event::Job(event));
        });
}

/// Writes a gradient-conflict result into `dir` (the `gradsim` command's
/// files) on a thread of its own, reporting the outcome.
pub fn spawn_export_gradsim(
    result: std::sync::Arc<crate::engine::analysis::GradSimResult>,
    dir: PathBuf,
    emit: Emitter,
) {
    let _ = std::thread::Builder::new()
        .name("export-gradsim".into())
        .spawn(move || {
            let event =
                match crate::engine::analysis::gradsim_files::write_gradsim_files(&result, &dir) {
                    Ok(()) => JobEvent::Done(format!(
                        "exported the gradient conflicts to {}",
                        dir.display()
                    )),
                    Err(e) => {
                        JobEvent::Failed(format!("exporting the gradient conflicts failed: {e:#}"))
                    }
                };
            emit.emit(Event::Job(event));
        });
}

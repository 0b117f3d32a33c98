//! Native file dialogs (rfd), each on its own short-lived thread so the UI
//! keeps drawing while one is open; the choice comes back through a job sink.

use super::job_slot::{Outcome, Sink};
use std::path::PathBuf;

/// Which dialog, and what its answer is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialogKind {
    /// Pick the base model folder.
    OpenBase,
    /// Pick one or more expert folders (in range order).
    OpenExperts,
    /// Pick a folder holding `base/` and `deme/expert_*`.
    OpenSet,
    /// Pick the folder to save the merge into.
    SaveMerge,
    /// Pick the PNG file for the preview grid.
    ExportPng,
    /// Pick the folder the task-vector statistics are exported into.
    ExportTaskVectors,
    /// Pick the Train view's output folder.
    TrainOutput,
    /// Pick the base model folder the Train view finetunes.
    TrainBase,
}

/// A dialog's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct DialogOutcome {
    /// The dialog.
    pub kind: DialogKind,
    /// What was chosen (empty when cancelled).
    pub paths: Vec<PathBuf>,
}

/// Where a dialog's answer goes.
pub type DialogSink = Sink<(), DialogOutcome>;

/// Opens dialog `kind` starting in `dir` on a thread named `file-dialog`.
pub fn open_dialog(kind: DialogKind, dir: Option<PathBuf>, sink: DialogSink) {
    // without a thread there is no dialog; the button simply does nothing
    let _ = std::thread::Builder::new()
        .name("file-dialog".into())
        .spawn(move || {
            let mut d = rfd::FileDialog::new();
            if let Some(dir) = &dir {
                d = d.set_directory(dir);
            }
            let paths: Vec<PathBuf> = match kind {
                DialogKind::OpenBase => d
                    .set_title("Open the base model folder")
                    .pick_folder()
                    .into_iter()
                    .collect(),
                DialogKind::OpenExperts => d
                    .set_title("Open the expert folders (expert_1 .. expert_N)")
                    .pick_folders()
                    .unwrap_or_default(),
                DialogKind::OpenSet => d
                    .set_title("Open a model set (a folder with base/ and deme/expert_*)")
                    .pick_folder()
                    .into_iter()
                    .collect(),
                DialogKind::SaveMerge => d
                    .set_title("Save the merge into a folder")
                    .set_can_create_directories(true)
                    .pick_folder()
                    .into_iter()
                    .collect(),
                DialogKind::ExportPng => d
                    .set_title("Export the preview grid")
                    .add_filter("PNG image", &["png"])
                    .set_file_name("previews.png")
                    .save_file()
                    .into_iter()
                    .collect(),
                DialogKind::ExportTaskVectors => d
                    .set_title("Export the task-vector statistics into a folder")
                    .set_can_create_directories(true)
                    .pick_folder()
                    .into_iter()
                    .collect(),
                DialogKind::TrainOutput => d
                    .set_title("Choose the output folder")
                    .set_can_create_directories(true)
                    .pick_folder()
                    .into_iter()
                    .collect(),
                DialogKind::TrainBase => d
                    .set_title("Choose the base model folder")
                    .pick_folder()
                    .into_iter()
                    .collect(),
            };
            sink.finish(Outcome::Done(DialogOutcome { kind, paths }));
        });
}

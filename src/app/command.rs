//! What a page asks the app to do. Pages draw their own state and return
//! commands; `StudioApp::run_command` runs every one of them in one place.

use super::dialogs::DialogKind;
use super::job_slot::Task;
use super::merge_worker::Command;
use super::models_panel::ModelsAction;
use super::notice::Notice;
use super::save_job::SaveJob;
use super::settings::View;
use crate::engine::model_set::ModelSet;

/// A request from a page to the app.
#[derive(Debug)]
pub enum AppCommand {
    /// Hand work to the merge worker, which owns the open models.
    Worker(Command),
    /// Open a file dialog (one at a time; its answer comes back to the app).
    Dialog(DialogKind),
    /// Open this model set.
    Open(ModelSet),
    /// Open the shipped default set.
    OpenDefault,
    /// Show another view.
    SwitchView(View),
    /// Say this in the status bar.
    Tell(Notice),
    /// Write files off the UI thread; the status bar follows it.
    Save(SaveJob),
    /// Start a view's own background job on a thread (it reports to the
    /// view's job slot).
    Spawn(Task),
    /// Set the merge weights (a click on the landscape, or a drag still going).
    SetWeights {
        /// The weights.
        weights: Vec<f32>,
        /// Whether the pointer is still held (fast previews, one undo entry per drag).
        dragging: bool,
    },
    /// A drag that set the merge weights ended.
    EndDrag,
    /// Start the Train view's job with its form's settings.
    StartTraining,
    /// Export the task-vector statistics into the Task-vectors view's folder.
    ExportTaskVectors,
    /// Finetune on these range boundaries: fill the Train view's form and show it.
    UseBoundaries(Vec<usize>),
}

impl From<ModelsAction> for AppCommand {
    fn from(a: ModelsAction) -> Self {
        match a {
            ModelsAction::OpenBase => Self::Dialog(DialogKind::OpenBase),
            ModelsAction::OpenExperts => Self::Dialog(DialogKind::OpenExperts),
            ModelsAction::OpenSet => Self::Dialog(DialogKind::OpenSet),
            ModelsAction::OpenDefault => Self::OpenDefault,
        }
    }
}

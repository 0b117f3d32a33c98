//! The TaskVec view.

use super::frame::StudioApp;
use super::taskvec_job::TaskVecUpdate;

/// State of the TaskVec view.
#[derive(Debug, Default)]
pub struct TaskVecState {}

impl TaskVecState {
    /// Forgets results tied to the open model set.
    pub fn reset(&mut self) {}
}

impl StudioApp {
    /// Draws the TaskVec view.
    pub(super) fn taskvec_page_ui(&mut self, ui: &mut egui::Ui) {
        egui::CentralPanel::default().show(ui, |ui| ui.label("not built yet"));
    }

    /// Applies an update from the TaskVec view's background work.
    pub(super) fn on_taskvec(&mut self, u: TaskVecUpdate) {
        match u {}
    }
}

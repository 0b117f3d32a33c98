//! The Teaching view.

use super::frame::StudioApp;
use super::teaching_job::TeachingUpdate;

/// State of the Teaching view.
#[derive(Debug, Default)]
pub struct TeachingState {}

impl TeachingState {
    /// Forgets results tied to the open model set.
    pub fn reset(&mut self) {}
}

impl StudioApp {
    /// Draws the Teaching view.
    pub(super) fn teaching_page_ui(&mut self, ui: &mut egui::Ui) {
        egui::CentralPanel::default().show(ui, |ui| ui.label("not built yet"));
    }

    /// Applies an update from the Teaching view's background work.
    pub(super) fn on_teaching(&mut self, u: TeachingUpdate) {
        match u {}
    }
}

//! The Landscape view.

use super::frame::StudioApp;
use super::landscape_job::LandscapeUpdate;

/// State of the Landscape view.
#[derive(Debug, Default)]
pub struct LandscapeState {}

impl LandscapeState {
    /// Forgets results tied to the open model set.
    pub fn reset(&mut self) {}
}

impl StudioApp {
    /// Draws the Landscape view.
    pub(super) fn landscape_page_ui(&mut self, ui: &mut egui::Ui) {
        egui::CentralPanel::default().show(ui, |ui| ui.label("not built yet"));
    }

    /// Applies an update from the Landscape view's background work.
    pub(super) fn on_landscape(&mut self, u: LandscapeUpdate) {
        match u {}
    }
}

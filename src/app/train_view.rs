//! The Train view.

use super::frame::StudioApp;
use super::train_job::TrainUpdate;

/// State of the Train view.
#[derive(Debug, Default)]
pub struct TrainState {}

impl TrainState {
    /// Forgets results tied to the open model set.
    pub fn reset(&mut self) {}
}

impl StudioApp {
    /// Draws the Train view.
    pub(super) fn train_page_ui(&mut self, ui: &mut egui::Ui) {
        egui::CentralPanel::default().show(ui, |ui| ui.label("not built yet"));
    }

    /// Applies an update from the Train view's background work.
    pub(super) fn on_train(&mut self, u: TrainUpdate) {
        match u {}
    }
}

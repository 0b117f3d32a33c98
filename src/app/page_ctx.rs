//! What every page may read of the app besides its own state.

use super::command::AppCommand;
use super::job_slot::Waker;
use super::models_panel::{ModelsState, empty_state_ui};
use crate::engine::model_set::ModelSet;
use burn::tensor::Device;

/// A read-only view of the app for the pages.
pub struct PageCtx<'a> {
    /// The open models (and the set loading).
    pub models: &'a ModelsState,
    /// The shipped default set, when present.
    pub default_set: Option<&'a ModelSet>,
    /// Wakes the UI when a page's background job reports.
    pub waker: &'a Waker,
    /// Where models live (background jobs run their own models here).
    pub device: &'a Device,
}

impl PageCtx<'_> {
    /// The page of a view that needs an open model set, while none is open:
    /// its heading, why it needs one, and the buttons that open one.
    pub fn no_models_page(&self, ui: &mut egui::Ui, heading: &str, why: &str) -> Vec<AppCommand> {
        egui::CentralPanel::default()
            .show(ui, |ui| {
                ui.heading(heading);
                ui.label(why);
                self.open_models_ui(ui)
            })
            .inner
    }

    /// While no model set is open: whether one is loading, and the buttons
    /// that open one.
    pub fn open_models_ui(&self, ui: &mut egui::Ui) -> Vec<AppCommand> {
        if self.models.loading.is_some() {
            ui.label("loading the models…");
        }
        empty_state_ui(ui, self.models, self.default_set.is_some())
            .into_iter()
            .map(AppCommand::from)
            .collect()
    }
}

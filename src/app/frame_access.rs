//! The app's state as the window's tests and the benchmarks read and set it.

use super::events::Activity;
use super::frame::StudioApp;
use super::gradsim::GradSimState;
use super::landscape::LandscapeState;
use super::merge::grid_panel::GridState;
use super::merge::state::MergeState;
use super::models_panel::ModelsState;
use super::notice::Notice;
use super::settings::{Settings, View};
use super::taskvec::TaskVecState;
use super::teaching::TeachingState;
use super::train::TrainState;

impl StudioApp {
    /// The merge view's state.
    pub fn merge(&self) -> &MergeState {
        &self.merge
    }

    /// The merge view's state, mutably (tests drive edits through it).
    pub fn merge_mut(&mut self) -> &mut MergeState {
        &mut self.merge
    }

    /// The models panel's state.
    pub fn models(&self) -> &ModelsState {
        &self.models
    }

    /// Grid-search state.
    pub fn grid(&self) -> &GridState {
        &self.grid
    }

    /// Grid-search state, mutably (tests change its settings).
    pub fn grid_mut(&mut self) -> &mut GridState {
        &mut self.grid
    }

    /// The gradient-conflict view's state.
    pub fn gradsim(&self) -> &GradSimState {
        &self.gradsim
    }

    /// The gradient-conflict view's state, mutably (tests change its settings).
    pub fn gradsim_mut(&mut self) -> &mut GradSimState {
        &mut self.gradsim
    }

    /// The settings (persisted at exit).
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The view shown.
    pub fn view(&self) -> View {
        self.settings.view
    }

    /// Switches the view.
    pub fn set_view(&mut self, view: View) {
        self.settings.view = view;
    }

    /// The last status-bar message.
    pub fn notice(&self) -> Option<&Notice> {
        self.notice.as_ref()
    }

    /// Whether the worker is idle and nothing is waiting to be sent.
    pub fn is_idle(&self) -> bool {
        self.activity == Activity::Idle
            && self.models.loading.is_none()
            && !self.merge.has_pending_request()
    }

    /// The Landscape view's state.
    pub fn landscape(&self) -> &LandscapeState {
        &self.landscape
    }

    /// The Landscape view's state, mutably (tests change its settings).
    pub fn landscape_mut(&mut self) -> &mut LandscapeState {
        &mut self.landscape
    }

    /// The task-vector view's state.
    pub fn taskvec(&self) -> &TaskVecState {
        &self.taskvec
    }

    /// The task-vector view's state, mutably (tests change its settings).
    pub fn taskvec_mut(&mut self) -> &mut TaskVecState {
        &mut self.taskvec
    }

    /// The Teaching view's state.
    pub fn teaching(&self) -> &TeachingState {
        &self.teaching
    }

    /// The Teaching view's state, mutably (tests shorten the run).
    pub fn teaching_mut(&mut self) -> &mut TeachingState {
        &mut self.teaching
    }

    /// The Train view's state.
    pub fn train(&self) -> &TrainState {
        &self.train
    }

    /// The Train view's state, mutably (tests edit its form).
    pub fn train_mut(&mut self) -> &mut TrainState {
        &mut self.train
    }
}

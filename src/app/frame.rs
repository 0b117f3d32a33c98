//! The application frame: top bar with the views, models side panel, status
//! bar, the event loop between the UI and background work, persistence.

use super::about::About;
use super::dialogs::{DialogKind, DialogOutcome, open_dialog};
use super::events::{Activity, Emitter, Event, JobEvent};
use super::export_job::{spawn_export_gradsim, spawn_export_png, spawn_save_merge};
use super::gradsim_view::{GradSimAction, GradSimState, gradsim_ui};
use super::grid_panel::{GridAction, GridState};
use super::job_slot::{JobSlot, Outcome, Report};
use super::landscape_view::LandscapeState;
use super::merge_state::MergeState;
use super::merge_view::{MergeAction, central_ui, controls_ui};
use super::merge_worker::{Command, MergeWorker};
use super::models_panel::{ModelsAction, ModelsState, empty_state_ui, models_panel_ui};
pub use super::notice::Notice;
use super::preview::Panel;
use super::settings::{Settings, View};
use super::taskvec_view::TaskVecState;
use super::teaching_view::TeachingState;
use super::train_view::TrainState;
use crate::engine::device::ComputeDevice;
use crate::engine::merge::MergeJob;
use crate::engine::model_set::{ModelSet, default_set};
use burn::tensor::Device;
use egui::{Key, KeyboardShortcut, Modifiers};
use std::path::{Path, PathBuf};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};

const UNDO: KeyboardShortcut = KeyboardShortcut::new(Modifiers::COMMAND, Key::Z);
const REDO: KeyboardShortcut =
    KeyboardShortcut::new(Modifiers::COMMAND.plus(Modifiers::SHIFT), Key::Z);
const REDO_Y: KeyboardShortcut = KeyboardShortcut::new(Modifiers::COMMAND, Key::Y);

/// How to start the app (the window passes what eframe gives; tests their own).
pub struct StartOptions {
    /// Why this compute device (shown in the status bar).
    pub compute_reason: String,
    /// Where the models live.
    pub device: Device,
    /// The set to open at once, if any.
    pub models: Option<ModelSet>,
    /// The shipped default set, if present.
    pub default_set: Option<ModelSet>,
    /// Persisted settings.
    pub settings: Settings,
    /// The renderer's adapter, when known.
    pub renderer: Option<String>,
}

impl StartOptions {
    /// Flex CPU compute, no models, default settings.
    pub fn cpu(compute_reason: impl Into<String>) -> Self {
        Self {
            compute_reason: compute_reason.into(),
            device: Device::flex(),
            models: None,
            default_set: None,
            settings: Settings::default(),
            renderer: None,
        }
    }
}

/// Application state.
pub struct StudioApp {
    pub(super) settings: Settings,
    pub(super) compute_reason: String,
    /// Where models live (background jobs run their own models here).
    pub(super) device: Device,
    pub(super) renderer: Option<String>,
    pub(super) default_set: Option<ModelSet>,
    pub(super) about: About,
    pub(super) models: ModelsState,
    pub(super) merge: MergeState,
    pub(super) grid: GridState,
    pub(super) gradsim: GradSimState,
    pub(super) train: TrainState,
    pub(super) landscape: LandscapeState,
    pub(super) taskvec: TaskVecState,
    pub(super) teaching: TeachingState,
    pub(super) worker: MergeWorker,
    pub(super) emit: Emitter,
    pub(super) events: Receiver<Event>,
    pub(super) ctx_slot: Arc<Mutex<Option<egui::Context>>>,
    pub(super) activity: Activity,
    pub(super) job: Option<String>,
    pub(super) notice: Option<Notice>,
    /// The file dialog open, if any (one at a time).
    pub(super) dialog: JobSlot<(), DialogOutcome, DialogKind>,
    pub(super) show_models: bool,
}

impl StudioApp {
    /// Builds the app for the window: persisted settings, then the last set
    /// opened (if it still exists) or the shipped default.
    pub fn new(cc: &eframe::CreationContext<'_>, compute: ComputeDevice) -> Self {
        let settings = Settings::load(cc.storage);
        let default_set = default_set();
        let models = settings
            .last_set
            .clone()
            .filter(ModelSet::exists)
            .or_else(|| default_set.clone());
        let renderer = cc.wgpu_render_state.as_ref().map(|rs| {
            let info = rs.adapter.get_info();
            let software = info.device_type == wgpu::DeviceType::Cpu;
            format!(
                "{}{} ({:?})",
                if software { "software rendering: " } else { "" },
                info.name,
                info.backend
            )
        });
        let app = Self::headless(StartOptions {
            compute_reason: compute.reason,
            device: compute.device,
            models,
            default_set,
            settings,
            renderer,
        });
        *app.ctx_slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(cc.egui_ctx.clone());
        app
    }

    /// The app without a window (UI tests drive it through [`Self::page_ui`]).
    pub fn headless(opts: StartOptions) -> Self {
        let ctx_slot: Arc<Mutex<Option<egui::Context>>> = Arc::new(Mutex::new(None));
        let slot = ctx_slot.clone();
        let (emit, events) = Emitter::channel(Arc::new(move || {
            if let Some(ctx) = slot.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
                ctx.request_repaint();
            }
        }));
        let worker = MergeWorker::spawn(opts.device.clone(), opts.settings.preview, emit.clone());
        let mut app = Self {
            merge: MergeState::with_lock(opts.settings.lock_sum),
            settings: opts.settings,
            compute_reason: opts.compute_reason,
            device: opts.device,
            renderer: opts.renderer,
            default_set: opts.default_set,
            about: About::default(),
            models: ModelsState::default(),
            grid: GridState::default(),
            gradsim: GradSimState::default(),
            train: TrainState::default(),
            landscape: LandscapeState::default(),
            taskvec: TaskVecState::default(),
            teaching: TeachingState::default(),
            worker,
            emit,
            events,
            ctx_slot,
            activity: Activity::Idle,
            job: None,
            notice: None,
            dialog: JobSlot::default(),
            show_models: true,
        };
        if let Some(set) = opts.models {
            app.open(set);
        }
        app
    }

    /// The app on flex CPU compute that opens the shipped default set when present.
    pub fn with_reason(compute_reason: String) -> Self {
        let default_set = default_set();
        Self::headless(StartOptions {
            models: default_set.clone(),
            default_set,
            ..StartOptions::cpu(compute_reason)
        })
    }

    /// Starts loading `set` (the open set stays until it has loaded).
    pub fn open(&mut self, set: ModelSet) {
        self.models.loading = Some(set.clone());
        self.models.error = None;
        self.worker.send(Command::Load(set));
    }

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

    pub(super) fn tell(&mut self, text: impl Into<String>, error: bool) {
        self.notice = Some(Notice {
            text: text.into(),
            error,
        });
    }

    /// Saves the current merge (checkpoint + recipe) into `dir` in the background.
    pub fn save_merge_to(&mut self, dir: PathBuf) {
        let Some(info) = &self.models.info else {
            self.tell("open models before saving a merge", true);
            return;
        };
        let job = MergeJob {
            base: info.set.base.clone(),
            experts: info.set.experts.clone(),
            spec: self.merge.spec(),
            output: None,
            drop_projections: false,
        };
        self.job = Some(format!("saving the merge to {}", dir.display()));
        spawn_save_merge(job, dir, self.emit.clone());
    }

    /// Exports the previews shown (side by side) as the PNG `path` in the background.
    pub fn export_png_to(&mut self, path: PathBuf) {
        let images: Vec<egui::ColorImage> = Panel::ALL
            .iter()
            .filter_map(|&p| self.merge.panel(p).image().cloned())
            .collect();
        spawn_export_png(images, path, self.emit.clone());
    }

    pub(super) fn dialog(&mut self, kind: DialogKind) {
        if self.dialog.is_running() {
            return;
        }
        let start = match kind {
            DialogKind::ExportTaskVectors => Some(PathBuf::from(self.taskvec.export_dir.trim()))
                .filter(|p| p.is_dir())
                .or_else(|| self.settings.last_dir.clone()),
            _ => self.settings.last_dir.clone(),
        };
        let (_, sink) = self.dialog.start(kind, self.emit.waker());
        open_dialog(kind, start, sink);
    }

    fn on_dialog(&mut self, out: DialogOutcome) {
        let Some(first) = out.paths.first().cloned() else {
            return; // cancelled
        };
        let parent_of = |p: &Path| p.parent().map(Path::to_path_buf);
        self.settings.last_dir = match out.kind {
            DialogKind::OpenSet | DialogKind::SaveMerge | DialogKind::ExportTaskVectors => {
                Some(first.clone())
            }
            _ => parent_of(&first),
        };
        match out.kind {
            DialogKind::OpenBase => {
                if let Some(set) = self.models.pick_base(first) {
                    self.open(set);
                }
            }
            DialogKind::OpenExperts => {
                if let Some(set) = self.models.pick_experts(out.paths) {
                    self.open(set);
                }
            }
            DialogKind::OpenSet => match ModelSet::discover(&first) {
                Some(set) => self.open(set),
                None => {
                    self.models.error = Some(format!(
                        "{} holds no model set: expected base/ (with config.json) and deme/expert_1 … (or FT/expert_1 …)",
                        first.display()
                    ));
                }
            },
            DialogKind::SaveMerge => self.save_merge_to(first),
            DialogKind::ExportPng => self.export_png_to(first),
            DialogKind::ExportTaskVectors => {
                self.taskvec.export_dir = first.display().to_string();
                self.export_taskvec();
            }
            DialogKind::TrainOutput => self.train.form.out = first.display().to_string(),
            DialogKind::TrainBase => self.train.form.base = first.display().to_string(),
        }
    }

    /// Applies everything background work reported since the last frame.
    pub fn poll_events(&mut self) {
        self.gradsim.poll();
        self.landscape.poll();
        for notice in self.taskvec.poll() {
            self.notice = Some(notice);
        }
        self.poll_teaching();
        self.poll_train();
        for report in self.dialog.poll() {
            if let Report::Finished(Outcome::Done(out)) = report {
                self.on_dialog(out);
            }
        }
        while let Ok(event) = self.events.try_recv() {
            match event {
                Event::Activity(a) => self.activity = a,
                Event::Loaded(info) => {
                    self.merge.reset_for(&info);
                    self.grid.reset();
                    self.gradsim.reset();
                    self.landscape.reset();
                    self.taskvec.reset();
                    self.settings.last_set = Some(info.set.clone());
                    self.models.loading = None;
                    self.models.error = None;
                    self.tell(
                        format!(
                            "opened {}: base + {} experts",
                            info.set.name(),
                            info.num_experts()
                        ),
                        false,
                    );
                    self.models.info = Some(*info);
                }
                Event::LoadFailed { set, message } => {
                    if self.models.loading.as_ref() == Some(&set) {
                        self.models.loading = None;
                    }
                    self.tell("could not open the models (see the models panel)", true);
                    self.models.error = Some(message);
                    // a request dropped while loading is asked again
                    self.merge.settings_changed();
                }
                Event::Preview(p) => self.merge.apply_preview(p),
                Event::Loss(l) => self.merge.apply_loss(l),
                Event::MergeFailed(m) => self.merge.error = Some(m),
                Event::Grid(u) => self.grid.apply(u),
                Event::Job(JobEvent::Progress(s)) => self.job = Some(s),
                Event::Job(JobEvent::Done(s)) => {
                    self.job = None;
                    self.tell(s, false);
                }
                Event::Job(JobEvent::Failed(s)) => {
                    self.job = None;
                    self.tell(s, true);
                }
            }
        }
    }

    fn shortcuts(&mut self, ctx: &egui::Context) {
        if ctx.egui_wants_keyboard_input() || self.settings.view != View::Merge {
            return;
        }
        let (redo, undo) = ctx.input_mut(|i| {
            let redo = i.consume_shortcut(&REDO) || i.consume_shortcut(&REDO_Y);
            (redo, i.consume_shortcut(&UNDO))
        });
        if redo {
            self.merge.redo();
        } else if undo {
            self.merge.undo();
        }
    }

    fn top_bar_ui(&mut self, ui: &mut egui::Ui) {
        egui::Panel::top("top-bar").show(ui, |ui| {
            ui.horizontal(|ui| {
                ui.strong("deme-studio");
                ui.separator();
                ui.selectable_value(&mut self.settings.view, View::Merge, "Merge")
                    .on_hover_text("merge weights, previews, held-out loss, grid search");
                ui.selectable_value(&mut self.settings.view, View::About, "Models & about")
                    .on_hover_text("the open models in detail, the data, the device");
                ui.selectable_value(
                    &mut self.settings.view,
                    View::GradientConflicts,
                    "Gradient conflicts",
                )
                .on_hover_text("per-timestep gradient cosine similarities of the base model");
                ui.selectable_value(&mut self.settings.view, View::Landscape, "Landscape")
                    .on_hover_text("held-out loss on the plane of two task vectors; click to set the merge weights");
                ui.selectable_value(&mut self.settings.view, View::TaskVectors, "Task vectors")
                    .on_hover_text("norms, per-layer spreads and cosines of the experts' task vectors");
                ui.selectable_value(&mut self.settings.view, View::Train, "Train")
                    .on_hover_text("pretrain a base and finetune its timestep-range experts");
                ui.selectable_value(&mut self.settings.view, View::Teaching, "Teaching")
                    .on_hover_text("2D toy data with a small MLP: the whole method in seconds");
                if self.settings.view == View::Merge && self.models.info.is_some() {
                    ui.separator();
                    ui.toggle_value(&mut self.show_models, "Models panel")
                        .on_hover_text("show or hide the models side panel");
                }
            });
        });
    }

    fn status_bar_ui(&mut self, ui: &mut egui::Ui) {
        egui::Panel::bottom("status-bar").show(ui, |ui| {
            ui.horizontal_wrapped(|ui| {
                ui.label(format!("compute: {}", self.compute_reason))
                    .on_hover_text("the device the models run on, and why it was chosen (--device auto|wgpu|cpu)");
                if let Some(r) = &self.renderer {
                    ui.separator();
                    ui.label(format!("display: {r}"));
                }
                ui.separator();
                // text, not a spinner: a spinner repaints every frame, which
                // costs a CPU core under software rendering
                ui.label(format!("worker: {}", self.activity));
                let l = self.merge.latency();
                if let Some(first) = l.first {
                    let ms = |d: std::time::Duration| format!("{:.0} ms", d.as_secs_f64() * 1e3);
                    let done = l.done.map_or("…".to_string(), ms);
                    ui.separator();
                    ui.label(format!(
                        "preview: first picture {}, done {done} ({} DDIM steps)",
                        ms(first),
                        l.steps
                    ))
                    .on_hover_text(
                        "time from the weight change to the first updated picture and to the finished one",
                    );
                }
                if let Some(job) = &self.job {
                    ui.separator();
                    ui.label(job);
                }
                if let Some(n) = &self.notice {
                    ui.separator();
                    if n.error {
                        ui.colored_label(ui.visuals().error_fg_color, &n.text);
                    } else {
                        ui.label(&n.text);
                    }
                }
            });
        });
    }

    pub(super) fn handle_models_actions(&mut self, actions: Vec<ModelsAction>) {
        for a in actions {
            match a {
                ModelsAction::OpenBase => self.dialog(DialogKind::OpenBase),
                ModelsAction::OpenExperts => self.dialog(DialogKind::OpenExperts),
                ModelsAction::OpenSet => self.dialog(DialogKind::OpenSet),
                ModelsAction::OpenDefault => {
                    if let Some(set) = self.default_set.clone() {
                        self.open(set);
                    }
                }
            }
        }
    }

    fn handle_merge_actions(&mut self, actions: Vec<MergeAction>) {
        for a in actions {
            match a {
                MergeAction::SaveMerge => self.dialog(DialogKind::SaveMerge),
                MergeAction::ExportPng => self.dialog(DialogKind::ExportPng),
                MergeAction::Grid(GridAction::Start(job)) => self.worker.send(Command::Grid(job)),
                MergeAction::Grid(GridAction::Load(w)) => self.merge.set_weights(&w),
                MergeAction::PreviewSettings => {
                    self.worker.send(Command::Configure(self.settings.preview));
                    self.merge.refresh();
                }
            }
        }
    }

    fn merge_page_ui(&mut self, ui: &mut egui::Ui) {
        let has_default = self.default_set.is_some();
        if self.models.info.is_none() {
            egui::CentralPanel::default().show(ui, |ui| {
                if self.models.loading.is_some() {
                    ui.label("loading the models…");
                }
                let actions = empty_state_ui(ui, &self.models, has_default);
                self.handle_models_actions(actions);
            });
            return;
        }
        if self.show_models {
            let actions = egui::Panel::left("models-panel")
                .default_size(240.0)
                .resizable(true)
                .show(ui, |ui| {
                    models_panel_ui(ui, &self.models, has_default, false)
                })
                .inner;
            self.handle_models_actions(actions);
        }
        let saving = self.job.is_some();
        let actions = egui::Panel::right("merge-controls")
            .default_size(330.0)
            .resizable(true)
            .show(ui, |ui| {
                egui::ScrollArea::vertical()
                    .id_salt("controls-scroll")
                    .show(ui, |ui| {
                        controls_ui(ui, &mut self.merge, &mut self.settings.preview, saving)
                    })
                    .inner
            })
            .inner;
        self.handle_merge_actions(actions);
        let can_search = self.models.info.as_ref().is_some_and(|i| i.eval.is_ok());
        let fine = self.settings.preview.fine_steps;
        let actions = egui::CentralPanel::default()
            .show(ui, |ui| {
                central_ui(ui, &mut self.merge, &mut self.grid, can_search, fine)
            })
            .inner;
        self.handle_merge_actions(actions);
    }

    fn about_page_ui(&mut self, ui: &mut egui::Ui) {
        let has_default = self.default_set.is_some();
        let actions = egui::Panel::left("models-detail")
            .default_size(420.0)
            .resizable(true)
            .show(ui, |ui| {
                models_panel_ui(ui, &self.models, has_default, true)
            })
            .inner;
        self.handle_models_actions(actions);
        egui::CentralPanel::default().show(ui, |ui| self.about.ui(ui));
    }

    fn gradsim_page_ui(&mut self, ui: &mut egui::Ui) {
        // a training run's live result shows even without an open set
        if self.models.info.is_none() && self.gradsim.source().is_none() {
            let has_default = self.default_set.is_some();
            egui::CentralPanel::default().show(ui, |ui| {
                ui.heading("Gradient conflicts of the base model");
                ui.label("Open a model set: this view computes the gradient conflicts of its base model.");
                if self.models.loading.is_some() {
                    ui.label("loading the models…");
                }
                let actions = empty_state_ui(ui, &self.models, has_default);
                self.handle_models_actions(actions);
            });
            return;
        }
        let actions = egui::CentralPanel::default()
            .show(ui, |ui| {
                gradsim_ui(ui, &mut self.gradsim, self.emit.waker())
            })
            .inner;
        for a in actions {
            match a {
                GradSimAction::Compute(job) => self.worker.send(Command::GradSim(job)),
                GradSimAction::Export(result, dir) => {
                    self.job = Some(format!("exporting to {}", dir.display()));
                    spawn_export_gradsim(result, dir, self.emit.clone());
                }
            }
        }
    }

    /// Draws the whole window into `ui` and sends any new preview request.
    pub fn page_ui(&mut self, ui: &mut egui::Ui) {
        {
            let mut slot = self.ctx_slot.lock().unwrap_or_else(|e| e.into_inner());
            if slot.is_none() {
                *slot = Some(ui.ctx().clone());
            }
        }
        self.poll_events();
        self.shortcuts(ui.ctx());
        self.top_bar_ui(ui);
        self.status_bar_ui(ui);
        match self.settings.view {
            View::Merge => self.merge_page_ui(ui),
            View::About => self.about_page_ui(ui),
            View::GradientConflicts => self.gradsim_page_ui(ui),
            View::Train => self.train_page_ui(ui),
            View::Landscape => self.landscape_page_ui(ui),
            View::TaskVectors => self.taskvec_page_ui(ui),
            View::Teaching => self.teaching_page_ui(ui),
        }
        if self.models.info.is_some() {
            let p = self.settings.preview;
            if let Some(r) = self.merge.take_request(p.fast_steps, p.fine_steps) {
                self.worker.request(r);
            }
        }
        self.settings.lock_sum = self.merge.lock_sum;
    }
}

impl eframe::App for StudioApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.page_ui(ui);
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        self.settings.store(storage);
    }
}

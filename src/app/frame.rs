//! The application frame: the state of every view, the top bar with the
//! views, the status bar, the page of the view shown, persistence. What the
//! pages ask for runs in `frame_commands`; the state as tests read it is in
//! `frame_access`.

use super::about::{About, about_page};
use super::command::AppCommand;
use super::dialogs::{DialogKind, DialogOutcome};
use super::events::{Activity, Emitter, Event};
use super::gradsim::{GradSimState, gradsim_page};
use super::job_slot::JobSlot;
use super::landscape::{LandscapeState, landscape_page};
use super::merge::grid_panel::GridState;
use super::merge::page::{MergePage, merge_page};
use super::merge::state::MergeState;
use super::merge_worker::MergeWorker;
use super::models_panel::ModelsState;
pub use super::notice::Notice;
use super::page_ctx::PageCtx;
use super::preview_gpu::GpuPreviewer;
use super::settings::{Settings, View};
use super::taskvec::{TaskVecState, taskvec_page};
use super::teaching::{TeachingState, teaching_page};
use super::train::TrainState;
use super::train::train_page;
use crate::engine::device::ComputeDevice;
use crate::engine::model_set::{ModelSet, default_set};
use burn::tensor::Device;
use eframe::egui_wgpu;
use egui::mutex::RwLock;
use egui::{Key, KeyboardShortcut, Modifiers};
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
    /// Whether the renderer has the field pipeline ([`super::field_paint::register`]):
    /// the landscape map and the cosine matrices are then drawn by `shaders/field.wgsl`.
    pub gpu_maps: bool,
    /// The window's renderer, when it draws with wgpu: device pictures are
    /// registered with it.
    pub window_renderer: Option<Arc<RwLock<egui_wgpu::Renderer>>>,
    /// The preview pass, when burn computes on the device the window draws
    /// with: the merge worker's samples then go to the screen without a
    /// round trip through host memory ([`super::preview_gpu`]).
    pub gpu_previews: Option<GpuPreviewer>,
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
            gpu_maps: false,
            window_renderer: None,
            gpu_previews: None,
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
    /// Whether the renderer has the field pipeline (see [`StartOptions::gpu_maps`]).
    gpu_maps: bool,
    /// See [`StartOptions::window_renderer`].
    window_renderer: Option<Arc<RwLock<egui_wgpu::Renderer>>>,
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
    /// opened (if it still exists) or the shipped default. `shares_device`:
    /// whether burn computes on the very device the window draws with.
    pub fn new(
        cc: &eframe::CreationContext<'_>,
        compute: ComputeDevice,
        shares_device: bool,
    ) -> Self {
        let settings = Settings::load(cc.storage);
        let default_set = default_set();
        let models = settings
            .last_set
            .clone()
            .filter(ModelSet::exists)
            .or_else(|| default_set.clone());
        if let Some(rs) = &cc.wgpu_render_state {
            super::field_paint::register(rs);
        }
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
            gpu_maps: renderer.is_some(),
            renderer,
            window_renderer: cc.wgpu_render_state.as_ref().map(|rs| rs.renderer.clone()),
            gpu_previews: cc
                .wgpu_render_state
                .as_ref()
                .filter(|_| shares_device)
                .map(|rs| GpuPreviewer::new(&rs.device, &rs.queue)),
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
        let worker = MergeWorker::spawn(
            opts.device.clone(),
            opts.settings.preview,
            opts.gpu_previews,
            emit.clone(),
        );
        let mut app = Self {
            merge: MergeState::with_lock(opts.settings.lock_sum),
            settings: opts.settings,
            compute_reason: opts.compute_reason,
            device: opts.device,
            renderer: opts.renderer,
            gpu_maps: opts.gpu_maps,
            window_renderer: opts.window_renderer,
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

    /// Draws the page of the view shown; returns what it asks for.
    fn view_ui(&mut self, ui: &mut egui::Ui) -> Vec<AppCommand> {
        let waker = self.emit.waker().clone();
        let ctx = PageCtx {
            models: &self.models,
            default_set: self.default_set.as_ref(),
            waker: &waker,
            device: &self.device,
        };
        match self.settings.view {
            View::Merge => {
                let page = MergePage {
                    merge: &mut self.merge,
                    grid: &mut self.grid,
                    preview: &mut self.settings.preview,
                    show_models: self.show_models,
                    saving: self.job.is_some(),
                };
                merge_page(ui, page, &ctx)
            }
            View::About => about_page(ui, &mut self.about, &ctx),
            View::GradientConflicts => gradsim_page(ui, &mut self.gradsim, &ctx),
            View::Train => train_page(ui, &mut self.train, &ctx),
            View::Landscape => landscape_page(ui, &mut self.landscape, &mut self.merge, &ctx),
            View::TaskVectors => taskvec_page(ui, &mut self.taskvec, &ctx),
            View::Teaching => teaching_page(ui, &mut self.teaching, &ctx),
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
        super::field_paint::mark_available(ui.ctx(), self.gpu_maps);
        if let Some(r) = &self.window_renderer {
            super::preview::set_window_renderer(ui.ctx(), r);
        }
        self.poll_events();
        self.shortcuts(ui.ctx());
        self.top_bar_ui(ui);
        self.status_bar_ui(ui);
        for command in self.view_ui(ui) {
            self.run_command(command);
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

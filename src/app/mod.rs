//! The desktop application (eframe/egui). Views read state and return
//! actions; background threads own the models and report [`events::Event`]s.
//!
//! - [`frame`]: the window frame, event loop and persistence ([`StudioApp`]).
//! - [`merge_view`], [`merge_controls`], [`grid_panel`], [`models_panel`],
//!   [`gradsim_view`], [`train_view`], [`landscape_view`], [`taskvec_view`],
//!   [`teaching_view`], [`about`]: the views.
//! - [`merge_state`], [`history`], [`weights`], [`settings`]: state and
//!   its rules, no drawing (the model sets themselves: [`crate::engine::model_set`]).
//! - [`merge_worker`], [`session`], [`inbox`], [`grid_job`], [`gradsim_job`],
//!   [`export_job`], [`train_job`], [`landscape_job`], [`taskvec_job`],
//!   [`teaching_job`], [`dialogs`]: background work.
//! - [`teaching_plots`]: the Teaching view's point clouds and loss curves.
//! - [`preview`]: sample tensors to pictures and textures.
//! - [`display_device`]: the wgpu device the window shares with the models.

pub mod about;
pub mod command;
pub mod dialogs;
pub mod display_device;
pub mod events;
pub mod frame;
mod frame_access;
mod frame_commands;
pub mod gradsim;
pub mod grid_job;
pub mod grid_panel;
pub mod history;
pub mod inbox;
pub mod job_slot;
pub mod landscape;
pub mod merge_controls;
pub mod merge_state;
pub mod merge_view;
pub mod merge_worker;
pub mod models_panel;
pub mod notice;
pub mod page_ctx;
pub mod preview;
pub mod save_job;
pub mod session;
pub mod settings;
pub mod taskvec;
pub mod teaching;
pub mod train;
pub mod weights;
pub mod widgets;

use crate::engine::device::DeviceChoice;
use anyhow::{Result, anyhow};

pub use crate::engine::model_set::ModelSet;
pub use frame::{StartOptions, StudioApp};
pub use settings::{Settings, View};

/// Window title.
pub const APP_NAME: &str = "deme-studio";

/// Opens the main window (on `view`, else the last one shown) and blocks until it closes.
pub fn run_app(choice: DeviceChoice, view: Option<View>) -> Result<()> {
    let display_device::DisplayDevice { compute, shared } = display_device::display_device(choice)?;
    eprintln!("device: {}", compute.reason);
    let mut options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title(APP_NAME)
            .with_app_id(APP_NAME)
            .with_inner_size([1280.0, 800.0])
            .with_min_inner_size([900.0, 600.0]),
        ..Default::default()
    };
    if let Some(setup) = display_device::egui_setup(shared.as_ref()) {
        options.wgpu_options.wgpu_setup = setup;
    }
    eframe::run_native(
        APP_NAME,
        options,
        Box::new(move |cc| {
            let mut app = StudioApp::new(cc, compute);
            if let Some(v) = view {
                app.set_view(v);
            }
            Ok(Box::new(app))
        }),
    )
    .map_err(|e| anyhow!("could not open the window: {e}"))
}

//! The desktop application (eframe/egui). Each view is a page function over
//! its own state and a read-only [`page_ctx::PageCtx`], returning
//! [`command::AppCommand`]s that [`StudioApp`] runs in one place; background
//! work reports through a [`job_slot::JobSlot`] of the view that started it
//! (or, for the merge worker, through [`events::Event`]s).
//!
//! - [`frame`]: the window frame, the top and status bars, persistence
//!   ([`StudioApp`]); it runs the commands and applies the reports.
//! - [`command`], [`page_ctx`], [`notice`]: what pages ask, what they read,
//!   what the status bar says.
//! - Views, a folder each (state, page, plots, job): [`merge`], [`gradsim`],
//!   [`landscape`], [`taskvec`], [`train`], [`teaching`]; and [`about`],
//!   [`models_panel`].
//! - [`widgets`]: what several views draw (the cosine heatmap).
//! - [`job_slot`]: one background job's life on the UI side; [`save_job`]:
//!   files written off the UI thread; [`dialogs`]: file dialogs.
//! - [`merge_worker`], [`session`], [`inbox`], [`events`]: the thread that
//!   owns the open models, merges and samples previews.
//! - [`settings`]: persisted settings; [`preview`]: sample tensors to
//!   pictures and textures; [`preview_gpu`]: the same laid out on the device
//!   (`shaders/preview.wgsl`); [`field_paint`]: maps drawn by
//!   `shaders/field.wgsl`; [`display_device`]: the wgpu device the window shares with the models.

pub mod about;
pub mod command;
pub mod dialogs;
pub mod display_device;
pub mod events;
pub mod field_paint;
pub mod frame;
mod frame_access;
mod frame_commands;
pub mod gradsim;
pub mod inbox;
pub mod job_slot;
pub mod landscape;
pub mod merge;
pub mod merge_worker;
pub mod models_panel;
pub mod notice;
pub mod page_ctx;
pub mod preview;
pub mod preview_gpu;
pub mod save_job;
pub mod session;
pub mod settings;
pub mod taskvec;
pub mod teaching;
pub mod train;
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
    let shares_device = shared.is_some();
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
            let mut app = StudioApp::new(cc, compute, shares_device);
            if let Some(v) = view {
                app.set_view(v);
            }
            Ok(Box::new(app))
        }),
    )
    .map_err(|e| anyhow!("could not open the window: {e}"))
}

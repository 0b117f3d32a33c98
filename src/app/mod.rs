//! The desktop application (eframe/egui). Views read state and send commands;
//! the engine does the work.

mod home;

use crate::engine::device::{DeviceChoice, select};
use anyhow::{Result, anyhow};

pub use home::StudioApp;

/// Window title.
pub const APP_NAME: &str = "deme-studio";

/// Opens the main window on the embedded default and blocks until it closes.
pub fn run_app(choice: DeviceChoice) -> Result<()> {
    let compute = select(choice)?;
    eprintln!("device: {}", compute.reason);
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title(APP_NAME)
            .with_inner_size([1100.0, 720.0]),
        ..Default::default()
    };
    eframe::run_native(
        APP_NAME,
        options,
        Box::new(move |cc| Ok(Box::new(StudioApp::new(cc, compute)))),
    )
    .map_err(|e| anyhow!("could not open the window: {e}"))
}

//! The About view: the data, the default model preset and the device.

use super::command::AppCommand;
use super::models_panel::models_panel_ui;
use super::page_ctx::PageCtx;
use crate::engine::checkpoint::{DEFAULT_IMAGE_PRESET, preset};
use crate::engine::data::{ImageSet, embedded_mnist};
use egui::{ColorImage, TextureHandle, TextureOptions};

/// What the About view shows (built once).
pub struct About {
    dataset_summary: String,
    model_summary: String,
    digits: Option<TextureHandle>,
    digits_image: ColorImage,
}

impl Default for About {
    fn default() -> Self {
        let data = embedded_mnist();
        let model_summary = match preset(DEFAULT_IMAGE_PRESET) {
            Some(c) => format!(
                "default model: UNet2DModel `{DEFAULT_IMAGE_PRESET}`, {} levels {:?}, {} px, {} channel(s)",
                c.block_out_channels.len(),
                c.block_out_channels,
                c.sample_size.unwrap_or(32),
                c.in_channels
            ),
            None => "default model preset missing".into(),
        };
        Self {
            dataset_summary: format!(
                "embedded MNIST: {} digits, {}x{}x{}",
                data.len(),
                data.channels,
                data.height,
                data.width
            ),
            model_summary,
            digits: None,
            digits_image: digit_grid(&data, 16, 8),
        }
    }
}

/// A `cols x rows` grid of digits striding through the set, so every class shows.
fn digit_grid(data: &ImageSet, cols: usize, rows: usize) -> ColorImage {
    let (h, w) = (data.height, data.width);
    let mut img = ColorImage::new(
        [cols * w, rows * h],
        vec![egui::Color32::BLACK; cols * w * rows * h],
    );
    let n = data.len();
    for k in 0..cols * rows {
        // stride through the label-sorted file so every class shows
        let i = (k * n / (cols * rows)) % n;
        let px = data.image(i);
        let (gx, gy) = ((k % cols) * w, (k / cols) * h);
        for y in 0..h {
            for x in 0..w {
                let v = ((px[y * w + x] + 1.0) * 127.5).clamp(0.0, 255.0) as u8;
                img[(gx + x, gy + y)] = egui::Color32::from_gray(v);
            }
        }
    }
    img
}

impl About {
    /// Draws the view.
    pub fn ui(&mut self, ui: &mut egui::Ui) {
        ui.heading("deme-studio");
        ui.label("Decouple-then-Merge finetuning of diffusion models");
        ui.separator();
        ui.label(&self.dataset_summary);
        ui.label(&self.model_summary);
        let tex = self.digits.get_or_insert_with(|| {
            ui.ctx()
                .load_texture("digits", self.digits_image.clone(), TextureOptions::NEAREST)
        });
        // whole multiples keep the digits crisp
        let fit = (ui.available_width() / tex.size_vec2().x)
            .floor()
            .clamp(1.0, 2.0);
        let size = tex.size_vec2() * fit;
        ui.add(egui::Image::new((tex.id(), size)))
            .on_hover_text("the embedded digits the default models were trained on");
    }
}

/// Draws the Models & about view: the open models in detail beside what the
/// app knows of the data and the device; returns what the app should do.
pub fn about_page(ui: &mut egui::Ui, about: &mut About, ctx: &PageCtx) -> Vec<AppCommand> {
    let actions = egui::Panel::left("models-detail")
        .default_size(420.0)
        .resizable(true)
        .show(ui, |ui| {
            models_panel_ui(ui, ctx.models, ctx.default_set.is_some(), true)
        })
        .inner;
    egui::CentralPanel::default().show(ui, |ui| about.ui(ui));
    actions.into_iter().map(AppCommand::from).collect()
}

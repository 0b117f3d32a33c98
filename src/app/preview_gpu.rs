//! Previews without a round trip: on a wgpu compute device shared with the
//! window, the merge worker's samples are laid out into a texture on the
//! device ([`PreviewPass`], `shaders/preview.wgsl`) and egui draws that
//! texture. Nothing goes through host memory unless the picture is exported.

use crate::engine::grid_image::grid_columns;
use crate::engine::render::preview_pass::PreviewPass;
use anyhow::Result;
use burn::tensor::Tensor;
use eframe::egui_wgpu::{self, wgpu};
use egui::mutex::RwLock;
use egui::{ColorImage, TextureId};
use std::sync::{Arc, Mutex, OnceLock};

/// The preview pass on the device burn and the window share, laying out
/// [`grid_columns`] columns as the host pictures do.
#[derive(Clone, Debug)]
pub struct GpuPreviewer {
    pass: PreviewPass,
}

/// A preview picture in a texture on the device.
pub struct DevicePicture {
    /// The picture (RGBA8).
    pub texture: wgpu::Texture,
    /// `[width, height]` in pixels.
    pub size: [usize; 2],
    pass: PreviewPass,
    /// The picture on the host, read back on first use (exports, tests).
    host: OnceLock<Result<ColorImage, String>>,
    /// The texture's id in the window's renderer, once registered.
    registered: Mutex<Option<Registered>>,
}

struct Registered {
    id: TextureId,
    renderer: Arc<RwLock<egui_wgpu::Renderer>>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.renderer.write().free_texture(&self.id);
    }
}

impl std::fmt::Debug for DevicePicture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DevicePicture({}x{})", self.size[0], self.size[1])
    }
}

impl DevicePicture {
    /// The picture on the host (read back from the device once).
    pub fn host(&self) -> Result<&ColorImage, String> {
        self.host
            .get_or_init(|| {
                let bytes = self
                    .pass
                    .read(&self.texture)
                    .map_err(|e| format!("reading the preview back: {e:#}"))?;
                Ok(ColorImage::from_rgba_unmultiplied(self.size, &bytes))
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// The texture's id in `renderer`, registered (nearest filtering) the
    /// first time; freed when the picture is dropped.
    pub fn texture_id(&self, renderer: &Arc<RwLock<egui_wgpu::Renderer>>) -> TextureId {
        let mut slot = self.registered.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = slot.as_ref() {
            return r.id;
        }
        let view = self
            .texture
            .create_view(&wgpu::TextureViewDescriptor::default());
        let id = renderer.write().register_native_texture(
            self.pass.device(),
            &view,
            wgpu::FilterMode::Nearest,
        );
        *slot = Some(Registered {
            id,
            renderer: renderer.clone(),
        });
        id
    }

    /// Whether [`Self::texture_id`] has registered it.
    pub fn is_registered(&self) -> bool {
        self.registered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }
}

impl GpuPreviewer {
    /// The pass on `device` (the one burn computes on and the window draws with).
    pub fn new(device: &wgpu::Device, queue: &wgpu::Queue) -> Self {
        Self {
            pass: PreviewPass::new(device, queue),
        }
    }

    /// `x` laid out on the device, or `None` when it cannot be read in place
    /// (see [`PreviewPass::draw`]).
    pub fn draw(&self, x: &Tensor<4>) -> Result<Option<DevicePicture>> {
        let cols = grid_columns(x.dims()[0]);
        Ok(self.pass.draw(x, cols)?.map(|texture| DevicePicture {
            size: [texture.width() as usize, texture.height() as usize],
            texture,
            pass: self.pass.clone(),
            host: OnceLock::new(),
            registered: Mutex::new(None),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::preview::grid_picture;
    use crate::engine::shared_wgpu::create_shared;
    use burn::tensor::TensorData;

    #[test]
    fn a_picture_reads_back_as_the_host_draws_it_and_is_registered_once() {
        let (compute, shared) = create_shared(true)
            .expect("a wgpu adapter (install mesa-vulkan-drivers for the software one)");
        let gpu = GpuPreviewer::new(&shared.device, &shared.queue);
        let v: Vec<f32> = (0..5 * 36).map(|i| (i % 13) as f32 / 6.0 - 1.0).collect();
        let x = Tensor::<4>::from_data(TensorData::new(v.clone(), [5, 1, 6, 6]), &compute.device);
        let picture = gpu.draw(&x).unwrap().unwrap();
        assert_eq!(
            picture.host().unwrap(),
            &grid_picture(&v, [5, 1, 6, 6]).unwrap()
        );
        let renderer = Arc::new(RwLock::new(egui_wgpu::Renderer::new(
            &shared.device,
            wgpu::TextureFormat::Rgba8Unorm,
            egui_wgpu::RendererOptions::default(),
        )));
        assert!(!picture.is_registered());
        let id = picture.texture_id(&renderer);
        assert_eq!(picture.texture_id(&renderer), id);
        assert!(renderer.read().texture(&id).is_some());
        drop(picture);
        assert!(
            renderer.read().texture(&id).is_none(),
            "freed with the picture"
        );
    }
}

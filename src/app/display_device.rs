//! The device the window draws with: on a wgpu compute device, the very
//! device burn computes on (see [`crate::engine::shared_wgpu`]); otherwise
//! eframe picks its own (software rendering without a GPU).

use crate::engine::device::{Backend, ComputeDevice, DeviceChoice, select};
use crate::engine::shared_wgpu::{SharedWgpu, create_shared};
use anyhow::Result;
use eframe::egui_wgpu;

/// The compute device, and the handles the window must reuse when it is wgpu.
pub struct DisplayDevice {
    /// Where the models run.
    pub compute: ComputeDevice,
    /// The shared wgpu device, when compute runs on wgpu.
    pub shared: Option<SharedWgpu>,
}

/// Resolves `choice`; a wgpu choice becomes one device shared by burn and the
/// window. If sharing fails, compute falls back to burn's own wgpu device and
/// the reason says so.
pub fn display_device(choice: DeviceChoice) -> Result<DisplayDevice> {
    let compute = select(choice)?;
    if compute.backend != Backend::Wgpu {
        return Ok(DisplayDevice {
            compute,
            shared: None,
        });
    }
    match create_shared(choice == DeviceChoice::Wgpu) {
        Ok((compute, shared)) => Ok(DisplayDevice {
            compute,
            shared: Some(shared),
        }),
        Err(e) => Ok(DisplayDevice {
            compute: ComputeDevice {
                reason: format!("{} (not shared with the display: {e:#})", compute.reason),
                ..compute
            },
            shared: None,
        }),
    }
}

/// The setup eframe draws with: the shared handles, or a device of its own.
pub fn egui_setup(shared: Option<&SharedWgpu>) -> Option<egui_wgpu::WgpuSetup> {
    shared.map(|s| {
        egui_wgpu::WgpuSetup::Existing(egui_wgpu::WgpuSetupExisting {
            instance: s.instance.clone(),
            adapter: s.adapter.clone(),
            device: s.device.clone(),
            queue: s.queue.clone(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--device wgpu` on the software adapter the CI installs: burn and
    /// egui's renderer both build on the one device.
    #[test]
    fn wgpu_compute_shares_its_device_with_the_window() {
        let d = display_device(DeviceChoice::Wgpu)
            .expect("a wgpu adapter (install mesa-vulkan-drivers for the software one)");
        let shared = d.shared.expect(&d.compute.reason);
        assert!(d.compute.reason.contains("shared with the display"));
        let Some(egui_wgpu::WgpuSetup::Existing(existing)) = egui_setup(Some(&shared)) else {
            panic!("the window must reuse the device");
        };
        let _renderer = egui_wgpu::Renderer::new(
            &existing.device,
            wgpu::TextureFormat::Rgba8Unorm,
            egui_wgpu::RendererOptions::default(),
        );
        let cpu = display_device(DeviceChoice::Cpu).unwrap();
        assert!(cpu.shared.is_none());
        assert!(egui_setup(None).is_none());
    }
}

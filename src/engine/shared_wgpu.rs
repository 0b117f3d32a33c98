//! One wgpu device for the window and the models: the app creates the device
//! itself, registers it with burn's wgpu runtime and hands the same handles to
//! eframe, so compute and drawing share one adapter, one device and one queue.
//!
//! The device is requested the way burn's own WGSL path requests one (every
//! adapter feature but mappable primary buffers, the adapter's limits, memory
//! hints for low usage), so burn accepts it as its own.

use super::device::{AdapterSummary, Backend, ComputeDevice, block_on};
use anyhow::{Context, Result, anyhow, bail};
use burn::tensor::Device;
use burn::tensor::wgpu::WgpuSetup;

/// The handles of the shared device.
#[derive(Clone, Debug)]
pub struct SharedWgpu {
    /// The instance the adapter came from.
    pub instance: wgpu::Instance,
    /// The adapter (physical device).
    pub adapter: wgpu::Adapter,
    /// The logical device both sides use.
    pub device: wgpu::Device,
    /// The queue both sides submit to.
    pub queue: wgpu::Queue,
    /// What the adapter is.
    pub summary: AdapterSummary,
}

/// Picks the adapter: a hardware one when there is one, else (when
/// `allow_software`) the first one found.
fn pick_adapter(
    adapters: Vec<wgpu::Adapter>,
    allow_software: bool,
) -> Option<(wgpu::Adapter, AdapterSummary)> {
    let summarize = |a: &wgpu::Adapter| {
        let info = a.get_info();
        AdapterSummary {
            name: info.name,
            device_type: info.device_type,
            backend: info.backend,
        }
    };
    let mut all: Vec<(wgpu::Adapter, AdapterSummary)> = adapters
        .into_iter()
        .map(|a| {
            let s = summarize(&a);
            (a, s)
        })
        .collect();
    if let Some(i) = all.iter().position(|(_, s)| s.is_hardware()) {
        return Some(all.swap_remove(i));
    }
    if allow_software && !all.is_empty() {
        return Some(all.swap_remove(0));
    }
    None
}

/// Creates the shared device on a hardware adapter (or, with
/// `allow_software`, on any adapter) and registers it with burn.
pub fn create_shared(allow_software: bool) -> Result<(ComputeDevice, SharedWgpu)> {
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapters = block_on(instance.enumerate_adapters(wgpu::Backends::all()));
    let Some((adapter, summary)) = pick_adapter(adapters, allow_software) else {
        bail!(if allow_software {
            "no wgpu adapter found"
        } else {
            "no hardware wgpu adapter found"
        });
    };
    let (device, queue) = block_on(
        adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("deme-studio"),
            required_features: adapter
                .features()
                .difference(wgpu::Features::MAPPABLE_PRIMARY_BUFFERS),
            required_limits: adapter.limits(),
            memory_hints: wgpu::MemoryHints::MemoryUsage,
            trace: wgpu::Trace::Off,
            // SAFETY: burn's runtime enables them on devices it creates itself;
            // it may compile passthrough shaders on this one.
            experimental_features: unsafe { wgpu::ExperimentalFeatures::enabled() },
        }),
    )
    .with_context(|| format!("requesting a device on {summary}"))?;
    let setup = WgpuSetup {
        instance: instance.clone(),
        adapter: adapter.clone(),
        device: device.clone(),
        queue: queue.clone(),
        backend: summary.backend,
    };
    let burn_device = Device::wgpu_options()
        .setup(setup)
        .init()
        .map_err(|e| anyhow!("registering the device with burn: {e}"))?;
    let compute = ComputeDevice {
        device: burn_device,
        backend: Backend::Wgpu,
        reason: format!("wgpu: {summary}, one device shared with the display"),
    };
    Ok((
        compute,
        SharedWgpu {
            instance,
            adapter,
            device,
            queue,
            summary,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Tensor, TensorData};

    /// On the software adapter the CI installs (lavapipe): burn computes on a
    /// device the app created.
    #[test]
    fn burn_computes_on_a_device_the_app_created() {
        let (compute, shared) = create_shared(true)
            .expect("a wgpu adapter (install mesa-vulkan-drivers for the software one)");
        assert_eq!(compute.backend, Backend::Wgpu);
        assert!(compute.reason.contains("shared"), "{}", compute.reason);
        let a = Tensor::<2>::from_data(
            TensorData::new(vec![1.0f32, 2.0, 3.0, 4.0], [2, 2]),
            &compute.device,
        );
        let b = Tensor::<2>::from_data(
            TensorData::new(vec![0.5f32, -1.0, 2.0, 0.25], [2, 2]),
            &compute.device,
        );
        let c: Vec<f32> = a.matmul(b).into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(c, vec![4.5, -0.5, 9.5, -2.0]);
        assert!(compute.reason.contains(&shared.summary.name));
    }
}

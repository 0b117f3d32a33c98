//! Compute device selection: wgpu on a hardware adapter, burn's flex CPU backend otherwise.
//!
//! A software Vulkan adapter (lavapipe/llvmpipe, `DeviceType::Cpu`) counts as no GPU:
//! on a 2-core machine flex trains several times faster than wgpu on a software rasteriser.

use anyhow::{Result, bail};
use burn::tensor::{Device, DeviceKind};
use std::fmt;
use std::str::FromStr;

/// What the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    /// wgpu when a hardware adapter exists, flex otherwise.
    #[default]
    Auto,
    /// wgpu on whatever adapter it finds (software ones included).
    Wgpu,
    /// burn's flex CPU backend.
    Cpu,
}

impl FromStr for DeviceChoice {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(Self::Auto),
            "wgpu" | "gpu" => Ok(Self::Wgpu),
            "cpu" | "flex" => Ok(Self::Cpu),
            other => bail!("unknown device `{other}`: expected auto, wgpu or cpu"),
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Wgpu => "wgpu",
            Self::Cpu => "cpu",
        })
    }
}

/// The backend a choice resolved to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// burn-wgpu.
    Wgpu,
    /// burn-flex.
    Flex,
}

/// A resolved compute device and a one-line account of why it was chosen.
#[derive(Debug, Clone)]
pub struct ComputeDevice {
    /// The burn device (without autodiff).
    pub device: Device,
    /// Which backend.
    pub backend: Backend,
    /// Human-readable reason, e.g. "wgpu: NVIDIA H100 (DiscreteGpu, Vulkan)".
    pub reason: String,
}

/// A wgpu adapter as seen at start-up.
#[derive(Debug, Clone)]
pub struct AdapterSummary {
    /// Adapter name.
    pub name: String,
    /// Discrete, integrated, virtual, CPU or other.
    pub device_type: wgpu::DeviceType,
    /// Graphics API.
    pub backend: wgpu::Backend,
}

impl AdapterSummary {
    /// A real GPU (not a software rasteriser).
    pub fn is_hardware(&self) -> bool {
        matches!(
            self.device_type,
            wgpu::DeviceType::DiscreteGpu
                | wgpu::DeviceType::IntegratedGpu
                | wgpu::DeviceType::VirtualGpu
        )
    }
}

impl fmt::Display for AdapterSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({:?}, {:?})",
            self.name, self.device_type, self.backend
        )
    }
}

/// Lists the wgpu adapters of this machine (no device is created).
pub fn list_adapters() -> Vec<AdapterSummary> {
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapters = block_on(instance.enumerate_adapters(wgpu::Backends::all()));
    adapters
        .into_iter()
        .map(|a| {
            let info = a.get_info();
            AdapterSummary {
                name: info.name,
                device_type: info.device_type,
                backend: info.backend,
            }
        })
        .collect()
}

/// Runs a wgpu future to completion (they resolve at once on native targets).
pub(crate) fn block_on<F: std::future::Future>(f: F) -> F::Output {
    // enumerate_adapters resolves immediately on native; a minimal executor suffices.
    use std::task::{Context, Poll, Waker};
    let mut f = std::pin::pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::yield_now();
    }
}

/// Resolves a choice to a device. `Auto` never fails (flex is always there);
/// `Wgpu` fails when no adapter exists at all.
pub fn select(choice: DeviceChoice) -> Result<ComputeDevice> {
    let flex = |reason: String| ComputeDevice {
        device: Device::flex(),
        backend: Backend::Flex,
        reason,
    };
    match choice {
        DeviceChoice::Cpu => Ok(flex("cpu (flex): requested with --device cpu".into())),
        DeviceChoice::Wgpu => {
            let adapters = list_adapters();
            let best = adapters
                .iter()
                .find(|a| a.is_hardware())
                .or(adapters.first());
            match best {
                Some(a) => Ok(ComputeDevice {
                    device: Device::wgpu(DeviceKind::DefaultDevice),
                    backend: Backend::Wgpu,
                    reason: format!("wgpu: {a} (requested with --device wgpu)"),
                }),
                None => bail!(
                    "--device wgpu: no wgpu adapter found (is a Vulkan driver installed? e.g. apt-get install mesa-vulkan-drivers)"
                ),
            }
        }
        DeviceChoice::Auto => {
            let adapters = list_adapters();
            match adapters.iter().find(|a| a.is_hardware()) {
                Some(a) => Ok(ComputeDevice {
                    device: Device::wgpu(DeviceKind::DefaultDevice),
                    backend: Backend::Wgpu,
                    reason: format!("wgpu: hardware adapter {a}"),
                }),
                None if adapters.is_empty() => Ok(flex("cpu (flex): no wgpu adapter found".into())),
                None => Ok(flex(format!(
                    "cpu (flex): only software adapters found ({}); flex is faster there",
                    adapters
                        .iter()
                        .map(|a| a.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_choices() {
        assert_eq!("auto".parse::<DeviceChoice>().unwrap(), DeviceChoice::Auto);
        assert_eq!("cpu".parse::<DeviceChoice>().unwrap(), DeviceChoice::Cpu);
        assert_eq!("wgpu".parse::<DeviceChoice>().unwrap(), DeviceChoice::Wgpu);
        assert!("tpu".parse::<DeviceChoice>().is_err());
    }

    #[test]
    fn cpu_is_flex() {
        let d = select(DeviceChoice::Cpu).unwrap();
        assert_eq!(d.backend, Backend::Flex);
    }

    #[test]
    fn auto_never_picks_a_software_adapter() {
        let d = select(DeviceChoice::Auto).unwrap();
        let hardware = list_adapters().iter().any(|a| a.is_hardware());
        assert_eq!(d.backend == Backend::Wgpu, hardware, "{}", d.reason);
    }
}

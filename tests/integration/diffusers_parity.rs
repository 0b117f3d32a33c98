//! Parity with diffusers on fixtures written by `tests/fixtures/make_fixtures.py`:
//! the UNet forward pass (flex and wgpu), both attention namings, bit-exact
//! load/save, and DDIM/DDPM sampling through the model.

use burn::tensor::{Device, Tensor, TensorData};
use deme_studio::engine::checkpoint::{DType, TensorMap, read_safetensors};
use deme_studio::engine::device::list_adapters;
use deme_studio::engine::diffusion::{
    DdimConfig, DdpmConfig, NoiseSchedule, RecordedNoise, SamplerKind, VarianceType, sample,
};
use deme_studio::engine::store::{AnyModel, load_model, save_model_folder};
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn tensor4(map: &TensorMap, key: &str, device: &Device) -> Tensor<4> {
    let t = &map[key];
    let shape: [usize; 4] = t.shape.clone().try_into().unwrap();
    Tensor::from_data(TensorData::new(t.to_f32().unwrap(), shape), device)
}

fn timesteps(map: &TensorMap, key: &str) -> Vec<i64> {
    let t = &map[key];
    assert_eq!(t.dtype, DType::I64);
    t.bytes
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

fn max_abs_diff(a: Tensor<4>, b: Tensor<4>) -> f32 {
    let a = a.into_data().try_into_vec::<f32>().unwrap();
    let b = b.into_data().try_into_vec::<f32>().unwrap();
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn eps_diff(model_dir: &str, eps_file: &str, device: &Device) -> f32 {
    let loaded = load_model(&fixture(model_dir), device).unwrap();
    let io = read_safetensors(fixture(eps_file)).unwrap();
    let x = tensor4(&io, "x", device);
    let t: Vec<f32> = timesteps(&io, "t").iter().map(|&v| v as f32).collect();
    let ours = loaded.model.eps(x, &t);
    max_abs_diff(ours, tensor4(&io, "eps", device))
}

#[test]
fn forward_matches_diffusers_cifar_structure() {
    let d = eps_diff(
        "unet_cifar_tiny",
        "eps_cifar_tiny.safetensors",
        &Device::flex(),
    );
    assert!(d < 1e-4, "max |eps - eps_diffusers| = {d}");
}

#[test]
fn forward_matches_diffusers_mnist_structure() {
    let d = eps_diff(
        "unet_mnist_tiny",
        "eps_mnist_tiny.safetensors",
        &Device::flex(),
    );
    assert!(d < 1e-4, "max |eps - eps_diffusers| = {d}");
}

/// The 6-level 256 px structures (google/ddpm-church-256's fields and
/// UNet2DModel's defaults) on a flat colour noised at t = 0 and on N(0, 1):
/// the flat background is where float32 statistics lose precision first.
const STRUCTURES_256: [&str; 2] = ["unet_church_256", "unet_diffusers_256"];

#[test]
fn forward_matches_diffusers_at_256_px_on_flat_and_random_inputs() {
    for name in STRUCTURES_256 {
        let d = eps_diff(name, &format!("eps_{name}.safetensors"), &Device::flex());
        assert!(d < 1e-4, "{name}: max |eps - eps_diffusers| = {d}");
    }
}

/// Models with channel-wise projections, an expert and a merge, loaded in
/// diffusers through the `deme_unet.py` this tool writes beside them: the same
/// eps as ours. Stock `from_pretrained` (which drops the projections) differs.
#[test]
fn models_with_projections_match_diffusers_through_the_loader_module() {
    let device = Device::flex();
    for name in ["deme_expert_tiny", "deme_merge_tiny"] {
        let d = eps_diff(name, &format!("eps_{name}.safetensors"), &device);
        assert!(d < 1e-4, "{name}: max |eps - eps_loader| = {d}");
        let loaded = load_model(&fixture(name), &device).unwrap();
        let io = read_safetensors(fixture(&format!("eps_{name}.safetensors"))).unwrap();
        let t: Vec<f32> = timesteps(&io, "t").iter().map(|&v| v as f32).collect();
        let ours = loaded.model.eps(tensor4(&io, "x", &device), &t);
        let stock = max_abs_diff(ours, tensor4(&io, "eps_stock", &device));
        assert!(
            stock > 1e-3,
            "{name}: stock diffusers should differ, by {stock}"
        );
        let loader = std::fs::read_to_string(fixture(name).join("deme_unet.py")).unwrap();
        assert_eq!(
            loader,
            deme_studio::engine::model_card::LOADER_PY,
            "{name}: regenerate"
        );
    }
}

#[test]
fn legacy_attention_names_load_to_the_same_model() {
    let d = eps_diff(
        "unet_cifar_tiny_legacy",
        "eps_cifar_tiny.safetensors",
        &Device::flex(),
    );
    assert!(d < 1e-4, "legacy-named checkpoint: max diff {d}");
}

#[test]
fn forward_matches_diffusers_on_wgpu() {
    let adapters = list_adapters();
    if adapters.is_empty() {
        assert!(
            std::env::var("DEME_REQUIRE_WGPU").is_err(),
            "DEME_REQUIRE_WGPU is set but no wgpu adapter exists (install mesa-vulkan-drivers)"
        );
        panic!(
            "no wgpu adapter: install mesa-vulkan-drivers (lavapipe) to run the wgpu parity test"
        );
    }
    let device = Device::wgpu(burn::tensor::DeviceKind::DefaultDevice);
    let d = eps_diff("unet_mnist_tiny", "eps_mnist_tiny.safetensors", &device);
    assert!(d < 1e-4, "wgpu: max |eps - eps_diffusers| = {d}");
    for name in STRUCTURES_256 {
        let d = eps_diff(name, &format!("eps_{name}.safetensors"), &device);
        assert!(d < 1e-4, "wgpu, {name}: max |eps - eps_diffusers| = {d}");
    }
}

#[test]
fn load_then_save_is_bit_exact_in_both_namings() {
    for name in ["unet_cifar_tiny", "unet_cifar_tiny_legacy"] {
        let loaded = load_model(&fixture(name), &Device::flex()).unwrap();
        let out = tempfile::tempdir().unwrap();
        save_model_folder(
            out.path(),
            &loaded.spec,
            loaded.model.export(),
            &loaded.dtypes,
            loaded.key_style,
            None,
        )
        .unwrap();
        let before = read_safetensors(&loaded.weights_path).unwrap();
        let after =
            read_safetensors(out.path().join("diffusion_pytorch_model.safetensors")).unwrap();
        assert_eq!(
            before.keys().collect::<Vec<_>>(),
            after.keys().collect::<Vec<_>>(),
            "{name}: keys"
        );
        for (k, t) in &before {
            let u = &after[k];
            assert!(
                t.dtype == u.dtype && t.shape == u.shape && t.bytes == u.bytes,
                "{name}: `{k}` differs"
            );
        }
    }
}

/// Runs a whole sampling trace through our UNet and compares the final sample.
fn sampling_diff(trace: &str, kind: SamplerKind) -> f32 {
    let device = Device::flex();
    let loaded = load_model(&fixture("unet_mnist_tiny"), &device).unwrap();
    let AnyModel::UNet(model) = loaded.model else {
        panic!("fixture is a UNet")
    };
    let rec = read_safetensors(fixture(trace)).unwrap();
    let x_t = tensor4(&rec, "x_T", &device);
    let n = x_t.dims()[0];
    // the per-step noises diffusers drew, in step order
    let noises = &rec["noises"];
    let [k, _, c, h, w]: [usize; 5] = noises.shape.clone().try_into().unwrap();
    let all = noises.to_f32().unwrap();
    let per = n * c * h * w;
    let list = (0..k)
        .map(|i| {
            Tensor::<4>::from_data(
                TensorData::new(all[i * per..(i + 1) * per].to_vec(), [n, c, h, w]),
                &device,
            )
        })
        .collect();
    let mut noise = RecordedNoise::new(list);
    let schedule = NoiseSchedule::ddpm(1000);
    let x0 = sample(
        kind,
        &schedule,
        x_t,
        &mut noise,
        &mut |x, t| model.forward(x, &vec![t as f32; n]),
        &mut |_, _, _| true,
    )
    .unwrap();
    max_abs_diff(x0, tensor4(&rec, "x_0", &device))
}

#[test]
fn ddim_sampling_matches_diffusers() {
    let kind = SamplerKind::Ddim(DdimConfig {
        steps: 10,
        eta: 0.0,
        ..DdimConfig::default()
    });
    let d = sampling_diff("sched_ddim_10_eta0.safetensors", kind);
    assert!(d < 1e-3, "DDIM 10 steps: max |x0 - x0_diffusers| = {d}");
}

#[test]
fn ddim_eta1_sampling_matches_diffusers() {
    let kind = SamplerKind::Ddim(DdimConfig {
        steps: 10,
        eta: 1.0,
        ..DdimConfig::default()
    });
    let d = sampling_diff("sched_ddim_10_eta1.safetensors", kind);
    assert!(d < 1e-3, "DDIM eta 1: max |x0 - x0_diffusers| = {d}");
}

#[test]
fn ddpm_sampling_matches_diffusers() {
    for (trace, variance) in [
        ("sched_ddpm_20_small.safetensors", VarianceType::FixedSmall),
        ("sched_ddpm_20_large.safetensors", VarianceType::FixedLarge),
    ] {
        let kind = SamplerKind::Ddpm(DdpmConfig {
            steps: 20,
            variance,
            ..DdpmConfig::default()
        });
        let d = sampling_diff(trace, kind);
        assert!(d < 1e-3, "{trace}: max |x0 - x0_diffusers| = {d}");
    }
}

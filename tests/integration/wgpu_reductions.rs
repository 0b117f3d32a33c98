//! Reductions over long rows on wgpu (lavapipe in CI) against the CPU backend:
//! the rows of a 256 x 256 GroupNorm, a per-sample loss, a gradient norm.

use burn::tensor::{Device, Distribution, Tensor};
use deme_studio::engine::device::list_adapters;
use deme_studio::engine::reduce::{mean_rows, sum_all};

fn values(t: Tensor<2>) -> Vec<f32> {
    t.into_data().try_into_vec::<f32>().unwrap()
}

#[test]
fn long_rows_reduce_alike_on_wgpu_and_on_the_cpu() {
    assert!(
        !list_adapters().is_empty(),
        "no wgpu adapter: install mesa-vulkan-drivers (lavapipe) to run the wgpu reductions test"
    );
    let (cpu, gpu) = (
        Device::flex(),
        Device::wgpu(burn::tensor::DeviceKind::DefaultDevice),
    );
    for [rows, len] in [[4usize, 65_536usize], [2, 196_608], [1, 262_144]] {
        let x = Tensor::<2>::random([rows, len], Distribution::Normal(0.0, 1.0), &cpu);
        let xg = Tensor::<2>::from_data(x.clone().into_data(), &gpu);
        let (a, b) = (values(mean_rows(x.clone())), values(mean_rows(xg.clone())));
        let worst = a
            .iter()
            .zip(&b)
            .map(|(p, q)| (p - q).abs())
            .fold(0.0, f32::max);
        assert!(worst < 1e-6, "[{rows}, {len}]: means differ by {worst}");
        let (s, sg) = (
            sum_all(x).into_scalar::<f32>(),
            sum_all(xg).into_scalar::<f32>(),
        );
        assert!((s - sg).abs() < 1e-2, "[{rows}, {len}]: sums {s} vs {sg}");
    }
}

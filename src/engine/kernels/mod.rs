//! Host kernels of our own for the CPU (flex) backend, where burn's generic
//! compositions are slow: fused GroupNorm + SiLU with a handwritten backward.
//!
//! They enter burn as a backend extension ([`CpuKernels`]) implemented for
//! `Flex` and for `Autodiff<Flex>`. The model calls them only for tensors on
//! the flex device ([`on_flex`]); on wgpu the model keeps burn's own ops, which
//! burn fuses there.

mod autodiff;
pub mod group_norm;

use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, DispatchDevice, Flex, TensorMetadata, backend_extension};
use burn::tensor::{Device, Tensor, TensorData};

pub use group_norm::GnShape;

/// Whether `device` is burn's flex CPU backend (with or without autodiff).
pub fn on_flex(device: &Device) -> bool {
    matches!(
        device.clone().inner().as_dispatch(),
        DispatchDevice::Flex(_)
    )
}

/// Settings of one fused GroupNorm call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GnArgs {
    /// Groups; divides the channel count.
    pub groups: usize,
    /// Added to the variance.
    pub eps: f64,
    /// Apply SiLU to the normalised output.
    pub silu: bool,
}

/// Custom operations of the engine, routed through burn's `Dispatch`.
#[backend_extension(Flex, Autodiff)]
pub trait CpuKernels: Backend {
    /// GroupNorm over `[n, c, ...]` with per-channel `gamma`/`beta`, then SiLU if asked.
    fn group_norm_act(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        groups: usize,
        eps: f64,
        silu: bool,
    ) -> FloatTensor<Self>;
}

/// The pieces the autodiff wrapper needs from the concrete backend.
pub trait CpuKernelsGrad: Backend {
    /// Forward that also returns `(mean, rstd)` per (sample, group).
    fn group_norm_act_stats(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        args: GnArgs,
    ) -> (FloatTensor<Self>, Vec<[f32; 2]>);

    /// `(dx, dgamma, dbeta)`.
    fn group_norm_act_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        stats: &[[f32; 2]],
        grad: FloatTensor<Self>,
        args: GnArgs,
    ) -> [FloatTensor<Self>; 3];
}

fn host_f32(t: &FlexTensor) -> std::borrow::Cow<'_, [f32]> {
    match t.as_slice::<f32>() {
        Some(s) if t.is_contiguous() => std::borrow::Cow::Borrowed(s),
        _ => std::borrow::Cow::Owned(
            t.to_contiguous()
                .as_slice::<f32>()
                .expect("f32 tensor")
                .to_vec(),
        ),
    }
}

fn gn_shape(x: &FlexTensor, groups: usize) -> GnShape {
    let dims = x.shape().to_vec();
    GnShape {
        n: dims[0],
        c: dims[1],
        s: dims[2..].iter().product(),
        groups,
    }
}

fn flex_tensor(values: Vec<f32>, shape: burn::tensor::Shape) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

impl CpuKernelsGrad for Flex {
    fn group_norm_act_stats(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        args: GnArgs,
    ) -> (FlexTensor, Vec<[f32; 2]>) {
        let shape = gn_shape(&x, args.groups);
        let (out, stats) = group_norm::forward(
            &host_f32(&x),
            &host_f32(&gamma),
            &host_f32(&beta),
            shape,
            args.eps,
            args.silu,
        );
        (flex_tensor(out, x.shape()), stats)
    }

    fn group_norm_act_backward(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        stats: &[[f32; 2]],
        grad: FlexTensor,
        args: GnArgs,
    ) -> [FlexTensor; 3] {
        let shape = gn_shape(&x, args.groups);
        let (dx, dg, db) = group_norm::backward(
            &host_f32(&x),
            &host_f32(&gamma),
            &host_f32(&beta),
            stats,
            &host_f32(&grad),
            shape,
            args.silu,
        );
        [
            flex_tensor(dx, x.shape()),
            flex_tensor(dg, gamma.shape()),
            flex_tensor(db, beta.shape()),
        ]
    }
}

impl CpuKernels for Flex {
    fn group_norm_act(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        groups: usize,
        eps: f64,
        silu: bool,
    ) -> FlexTensor {
        Self::group_norm_act_stats(x, gamma, beta, GnArgs { groups, eps, silu }).0
    }
}

/// Fused GroupNorm (+ SiLU) on the flex backend. `x: [n, c, ...]`, `gamma`,
/// `beta: [c]`. Panics on any other backend: check [`on_flex`] first.
pub fn group_norm_act<const D: usize>(
    x: Tensor<D>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    args: GnArgs,
) -> Tensor<D> {
    let out = <burn::backend::Dispatch as CpuKernels>::group_norm_act(
        x.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        args.groups,
        args.eps,
        args.silu,
    );
    Tensor::from_dispatch(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::model::layers::GroupNorm;
    use burn::module::Param;
    use burn::tensor::Distribution;

    fn max_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
        (a - b).abs().max().into_scalar::<f32>()
    }

    /// The fused kernel through burn's autodiff gives the composite's output and gradients.
    #[test]
    fn fused_group_norm_matches_burns_ops_forward_and_backward() {
        let d = Device::flex().autodiff();
        assert!(on_flex(&d) && on_flex(&Device::flex()));
        let mut norm = GroupNorm::new(4, 8, 1e-5, &d);
        norm.weight = Param::from_tensor(Tensor::random([8], Distribution::Normal(1.0, 0.3), &d));
        norm.bias = Param::from_tensor(Tensor::random([8], Distribution::Normal(0.0, 0.3), &d));
        let x =
            Tensor::<4>::random([3, 8, 5, 6], Distribution::Normal(0.5, 2.0), &d).require_grad();
        let w = Tensor::<4>::random([3, 8, 5, 6], Distribution::Normal(0.0, 1.0), &d);
        for silu in [false, true] {
            let fused = if silu {
                norm.forward_silu(x.clone())
            } else {
                norm.forward(x.clone())
            };
            let reference = {
                let out = norm.composite(x.clone());
                if silu {
                    burn::tensor::activation::silu(out)
                } else {
                    out
                }
            };
            assert!(max_diff(fused.clone(), reference.clone()) < 1e-5);
            let g_fused = (fused * w.clone()).sum().backward();
            let g_ref = (reference * w.clone()).sum().backward();
            let pairs = [(x.grad(&g_fused).unwrap(), x.grad(&g_ref).unwrap())];
            for (a, b) in pairs {
                let err = max_diff(a, b);
                assert!(err < 1e-4, "silu {silu}: dx differs by {err}");
            }
            for (p, name) in [(&norm.weight, "gamma"), (&norm.bias, "beta")] {
                let err = max_diff(
                    p.val().grad(&g_fused).unwrap(),
                    p.val().grad(&g_ref).unwrap(),
                );
                assert!(err < 1e-4, "silu {silu}: d{name} differs by {err}");
            }
        }
    }

    /// Without autodiff the fused op runs as a plain forward.
    #[test]
    fn fused_group_norm_runs_without_autodiff() {
        let d = Device::flex();
        let norm = GroupNorm::new(2, 4, 1e-6, &d);
        let x = Tensor::<4>::random([2, 4, 3, 3], Distribution::Normal(0.0, 1.0), &d);
        assert!(max_diff(norm.forward(x.clone()), norm.composite(x)) < 1e-5);
    }
}

//! Host kernels of our own for the CPU (flex) backend, where burn's generic
//! compositions are slow: fused GroupNorm + SiLU, im2col + gemm convolution (Winograd
//! F(2x2, 3x3) for wide 3x3 ones), fully connected layers and scaled dot-product
//! attention, each with a handwritten backward.
//!
//! They enter burn as a backend extension ([`CpuKernels`]) implemented for
//! `Flex` and for `Autodiff<Flex>`. The model calls them only for f32 tensors
//! on the flex device ([`takes`]); on wgpu it keeps burn's own ops, which burn
//! fuses there.

pub mod attention;
mod autodiff;
mod bias;
mod buffer;
pub mod conv;
mod exp;
mod flex;
pub mod group_norm;
mod lane_sums;
pub mod layout;
mod layout_ops;
pub mod linear;
pub mod matmul;
pub mod merge;
mod simd;
#[cfg(test)]
mod test_data;
mod winograd;

use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, DispatchDevice, backend_extension};
use burn::tensor::{Device, Tensor};

pub use group_norm::GnShape;
pub use layout_ops::{CpuLayout, CpuLayoutGrad, cat_channels, swap_last, upsample_nearest2x};
pub use simd::kernel_variants;

/// Whether `device` is burn's flex CPU backend (with or without autodiff).
pub fn on_flex(device: &Device) -> bool {
    matches!(
        device.clone().inner().as_dispatch(),
        DispatchDevice::Flex(_)
    )
}

/// Whether the kernels here take `x`: an f32 tensor on the flex backend.
pub fn takes<const D: usize>(x: &Tensor<D>) -> bool {
    x.dtype() == burn::tensor::DType::F32 && on_flex(&x.device())
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

    /// 2D convolution, groups 1, dilation 1: `x [n, cin, h, w]`, `weight
    /// [cout, cin, k, k]`, `bias [cout]` or `[n, cout]` (one row per sample),
    /// padding (top, bottom, left, right).
    fn conv2d_im2col(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        stride: usize,
        pad: [usize; 4],
    ) -> FloatTensor<Self>;

    /// [`CpuKernels::conv2d_im2col`] plus `residual` (shaped as the output),
    /// added in the convolution's own output pass.
    fn conv2d_im2col_add(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        residual: FloatTensor<Self>,
        stride: usize,
        pad: [usize; 4],
    ) -> FloatTensor<Self>;

    /// Scaled dot-product attention over `q`, `k`, `v` `[n, len, c]` with
    /// `heads` heads side by side in the channels -> `[n, len, c]`.
    fn attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        heads: usize,
    ) -> FloatTensor<Self>;

    /// `x [m, din] W^T + b` with `W [dout, din]`, `b [dout]` -> `[m, dout]`.
    fn linear(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
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

    /// `(dx, dweight, dbias)` of [`CpuKernels::conv2d_im2col`]; `dx` only when
    /// asked; `dbias` is `[n, cout]` when the bias was per sample, else `[cout]`.
    fn conv2d_im2col_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        conv: ConvArgs,
        need_dx: bool,
    ) -> (
        Option<FloatTensor<Self>>,
        FloatTensor<Self>,
        FloatTensor<Self>,
    );

    /// [`CpuKernels::attention`] that also returns the attention weights
    /// `[n, heads, len, len]` for the backward.
    fn attention_probs(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        heads: usize,
    ) -> (FloatTensor<Self>, Vec<f32>);

    /// `[dq, dk, dv]` of [`CpuKernels::attention`].
    fn attention_backward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        probs: &[f32],
        grad: FloatTensor<Self>,
        heads: usize,
    ) -> [FloatTensor<Self>; 3];

    /// `(dx, dweight, dbias)` of [`CpuKernels::linear`]; `dx` only when asked.
    fn linear_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        need_dx: bool,
    ) -> (
        Option<FloatTensor<Self>>,
        FloatTensor<Self>,
        FloatTensor<Self>,
    );
}

/// Settings of one convolution call that its backward needs again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvArgs {
    /// Stride along both axes.
    pub stride: usize,
    /// Padding (top, bottom, left, right).
    pub pad: [usize; 4],
    /// Whether the bias is `[n, cout]` (a row per sample) rather than `[cout]`.
    pub per_sample_bias: bool,
}

/// 2D convolution (groups 1, dilation 1) on the flex backend; `bias` is
/// `[cout]` or `[n, cout]` (a row per sample, `B = 2`); padding is (top, bottom,
/// left, right). Panics on any other backend or dtype: check [`takes`] first.
pub fn conv2d<const B: usize>(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Tensor<B>,
    stride: usize,
    pad: [usize; 4],
) -> Tensor<4> {
    let out = <burn::backend::Dispatch as CpuKernels>::conv2d_im2col(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
        stride,
        pad,
    );
    Tensor::from_dispatch(out)
}

/// `x W^T + b` over the last dimension of `x` on the flex backend (`W [dout,
/// din]`, `b [dout]`). Panics on any other backend or dtype: check [`takes`] first.
pub fn linear<const D: usize>(x: Tensor<D>, weight: Tensor<2>, bias: Tensor<1>) -> Tensor<D> {
    let mut dims = x.dims();
    let din = dims[D - 1];
    dims[D - 1] = weight.dims()[0];
    let rows = x.reshape([-1, din as i64]);
    let out = <burn::backend::Dispatch as CpuKernels>::linear(
        rows.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
    );
    Tensor::<2>::from_dispatch(out).reshape(dims)
}

/// [`conv2d`] plus `residual` (shaped as the output), added in the
/// convolution's own output pass. Panics on any other backend or dtype: check
/// [`takes`] first.
pub fn conv2d_add<const B: usize>(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Tensor<B>,
    residual: Tensor<4>,
    stride: usize,
    pad: [usize; 4],
) -> Tensor<4> {
    let out = <burn::backend::Dispatch as CpuKernels>::conv2d_im2col_add(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
        residual.into_dispatch(),
        stride,
        pad,
    );
    Tensor::from_dispatch(out)
}

/// Scaled dot-product attention on the flex backend: `q`, `k`, `v` `[n, len,
/// c]` with `heads` heads side by side in the channels -> `[n, len, c]` (see
/// [`attention`]). Panics on any other backend or dtype: check [`takes`] first.
pub fn attention(q: Tensor<3>, k: Tensor<3>, v: Tensor<3>, heads: usize) -> Tensor<3> {
    let out = <burn::backend::Dispatch as CpuKernels>::attention(
        q.into_dispatch(),
        k.into_dispatch(),
        v.into_dispatch(),
        heads,
    );
    Tensor::from_dispatch(out)
}

/// Fused GroupNorm (+ SiLU) on the flex backend. `x: [n, c, ...]`, `gamma`,
/// `beta: [c]`. Panics on any other backend or dtype: check [`takes`] first.
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
        assert!(takes(&Tensor::<1>::zeros([2], &d)));
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

    /// The im2col convolution through burn's autodiff gives burn's own conv2d
    /// output and gradients, for every geometry the UNet uses.
    #[test]
    fn im2col_conv_matches_burns_conv2d_forward_and_backward() {
        use burn::tensor::module::conv2d as burn_conv2d;
        use burn::tensor::ops::ConvOptions;
        let d = Device::flex().autodiff();
        // (cin, cout, k, stride, pad, batch)
        let cases = [
            (3, 5, 3, 1, [1, 1, 1, 1], 4),
            (4, 4, 3, 2, [1, 1, 1, 1], 3),
            (4, 6, 3, 2, [0, 1, 0, 1], 2),
            (6, 3, 1, 1, [0, 0, 0, 0], 5),
            (2, 2, 3, 1, [1, 1, 1, 1], 1),
        ];
        for (cin, cout, k, stride, pad, n) in cases {
            let x = Tensor::<4>::random([n, cin, 9, 8], Distribution::Normal(0.0, 1.0), &d)
                .require_grad();
            let w = Tensor::<4>::random([cout, cin, k, k], Distribution::Normal(0.0, 0.3), &d)
                .require_grad();
            let b = Tensor::<1>::random([cout], Distribution::Normal(0.0, 0.3), &d).require_grad();
            let ours = conv2d(x.clone(), w.clone(), b.clone(), stride, pad);
            let [t, bo, l, r] = pad;
            let opts = ConvOptions::new_with_padding([stride; 2], [(t, bo), (l, r)], [1, 1], 1);
            let reference = burn_conv2d(x.clone(), w.clone(), Some(b.clone()), opts);
            assert_eq!(ours.dims(), reference.dims());
            assert!(max_diff(ours.clone(), reference.clone()) < 1e-4);
            let probe = Tensor::<4>::random(ours.dims(), Distribution::Normal(0.0, 1.0), &d);
            let g_ours = (ours * probe.clone()).sum().backward();
            let g_ref = (reference * probe).sum().backward();
            let what = format!("cin {cin} cout {cout} k {k} stride {stride} pad {pad:?}");
            assert!(
                max_diff(x.grad(&g_ours).unwrap(), x.grad(&g_ref).unwrap()) < 1e-4,
                "dx: {what}"
            );
            assert!(
                max_diff(w.grad(&g_ours).unwrap(), w.grad(&g_ref).unwrap()) < 1e-3,
                "dw: {what}"
            );
            assert!(
                max_diff(b.grad(&g_ours).unwrap(), b.grad(&g_ref).unwrap()) < 1e-3,
                "db: {what}"
            );
        }
    }

    /// A per-sample bias `[n, cout]` through burn's autodiff gives burn's conv2d
    /// plus the broadcast rows, and the same gradients, the rows' included.
    #[test]
    fn a_per_sample_bias_matches_burns_conv2d_plus_a_broadcast_add() {
        use burn::tensor::module::conv2d as burn_conv2d;
        use burn::tensor::ops::ConvOptions;
        let d = Device::flex().autodiff();
        // (cin, cout, k, stride, pad, batch)
        for (cin, cout, k, stride, pad, n) in [(3, 5, 3, 1, 1, 4), (4, 6, 3, 2, 1, 2)] {
            let x = Tensor::<4>::random([n, cin, 9, 8], Distribution::Normal(0.0, 1.0), &d)
                .require_grad();
            let w = Tensor::<4>::random([cout, cin, k, k], Distribution::Normal(0.0, 0.3), &d)
                .require_grad();
            let rows =
                Tensor::<2>::random([n, cout], Distribution::Normal(0.0, 0.3), &d).require_grad();
            let ours = conv2d(x.clone(), w.clone(), rows.clone(), stride, [pad; 4]);
            let opts = ConvOptions::new([stride; 2], [pad; 2], [1, 1], 1);
            let reference = burn_conv2d(x.clone(), w.clone(), None, opts)
                + rows.clone().reshape([n, cout, 1, 1]);
            assert!(max_diff(ours.clone(), reference.clone()) < 1e-4);
            let probe = Tensor::<4>::random(ours.dims(), Distribution::Normal(0.0, 1.0), &d);
            let g_ours = (ours * probe.clone()).sum().backward();
            let g_ref = (reference * probe).sum().backward();
            let what = format!("cin {cin} cout {cout} stride {stride}");
            let d_rows = rows.grad(&g_ours).unwrap();
            assert_eq!(d_rows.dims(), [n, cout], "{what}");
            assert!(
                max_diff(d_rows, rows.grad(&g_ref).unwrap()) < 1e-3,
                "{what}"
            );
            assert!(max_diff(x.grad(&g_ours).unwrap(), x.grad(&g_ref).unwrap()) < 1e-4);
            assert!(max_diff(w.grad(&g_ours).unwrap(), w.grad(&g_ref).unwrap()) < 1e-3);
        }
    }

    /// Attention through burn's autodiff gives burn's composite (split heads,
    /// scaled scores, softmax, merge) and the same gradients of q, k and v.
    #[test]
    fn attention_matches_burns_composite_forward_and_backward() {
        use burn::tensor::activation::softmax;
        let d = Device::flex().autodiff();
        for (n, len, c, heads) in [(3, 49, 16, 1), (2, 10, 12, 3)] {
            let hd = c / heads;
            let random = || {
                Tensor::<3>::random([n, len, c], Distribution::Normal(0.0, 1.0), &d).require_grad()
            };
            let (q, k, v) = (random(), random(), random());
            let ours = attention(q.clone(), k.clone(), v.clone(), heads);
            let split = |t: Tensor<3>| t.reshape([n, len, heads, hd]).swap_dims(1, 2);
            let scores = split(q.clone()).matmul(split(k.clone()).swap_dims(2, 3))
                * (1.0 / (hd as f64).sqrt());
            let reference = softmax(scores, 3)
                .matmul(split(v.clone()))
                .swap_dims(1, 2)
                .reshape([n, len, c]);
            assert!(max_diff(ours.clone(), reference.clone()) < 1e-5);
            let probe = Tensor::<3>::random([n, len, c], Distribution::Normal(0.0, 1.0), &d);
            let g_ours = (ours * probe.clone()).sum().backward();
            let g_ref = (reference * probe).sum().backward();
            for (name, t) in [("q", &q), ("k", &k), ("v", &v)] {
                let diff = max_diff(t.grad(&g_ours).unwrap(), t.grad(&g_ref).unwrap());
                assert!(diff < 1e-4, "d{name} of {heads} heads: {diff}");
            }
        }
    }

    /// The linear kernel through burn's autodiff gives burn's `linear` and its
    /// gradients, on 2-D and 3-D inputs.
    #[test]
    fn linear_matches_burns_linear_forward_and_backward() {
        let d = Device::flex().autodiff();
        let w = Tensor::<2>::random([5, 7], Distribution::Normal(0.0, 0.5), &d).require_grad();
        let b = Tensor::<1>::random([5], Distribution::Normal(0.0, 0.5), &d).require_grad();
        let x = Tensor::<3>::random([3, 11, 7], Distribution::Normal(0.0, 1.0), &d).require_grad();
        let ours = linear(x.clone(), w.clone(), b.clone());
        let reference =
            burn::tensor::module::linear(x.clone(), w.clone().transpose(), Some(b.clone()));
        assert_eq!(ours.dims(), [3, 11, 5]);
        assert!(max_diff(ours.clone(), reference.clone()) < 1e-5);
        let probe = Tensor::<3>::random([3, 11, 5], Distribution::Normal(0.0, 1.0), &d);
        let g_ours = (ours * probe.clone()).sum().backward();
        let g_ref = (reference * probe).sum().backward();
        assert!(max_diff(x.grad(&g_ours).unwrap(), x.grad(&g_ref).unwrap()) < 1e-5);
        assert!(max_diff(w.grad(&g_ours).unwrap(), w.grad(&g_ref).unwrap()) < 1e-4);
        assert!(max_diff(b.grad(&g_ours).unwrap(), b.grad(&g_ref).unwrap()) < 1e-4);
        let flat = Tensor::<2>::random([4, 7], Distribution::Normal(0.0, 1.0), &d);
        let reference =
            burn::tensor::module::linear(flat.clone(), w.clone().transpose(), Some(b.clone()));
        assert!(max_diff(linear(flat, w, b), reference) < 1e-5);
    }

    /// A residual through burn's autodiff gives burn's conv2d plus the residual,
    /// and the residual's gradient is the output's.
    #[test]
    fn a_residual_matches_burns_conv2d_plus_an_add() {
        use burn::tensor::module::conv2d as burn_conv2d;
        use burn::tensor::ops::ConvOptions;
        let d = Device::flex().autodiff();
        let normal = |s: f64| Distribution::Normal(0.0, s);
        let x = Tensor::<4>::random([3, 4, 9, 8], normal(1.0), &d).require_grad();
        let w = Tensor::<4>::random([5, 4, 3, 3], normal(0.3), &d).require_grad();
        let b = Tensor::<1>::random([5], normal(0.3), &d).require_grad();
        let r = Tensor::<4>::random([3, 5, 9, 8], normal(1.0), &d).require_grad();
        let ours = conv2d_add(x.clone(), w.clone(), b.clone(), r.clone(), 1, [1; 4]);
        let opts = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
        let reference = burn_conv2d(x.clone(), w.clone(), Some(b.clone()), opts) + r.clone();
        assert!(max_diff(ours.clone(), reference.clone()) < 1e-4);
        let probe = Tensor::<4>::random([3, 5, 9, 8], normal(1.0), &d);
        let g_ours = (ours * probe.clone()).sum().backward();
        let g_ref = (reference * probe).sum().backward();
        assert!(max_diff(r.grad(&g_ours).unwrap(), r.grad(&g_ref).unwrap()) < 1e-6);
        assert!(max_diff(x.grad(&g_ours).unwrap(), x.grad(&g_ref).unwrap()) < 1e-4);
        assert!(max_diff(w.grad(&g_ours).unwrap(), w.grad(&g_ref).unwrap()) < 1e-3);
        assert!(max_diff(b.grad(&g_ours).unwrap(), b.grad(&g_ref).unwrap()) < 1e-3);
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

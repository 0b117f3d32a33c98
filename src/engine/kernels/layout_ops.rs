//! The [`layout`](super::layout) kernels as burn operations on the flex
//! backend, with their backward passes for autodiff.

use super::flex::{flex_tensor, host_f32};
use super::layout;
use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Flex, TensorMetadata, backend_extension};
use burn::tensor::{Shape, Tensor};

/// Data-movement operations of the engine, routed through burn's `Dispatch`.
#[backend_extension(Flex, Autodiff)]
pub trait CpuLayout: Backend {
    /// Nearest-neighbour upsampling by two: `[n, c, h, w] -> [n, c, 2h, 2w]`.
    fn upsample_nearest2x(x: FloatTensor<Self>) -> FloatTensor<Self>;

    /// `cat([a, b], 1)` of `[n, ca, ...]` and `[n, cb, ...]`.
    fn cat_channels(a: FloatTensor<Self>, b: FloatTensor<Self>) -> FloatTensor<Self>;

    /// `[n, a, b] -> [n, b, a]`, laid out anew (burn's `swap_dims(1, 2)` is a
    /// strided view whose later copy runs on one thread).
    fn swap_last(x: FloatTensor<Self>) -> FloatTensor<Self>;
}

/// The pieces the autodiff wrapper needs from the concrete backend.
pub trait CpuLayoutGrad: Backend {
    /// Gradient of [`CpuLayout::upsample_nearest2x`]: the sum over each 2x2 block.
    fn upsample_nearest2x_backward(grad: FloatTensor<Self>) -> FloatTensor<Self>;

    /// Splits `[n, c, ...]` into the first `ca` channels and the rest.
    fn split_channels(x: FloatTensor<Self>, ca: usize) -> [FloatTensor<Self>; 2];
}

fn dims4(t: &FlexTensor) -> [usize; 4] {
    let d = t.shape().to_vec();
    assert_eq!(d.len(), 4, "expected a [n, c, h, w] tensor");
    [d[0], d[1], d[2], d[3]]
}

/// Shape of `t` with its channel axis (1) set to `c`.
fn with_channels(t: &FlexTensor, c: usize) -> Shape {
    let mut d = t.shape().to_vec();
    d[1] = c;
    Shape::from(d)
}

impl CpuLayout for Flex {
    fn upsample_nearest2x(x: FlexTensor) -> FlexTensor {
        let [n, c, h, w] = dims4(&x);
        let out = layout::upsample2x(&host_f32(&x), h, w);
        flex_tensor(out, Shape::new([n, c, 2 * h, 2 * w]))
    }

    fn cat_channels(a: FlexTensor, b: FlexTensor) -> FlexTensor {
        let (sa, sb) = (a.shape().to_vec(), b.shape().to_vec());
        assert!(
            sa.len() >= 2 && sa.len() == sb.len() && sa[0] == sb[0] && sa[2..] == sb[2..],
            "cat along channels needs equal batch and spatial sizes: {sa:?} and {sb:?}"
        );
        let out = layout::concat(&host_f32(&a), &host_f32(&b), sa[0]);
        flex_tensor(out, with_channels(&a, sa[1] + sb[1]))
    }

    fn swap_last(x: FlexTensor) -> FlexTensor {
        let [n, a, b] = dims3(&x);
        flex_tensor(
            layout::transpose(&host_f32(&x), n, a, b),
            Shape::new([n, b, a]),
        )
    }
}

fn dims3(t: &FlexTensor) -> [usize; 3] {
    let d = t.shape().to_vec();
    assert_eq!(d.len(), 3, "expected a [n, a, b] tensor");
    [d[0], d[1], d[2]]
}

impl CpuLayoutGrad for Flex {
    fn upsample_nearest2x_backward(grad: FlexTensor) -> FlexTensor {
        let [n, c, h2, w2] = dims4(&grad);
        let (h, w) = (h2 / 2, w2 / 2);
        let dx = layout::upsample2x_backward(&host_f32(&grad), h, w);
        flex_tensor(dx, Shape::new([n, c, h, w]))
    }

    fn split_channels(x: FlexTensor, ca: usize) -> [FlexTensor; 2] {
        let d = x.shape().to_vec();
        let spatial: usize = d[2..].iter().product();
        let (a, b) = layout::split(&host_f32(&x), d[0], ca * spatial);
        [
            flex_tensor(a, with_channels(&x, ca)),
            flex_tensor(b, with_channels(&x, d[1] - ca)),
        ]
    }
}

#[derive(Debug)]
struct Upsample2x;

impl<B: Backend + CpuLayoutGrad> Backward<B, 1> for Upsample2x {
    type State = ();

    fn backward(self, ops: Ops<(), 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        if let Some(node) = node_x {
            grads.register::<B>(node.id, B::upsample_nearest2x_backward(grad));
        }
    }
}

#[derive(Debug)]
struct SwapLast;

impl<B: Backend + CpuLayout> Backward<B, 1> for SwapLast {
    type State = ();

    fn backward(self, ops: Ops<(), 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        if let Some(node) = node_x {
            grads.register::<B>(node.id, B::swap_last(grad));
        }
    }
}

#[derive(Debug)]
struct CatChannels;

impl<B: Backend + CpuLayoutGrad> Backward<B, 2> for CatChannels {
    /// Channels of the first input.
    type State = usize;

    fn backward(self, ops: Ops<usize, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_a, node_b] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let [da, db] = B::split_channels(grad, ops.state);
        if let Some(node) = node_a {
            grads.register::<B>(node.id, da);
        }
        if let Some(node) = node_b {
            grads.register::<B>(node.id, db);
        }
    }
}

impl<B: Backend + CpuLayout + CpuLayoutGrad, C: CheckpointStrategy> CpuLayout for Autodiff<B, C> {
    fn upsample_nearest2x(x: FloatTensor<Self>) -> FloatTensor<Self> {
        Upsample2x
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateless(B::upsample_nearest2x(x.into_primitive()))
    }

    fn cat_channels(a: FloatTensor<Self>, b: FloatTensor<Self>) -> FloatTensor<Self> {
        let ca = a.shape()[1];
        let prep = CatChannels
            .prepare::<C>([a.node(), b.node()])
            .compute_bound()
            .stateful();
        let out = B::cat_channels(a.into_primitive(), b.into_primitive());
        match prep {
            OpsKind::Tracked(prep) => prep.finish(ca, out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }

    fn swap_last(x: FloatTensor<Self>) -> FloatTensor<Self> {
        SwapLast
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateless(B::swap_last(x.into_primitive()))
    }
}

/// Nearest-neighbour upsampling by two on the flex backend: `[n, c, h, w] ->
/// [n, c, 2h, 2w]`. Panics on any other backend or dtype: check
/// [`takes`](super::takes) first.
pub fn upsample_nearest2x(x: Tensor<4>) -> Tensor<4> {
    Tensor::from_dispatch(<burn::backend::Dispatch as CpuLayout>::upsample_nearest2x(
        x.into_dispatch(),
    ))
}

/// `Tensor::cat(vec![a, b], 1)` on the flex backend. Panics on any other
/// backend or dtype: check [`takes`](super::takes) first.
pub fn cat_channels(a: Tensor<4>, b: Tensor<4>) -> Tensor<4> {
    Tensor::from_dispatch(<burn::backend::Dispatch as CpuLayout>::cat_channels(
        a.into_dispatch(),
        b.into_dispatch(),
    ))
}

/// `x.swap_dims(1, 2)` of `[n, a, b]`, laid out anew in parallel, on the flex
/// backend. Panics on any other backend or dtype: check [`takes`](super::takes) first.
pub fn swap_last(x: Tensor<3>) -> Tensor<3> {
    Tensor::from_dispatch(<burn::backend::Dispatch as CpuLayout>::swap_last(
        x.into_dispatch(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution};

    fn max_diff(a: Tensor<4>, b: Tensor<4>) -> f32 {
        (a - b).abs().max().into_scalar::<f32>()
    }

    /// burn's composite upsampling, as the model wrote it before.
    fn composite_upsample(x: Tensor<4>) -> Tensor<4> {
        let [n, c, h, w] = x.dims();
        x.reshape([n, c, h, 1, w, 1])
            .expand([n, c, h, 2, w, 2])
            .reshape([n, c, 2 * h, 2 * w])
    }

    #[test]
    fn upsampling_matches_burns_ops_forward_and_backward() {
        let d = Device::flex().autodiff();
        let x =
            Tensor::<4>::random([2, 3, 4, 5], Distribution::Normal(0.0, 1.0), &d).require_grad();
        let ours = upsample_nearest2x(x.clone());
        let reference = composite_upsample(x.clone());
        assert_eq!(ours.dims(), [2, 3, 8, 10]);
        assert_eq!(max_diff(ours.clone(), reference.clone()), 0.0);
        let probe = Tensor::<4>::random(ours.dims(), Distribution::Normal(0.0, 1.0), &d);
        let g_ours = (ours * probe.clone()).sum().backward();
        let g_ref = (reference * probe).sum().backward();
        assert!(max_diff(x.grad(&g_ours).unwrap(), x.grad(&g_ref).unwrap()) < 1e-5);
    }

    #[test]
    fn channel_concat_matches_burns_cat_forward_and_backward() {
        let d = Device::flex().autodiff();
        let a =
            Tensor::<4>::random([3, 2, 4, 4], Distribution::Normal(0.0, 1.0), &d).require_grad();
        let b =
            Tensor::<4>::random([3, 5, 4, 4], Distribution::Normal(0.0, 1.0), &d).require_grad();
        // a transposed view: the kernel must read it in logical order
        // (one view per graph: a backward pass consumes the nodes it walks)
        let view = || b.clone().swap_dims(2, 3);
        let ours = cat_channels(a.clone(), view());
        let reference = Tensor::cat(vec![a.clone(), view()], 1);
        assert_eq!(ours.dims(), [3, 7, 4, 4]);
        assert_eq!(max_diff(ours.clone(), reference.clone()), 0.0);
        let probe = Tensor::<4>::random(ours.dims(), Distribution::Normal(0.0, 1.0), &d);
        let g_ours = (ours * probe.clone()).sum().backward();
        let g_ref = (reference * probe).sum().backward();
        assert_eq!(
            max_diff(a.grad(&g_ours).unwrap(), a.grad(&g_ref).unwrap()),
            0.0
        );
        assert_eq!(
            max_diff(b.grad(&g_ours).unwrap(), b.grad(&g_ref).unwrap()),
            0.0
        );
        // only one input tracked
        let c = Tensor::<4>::random([3, 1, 4, 4], Distribution::Normal(0.0, 1.0), &d);
        let e =
            Tensor::<4>::random([3, 5, 4, 4], Distribution::Normal(0.0, 1.0), &d).require_grad();
        let g = (cat_channels(c, e.clone()) * 2.0).sum().backward();
        let ones = Tensor::<4>::ones([3, 5, 4, 4], &d) * 2.0;
        assert_eq!(max_diff(e.grad(&g).unwrap(), ones.inner()), 0.0);
    }

    #[test]
    fn swapping_the_last_axes_matches_burns_swap_dims_forward_and_backward() {
        let d = Device::flex().autodiff();
        let x = Tensor::<3>::random([3, 19, 33], Distribution::Normal(0.0, 1.0), &d).require_grad();
        let ours = swap_last(x.clone());
        let reference = x.clone().swap_dims(1, 2);
        assert_eq!(ours.dims(), [3, 33, 19]);
        assert_eq!(ours.to_data(), reference.to_data());
        let probe = Tensor::<3>::random([3, 33, 19], Distribution::Normal(0.0, 1.0), &d);
        let g_ours = (ours * probe.clone()).sum().backward();
        let g_ref = (reference * probe).sum().backward();
        assert_eq!(
            x.grad(&g_ours).unwrap().to_data(),
            x.grad(&g_ref).unwrap().to_data()
        );
    }

    #[test]
    fn layout_ops_run_without_autodiff() {
        let d = Device::flex();
        let x = Tensor::<4>::random([1, 2, 3, 3], Distribution::Normal(0.0, 1.0), &d);
        assert_eq!(
            max_diff(upsample_nearest2x(x.clone()), composite_upsample(x.clone())),
            0.0
        );
        let cat = cat_channels(x.clone(), x.clone());
        assert_eq!(max_diff(cat, Tensor::cat(vec![x.clone(), x], 1)), 0.0);
    }
}

//! Handwritten backward passes of the [`CpuKernels`](super::CpuKernels) for burn's autodiff.

use super::{ConvArgs, CpuKernels, CpuKernelsGrad, GnArgs};
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, NodeGuard, Ops, OpsKind};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, TensorMetadata};

#[derive(Debug)]
struct GroupNormAct;

impl<B: Backend + CpuKernelsGrad> Backward<B, 3> for GroupNormAct {
    type State = (NodeId, NodeId, NodeId, Vec<[f32; 2]>, GnArgs);

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_gamma, node_beta] = ops.parents.map(|p| p.map(|n| n.id));
        let grad = grads.consume::<B>(&ops.node);
        let (x_state, gamma_state, beta_state, stats, args) = ops.state;
        let x = checkpointer.retrieve_node_output::<FloatTensor<B>>(x_state);
        let gamma = checkpointer.retrieve_node_output::<FloatTensor<B>>(gamma_state);
        let beta = checkpointer.retrieve_node_output::<FloatTensor<B>>(beta_state);
        let d = B::group_norm_act_backward(x, gamma, beta, &stats, grad, args);
        register_grads::<B, 3>(grads, [node_x, node_gamma, node_beta], d.map(Some));
    }
}

/// The convolution's backward; with four parents the fourth is a residual
/// added to the output, whose gradient is the output's.
#[derive(Debug)]
struct Conv2dIm2col;

impl<B: Backend + CpuKernelsGrad, const N: usize> Backward<B, N> for Conv2dIm2col {
    type State = (NodeId, NodeId, ConvArgs);

    fn backward(
        self,
        ops: Ops<Self::State, N>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let mut parents = ops.parents.into_iter().map(|p| p.map(|n| n.id));
        let [node_x, node_weight, node_bias] = std::array::from_fn(|_| parents.next().flatten());
        let node_residual = parents.next().flatten();
        let grad = grads.consume::<B>(&ops.node);
        if let Some(id) = node_residual {
            grads.register::<B>(id, grad.clone());
        }
        let (x_state, weight_state, conv) = ops.state;
        let x = checkpointer.retrieve_node_output::<FloatTensor<B>>(x_state);
        let weight = checkpointer.retrieve_node_output::<FloatTensor<B>>(weight_state);
        let (dx, dweight, dbias) =
            B::conv2d_im2col_backward(x, weight, grad, conv, node_x.is_some());
        let d = [dx, Some(dweight), Some(dbias)];
        register_grads::<B, 3>(grads, [node_x, node_weight, node_bias], d);
    }
}

#[derive(Debug)]
struct Linear;

impl<B: Backend + CpuKernelsGrad> Backward<B, 3> for Linear {
    type State = (NodeId, NodeId);

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_weight, node_bias] = ops.parents.map(|p| p.map(|n| n.id));
        let grad = grads.consume::<B>(&ops.node);
        let (x_state, weight_state) = ops.state;
        let x = checkpointer.retrieve_node_output::<FloatTensor<B>>(x_state);
        let weight = checkpointer.retrieve_node_output::<FloatTensor<B>>(weight_state);
        let (dx, dweight, dbias) = B::linear_backward(x, weight, grad, node_x.is_some());
        let d = [dx, Some(dweight), Some(dbias)];
        register_grads::<B, 3>(grads, [node_x, node_weight, node_bias], d);
    }
}

#[derive(Debug)]
struct Attention;

impl<B: Backend + CpuKernelsGrad> Backward<B, 3> for Attention {
    type State = (NodeId, NodeId, NodeId, Vec<f32>, usize);

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let grad = grads.consume::<B>(&ops.node);
        let (q_state, k_state, v_state, probs, heads) = ops.state;
        let q = checkpointer.retrieve_node_output::<FloatTensor<B>>(q_state);
        let k = checkpointer.retrieve_node_output::<FloatTensor<B>>(k_state);
        let v = checkpointer.retrieve_node_output::<FloatTensor<B>>(v_state);
        let dqkv = B::attention_backward(q, k, v, &probs, grad, heads);
        register_grads::<B, 3>(grads, ops.parents.map(|p| p.map(|n| n.id)), dqkv.map(Some));
    }
}

/// Registers each computed gradient with its parent, where the parent is tracked.
fn register_grads<B: Backend, const N: usize>(
    grads: &mut Gradients,
    parents: [Option<NodeId>; N],
    values: [Option<FloatTensor<B>>; N],
) {
    for (id, value) in parents.into_iter().zip(values) {
        if let (Some(id), Some(value)) = (id, value) {
            grads.register::<B>(id, value);
        }
    }
}

impl<B: Backend + CpuKernels + CpuKernelsGrad, C: CheckpointStrategy> CpuKernels
    for Autodiff<B, C>
{
    fn group_norm_act(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        groups: usize,
        eps: f64,
        silu: bool,
    ) -> FloatTensor<Self> {
        let args = GnArgs { groups, eps, silu };
        match GroupNormAct
            .prepare::<C>([x.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let gamma_state = prep.checkpoint(&gamma);
                let beta_state = prep.checkpoint(&beta);
                let (out, stats) = B::group_norm_act_stats(
                    x.into_primitive(),
                    gamma.into_primitive(),
                    beta.into_primitive(),
                    args,
                );
                prep.finish((x_state, gamma_state, beta_state, stats, args), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::group_norm_act(
                x.into_primitive(),
                gamma.into_primitive(),
                beta.into_primitive(),
                groups,
                eps,
                silu,
            )),
        }
    }

    fn conv2d_im2col(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        stride: usize,
        pad: [usize; 4],
    ) -> FloatTensor<Self> {
        let conv = ConvArgs::new::<B, C>(stride, pad, &bias);
        let parents = [x.node(), weight.node(), bias.node()];
        let bias = bias.into_primitive();
        conv_op::<B, C, 3>(parents, x, weight, conv, |x, w| {
            B::conv2d_im2col(x, w, bias, stride, pad)
        })
    }

    fn conv2d_im2col_add(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        residual: FloatTensor<Self>,
        stride: usize,
        pad: [usize; 4],
    ) -> FloatTensor<Self> {
        let conv = ConvArgs::new::<B, C>(stride, pad, &bias);
        let parents = [x.node(), weight.node(), bias.node(), residual.node()];
        let (bias, residual) = (bias.into_primitive(), residual.into_primitive());
        conv_op::<B, C, 4>(parents, x, weight, conv, |x, w| {
            B::conv2d_im2col_add(x, w, bias, residual, stride, pad)
        })
    }

    fn attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        heads: usize,
    ) -> FloatTensor<Self> {
        match Attention
            .prepare::<C>([q.node(), k.node(), v.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let q_state = prep.checkpoint(&q);
                let k_state = prep.checkpoint(&k);
                let v_state = prep.checkpoint(&v);
                let (out, probs) = B::attention_probs(
                    q.into_primitive(),
                    k.into_primitive(),
                    v.into_primitive(),
                    heads,
                );
                prep.finish((q_state, k_state, v_state, probs, heads), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(<B as CpuKernels>::attention(
                q.into_primitive(),
                k.into_primitive(),
                v.into_primitive(),
                heads,
            )),
        }
    }

    fn linear(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        match Linear
            .prepare::<C>([x.node(), weight.node(), bias.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let weight_state = prep.checkpoint(&weight);
                let out = <B as CpuKernels>::linear(
                    x.into_primitive(),
                    weight.into_primitive(),
                    bias.into_primitive(),
                );
                prep.finish((x_state, weight_state), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(<B as CpuKernels>::linear(
                x.into_primitive(),
                weight.into_primitive(),
                bias.into_primitive(),
            )),
        }
    }
}

impl ConvArgs {
    /// The settings of a call whose bias is `bias` (`[cout]` or `[n, cout]`).
    fn new<B: Backend, C: CheckpointStrategy>(
        stride: usize,
        pad: [usize; 4],
        bias: &FloatTensor<Autodiff<B, C>>,
    ) -> Self {
        Self {
            stride,
            pad,
            per_sample_bias: bias.shape().num_dims() == 2,
        }
    }
}

/// A convolution with `N` parents (input, weight, bias and, with four, a
/// residual) recorded for autodiff around `forward(x, weight)`, the concrete
/// backend's op.
fn conv_op<B, C, const N: usize>(
    parents: [NodeGuard; N],
    x: FloatTensor<Autodiff<B, C>>,
    weight: FloatTensor<Autodiff<B, C>>,
    conv: ConvArgs,
    forward: impl FnOnce(FloatTensor<B>, FloatTensor<B>) -> FloatTensor<B>,
) -> FloatTensor<Autodiff<B, C>>
where
    B: Backend + CpuKernelsGrad,
    C: CheckpointStrategy,
{
    match Conv2dIm2col
        .prepare::<C>(parents)
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(mut prep) => {
            let x_state = prep.checkpoint(&x);
            let weight_state = prep.checkpoint(&weight);
            let out = forward(x.into_primitive(), weight.into_primitive());
            prep.finish((x_state, weight_state, conv), out)
        }
        OpsKind::UnTracked(prep) => {
            prep.finish(forward(x.into_primitive(), weight.into_primitive()))
        }
    }
}

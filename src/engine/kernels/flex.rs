//! The kernels as burn operations on the flex backend: tensors in, host
//! slices to the kernels, tensors out.

use super::{
    ConvArgs, CpuKernels, CpuKernelsGrad, GnArgs, GnShape, attention, bias, conv, group_norm,
    linear,
};
use burn::backend::flex::FlexTensor;
use burn::backend::{Flex, TensorMetadata};
use burn::tensor::TensorData;

fn conv_geom(
    x: &FlexTensor,
    weight: &FlexTensor,
    stride: usize,
    pad: [usize; 4],
) -> conv::ConvGeom {
    let (xd, wd) = (x.shape().to_vec(), weight.shape().to_vec());
    assert_eq!(wd[2], wd[3], "the kernel must be square");
    conv::ConvGeom {
        n: xd[0],
        cin: xd[1],
        h: xd[2],
        w: xd[3],
        cout: wd[0],
        k: wd[2],
        stride,
        pad,
    }
}

/// The f32 values of `t` in row-major order: `t` itself when contiguous,
/// otherwise one contiguous copy.
pub(super) fn host_f32(t: &FlexTensor) -> HostF32 {
    HostF32(if t.is_contiguous() {
        t.clone()
    } else {
        t.to_contiguous()
    })
}

/// A contiguous f32 tensor, read as a slice.
pub(super) struct HostF32(FlexTensor);

impl std::ops::Deref for HostF32 {
    type Target = [f32];

    fn deref(&self) -> &[f32] {
        self.0.as_slice::<f32>().expect("a contiguous f32 tensor")
    }
}

/// The flex convolution, `bias` `[cout]` or `[n, cout]`, plus `residual` when given.
fn flex_conv(
    x: FlexTensor,
    weight: FlexTensor,
    bias: FlexTensor,
    residual: Option<FlexTensor>,
    stride: usize,
    pad: [usize; 4],
) -> FlexTensor {
    let g = conv_geom(&x, &weight, stride, pad);
    let b = host_f32(&bias);
    let b = if bias.shape().num_dims() == 2 {
        bias::Bias::PerSample(&b)
    } else {
        bias::Bias::Shared(&b)
    };
    let r = residual.as_ref().map(host_f32);
    let out = conv::forward(&g, &host_f32(&x), &host_f32(&weight), b, r.as_deref());
    flex_tensor(out, burn::tensor::Shape::new([g.n, g.cout, g.ho(), g.wo()]))
}

fn linear_shape(x: &FlexTensor, weight: &FlexTensor) -> linear::LinearShape {
    let (xd, wd) = (x.shape().to_vec(), weight.shape().to_vec());
    assert_eq!(xd.len(), 2, "the linear kernel takes [m, din] inputs");
    assert_eq!(xd[1], wd[1], "input features differ from the weight's");
    linear::LinearShape {
        m: xd[0],
        din: xd[1],
        dout: wd[0],
    }
}

fn attn_shape(q: &FlexTensor, heads: usize) -> attention::AttnShape {
    let dims = q.shape().to_vec();
    assert_eq!(dims.len(), 3, "attention takes [n, len, c] tensors");
    attention::AttnShape {
        n: dims[0],
        len: dims[1],
        c: dims[2],
        heads,
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

pub(super) fn flex_tensor(values: Vec<f32>, shape: burn::tensor::Shape) -> FlexTensor {
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

    fn conv2d_im2col_backward(
        x: FlexTensor,
        weight: FlexTensor,
        grad: FlexTensor,
        conv: ConvArgs,
        need_dx: bool,
    ) -> (Option<FlexTensor>, FlexTensor, FlexTensor) {
        let g = conv_geom(&x, &weight, conv.stride, conv.pad);
        let dy = host_f32(&grad);
        let w = host_f32(&weight);
        let (dx, dw) = conv::backward(&g, &host_f32(&x), &dy, &w, need_dx);
        let db = bias::grad(&dy, g.cout, g.positions(), conv.per_sample_bias);
        let db_shape = if conv.per_sample_bias {
            burn::tensor::Shape::new([g.n, g.cout])
        } else {
            burn::tensor::Shape::new([g.cout])
        };
        (
            dx.map(|dx| flex_tensor(dx, x.shape())),
            flex_tensor(dw, weight.shape()),
            flex_tensor(db, db_shape),
        )
    }

    fn attention_probs(
        q: FlexTensor,
        k: FlexTensor,
        v: FlexTensor,
        heads: usize,
    ) -> (FlexTensor, Vec<f32>) {
        let shape = attn_shape(&q, heads);
        let (out, probs) = attention::forward(&shape, &host_f32(&q), &host_f32(&k), &host_f32(&v));
        (flex_tensor(out, q.shape()), probs)
    }

    fn attention_backward(
        q: FlexTensor,
        k: FlexTensor,
        v: FlexTensor,
        probs: &[f32],
        grad: FlexTensor,
        heads: usize,
    ) -> [FlexTensor; 3] {
        let shape = attn_shape(&q, heads);
        let grads = attention::backward(
            &shape,
            &host_f32(&q),
            &host_f32(&k),
            &host_f32(&v),
            probs,
            &host_f32(&grad),
        );
        grads.map(|g| flex_tensor(g, q.shape()))
    }

    fn linear_backward(
        x: FlexTensor,
        weight: FlexTensor,
        grad: FlexTensor,
        need_dx: bool,
    ) -> (Option<FlexTensor>, FlexTensor, FlexTensor) {
        let s = linear_shape(&x, &weight);
        let (dx, dw, db) = linear::backward(
            &s,
            &host_f32(&x),
            &host_f32(&weight),
            &host_f32(&grad),
            need_dx,
        );
        (
            dx.map(|dx| flex_tensor(dx, x.shape())),
            flex_tensor(dw, weight.shape()),
            flex_tensor(db, burn::tensor::Shape::new([s.dout])),
        )
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

    fn conv2d_im2col(
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        stride: usize,
        pad: [usize; 4],
    ) -> FlexTensor {
        flex_conv(x, weight, bias, None, stride, pad)
    }

    fn conv2d_im2col_add(
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        residual: FlexTensor,
        stride: usize,
        pad: [usize; 4],
    ) -> FlexTensor {
        flex_conv(x, weight, bias, Some(residual), stride, pad)
    }

    fn attention(q: FlexTensor, k: FlexTensor, v: FlexTensor, heads: usize) -> FlexTensor {
        Self::attention_probs(q, k, v, heads).0
    }

    fn linear(x: FlexTensor, weight: FlexTensor, bias: FlexTensor) -> FlexTensor {
        let s = linear_shape(&x, &weight);
        let y = linear::forward(&s, &host_f32(&x), &host_f32(&weight), &host_f32(&bias));
        flex_tensor(y, burn::tensor::Shape::new([s.m, s.dout]))
    }
}

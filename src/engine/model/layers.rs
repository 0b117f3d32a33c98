//! Leaf layers in PyTorch layout, so every parameter path equals its diffusers key.
//!
//! burn's own `Linear` stores its weight as `[in, out]` and its `GroupNorm` calls
//! the affine parameters `gamma`/`beta`; ours keep `weight`/`bias` with PyTorch
//! shapes, so a state dict moves in and out with no renaming or transposition.

use crate::engine::kernels::{self, GnArgs};
use crate::engine::reduce::mean_rows;
use burn::module::{Module, Param};
use burn::tensor::activation::silu;
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Host-side random initialiser: the same seed gives the same weights on every backend.
pub struct Init {
    rng: StdRng,
}

impl Init {
    /// A seeded initialiser.
    pub fn new(seed: u64) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// `U(-bound, bound)` values: PyTorch's default for conv/linear weights and
    /// biases is `bound = 1/sqrt(fan_in)`.
    pub fn uniform<const D: usize>(
        &mut self,
        shape: [usize; D],
        bound: f32,
        device: &Device,
    ) -> Tensor<D> {
        let n: usize = shape.iter().product();
        let values: Vec<f32> = (0..n)
            .map(|_| self.rng.random_range(-bound..=bound))
            .collect();
        Tensor::from_data(TensorData::new(values, shape), device)
    }
}

/// 2D convolution, weight `[out, in, k, k]`, bias `[out]`.
#[derive(Module, Debug)]
pub struct Conv2d {
    /// `[out_channels, in_channels, k, k]`
    pub weight: Param<Tensor<4>>,
    /// `[out_channels]`
    pub bias: Param<Tensor<1>>,
    stride: usize,
    /// Padding as (top, bottom, left, right).
    padding: [usize; 4],
}

impl Conv2d {
    /// A conv with symmetric padding, PyTorch default init.
    pub fn new(
        cin: usize,
        cout: usize,
        k: usize,
        stride: usize,
        pad: usize,
        init: &mut Init,
        device: &Device,
    ) -> Self {
        let bound = 1.0 / ((cin * k * k) as f32).sqrt();
        Self {
            weight: Param::from_tensor(init.uniform([cout, cin, k, k], bound, device)),
            bias: Param::from_tensor(init.uniform([cout], bound, device)),
            stride,
            padding: [pad; 4],
        }
    }

    /// Sets per-side padding (top, bottom, left, right).
    pub fn with_padding(mut self, padding: [usize; 4]) -> Self {
        self.padding = padding;
        self
    }

    /// # Shapes
    /// `[n, in, h, w] -> [n, out, h', w']`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        if kernels::takes(&x) {
            return kernels::conv2d(
                x,
                self.weight.val(),
                self.bias.val(),
                self.stride,
                self.padding,
            );
        }
        let [t, b, l, r] = self.padding;
        let opts = ConvOptions::new_with_padding([self.stride; 2], [(t, b), (l, r)], [1, 1], 1);
        conv2d(x, self.weight.val(), Some(self.bias.val()), opts)
    }

    /// `forward(x) + residual` (shaped as the output: a ResNet block's skip
    /// path). On the CPU kernels the residual joins the convolution's own
    /// output pass instead of a second pass over both tensors.
    pub fn forward_plus(&self, x: Tensor<4>, residual: Tensor<4>) -> Tensor<4> {
        if kernels::takes(&x) {
            let (w, b) = (self.weight.val(), self.bias.val());
            return kernels::conv2d_add(x, w, b, residual, self.stride, self.padding);
        }
        self.forward(x) + residual
    }

    /// `forward(x)` plus `shift [n, out]` on every position of each sample's
    /// channels (a ResNet block's time embedding). On the CPU kernels the shift
    /// joins the bias in the convolution's own output pass, and its gradient
    /// is summed with the bias's, instead of a broadcast add and a reduction.
    pub fn forward_shifted(&self, x: Tensor<4>, shift: Tensor<2>) -> Tensor<4> {
        if kernels::takes(&x) {
            let bias = self.bias.val().unsqueeze_dim::<2>(0) + shift;
            return kernels::conv2d(x, self.weight.val(), bias, self.stride, self.padding);
        }
        let [n, c] = shift.dims();
        self.forward(x) + shift.reshape([n, c, 1, 1])
    }
}

/// Fully connected layer, weight `[out, in]` as in PyTorch.
#[derive(Module, Debug)]
pub struct Linear {
    /// `[out_features, in_features]`
    pub weight: Param<Tensor<2>>,
    /// `[out_features]`
    pub bias: Param<Tensor<1>>,
}

impl Linear {
    /// PyTorch default init.
    pub fn new(din: usize, dout: usize, init: &mut Init, device: &Device) -> Self {
        let bound = 1.0 / (din as f32).sqrt();
        Self {
            weight: Param::from_tensor(init.uniform([dout, din], bound, device)),
            bias: Param::from_tensor(init.uniform([dout], bound, device)),
        }
    }

    /// `y = x W^T + b` over the last dimension.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        if kernels::takes(&x) {
            return kernels::linear(x, self.weight.val(), self.bias.val());
        }
        burn::tensor::module::linear(x, self.weight.val().transpose(), Some(self.bias.val()))
    }
}

/// Group normalisation over `[n, c, ...]` with a per-channel affine.
#[derive(Module, Debug)]
pub struct GroupNorm {
    /// `[c]`, initialised to ones.
    pub weight: Param<Tensor<1>>,
    /// `[c]`, initialised to zeros.
    pub bias: Param<Tensor<1>>,
    groups: usize,
    eps: f64,
}

impl GroupNorm {
    /// `groups` must divide `channels` (checked by config validation).
    pub fn new(groups: usize, channels: usize, eps: f64, device: &Device) -> Self {
        Self {
            weight: Param::from_tensor(Tensor::ones([channels], device)),
            bias: Param::from_tensor(Tensor::zeros([channels], device)),
            groups,
            eps,
        }
    }

    /// # Shapes
    /// `[n, c, h, w] -> [n, c, h, w]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.forward_with(x, false)
    }

    /// `silu(group_norm(x))`, the pair every resnet block and the output head use.
    pub fn forward_silu(&self, x: Tensor<4>) -> Tensor<4> {
        self.forward_with(x, true)
    }

    fn forward_with(&self, x: Tensor<4>, silu: bool) -> Tensor<4> {
        if kernels::takes(&x) {
            let args = GnArgs {
                groups: self.groups,
                eps: self.eps,
                silu,
            };
            return kernels::group_norm_act(x, self.weight.val(), self.bias.val(), args);
        }
        let out = self.composite(x);
        if silu { act(out) } else { out }
    }

    /// The same GroupNorm from burn's tensor ops (used off the CPU backend, and
    /// as the reference of the fused kernel).
    pub fn composite(&self, x: Tensor<4>) -> Tensor<4> {
        let [n, c, h, w] = x.dims();
        let g = self.groups;
        // [n g, c/g * h * w]: statistics per sample and group, biased variance (as torch)
        let xg = x.reshape([n * g, (c / g) * h * w]);
        let mean = mean_rows(xg.clone());
        let centered = xg - mean;
        let var = mean_rows(centered.clone().square());
        let normed = (centered / (var + self.eps).sqrt()).reshape([n, c, h, w]);
        normed * self.weight.val().reshape([1, c, 1, 1]) + self.bias.val().reshape([1, c, 1, 1])
    }
}

/// SiLU, the only activation the DDPM family uses.
pub fn act(x: Tensor<4>) -> Tensor<4> {
    silu(x)
}

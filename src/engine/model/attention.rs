//! diffusers `Attention` as used by the DDPM UNet blocks: GroupNorm, q/k/v over the
//! flattened pixels, scaled dot product per head, output projection, residual.

use super::layers::{GroupNorm, Init, Linear};
use crate::engine::kernels;
use burn::module::Module;
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor};

/// Spatial self-attention with a residual connection (`_from_deprecated_attn_block`).
#[derive(Module, Debug)]
pub struct Attention {
    /// Normalises the input before q/k/v.
    pub group_norm: GroupNorm,
    /// Query projection.
    pub to_q: Linear,
    /// Key projection.
    pub to_k: Linear,
    /// Value projection.
    pub to_v: Linear,
    /// `to_out.0` is the output projection (`to_out.1` is a parameterless dropout).
    pub to_out: Vec<Linear>,
    heads: usize,
    rescale_output_factor: f64,
}

impl Attention {
    /// `channels` split into `channels / head_dim` heads.
    pub fn new(
        channels: usize,
        head_dim: usize,
        groups: usize,
        eps: f64,
        rescale_output_factor: f64,
        init: &mut Init,
        device: &Device,
    ) -> Self {
        Self {
            group_norm: GroupNorm::new(groups, channels, eps, device),
            to_q: Linear::new(channels, channels, init, device),
            to_k: Linear::new(channels, channels, init, device),
            to_v: Linear::new(channels, channels, init, device),
            to_out: vec![Linear::new(channels, channels, init, device)],
            heads: (channels / head_dim).max(1),
            rescale_output_factor,
        }
    }

    /// # Shapes
    /// `[n, c, h, w] -> [n, c, h, w]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [n, c, h, w] = x.dims();
        let (heads, hd) = (self.heads, c / self.heads);
        // [n, hw, c]
        let seq = swap_seq(self.group_norm.forward(x.clone()).reshape([n, c, h * w]));
        let q = self.to_q.forward(seq.clone());
        let k = self.to_k.forward(seq.clone());
        let v = self.to_v.forward(seq);
        let merged = if kernels::takes(&q) {
            kernels::attention(q, k, v, heads)
        } else {
            let split = |t: Tensor<3>| t.reshape([n, h * w, heads, hd]).swap_dims(1, 2); // [n, heads, hw, hd]
            let (q, k, v) = (split(q), split(k), split(v));
            let scores = q.matmul(k.swap_dims(2, 3)) * (1.0 / (hd as f64).sqrt());
            let attn = softmax(scores, 3).matmul(v); // [n, heads, hw, hd]
            attn.swap_dims(1, 2).reshape([n, h * w, c])
        };
        let out = swap_seq(self.to_out[0].forward(merged)).reshape([n, c, h, w]);
        let out = out + x;
        if self.rescale_output_factor == 1.0 {
            out
        } else {
            out / self.rescale_output_factor
        }
    }
}

/// `[n, a, b] -> [n, b, a]` (pixels-major to channels-major and back): on the
/// CPU kernels laid out anew in parallel, elsewhere burn's strided view.
fn swap_seq(t: Tensor<3>) -> Tensor<3> {
    if kernels::takes(&t) {
        kernels::swap_last(t)
    } else {
        t.swap_dims(1, 2)
    }
}

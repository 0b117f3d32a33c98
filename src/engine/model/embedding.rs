//! Sinusoidal timestep features and the MLP that embeds them
//! (diffusers `Timesteps` + `TimestepEmbedding`).

use super::layers::{Init, Linear};
use burn::module::Module;
use burn::tensor::activation::silu;
use burn::tensor::{Device, Tensor, TensorData};

/// diffusers `get_timestep_embedding`, computed on the host in f32 exactly as torch
/// does, then uploaded: `[n] -> [n, dim]`.
///
/// `exponent = -ln(10000) * i / (half - freq_shift)`, `emb = t * exp(exponent)`,
/// output `[sin, cos]`, or `[cos, sin]` when `flip_sin_to_cos`.
pub fn timestep_features(
    t: &[f32],
    dim: usize,
    flip_sin_to_cos: bool,
    freq_shift: f32,
    device: &Device,
) -> Tensor<2> {
    let half = dim / 2;
    let freqs: Vec<f32> = (0..half)
        .map(|i| {
            let exponent = -(10000f32.ln()) * (i as f32) / (half as f32 - freq_shift);
            exponent.exp()
        })
        .collect();
    let mut out = Vec::with_capacity(t.len() * dim);
    for &ti in t {
        let args = freqs.iter().map(|f| ti * f);
        let sin: Vec<f32> = args.clone().map(f32::sin).collect();
        let cos: Vec<f32> = args.map(f32::cos).collect();
        let (a, b) = if flip_sin_to_cos {
            (cos, sin)
        } else {
            (sin, cos)
        };
        out.extend(a);
        out.extend(b);
        if dim % 2 == 1 {
            out.push(0.0); // torch pads odd dims with one zero column
        }
    }
    Tensor::from_data(TensorData::new(out, [t.len(), dim]), device)
}

/// `linear_1 -> SiLU -> linear_2` (diffusers `TimestepEmbedding`).
#[derive(Module, Debug)]
pub struct TimestepEmbedding {
    /// `[time_embed_dim, in]`
    pub linear_1: Linear,
    /// `[time_embed_dim, time_embed_dim]`
    pub linear_2: Linear,
}

impl TimestepEmbedding {
    /// `din` sinusoid features to `dout` embedding channels.
    pub fn new(din: usize, dout: usize, init: &mut Init, device: &Device) -> Self {
        Self {
            linear_1: Linear::new(din, dout, init, device),
            linear_2: Linear::new(dout, dout, init, device),
        }
    }

    /// # Shapes
    /// `[n, din] -> [n, dout]`
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.linear_2.forward(silu(self.linear_1.forward(x)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_match_closed_form() {
        let d = Device::flex();
        let f = timestep_features(&[0.0, 10.0], 8, false, 1.0, &d)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        // t = 0: sin = 0, cos = 1
        assert_eq!(&f[0..8], &[0., 0., 0., 0., 1., 1., 1., 1.]);
        // t = 10, i = 1: exp(-ln(1e4) * 1 / 3)
        let freq = (-(10000f64.ln()) / 3.0).exp();
        assert!((f[8 + 1] as f64 - (10.0 * freq).sin()).abs() < 1e-6);
        assert!((f[8 + 5] as f64 - (10.0 * freq).cos()).abs() < 1e-6);
        let flipped = timestep_features(&[10.0], 8, true, 1.0, &d)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert_eq!(&flipped[0..4], &f[12..16]);
    }
}

//! A small MLP noise predictor for 2D point data (teaching mode).
//!
//! Points travel as `[n, 2, 1, 1]` tensors so the same samplers and losses serve
//! images and points alike.

use super::embedding::timestep_features;
use super::layers::{Init, Linear};
use crate::engine::diffusion::NoiseSchedule;
use burn::module::Module;
use burn::tensor::activation::silu;
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

/// Timesteps of the schedule behind [`ToyMlpConfig::gaussian_skip`].
const SKIP_TIMESTEPS: usize = 1000;

/// Shape of a [`ToyMlp`]; stored as the checkpoint's `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToyMlpConfig {
    /// Always `"ToyMlp"` in files.
    #[serde(rename = "_class_name", default = "toy_class")]
    pub class_name: String,
    /// Point dimension (2).
    pub dim: usize,
    /// Hidden width.
    pub hidden: usize,
    /// Number of hidden layers.
    pub layers: usize,
    /// Width of the sinusoidal time features.
    pub time_dim: usize,
    /// Octaves of sinusoidal input features: `x` is fed with `sin(2^k x)` and
    /// `cos(2^k x)` for `k < x_frequencies` (0: `x` alone, the original toy MLP).
    #[serde(default)]
    pub x_frequencies: usize,
    /// Add a projection of the time features to every hidden layer, not only
    /// the input (off in the original toy MLP).
    #[serde(default)]
    pub time_every_layer: bool,
    /// Add `sqrt(1 - alpha_bar_t) x_t` to the output, the noise prediction that
    /// is exact for Gaussian data of unit variance, so the layers learn only
    /// the data's departure from it (alpha_bar of the engine's schedule:
    /// linear betas 1e-4..0.02 over 1000 steps). Off in the original toy MLP.
    #[serde(default)]
    pub gaussian_skip: bool,
}

fn toy_class() -> String {
    "ToyMlp".into()
}

impl ToyMlpConfig {
    /// Width of the input features: `dim`, plus a sine and a cosine per
    /// coordinate and octave.
    pub fn input_features(&self) -> usize {
        self.dim * (1 + 2 * self.x_frequencies)
    }
}

impl Default for ToyMlpConfig {
    /// The `toy-mlp` preset: sinusoidal input features and time features at
    /// every layer, which learn a crisp two-moons model in a few thousand steps.
    /// (A `config.json` without the two fields loads as the original MLP.)
    fn default() -> Self {
        Self {
            class_name: toy_class(),
            dim: 2,
            hidden: 64,
            layers: 3,
            time_dim: 32,
            x_frequencies: 6,
            time_every_layer: true,
            gaussian_skip: true,
        }
    }
}

/// `x, t -> eps`: input and time projections summed, then SiLU MLP layers
/// (each with its own time projection added when `time_every_layer`).
#[derive(Module, Debug)]
pub struct ToyMlp {
    /// input features -> hidden.
    pub input: Linear,
    /// time features -> hidden.
    pub time: Linear,
    /// hidden -> hidden, `layers` of them.
    pub hidden: Vec<Linear>,
    /// time features -> hidden, one per hidden layer (none in the original MLP).
    pub time_hidden: Vec<Linear>,
    /// hidden -> dim.
    pub output: Linear,
    time_dim: usize,
    x_frequencies: usize,
    gaussian_skip: bool,
}

impl ToyMlp {
    /// Randomly initialised (seeded, host-side).
    pub fn new(config: &ToyMlpConfig, seed: u64, device: &Device) -> Self {
        let mut init = Init::new(seed);
        let h = config.hidden;
        let input = Linear::new(config.input_features(), h, &mut init, device);
        let time = Linear::new(config.time_dim, h, &mut init, device);
        let hidden = (0..config.layers)
            .map(|_| Linear::new(h, h, &mut init, device))
            .collect();
        let time_layers = if config.time_every_layer {
            config.layers
        } else {
            0
        };
        let time_hidden = (0..time_layers)
            .map(|_| Linear::new(config.time_dim, h, &mut init, device))
            .collect();
        Self {
            input,
            time,
            hidden,
            time_hidden,
            output: Linear::new(h, config.dim, &mut init, device),
            time_dim: config.time_dim,
            x_frequencies: config.x_frequencies,
            gaussian_skip: config.gaussian_skip,
        }
    }

    /// `[x, sin(2^k x), cos(2^k x)]` for `k < x_frequencies`, the sines and
    /// cosines ordered coordinate-major (`x_0 2^0, x_0 2^1, .., x_1 2^0, ..`).
    ///
    /// # Shapes
    /// `[n, dim] -> [n, dim * (1 + 2 x_frequencies)]`
    fn input_features(&self, x: Tensor<2>) -> Tensor<2> {
        let f = self.x_frequencies;
        if f == 0 {
            return x;
        }
        let [n, d] = x.dims();
        let scales: Vec<f32> = (0..f).map(|k| (1u32 << k) as f32).collect();
        let scales = Tensor::<1>::from_data(TensorData::new(scales, [f]), &x.device());
        let args = (x.clone().reshape([n, d, 1]) * scales.reshape([1, 1, f])).reshape([n, d * f]);
        Tensor::cat(vec![x, args.clone().sin(), args.cos()], 1)
    }

    /// # Shapes
    /// `x: [n, dim, 1, 1]`, `t: n timesteps -> [n, dim, 1, 1]`
    pub fn forward(&self, x: Tensor<4>, t: &[f32]) -> Tensor<4> {
        let [n, d, _, _] = x.dims();
        let features = timestep_features(t, self.time_dim, true, 0.0, &x.device());
        let input = self.input_features(x.clone().reshape([n, d]));
        let mut h = silu(self.input.forward(input) + self.time.forward(features.clone()));
        for (i, layer) in self.hidden.iter().enumerate() {
            let z = layer.forward(h);
            h = silu(match self.time_hidden.get(i) {
                Some(time) => z + time.forward(features.clone()),
                None => z,
            });
        }
        let out = self.output.forward(h);
        let out = if self.gaussian_skip {
            let scale = gaussian_eps_scale(t, &x.device());
            out + x.reshape([n, d]) * scale
        } else {
            out
        };
        out.reshape([n, d, 1, 1])
    }
}

/// `sqrt(1 - alpha_bar_t)` of the engine's schedule per timestep (rounded and
/// clamped to `[0, T)`): `[n] -> [n, 1]`.
fn gaussian_eps_scale(t: &[f32], device: &Device) -> Tensor<2> {
    let schedule = NoiseSchedule::ddpm(SKIP_TIMESTEPS);
    let last = SKIP_TIMESTEPS - 1;
    let scale: Vec<f32> = t
        .iter()
        .map(|&t| {
            let i = (t.round().max(0.0) as usize).min(last);
            (1.0 - schedule.alphas_cumprod[i]).sqrt() as f32
        })
        .collect();
    Tensor::from_data(TensorData::new(scale, [t.len(), 1]), device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_without_the_new_fields_is_the_original_mlp() {
        let old = r#"{"_class_name":"ToyMlp","dim":2,"hidden":128,"layers":3,"time_dim":32}"#;
        let c: ToyMlpConfig = serde_json::from_str(old).unwrap();
        assert_eq!(
            (c.x_frequencies, c.time_every_layer, c.gaussian_skip),
            (0, false, false)
        );
        let d = Device::flex();
        let m = ToyMlp::new(&c, 0, &d);
        assert_eq!(m.input.weight.val().dims(), [128, 2]);
        assert!(m.time_hidden.is_empty());
        let new = ToyMlp::new(&ToyMlpConfig::default(), 0, &d);
        assert_eq!(new.input.weight.val().dims(), [64, 2 * 13]);
        assert_eq!(new.time_hidden.len(), 3);
        let y = new.forward(
            Tensor::zeros([5, 2, 1, 1], &d),
            &[0.0, 10.0, 500.0, 999.0, 2000.0],
        );
        assert_eq!(y.dims(), [5, 2, 1, 1]);
    }

    #[test]
    fn input_features_and_skip_follow_their_formulas() {
        let d = Device::flex();
        let config = ToyMlpConfig {
            x_frequencies: 2,
            ..ToyMlpConfig::default()
        };
        let m = ToyMlp::new(&config, 0, &d);
        let x = Tensor::<2>::from_data(TensorData::new(vec![0.5f32, -1.0], [1, 2]), &d);
        let f = m.input_features(x).into_data().try_to_vec::<f32>().unwrap();
        let args = [0.5f32, 1.0, -1.0, -2.0];
        let mut want = vec![0.5, -1.0];
        want.extend(args.iter().map(|a| a.sin()));
        want.extend(args.iter().map(|a| a.cos()));
        for (a, b) in f.iter().zip(&want) {
            assert!((a - b).abs() < 1e-6, "{f:?} vs {want:?}");
        }
        let s = gaussian_eps_scale(&[0.0, 999.0], &d)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert!((s[0] - 1e-4f32.sqrt()).abs() < 1e-5, "{s:?}");
        assert!(s[1] > 0.9999 && s[1] <= 1.0, "{s:?}");
    }
}

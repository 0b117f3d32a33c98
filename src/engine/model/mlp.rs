//! A small MLP noise predictor for 2D point data (teaching mode).
//!
//! Points travel as `[n, 2, 1, 1]` tensors so the same samplers and losses serve
//! images and points alike.

use super::embedding::timestep_features;
use super::layers::{Init, Linear};
use burn::module::Module;
use burn::tensor::activation::silu;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

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
}

fn toy_class() -> String {
    "ToyMlp".into()
}

impl Default for ToyMlpConfig {
    fn default() -> Self {
        Self {
            class_name: toy_class(),
            dim: 2,
            hidden: 128,
            layers: 3,
            time_dim: 32,
        }
    }
}

/// `x, t -> eps`: input and time projections summed, then SiLU MLP layers.
#[derive(Module, Debug)]
pub struct ToyMlp {
    /// dim -> hidden.
    pub input: Linear,
    /// time features -> hidden.
    pub time: Linear,
    /// hidden -> hidden, `layers` of them.
    pub hidden: Vec<Linear>,
    /// hidden -> dim.
    pub output: Linear,
    time_dim: usize,
}

impl ToyMlp {
    /// Randomly initialised (seeded, host-side).
    pub fn new(config: &ToyMlpConfig, seed: u64, device: &Device) -> Self {
        let mut init = Init::new(seed);
        let h = config.hidden;
        Self {
            input: Linear::new(config.dim, h, &mut init, device),
            time: Linear::new(config.time_dim, h, &mut init, device),
            hidden: (0..config.layers)
                .map(|_| Linear::new(h, h, &mut init, device))
                .collect(),
            output: Linear::new(h, config.dim, &mut init, device),
            time_dim: config.time_dim,
        }
    }

    /// # Shapes
    /// `x: [n, dim, 1, 1]`, `t: n timesteps -> [n, dim, 1, 1]`
    pub fn forward(&self, x: Tensor<4>, t: &[f32]) -> Tensor<4> {
        let [n, d, _, _] = x.dims();
        let features = timestep_features(t, self.time_dim, true, 0.0, &x.device());
        let mut h = silu(self.input.forward(x.reshape([n, d])) + self.time.forward(features));
        for layer in &self.hidden {
            h = silu(layer.forward(h));
        }
        self.output.forward(h).reshape([n, d, 1, 1])
    }
}

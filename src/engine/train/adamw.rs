//! AdamW with global gradient-norm clipping, written out so its state can be
//! checkpointed by parameter key and resumed exactly (PyTorch `torch.optim.AdamW`
//! semantics, `clip_grad_norm_` over all parameters at once).

use crate::engine::model::params::{flat_grads, flat_params, map_flat_params};
use crate::engine::reduce::sum_all;
use anyhow::{Result, bail};
use burn::module::Module;
use burn::tensor::{Gradients, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// AdamW hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamWConfig {
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Added to the denominator.
    pub eps: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
    /// Clip the global gradient norm to this (None: no clipping).
    pub max_grad_norm: Option<f64>,
}

impl Default for AdamWConfig {
    /// The DeMe authors' settings: betas (0.95, 0.999), weight decay 1e-6, clip 1.0.
    fn default() -> Self {
        Self {
            beta1: 0.95,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 1e-6,
            max_grad_norm: Some(1.0),
        }
    }
}

/// Optimizer state: step count and per-key moments, kept on the device.
pub struct AdamW {
    /// Hyper-parameters.
    pub config: AdamWConfig,
    /// Number of updates applied.
    pub step: u64,
    moments: HashMap<String, (Tensor<1>, Tensor<1>)>,
}

/// What one update did.
#[derive(Debug, Clone, Copy)]
pub struct StepStats {
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
}

impl AdamW {
    /// Fresh state.
    pub fn new(config: AdamWConfig) -> Self {
        Self {
            config,
            step: 0,
            moments: HashMap::new(),
        }
    }

    /// Applies one update. Fails (leaving the model untouched) when the gradient is not finite.
    pub fn step<M: Module>(
        &mut self,
        model: M,
        grads: &Gradients,
        lr: f64,
    ) -> Result<(M, StepStats)> {
        // Gradients by key: the grad of each tracked parameter, flattened.
        // (summed in module order, so the norm is the same number on every run)
        let ordered = flat_grads(&model, grads);
        let sq: Vec<Tensor<1>> = ordered
            .iter()
            .map(|(_, g)| sum_all(g.clone().square()))
            .collect();
        let mut by_key: HashMap<String, Tensor<1>> = ordered.into_iter().collect();
        let grad_norm = if sq.is_empty() {
            0.0
        } else {
            Tensor::cat(sq, 0).sum().sqrt().into_scalar::<f32>() as f64
        };
        if !grad_norm.is_finite() {
            bail!("gradient norm is {grad_norm}: the update was skipped and the run stopped");
        }
        let coef = match self.config.max_grad_norm {
            Some(max) => (max / (grad_norm + 1e-6)).min(1.0),
            None => 1.0,
        };

        self.step += 1;
        let c = self.config;
        let t = self.step as i32;
        let bc1 = 1.0 - c.beta1.powi(t);
        let bc2 = 1.0 - c.beta2.powi(t);
        let moments = &mut self.moments;
        let model = map_flat_params(model, &mut |key, p| {
            let Some(g) = by_key.remove(key) else {
                return p;
            };
            let g = if coef < 1.0 { g * coef } else { g };
            let (m, v) = match moments.remove(key) {
                Some(mv) => mv,
                None => (g.zeros_like(), g.zeros_like()),
            };
            let m = m * c.beta1 + g.clone() * (1.0 - c.beta1);
            let v = v * c.beta2 + g.square() * (1.0 - c.beta2);
            let denom = (v.clone() / bc2).sqrt() + c.eps;
            let p = p * (1.0 - lr * c.weight_decay) - m.clone() / denom * (lr / bc1);
            moments.insert(key.to_string(), (m, v));
            p
        });
        Ok((model, StepStats { grad_norm }))
    }

    /// Moments as host vectors, for checkpointing: `(key, m, v)`.
    pub fn export(&self) -> Vec<(String, Vec<f32>, Vec<f32>)> {
        let mut out: Vec<_> = self
            .moments
            .iter()
            .map(|(k, (m, v))| {
                let host = |t: &Tensor<1>| {
                    t.clone()
                        .into_data()
                        .try_into_vec::<f32>()
                        .expect("f32 moments")
                };
                (k.clone(), host(m), host(v))
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Restores moments saved by [`AdamW::export`]; keys must match the model's.
    pub fn import<M: Module>(
        &mut self,
        model: &M,
        step: u64,
        saved: Vec<(String, Vec<f32>, Vec<f32>)>,
    ) -> Result<()> {
        let params: HashMap<String, Tensor<1>> = flat_params(model).into_iter().collect();
        let mut moments = HashMap::new();
        for (key, m, v) in saved {
            let Some(p) = params.get(&key) else {
                bail!("optimizer state names `{key}`, which the model does not have");
            };
            let n = p.shape().num_elements();
            if m.len() != n || v.len() != n {
                bail!(
                    "optimizer state for `{key}` has {} values, the parameter {n}",
                    m.len()
                );
            }
            let dev = p.device();
            let up =
                |x: Vec<f32>| Tensor::<1>::from_data(burn::tensor::TensorData::new(x, [n]), &dev);
            moments.insert(key, (up(m), up(v)));
        }
        self.moments = moments;
        self.step = step;
        Ok(())
    }
}

//! DeMe's finetuning objective (paper eq. 3 + eq. 4):
//! `mean || eps - eps_i(x_t, t) ||^2 + lambda * mean || eps_frozen(x_t, t) - eps_i(x_t, t) ||^2`,
//! with the frozen pretrained model evaluated on the same `x_t` and `t` and no
//! gradient flowing through it.

use super::events::LossParts;
use super::loss::{LossWeighting, per_sample_mse, weighted_mean};
use crate::engine::diffusion::NoiseSchedule;
use crate::engine::model::EpsModel;
use anyhow::Result;
use burn::tensor::Tensor;

/// The loss of one batch and its two terms.
pub struct FinetuneLoss {
    /// `eps + lambda * consistency` (exactly `eps` when lambda is 0), shape `[1]`.
    pub total: Tensor<1>,
    /// The noise-prediction term, shape `[1]`.
    pub eps: Tensor<1>,
    /// The consistency term, shape `[1]`; `None` when lambda is 0 (the frozen model is then not run).
    pub consistency: Option<Tensor<1>>,
}

impl FinetuneLoss {
    /// The two terms as host values.
    pub fn parts(&self) -> Result<LossParts> {
        Ok(LossParts {
            eps: self.eps.clone().into_scalar::<f32>() as f64,
            consistency: self
                .consistency
                .as_ref()
                .map(|c| c.clone().into_scalar::<f32>() as f64),
        })
    }
}

/// The finetuning loss of `model` on one batch, its noise-prediction term weighted
/// per timestep by `weighting` (the consistency term is not reweighted).
///
/// `frozen` is the pretrained model, kept on the plain (non-autodiff) device;
/// it runs only when `lambda != 0`.
///
/// # Shapes
/// `x0, noise: [n, c, h, w]`, `t: n -> total, eps, consistency: [1]`
pub fn finetune_loss<M: EpsModel>(
    model: &M,
    frozen: &M,
    lambda: f64,
    weighting: LossWeighting,
    schedule: &NoiseSchedule,
    x0: Tensor<4>,
    noise: Tensor<4>,
    t: &[usize],
) -> FinetuneLoss {
    let xt = schedule.q_sample(x0, noise.clone(), t);
    let tf: Vec<f32> = t.iter().map(|&v| v as f32).collect();
    let pred = model.eps(xt.clone(), &tf); // [n, c, h, w]
    let weights = weighting.weights(schedule, t);
    let eps = weighted_mean(per_sample_mse(pred.clone(), noise), weights.as_deref());
    if lambda == 0.0 {
        return FinetuneLoss {
            total: eps.clone(),
            eps,
            consistency: None,
        };
    }
    // a constant target: computed off the tape, brought back as a leaf without gradient
    let target = frozen.eps(xt.inner(), &tf).detach();
    let target = if pred.is_autodiff() {
        target.autodiff()
    } else {
        target
    };
    let consistency = per_sample_mse(pred, target).mean();
    FinetuneLoss {
        total: eps.clone() + consistency.clone() * lambda,
        eps,
        consistency: Some(consistency),
    }
}

//! The epsilon-prediction objective: `|| eps - eps_theta(sqrt(a_t) x0 + sqrt(1 - a_t) eps, t) ||^2`.

use crate::engine::diffusion::NoiseSchedule;
use crate::engine::model::EpsModel;
use burn::tensor::Tensor;

/// Per-sample mean squared error over all but the batch dimension.
///
/// # Shapes
/// `[n, c, h, w] x2 -> [n]`
pub fn per_sample_mse(pred: Tensor<4>, target: Tensor<4>) -> Tensor<1> {
    let [n, c, h, w] = pred.dims();
    (pred - target)
        .square()
        .reshape([n, c * h * w])
        .mean_dim(1)
        .reshape([n])
}

/// The noise-prediction loss of each sample at its timestep.
///
/// # Shapes
/// `x0, noise: [n, c, h, w]`, `t: n -> [n]`
pub fn eps_loss_per_sample<M: EpsModel>(
    model: &M,
    schedule: &NoiseSchedule,
    x0: Tensor<4>,
    noise: Tensor<4>,
    t: &[usize],
) -> Tensor<1> {
    let xt = schedule.q_sample(x0, noise.clone(), t);
    let tf: Vec<f32> = t.iter().map(|&v| v as f32).collect();
    per_sample_mse(model.eps(xt, &tf), noise)
}

//! The forward-process noise schedule: betas, `alphas_cumprod` and
//! `q_sample` (diffusers' `add_noise`).
//!
//! diffusers keeps the schedule as float32 torch tensors, so every scheduler
//! coefficient it ever computes starts from float32 values. [`NoiseSchedule`]
//! reproduces those float32 values bit for bit (stored widened to `f64`), which
//! is what lets the samplers in this module match diffusers step by step.

use burn::tensor::{Tensor, TensorData};

/// A discrete diffusion schedule over `T` training timesteps.
///
/// Both vectors have length `T`. The values are the exact float32 numbers
/// diffusers computes, widened losslessly to `f64`.
#[derive(Debug, Clone, PartialEq)]
pub struct NoiseSchedule {
    /// Per-step noise variances `beta_t`, `t = 0..T`.
    pub betas: Vec<f64>,
    /// Cumulative products `alpha_bar_t = prod_{s<=t} (1 - beta_s)`.
    pub alphas_cumprod: Vec<f64>,
}

impl NoiseSchedule {
    /// The "linear" beta schedule of diffusers' DDPM/DDIM schedulers
    /// (`beta_schedule="linear"`), e.g. `linear(1e-4, 0.02, 1000)` for
    /// google/ddpm-cifar10-32 ([`Self::ddpm`]).
    ///
    /// diffusers does
    /// ```python
    /// betas = torch.linspace(beta_start, beta_end, T, dtype=torch.float32)
    /// alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
    /// ```
    /// and this reproduces torch's CPU kernels exactly:
    /// * `linspace` converts `start`/`end` to float32, computes
    ///   `step = (end - start) / (T - 1)` in float32, then fills the first half
    ///   as `start + step * i` and the second half as
    ///   `end - step * (T - 1 - i)`, each with a single rounding to float32;
    /// * `1.0 - betas` is a float32 subtraction;
    /// * `cumprod` on the CPU accumulates in double (`acc_type<float>`) and
    ///   rounds each partial product to float32.
    ///
    /// # Panics
    /// If `num_train_timesteps` is zero.
    pub fn linear(beta_start: f64, beta_end: f64, num_train_timesteps: usize) -> Self {
        assert!(
            num_train_timesteps > 0,
            "a schedule needs at least one timestep"
        );
        let betas = torch_linspace_f32(beta_start, beta_end, num_train_timesteps);
        Self::from_betas_f32(&betas)
    }

    /// The DDPM default (Ho et al.; google/ddpm-* and diffusers' `DDPMScheduler`):
    /// betas linear from 1e-4 to 0.02 over `num_train_timesteps`.
    ///
    /// # Panics
    /// If `num_train_timesteps` is zero.
    pub fn ddpm(num_train_timesteps: usize) -> Self {
        Self::linear(1e-4, 0.02, num_train_timesteps)
    }

    /// A schedule from float32 betas (diffusers' `trained_betas`), with
    /// `alphas_cumprod` computed the way torch's CPU `cumprod` does.
    ///
    /// # Panics
    /// If `betas` is empty.
    pub fn from_betas_f32(betas: &[f32]) -> Self {
        assert!(!betas.is_empty(), "a schedule needs at least one timestep");
        let mut acc = 1.0f64;
        let alphas_cumprod = betas
            .iter()
            .map(|&b| {
                let alpha = 1.0f32 - b;
                acc *= f64::from(alpha);
                f64::from(acc as f32)
            })
            .collect();
        Self {
            betas: betas.iter().map(|&b| f64::from(b)).collect(),
            alphas_cumprod,
        }
    }

    /// The number of training timesteps `T`.
    pub fn num_train_timesteps(&self) -> usize {
        self.alphas_cumprod.len()
    }

    /// Diffuse clean samples to timesteps `t` (one per sample):
    /// `sqrt(alpha_bar_t) * x0 + sqrt(1 - alpha_bar_t) * noise`.
    ///
    /// This is diffusers' `add_noise`; the per-sample coefficients are built
    /// on the host and broadcast as `[N, 1, 1, 1]` tensors.
    ///
    /// # Panics
    /// If `t.len()` differs from the batch size or a timestep is out of range.
    pub fn q_sample(&self, x0: Tensor<4>, noise: Tensor<4>, t: &[usize]) -> Tensor<4> {
        let n = x0.dims()[0];
        assert_eq!(t.len(), n, "q_sample needs one timestep per sample");
        let device = x0.device();
        let mut signal = Vec::with_capacity(n);
        let mut sigma = Vec::with_capacity(n);
        for &ti in t {
            assert!(
                ti < self.num_train_timesteps(),
                "timestep {ti} out of range for a {}-step schedule",
                self.num_train_timesteps()
            );
            // Same float32 arithmetic as diffusers:
            // alphas_cumprod[t] ** 0.5 and (1 - alphas_cumprod[t]) ** 0.5.
            let a = self.alphas_cumprod[ti] as f32;
            signal.push(a.sqrt());
            sigma.push((1.0f32 - a).sqrt());
        }
        let signal = Tensor::<4>::from_data(TensorData::new(signal, [n, 1, 1, 1]), &device);
        let sigma = Tensor::<4>::from_data(TensorData::new(sigma, [n, 1, 1, 1]), &device);
        x0.mul(signal).add(noise.mul(sigma))
    }
}

/// `torch.linspace(start, end, steps, dtype=torch.float32)` on the CPU.
fn torch_linspace_f32(start: f64, end: f64, steps: usize) -> Vec<f32> {
    let start = start as f32;
    let end = end as f32;
    if steps == 1 {
        return vec![start];
    }
    let step = (end - start) / (steps - 1) as f32;
    let halfway = steps / 2;
    (0..steps)
        .map(|i| {
            // `step * i` is exact in f64 (24-bit mantissa times i < 2^29), so
            // the only rounding is the final one to f32, as in torch.
            let (base, offset) = if i < halfway {
                (f64::from(start), f64::from(step) * i as f64)
            } else {
                (f64::from(end), -(f64::from(step) * (steps - 1 - i) as f64))
            };
            (base + offset) as f32
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::diffusion::test_fixtures::{Fixture, read_f32};
    use burn::tensor::Device;

    #[test]
    fn linear_schedule_matches_diffusers_bit_for_bit() {
        let fx = Fixture::load("schedule_linear_1000.safetensors");
        let ours = NoiseSchedule::ddpm(1000);
        assert_eq!(ours.num_train_timesteps(), 1000);
        for (name, mine) in [
            ("betas", &ours.betas),
            ("alphas_cumprod", &ours.alphas_cumprod),
        ] {
            let theirs = fx.f64s(name);
            assert_eq!(theirs.len(), mine.len());
            for (i, (a, b)) in mine.iter().zip(&theirs).enumerate() {
                let rel = (a - b).abs() / b.abs();
                assert!(rel <= 1e-12, "{name}[{i}]: ours {a:e} vs diffusers {b:e}");
            }
        }
    }

    #[test]
    fn linear_schedule_endpoints() {
        let s = NoiseSchedule::ddpm(1000);
        assert_eq!(s.betas[0], f64::from(1e-4f32));
        assert_eq!(s.betas[999], f64::from(0.02f32));
        assert_eq!(s.alphas_cumprod[0], f64::from(1.0f32 - 1e-4f32));
        assert!(s.alphas_cumprod.windows(2).all(|w| w[1] < w[0]));
        let one = NoiseSchedule::linear(0.5, 0.9, 1);
        assert_eq!(one.betas, vec![0.5]);
    }

    #[test]
    fn q_sample_matches_hand_computation() {
        let device = Device::flex();
        let s = NoiseSchedule::ddpm(1000);
        let n = 3;
        let x0: Vec<f32> = (0..n * 2 * 2 * 2)
            .map(|i| (i as f32 * 0.37).sin())
            .collect();
        let eps: Vec<f32> = (0..n * 2 * 2 * 2)
            .map(|i| (i as f32 * 0.11).cos())
            .collect();
        let t = [0usize, 499, 999];
        let out = s.q_sample(
            Tensor::<4>::from_data(TensorData::new(x0.clone(), [n, 2, 2, 2]), &device),
            Tensor::<4>::from_data(TensorData::new(eps.clone(), [n, 2, 2, 2]), &device),
            &t,
        );
        assert_eq!(out.dims(), [n, 2, 2, 2]);
        let got = read_f32(out);
        for (i, g) in got.iter().enumerate() {
            let a = s.alphas_cumprod[t[i / 8]];
            let want = a.sqrt() * f64::from(x0[i]) + (1.0 - a).sqrt() * f64::from(eps[i]);
            assert!(
                (f64::from(*g) - want).abs() < 1e-6,
                "element {i}: {g} vs {want}"
            );
        }
        // At t = 999 almost all signal is gone.
        assert!(s.alphas_cumprod[999] < 1e-4);
    }
}

//! Ancestral DDPM sampling (Ho et al. 2020), a port of diffusers'
//! `DDPMScheduler` with `timestep_spacing="leading"` and
//! `prediction_type="epsilon"`, including custom (shorter) step counts.
//!
//! As in [`super::ddim`], the scalar coefficients are float32 host values
//! computed in the diffusers order, and the tensor work is elementwise.

use burn::tensor::Tensor;

use super::schedule::NoiseSchedule;

/// The fixed posterior variances diffusers' `DDPMScheduler` supports here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VarianceType {
    /// `"fixed_small"`: the true posterior variance
    /// `(1 - alpha_bar_prev) / (1 - alpha_bar_t) * beta_t`, clamped at 1e-20.
    #[default]
    FixedSmall,
    /// `"fixed_large"`: `beta_t` (for custom step counts, the effective
    /// `1 - alpha_bar_t / alpha_bar_prev`).
    FixedLarge,
}

/// Settings of a DDPM sampler.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DdpmConfig {
    /// Number of inference steps; the schedule's `T` (1000 here by default)
    /// gives the original ancestral sampler.
    pub steps: usize,
    /// Posterior variance used for the added noise.
    pub variance: VarianceType,
    /// Clamp the predicted `x_0` to `[-clip_sample_range, clip_sample_range]`.
    pub clip_sample: bool,
    /// Clamp bound used when `clip_sample` is on.
    pub clip_sample_range: f32,
}

impl Default for DdpmConfig {
    /// All 1000 steps, `fixed_small` (diffusers' default), clipping on.
    fn default() -> Self {
        Self {
            steps: 1000,
            variance: VarianceType::FixedSmall,
            clip_sample: true,
            clip_sample_range: 1.0,
        }
    }
}

/// A DDPM scheduler bound to a [`NoiseSchedule`] and a step count.
#[derive(Debug, Clone)]
pub struct DdpmScheduler {
    /// The schedule's `alphas_cumprod` as the float32 values diffusers uses.
    alphas_cumprod: Vec<f32>,
    config: DdpmConfig,
    timesteps: Vec<usize>,
}

impl DdpmScheduler {
    /// Build the scheduler and its inference timesteps (diffusers'
    /// `DDPMScheduler(...)` followed by `set_timesteps(config.steps)`).
    ///
    /// # Panics
    /// If `config.steps` is 0 or larger than the schedule's `T`.
    pub fn new(schedule: &NoiseSchedule, config: DdpmConfig) -> Self {
        let t_train = schedule.num_train_timesteps();
        assert!(
            config.steps > 0 && config.steps <= t_train,
            "DDPM needs 1..={t_train} steps, got {}",
            config.steps
        );
        // "leading" spacing (steps_offset 0):
        //   step_ratio = T // steps
        //   timesteps = (np.arange(0, steps) * step_ratio).round()[::-1]
        let step_ratio = t_train / config.steps;
        let timesteps = (0..config.steps).rev().map(|i| i * step_ratio).collect();
        Self {
            alphas_cumprod: schedule.alphas_cumprod.iter().map(|&a| a as f32).collect(),
            config,
            timesteps,
        }
    }

    /// The configuration this scheduler was built with.
    pub fn config(&self) -> &DdpmConfig {
        &self.config
    }

    /// Inference timesteps, in sampling order (descending, ending at 0).
    pub fn timesteps(&self) -> &[usize] {
        &self.timesteps
    }

    /// Whether step `k` adds noise (and so needs `noise` in [`Self::step`]):
    /// every step whose timestep is above 0.
    pub fn uses_noise(&self, k: usize) -> bool {
        self.timesteps[k] > 0
    }

    /// One ancestral step from `sample` at `timesteps()[k]` to the next
    /// inference timestep (diffusers' `DDPMScheduler.step(model_output, t,
    /// sample)`).
    ///
    /// `noise` is the standard-normal noise of the step; it is required when
    /// the timestep is above 0 and ignored at `t = 0`.
    ///
    /// # Panics
    /// If `k` is out of range, or noise is needed and `noise` is `None`.
    pub fn step(
        &self,
        model_output: Tensor<4>,
        k: usize,
        sample: Tensor<4>,
        noise: Option<Tensor<4>>,
    ) -> Tensor<4> {
        let t = self.timesteps[k];
        // previous_timestep(): with set_timesteps() called, the next entry of
        // self.timesteps, or -1 after the last one (alpha_bar = self.one).
        let alpha_prod_t = self.alphas_cumprod[t];
        let alpha_prod_t_prev = match self.timesteps.get(k + 1) {
            Some(&prev) => self.alphas_cumprod[prev],
            None => 1.0,
        };
        let beta_prod_t = 1.0 - alpha_prod_t;
        let beta_prod_t_prev = 1.0 - alpha_prod_t_prev;
        let current_alpha_t = alpha_prod_t / alpha_prod_t_prev;
        let current_beta_t = 1.0 - current_alpha_t;

        // pred_original_sample = (sample - beta_prod_t ** 0.5 * model_output) / alpha_prod_t ** 0.5
        let mut pred_original_sample = sample
            .clone()
            .sub(model_output.mul_scalar(beta_prod_t.sqrt()))
            .div_scalar(alpha_prod_t.sqrt());
        if self.config.clip_sample {
            let r = self.config.clip_sample_range;
            pred_original_sample = pred_original_sample.clamp(-r, r);
        }

        // Posterior mean, formula (7) of the DDPM paper.
        let pred_original_sample_coeff = (alpha_prod_t_prev.sqrt() * current_beta_t) / beta_prod_t;
        let current_sample_coeff = current_alpha_t.sqrt() * beta_prod_t_prev / beta_prod_t;
        let pred_prev_sample = pred_original_sample
            .mul_scalar(pred_original_sample_coeff)
            .add(sample.mul_scalar(current_sample_coeff));

        if t == 0 {
            return pred_prev_sample;
        }
        // _get_variance(): the clamp happens before the variance type is
        // looked at; fixed_large then replaces the value with current_beta_t.
        // Its `current_beta_t = 1 - alpha_prod_t / alpha_prod_t_prev` is the
        // same float32 value as the one above.
        let variance = match self.config.variance {
            VarianceType::FixedSmall => {
                ((1.0 - alpha_prod_t_prev) / (1.0 - alpha_prod_t) * current_beta_t).max(1e-20)
            }
            VarianceType::FixedLarge => current_beta_t,
        };
        let noise = noise.expect("DDPM steps with t > 0 need noise");
        pred_prev_sample.add(noise.mul_scalar(variance.sqrt()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::diffusion::test_fixtures::{Fixture, replay_trace};

    fn schedule() -> NoiseSchedule {
        NoiseSchedule::ddpm(1000)
    }

    #[test]
    fn timesteps_match_diffusers() {
        let fx = Fixture::load("schedule_linear_1000.safetensors");
        for n in [1, 7, 20, 1000] {
            let cfg = DdpmConfig {
                steps: n,
                ..DdpmConfig::default()
            };
            let ours = DdpmScheduler::new(&schedule(), cfg);
            assert_eq!(
                ours.timesteps(),
                fx.usizes(&format!("ddpm_timesteps_{n}")),
                "n = {n}"
            );
        }
    }

    /// Replays the recorded diffusers step through [`DdpmScheduler::step`].
    fn check_trace(file: &str, cfg: DdpmConfig) {
        let sched = DdpmScheduler::new(&schedule(), cfg);
        replay_trace(
            file,
            sched.timesteps(),
            |k| sched.uses_noise(k),
            |out, k, x, noise| sched.step(out, k, x, noise),
        );
    }

    #[test]
    fn ddpm_20_small_matches_diffusers() {
        check_trace(
            "sched_ddpm_20_small.safetensors",
            DdpmConfig {
                steps: 20,
                ..DdpmConfig::default()
            },
        );
    }

    #[test]
    fn ddpm_20_large_matches_diffusers() {
        check_trace(
            "sched_ddpm_20_large.safetensors",
            DdpmConfig {
                steps: 20,
                variance: VarianceType::FixedLarge,
                ..DdpmConfig::default()
            },
        );
    }

    #[test]
    fn ddpm_1000_small_matches_diffusers() {
        check_trace("sched_ddpm_1000_small.safetensors", DdpmConfig::default());
    }

    #[test]
    fn last_step_is_noise_free() {
        let sched = DdpmScheduler::new(&schedule(), DdpmConfig::default());
        assert!(sched.uses_noise(0));
        assert!(!sched.uses_noise(999));
        assert_eq!(sched.timesteps()[999], 0);
    }
}

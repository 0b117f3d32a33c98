//! DDIM sampling (Song et al. 2020), a port of diffusers' `DDIMScheduler`
//! with `timestep_spacing="leading"` and `prediction_type="epsilon"`.
//!
//! The scalar coefficients of a step are computed on the host in float32 in
//! the same order as the diffusers Python (which does them on 0-dim float32
//! tensors); the tensor work is a handful of elementwise ops.

use burn::tensor::Tensor;

use super::schedule::NoiseSchedule;

/// Settings of a DDIM sampler (the `DDIMScheduler` config plus `eta` and the
/// number of inference steps).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DdimConfig {
    /// Number of inference steps (`num_inference_steps`).
    pub steps: usize,
    /// Stochasticity: 0 is deterministic DDIM, 1 matches the DDPM posterior
    /// variance.
    pub eta: f32,
    /// Clamp the predicted `x_0` to `[-clip_sample_range, clip_sample_range]`.
    pub clip_sample: bool,
    /// Clamp bound used when `clip_sample` is on.
    pub clip_sample_range: f32,
    /// Use `alpha_bar = 1` for the step past timestep 0 (else `alpha_bar_0`).
    pub set_alpha_to_one: bool,
    /// Offset added to every inference timestep.
    pub steps_offset: usize,
}

impl Default for DdimConfig {
    /// 50 deterministic steps with google/ddpm-cifar10-32's settings.
    fn default() -> Self {
        Self {
            steps: 50,
            eta: 0.0,
            clip_sample: true,
            clip_sample_range: 1.0,
            set_alpha_to_one: true,
            steps_offset: 0,
        }
    }
}

/// A DDIM scheduler bound to a [`NoiseSchedule`] and a step count.
#[derive(Debug, Clone)]
pub struct DdimScheduler {
    /// The schedule's `alphas_cumprod` as the float32 values diffusers uses.
    alphas_cumprod: Vec<f32>,
    /// `alpha_bar` used past the last step.
    final_alpha_cumprod: f32,
    /// `T // steps`, the distance between consecutive inference timesteps.
    step_ratio: usize,
    config: DdimConfig,
    timesteps: Vec<usize>,
}

impl DdimScheduler {
    /// Build the scheduler and its inference timesteps (diffusers'
    /// `DDIMScheduler(...)` followed by `set_timesteps(config.steps)`).
    ///
    /// # Panics
    /// If `config.steps` is 0 or larger than the schedule's `T` (diffusers
    /// raises a `ValueError` there too), or if `steps_offset` pushes a
    /// timestep past `T - 1`.
    pub fn new(schedule: &NoiseSchedule, config: DdimConfig) -> Self {
        let t_train = schedule.num_train_timesteps();
        assert!(
            config.steps > 0 && config.steps <= t_train,
            "DDIM needs 1..={t_train} steps, got {}",
            config.steps
        );
        let alphas_cumprod: Vec<f32> = schedule.alphas_cumprod.iter().map(|&a| a as f32).collect();
        let final_alpha_cumprod = if config.set_alpha_to_one {
            1.0
        } else {
            alphas_cumprod[0]
        };
        // "leading" spacing:
        //   step_ratio = T // steps
        //   timesteps = (np.arange(0, steps) * step_ratio).round()[::-1] + steps_offset
        let step_ratio = t_train / config.steps;
        let timesteps: Vec<usize> = (0..config.steps)
            .rev()
            .map(|i| i * step_ratio + config.steps_offset)
            .collect();
        assert!(
            timesteps[0] < t_train,
            "steps_offset {} puts timestep {} past the schedule",
            config.steps_offset,
            timesteps[0]
        );
        Self {
            alphas_cumprod,
            final_alpha_cumprod,
            step_ratio,
            config,
            timesteps,
        }
    }

    /// The configuration this scheduler was built with.
    pub fn config(&self) -> &DdimConfig {
        &self.config
    }

    /// Inference timesteps, in sampling order (descending).
    pub fn timesteps(&self) -> &[usize] {
        &self.timesteps
    }

    /// Whether step `k` adds noise (and so needs `noise` in [`Self::step`]):
    /// true for every step when `eta > 0`.
    pub fn uses_noise(&self, _k: usize) -> bool {
        self.config.eta > 0.0
    }

    /// `alpha_bar` of the timestep a step lands on; diffusers uses
    /// `final_alpha_cumprod` when `prev_timestep < 0`.
    fn alpha_prev(&self, t: usize) -> f32 {
        // prev_timestep = timestep - num_train_timesteps // num_inference_steps
        match t.checked_sub(self.step_ratio) {
            Some(prev) => self.alphas_cumprod[prev],
            None => self.final_alpha_cumprod,
        }
    }

    /// One DDIM step from `sample` at `timesteps()[k]` to the previous
    /// inference timestep, given the model's epsilon prediction
    /// (diffusers' `DDIMScheduler.step(model_output, t, sample, eta)`, with
    /// `use_clipped_model_output=False`).
    ///
    /// `noise` is the standard-normal `variance_noise`; it is required when
    /// `eta > 0` and ignored otherwise.
    ///
    /// # Panics
    /// If `k` is out of range, or `eta > 0` and `noise` is `None`.
    pub fn step(
        &self,
        model_output: Tensor<4>,
        k: usize,
        sample: Tensor<4>,
        noise: Option<Tensor<4>>,
    ) -> Tensor<4> {
        let t = self.timesteps[k];
        let alpha_prod_t = self.alphas_cumprod[t];
        let alpha_prod_t_prev = self.alpha_prev(t);
        let beta_prod_t = 1.0 - alpha_prod_t;

        // pred_original_sample = (sample - beta_prod_t ** 0.5 * model_output) / alpha_prod_t ** 0.5
        let mut pred_original_sample = sample
            .sub(model_output.clone().mul_scalar(beta_prod_t.sqrt()))
            .div_scalar(alpha_prod_t.sqrt());
        if self.config.clip_sample {
            let r = self.config.clip_sample_range;
            pred_original_sample = pred_original_sample.clamp(-r, r);
        }

        // _get_variance: (beta_prod_t_prev / beta_prod_t) * (1 - alpha_prod_t / alpha_prod_t_prev)
        let beta_prod_t_prev = 1.0 - alpha_prod_t_prev;
        let variance = (beta_prod_t_prev / beta_prod_t) * (1.0 - alpha_prod_t / alpha_prod_t_prev);
        let std_dev_t = self.config.eta * variance.sqrt();

        // pred_sample_direction = (1 - alpha_prod_t_prev - std_dev_t**2) ** 0.5 * pred_epsilon
        // (clamped at 0: for eta > 1 diffusers takes the root of a negative
        // number and returns NaN).
        let direction = (1.0 - alpha_prod_t_prev - std_dev_t * std_dev_t)
            .max(0.0)
            .sqrt();
        let prev_sample = pred_original_sample
            .mul_scalar(alpha_prod_t_prev.sqrt())
            .add(model_output.mul_scalar(direction));

        if self.config.eta > 0.0 {
            let noise = noise.expect("DDIM with eta > 0 needs variance noise");
            prev_sample.add(noise.mul_scalar(std_dev_t))
        } else {
            prev_sample
        }
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
        let s = schedule();
        for n in [1, 3, 7, 10, 50, 100, 1000] {
            let cfg = DdimConfig {
                steps: n,
                ..DdimConfig::default()
            };
            let ours = DdimScheduler::new(&s, cfg);
            assert_eq!(
                ours.timesteps(),
                fx.usizes(&format!("ddim_timesteps_{n}")),
                "n = {n}"
            );
        }
        let cfg = DdimConfig {
            steps: 10,
            steps_offset: 1,
            ..DdimConfig::default()
        };
        assert_eq!(
            DdimScheduler::new(&s, cfg).timesteps(),
            fx.usizes("ddim_timesteps_10_offset1")
        );
    }

    /// Replays every recorded diffusers step through [`DdimScheduler::step`].
    fn check_trace(file: &str, cfg: DdimConfig) {
        let sched = DdimScheduler::new(&schedule(), cfg);
        replay_trace(
            file,
            sched.timesteps(),
            |k| sched.uses_noise(k),
            |out, k, x, noise| sched.step(out, k, x, noise),
        );
    }

    #[test]
    fn ddim_10_eta0_matches_diffusers() {
        check_trace(
            "sched_ddim_10_eta0.safetensors",
            DdimConfig {
                steps: 10,
                ..DdimConfig::default()
            },
        );
    }

    #[test]
    fn ddim_10_eta1_matches_diffusers() {
        check_trace(
            "sched_ddim_10_eta1.safetensors",
            DdimConfig {
                steps: 10,
                eta: 1.0,
                ..DdimConfig::default()
            },
        );
    }

    #[test]
    fn ddim_50_eta0_matches_diffusers() {
        check_trace("sched_ddim_50_eta0.safetensors", DdimConfig::default());
    }

    #[test]
    fn ddim_10_noclip_matches_diffusers() {
        check_trace(
            "sched_ddim_10_noclip.safetensors",
            DdimConfig {
                steps: 10,
                clip_sample: false,
                ..DdimConfig::default()
            },
        );
    }

    #[test]
    #[should_panic(expected = "DDIM needs")]
    fn too_many_steps_panics() {
        let cfg = DdimConfig {
            steps: 1001,
            ..DdimConfig::default()
        };
        DdimScheduler::new(&schedule(), cfg);
    }
}

//! The sampling loop shared by DDPM and DDIM: `x_T -> x_0` with a model that
//! predicts epsilon, progress reporting and cancellation.

use burn::tensor::Tensor;

use super::ddim::{DdimConfig, DdimScheduler};
use super::ddpm::{DdpmConfig, DdpmScheduler};
use super::noise::NoiseSource;
use super::schedule::NoiseSchedule;

/// Which sampler to run, with its settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SamplerKind {
    /// Ancestral DDPM sampling.
    Ddpm(DdpmConfig),
    /// DDIM sampling (deterministic at `eta = 0`).
    Ddim(DdimConfig),
}

impl SamplerKind {
    /// Number of model evaluations (steps) a run takes.
    pub fn steps(&self) -> usize {
        match self {
            SamplerKind::Ddpm(c) => c.steps,
            SamplerKind::Ddim(c) => c.steps,
        }
    }

    /// Checks the settings against `schedule` before any work: 1 to T steps, and a
    /// finite, non-negative DDIM eta.
    pub fn validate(&self, schedule: &NoiseSchedule) -> anyhow::Result<()> {
        let t = schedule.num_train_timesteps();
        let steps = self.steps();
        if steps == 0 || steps > t {
            anyhow::bail!("the sampler takes 1 to {t} steps (the model's timesteps), not {steps}");
        }
        if let SamplerKind::Ddim(c) = self
            && !(c.eta.is_finite() && c.eta >= 0.0)
        {
            anyhow::bail!(
                "DDIM eta must be a finite number of at least 0, not {}",
                c.eta
            );
        }
        Ok(())
    }

    /// The timesteps the model is evaluated at, in sampling order.
    pub fn timesteps(&self, schedule: &NoiseSchedule) -> Vec<usize> {
        Scheduler::new(*self, schedule).timesteps().to_vec()
    }
}

/// A built scheduler of either kind.
enum Scheduler {
    Ddpm(DdpmScheduler),
    Ddim(DdimScheduler),
}

impl Scheduler {
    fn new(kind: SamplerKind, schedule: &NoiseSchedule) -> Self {
        match kind {
            SamplerKind::Ddpm(c) => Scheduler::Ddpm(DdpmScheduler::new(schedule, c)),
            SamplerKind::Ddim(c) => Scheduler::Ddim(DdimScheduler::new(schedule, c)),
        }
    }

    fn timesteps(&self) -> &[usize] {
        match self {
            Scheduler::Ddpm(s) => s.timesteps(),
            Scheduler::Ddim(s) => s.timesteps(),
        }
    }

    fn uses_noise(&self, k: usize) -> bool {
        match self {
            Scheduler::Ddpm(s) => s.uses_noise(k),
            Scheduler::Ddim(s) => s.uses_noise(k),
        }
    }

    fn step(&self, eps: Tensor<4>, k: usize, x: Tensor<4>, noise: Option<Tensor<4>>) -> Tensor<4> {
        match self {
            Scheduler::Ddpm(s) => s.step(eps, k, x, noise),
            Scheduler::Ddim(s) => s.step(eps, k, x, noise),
        }
    }
}

/// Run a full reverse process from `x_t` (normally pure noise `x_T`).
///
/// For each step `k` of `K`: `eps = model(x, timesteps[k])`, then the
/// scheduler step. `noise` is asked for a tensor (of `x`'s shape) only on
/// steps that use one (DDIM with `eta > 0`; DDPM with `t > 0`), in step
/// order, which is the order in which diffusers draws from its generator, so
/// recorded diffusers noise replays exactly.
///
/// After each step `on_step(k, K, &x)` gets the new sample, with `k` the
/// 0-based index of the step just taken; returning `false` cancels the run.
///
/// Returns the final sample, or `None` when cancelled.
pub fn sample(
    kind: SamplerKind,
    schedule: &NoiseSchedule,
    x_t: Tensor<4>,
    noise: &mut dyn NoiseSource,
    model: &mut dyn FnMut(Tensor<4>, usize) -> Tensor<4>,
    on_step: &mut dyn FnMut(usize, usize, &Tensor<4>) -> bool,
) -> Option<Tensor<4>> {
    let scheduler = Scheduler::new(kind, schedule);
    let total = scheduler.timesteps().len();
    let device = x_t.device();
    let mut x = x_t;
    for (k, &t) in scheduler.timesteps().iter().enumerate() {
        let eps = model(x.clone(), t);
        let z = scheduler
            .uses_noise(k)
            .then(|| noise.next(x.dims(), &device));
        x = scheduler.step(eps, k, x, z);
        if !on_step(k, total, &x) {
            return None;
        }
    }
    Some(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_outside_the_schedule_are_refused() {
        let schedule = NoiseSchedule::ddpm(1000);
        let ddim = |steps, eta| {
            SamplerKind::Ddim(DdimConfig {
                steps,
                eta,
                ..DdimConfig::default()
            })
        };
        assert!(ddim(50, 0.0).validate(&schedule).is_ok());
        assert!(ddim(1000, 1.0).validate(&schedule).is_ok());
        for (steps, eta) in [(0, 0.0), (1001, 0.0), (50, f32::NAN), (50, -0.5)] {
            let e = ddim(steps, eta)
                .validate(&schedule)
                .unwrap_err()
                .to_string();
            assert!(e.contains("1000") || e.contains("eta"), "{e}");
        }
        let ddpm = SamplerKind::Ddpm(DdpmConfig {
            steps: 5000,
            ..DdpmConfig::default()
        });
        assert!(ddpm.validate(&schedule).is_err());
    }
    use crate::engine::diffusion::noise::{RecordedNoise, SeededNoise};
    use crate::engine::diffusion::test_fixtures::{Fixture, max_abs_diff};
    use burn::tensor::Device;

    /// Drives [`sample`] with a "model" that replays diffusers' recorded
    /// model outputs and with the recorded noise, and compares `x_0`.
    fn replay(file: &str, kind: SamplerKind) {
        let device = Device::flex();
        let fx = Fixture::load(file);
        let schedule = NoiseSchedule::ddpm(1000);
        let timesteps = fx.usizes("timesteps");
        assert_eq!(kind.timesteps(&schedule), timesteps);
        let scheduler = Scheduler::new(kind, &schedule);
        let noises = (0..timesteps.len())
            .filter(|&k| scheduler.uses_noise(k))
            .map(|k| fx.stacked4("noises", k, &device))
            .collect();
        let mut noise = RecordedNoise::new(noises);
        let mut calls = 0;
        let mut model = |x: Tensor<4>, t: usize| {
            let k = timesteps.iter().position(|&s| s == t).unwrap();
            assert_eq!(k, calls, "model called out of order");
            calls += 1;
            let want = fx.stacked4("samples", k, &device);
            assert!(
                max_abs_diff(x, want) < 1e-4,
                "{file}: input of step {k} drifted"
            );
            fx.stacked4("model_outputs", k, &device)
        };
        let mut seen = Vec::new();
        let mut on_step = |k: usize, of: usize, _x: &Tensor<4>| {
            seen.push((k, of));
            true
        };
        let x0 = sample(
            kind,
            &schedule,
            fx.tensor4("x_T", &device),
            &mut noise,
            &mut model,
            &mut on_step,
        )
        .expect("not cancelled");
        assert_eq!(noise.remaining(), 0, "{file}: unused recorded noise");
        let n = timesteps.len();
        assert_eq!(seen, (0..n).map(|k| (k, n)).collect::<Vec<_>>());
        let err = max_abs_diff(x0, fx.tensor4("x_0", &device));
        assert!(err < 1e-4, "{file}: x_0 max |diff| = {err:e}");
    }

    #[test]
    fn ddim_eta1_loop_reproduces_diffusers() {
        replay(
            "sched_ddim_10_eta1.safetensors",
            SamplerKind::Ddim(DdimConfig {
                steps: 10,
                eta: 1.0,
                ..DdimConfig::default()
            }),
        );
    }

    #[test]
    fn ddpm_small_loop_reproduces_diffusers() {
        replay(
            "sched_ddpm_20_small.safetensors",
            SamplerKind::Ddpm(DdpmConfig {
                steps: 20,
                ..DdpmConfig::default()
            }),
        );
    }

    #[test]
    fn cancel_stops_the_loop() {
        let device = Device::flex();
        let schedule = NoiseSchedule::ddpm(1000);
        let kind = SamplerKind::Ddim(DdimConfig {
            steps: 10,
            ..DdimConfig::default()
        });
        let x = SeededNoise::new(1).next([1, 1, 4, 4], &device);
        let mut calls = 0;
        let mut model = |x: Tensor<4>, _t: usize| {
            calls += 1;
            x.zeros_like()
        };
        let out = sample(
            kind,
            &schedule,
            x,
            &mut SeededNoise::new(2),
            &mut model,
            &mut |k, _, _| k < 2,
        );
        assert!(out.is_none());
        assert_eq!(calls, 3);
    }

    #[test]
    fn seeded_ddpm_run_is_reproducible() {
        let device = Device::flex();
        let schedule = NoiseSchedule::ddpm(1000);
        let kind = SamplerKind::Ddpm(DdpmConfig {
            steps: 5,
            ..DdpmConfig::default()
        });
        assert_eq!(kind.steps(), 5);
        let run = || {
            let x = SeededNoise::new(10).next([2, 1, 4, 4], &device);
            let mut model = |x: Tensor<4>, _t: usize| x.mul_scalar(0.5);
            sample(
                kind,
                &schedule,
                x,
                &mut SeededNoise::new(11),
                &mut model,
                &mut |_, _, _| true,
            )
            .unwrap()
        };
        assert_eq!(max_abs_diff(run(), run()), 0.0);
    }
}

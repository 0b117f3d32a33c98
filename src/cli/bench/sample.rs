//! `bench sample`: time to generate N images (reference: `bench/torch_sample.py`,
//! diffusers' `UNet2DModel` with its `DDIMScheduler` / `DDPMScheduler`).

use super::{emit, flops_fields, median, model_from_arg, stats_ms, sync};
use crate::engine::device::ComputeDevice;
use crate::engine::diffusion::{
    DdimConfig, DdpmConfig, NoiseSchedule, NoiseSource, SamplerKind, SeededNoise, sample,
};
use anyhow::{Result, anyhow, bail};
use clap::{Args, ValueEnum};
use std::time::Instant;

/// Which sampler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Sampler {
    /// DDIM, eta 0.
    Ddim,
    /// Ancestral DDPM, fixed-small variance.
    Ddpm,
}

/// Arguments of `bench sample`.
#[derive(Debug, Args)]
pub struct SampleCase {
    /// Model preset, config.json (random initialisation) or model folder (its weights).
    #[arg(long, default_value = "mnist-tiny")]
    pub model: String,
    /// Sampler (diffusers' default settings: clipping on, "leading" spacing).
    #[arg(long, value_enum, default_value = "ddim")]
    pub sampler: Sampler,
    /// Sampling steps (model evaluations).
    #[arg(long, default_value_t = 50)]
    pub steps: usize,
    /// Images generated per run (one batch).
    #[arg(long, default_value_t = 16)]
    pub n: usize,
    /// Timed runs.
    #[arg(long, default_value_t = 1)]
    pub repeats: usize,
    /// Untimed model evaluations before the first run.
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Seed of the initial and per-step noise.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Runs `bench sample`.
pub fn run(c: SampleCase, compute: &ComputeDevice) -> Result<()> {
    if c.steps == 0 || c.steps > 1000 || c.n == 0 {
        bail!("--steps must be in 1..=1000 and --n at least 1");
    }
    let device = &compute.device;
    let (spec, model, weights) = model_from_arg(&c.model, device)?;
    let schedule = NoiseSchedule::ddpm(1000);
    let kind = match c.sampler {
        Sampler::Ddim => SamplerKind::Ddim(DdimConfig {
            steps: c.steps,
            ..DdimConfig::default()
        }),
        Sampler::Ddpm => SamplerKind::Ddpm(DdpmConfig {
            steps: c.steps,
            ..DdpmConfig::default()
        }),
    };
    let [ch, h, w] = spec.item_shape();
    let shape = [c.n, ch, h, w];
    let mut noise = SeededNoise::new(c.seed);
    let warm = noise.next(shape, device);
    for _ in 0..c.warmup {
        drop(model.eps(warm.clone(), &vec![999.0; c.n]));
    }
    sync(device)?;
    let mut times = Vec::with_capacity(c.repeats.max(1));
    let mut finite = true;
    for _ in 0..c.repeats.max(1) {
        let x_t = noise.next(shape, device);
        let start = Instant::now();
        let x0 = sample(
            kind,
            &schedule,
            x_t,
            &mut noise,
            &mut |x, t| model.eps(x, &vec![t as f32; c.n]),
            &mut |_, _, _| true,
        )
        .ok_or_else(|| anyhow!("sampling stopped early"))?;
        let values = x0
            .into_data()
            .try_into_vec::<f32>()
            .map_err(|e| anyhow!("reading samples: {e:?}"))?;
        times.push(start.elapsed().as_secs_f64());
        finite &= values.iter().all(|v| v.is_finite());
    }
    if !finite {
        bail!("the samples are not finite");
    }
    let med = median(&times);
    let images_per_sec = c.n as f64 / med;
    let (fwd, _) = flops_fields(&spec);
    let sampler = match c.sampler {
        Sampler::Ddim => "ddim",
        Sampler::Ddpm => "ddpm",
    };
    emit(
        serde_json::json!({
            "case": "sample", "model": c.model, "weights": weights, "sampler": sampler,
            "steps": c.steps, "n": c.n, "repeats": times.len(), "warmup": c.warmup,
            "params": model.num_params(),
            "run_ms": stats_ms(&times),
            "images_per_sec": images_per_sec,
            "fwd_flops_per_image": fwd,
            "gflops_per_sec": fwd.map(|f| f as f64 * c.steps as f64 * images_per_sec / 1e9),
        }),
        compute,
    );
    Ok(())
}

//! `bench landscape`: a `G x G` loss landscape against its floor, `G^2` plain
//! evaluations of the base on the same evaluation set (the forward passes a
//! landscape cannot avoid), plus the time to the first coarse picture.
//! Both run in this process, alternately.

use super::{emit, median, model_from_arg, stats_ms, sync};
use crate::engine::analysis::landscape::{LandscapeModels, loss_landscape};
use crate::engine::analysis::{LandscapeConfig, LandscapeEvent, LandscapeGrid};
use crate::engine::device::ComputeDevice;
use crate::engine::diffusion::NoiseSchedule;
use crate::engine::eval::{EvalSet, EvalSetConfig, timestep_ranges};
use crate::engine::merge::Mergeable;
use crate::engine::store::AnyModel;
use crate::engine::train::{BatchSampler, CancelToken};
use anyhow::{Result, bail};
use burn::tensor::{Device, Tensor};
use clap::Args;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::Instant;

/// Arguments of `bench landscape`.
#[derive(Debug, Args)]
pub struct LandscapeCase {
    /// Model preset, config.json (random initialisation) or model folder (its weights).
    #[arg(long, default_value = "mnist-tiny")]
    pub model: String,
    /// Points per axis G.
    #[arg(long, default_value_t = 21)]
    pub grid: usize,
    /// Evaluation samples per point.
    #[arg(long, default_value_t = 64)]
    pub samples: usize,
    /// Samples per forward pass.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Timed repeats of each (landscape, floor), alternating.
    #[arg(long, default_value_t = 1)]
    pub repeats: usize,
}

/// Times of one landscape: the whole sweep and its first (coarsest) level.
struct SweepTimes {
    total: f64,
    first_level: f64,
    first_level_points: usize,
}

/// `base + 0.01 * noise` per parameter: an expert a short finetune away.
fn perturbed(base: &AnyModel, seed: u64, device: &Device) -> AnyModel {
    let mut rng = StdRng::seed_from_u64(seed);
    base.clone().map_flat(&mut |_, t| {
        let n = t.dims()[0];
        let noise: Vec<f32> = (0..n).map(|_| rng.random_range(-0.01..0.01)).collect();
        t + Tensor::<1>::from_floats(noise.as_slice(), device)
    })
}

fn sweep(
    base: &AnyModel,
    experts: &[AnyModel],
    eval: &EvalSet,
    config: &LandscapeConfig,
    device: &Device,
) -> Result<SweepTimes> {
    let models: Vec<(&str, &AnyModel)> = experts.iter().map(|m| ("expert", m)).collect();
    let input = LandscapeModels {
        base: ("base", base),
        models: &models,
        a: 0,
        b: 1,
        merges: &[],
    };
    let start = Instant::now();
    let mut first: Option<(f64, usize)> = None;
    let mut level_points = 0;
    let mut on_event = |e: LandscapeEvent| match e {
        LandscapeEvent::Level {
            level: 0, points, ..
        } => level_points = points,
        LandscapeEvent::Point { done, .. } if first.is_none() && done == level_points => {
            first = Some((start.elapsed().as_secs_f64(), done));
        }
        _ => {}
    };
    let landscape = loss_landscape(&input, eval, config, &CancelToken::new(), &mut on_event)?;
    sync(device)?;
    let total = start.elapsed().as_secs_f64();
    let all = landscape.surface("all").map(|s| s.values.clone());
    if all.is_none_or(|v| v.iter().any(|x| !x.is_some_and(f64::is_finite))) {
        bail!("the landscape has unscored or non-finite points");
    }
    let (first_level, first_level_points) = first.unwrap_or((total, 0));
    Ok(SweepTimes {
        total,
        first_level,
        first_level_points,
    })
}

/// `G^2` evaluations of the base alone on the same set: the floor.
fn floor(base: &AnyModel, eval: &EvalSet, points: usize, device: &Device) -> Result<f64> {
    let start = Instant::now();
    for _ in 0..points {
        let l = eval.evaluate(&|x, t| base.predict_eps(x, t))?;
        std::hint::black_box(l.mean());
    }
    sync(device)?;
    Ok(start.elapsed().as_secs_f64())
}

/// Runs `bench landscape`.
pub fn run(c: LandscapeCase, compute: &ComputeDevice) -> Result<()> {
    if c.samples == 0 || c.batch_size == 0 {
        bail!("--samples and --batch-size must be at least 1");
    }
    let device = &compute.device;
    let (spec, base, weights) = model_from_arg(&c.model, device)?;
    let experts = vec![perturbed(&base, 1, device), perturbed(&base, 2, device)];
    // synthetic held-out items in [-1, 1]: the timing does not depend on the values
    let [ch, h, w] = spec.item_shape();
    let mut rng = StdRng::seed_from_u64(7);
    let items: Vec<f32> = (0..64 * ch * h * w)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    let val = BatchSampler::new(items, [ch, h, w], "bench");
    let schedule = NoiseSchedule::ddpm(1000);
    let eval = EvalSet::new(
        &val,
        &schedule,
        EvalSetConfig {
            samples: c.samples,
            batch_size: c.batch_size,
            seed: 1234,
        },
        device,
    )?;
    let config = LandscapeConfig {
        grid: LandscapeGrid {
            size: c.grid,
            ..LandscapeGrid::default()
        },
        ranges: timestep_ranges(4, 1000),
    };
    config.grid.validate()?;
    let points = c.grid * c.grid;
    floor(&base, &eval, 1, device)?; // warm-up
    let repeats = c.repeats.max(1);
    let (mut land, mut first, mut flo) = (Vec::new(), Vec::new(), Vec::new());
    let mut first_points = 0;
    for _ in 0..repeats {
        flo.push(floor(&base, &eval, points, device)?);
        let t = sweep(&base, &experts, &eval, &config, device)?;
        land.push(t.total);
        first.push(t.first_level);
        first_points = t.first_level_points;
    }
    let ratio = median(&land) / median(&flo);
    emit(
        serde_json::json!({
            "case": "landscape", "model": c.model, "weights": weights,
            "grid": c.grid, "points": points, "samples": c.samples,
            "batch_size": c.batch_size, "repeats": repeats,
            "params": base.num_params(),
            "landscape_ms": stats_ms(&land),
            "first_level_ms": stats_ms(&first),
            "first_level_points": first_points,
            "floor_ms": stats_ms(&flo),
            "overhead_ratio": ratio,
            "overhead_pct": (ratio - 1.0) * 100.0,
        }),
        compute,
    );
    Ok(())
}

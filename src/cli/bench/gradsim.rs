//! `bench gradsim`: the gradient cosine-similarity heatmap against its floor,
//! the same `K x M` plain backward passes (same model, same batches, same
//! timesteps) with the gradients dropped. Both run in this process, alternately.

use super::{emit, flops_fields, median, model_from_arg, stats_ms, sync};
use crate::engine::analysis::{GradSimConfig, Granularity, grad_similarity};
use crate::engine::device::ComputeDevice;
use crate::engine::diffusion::NoiseSchedule;
use crate::engine::model::EpsModel;
use crate::engine::store::AnyModel;
use crate::engine::train::loss::eps_loss_per_sample;
use crate::engine::train::{BatchSampler, CancelToken};
use anyhow::{Result, bail};
use burn::tensor::Device;
use clap::Args;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::Instant;

/// Arguments of `bench gradsim`.
#[derive(Debug, Args)]
pub struct GradsimCase {
    /// Model preset, config.json (random initialisation) or model folder (its weights).
    #[arg(long, default_value = "mnist-tiny")]
    pub model: String,
    /// Number of timesteps K (evenly spaced, as `gradsim --k`).
    #[arg(long, default_value_t = 20)]
    pub k: usize,
    /// Fixed batches M the gradients are averaged over.
    #[arg(long, default_value_t = 2)]
    pub batches: usize,
    /// Samples per batch.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Sketch size per parameter group.
    #[arg(long, default_value_t = 1 << 16)]
    pub sketch_dim: usize,
    /// Keep every gradient exactly.
    #[arg(long)]
    pub exact: bool,
    /// Timed repeats of each (heatmap, floor), alternating.
    #[arg(long, default_value_t = 1)]
    pub repeats: usize,
}

/// `K x M` forward + backward passes, gradients dropped: the floor.
fn plain_backward<M: EpsModel>(
    tracked: &M,
    data: &BatchSampler,
    config: &GradSimConfig,
    schedule: &NoiseSchedule,
    device: &Device,
) -> Result<()> {
    for m in 0..config.batches {
        // the batches grad_similarity draws
        let mut rng = data.rng_for_step(config.seed, m as u64);
        let batch = data.batch(
            &mut rng,
            config.batch_size,
            schedule.num_train_timesteps(),
            device,
        );
        for &t in &config.timesteps {
            let ts = vec![t; config.batch_size];
            let loss = eps_loss_per_sample(
                tracked,
                schedule,
                batch.x0.clone(),
                batch.noise.clone(),
                &ts,
            )
            .mean();
            drop(loss.backward());
        }
    }
    sync(device)
}

/// Alternately times the heatmap and its floor; returns (heatmap, floor) seconds.
fn time_both<M: EpsModel>(
    model: &M,
    data: &BatchSampler,
    config: &GradSimConfig,
    repeats: usize,
    device: &Device,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let schedule = NoiseSchedule::ddpm(1000);
    let tracked = model.clone().to_device(&device.clone().autodiff()).train();
    let warm = GradSimConfig {
        timesteps: vec![config.timesteps[0]],
        batches: 1,
        ..config.clone()
    };
    plain_backward(&tracked, data, &warm, &schedule, device)?;
    let cancel = CancelToken::new();
    let (mut heat, mut floor) = (Vec::new(), Vec::new());
    for _ in 0..repeats {
        let start = Instant::now();
        plain_backward(&tracked, data, config, &schedule, device)?;
        floor.push(start.elapsed().as_secs_f64());
        let start = Instant::now();
        let result = grad_similarity(model, &schedule, data, config, &cancel, &mut |_| {})?;
        heat.push(start.elapsed().as_secs_f64());
        if result.cosine.iter().any(|c| !c.is_finite()) {
            bail!("the similarity matrix is not finite");
        }
    }
    Ok((heat, floor))
}

/// Runs `bench gradsim`.
pub fn run(c: GradsimCase, compute: &ComputeDevice) -> Result<()> {
    if c.k < 2 || c.batches == 0 || c.batch_size == 0 {
        bail!("--k must be at least 2, --batches and --batch-size at least 1");
    }
    let device = &compute.device;
    let (spec, model, weights) = model_from_arg(&c.model, device)?;
    // synthetic data in [-1, 1]: the timing does not depend on the values
    let [ch, h, w] = spec.item_shape();
    let mut rng = StdRng::seed_from_u64(7);
    let items: Vec<f32> = (0..64 * ch * h * w)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    let data = BatchSampler::new(items, [ch, h, w], "bench");
    let config = GradSimConfig {
        timesteps: GradSimConfig::even_timesteps(c.k, 1000),
        batches: c.batches,
        batch_size: c.batch_size,
        sketch_dim: (!c.exact).then_some(c.sketch_dim),
        granularity: Granularity::Block,
        seed: 0,
    };
    let repeats = c.repeats.max(1);
    let (heat, floor) = match &model {
        AnyModel::UNet(m) => time_both(m, &data, &config, repeats, device)?,
        AnyModel::Mlp(m) => time_both(m, &data, &config, repeats, device)?,
    };
    let ratio = median(&heat) / median(&floor);
    let passes = c.k * c.batches;
    let (_, fwd_bwd) = flops_fields(&spec);
    let floor_gflops =
        fwd_bwd.map(|f| f as f64 * (passes * c.batch_size) as f64 / median(&floor) / 1e9);
    emit(
        serde_json::json!({
            "case": "gradsim", "model": c.model, "weights": weights,
            "k": c.k, "batches": c.batches, "batch_size": c.batch_size,
            "sketch_dim": config.sketch_dim, "repeats": repeats,
            "params": model.num_params(), "backward_passes": passes,
            "gradsim_ms": stats_ms(&heat),
            "floor_ms": stats_ms(&floor),
            "overhead_ratio": ratio,
            "overhead_pct": (ratio - 1.0) * 100.0,
            "fwd_bwd_flops_per_image": fwd_bwd,
            "floor_gflops_per_sec": floor_gflops,
        }),
        compute,
    );
    Ok(())
}

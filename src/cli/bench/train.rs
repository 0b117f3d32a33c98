//! `bench train`: training steps per second (reference: `bench/torch_train.py`).

use super::{emit, flops_fields};
use crate::engine::device::ComputeDevice;
use crate::engine::diffusion::NoiseSchedule;
use crate::engine::model::EpsModel;
use crate::engine::store::{AnyModel, ModelSpec};
use crate::engine::train::loss::eps_loss_per_sample;
use crate::engine::train::{AdamW, AdamWConfig, BatchSampler};
use anyhow::{Result, bail};
use burn::tensor::Device;
use clap::Args;
use std::time::Instant;

/// Arguments of `bench train`.
#[derive(Debug, Args)]
pub struct TrainCase {
    /// Model preset or config.json.
    #[arg(long, default_value = "mnist-tiny")]
    pub model: String,
    /// Batch size.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Timed steps (after warm-up).
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    /// Untimed warm-up steps.
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
}

/// Times `warmup + steps` training steps; returns the timed ones, sorted.
fn time_train<M: EpsModel>(
    model: M,
    spec: &ModelSpec,
    batch: usize,
    warmup: usize,
    steps: usize,
    device: &Device,
) -> Result<Vec<f64>> {
    let ad = device.clone().autodiff();
    let mut model = model.to_device(&ad).train();
    let [c, h, w] = spec.item_shape();
    let data = BatchSampler::new(vec![0.5; 256 * c * h * w], [c, h, w], "bench");
    let schedule = NoiseSchedule::ddpm(1000);
    let mut opt = AdamW::new(AdamWConfig::default());
    let mut times = Vec::new();
    for i in 0..warmup + steps {
        let start = Instant::now();
        let mut rng = data.rng_for_step(0, i as u64);
        let b = data.batch(&mut rng, batch, 1000, &ad);
        let loss = eps_loss_per_sample(&model, &schedule, b.x0, b.noise, &b.t).mean();
        let grads = loss.backward();
        model = opt.step(model, &grads, 1e-4)?.0; // reads the grad norm: a device sync per step
        if i >= warmup {
            times.push(start.elapsed().as_secs_f64());
        }
    }
    times.sort_by(f64::total_cmp);
    Ok(times)
}

/// Runs `bench train`.
pub fn run(c: TrainCase, compute: &ComputeDevice) -> Result<()> {
    if c.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let spec = ModelSpec::from_arg(&c.model)?;
    let built = spec.build(0, &compute.device)?;
    let params = built.num_params();
    let steps = c.steps.max(1);
    let times = match built {
        AnyModel::UNet(m) => time_train(m, &spec, c.batch_size, c.warmup, steps, &compute.device)?,
        AnyModel::Mlp(m) => time_train(m, &spec, c.batch_size, c.warmup, steps, &compute.device)?,
    };
    let med = times[times.len() / 2];
    let images_per_sec = c.batch_size as f64 / med;
    let (_, fwd_bwd) = flops_fields(&spec);
    emit(
        serde_json::json!({
            "case": "train", "model": c.model, "batch_size": c.batch_size,
            "steps": steps, "warmup": c.warmup, "params": params,
            "step_ms_median": med * 1e3, "step_ms_min": times[0] * 1e3,
            "step_ms_max": times[times.len() - 1] * 1e3,
            "images_per_sec": images_per_sec,
            "fwd_bwd_flops_per_image": fwd_bwd,
            "gflops_per_sec": fwd_bwd.map(|f| f as f64 * images_per_sec / 1e9),
        }),
        compute,
    );
    Ok(())
}

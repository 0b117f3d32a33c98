//! `deme-studio bench`: throughput figures of the engine (our side of bench/*.py).

use super::resolve_device;
use crate::engine::device::DeviceChoice;
use crate::engine::diffusion::NoiseSchedule;
use crate::engine::model::EpsModel;
use crate::engine::store::{AnyModel, ModelSpec};
use crate::engine::train::loss::eps_loss_per_sample;
use crate::engine::train::{AdamW, AdamWConfig, BatchSampler};
use anyhow::Result;
use burn::tensor::Device;
use clap::{Args, Subcommand};
use std::time::Instant;

/// Arguments of `bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Which measurement.
    #[command(subcommand)]
    pub case: BenchCase,
}

/// Benchmark cases.
#[derive(Debug, Subcommand)]
pub enum BenchCase {
    /// Training steps per second (forward, backward, AdamW with clipping) on random data.
    Train {
        /// Model preset or config.json.
        #[arg(long, default_value = "mnist-small")]
        model: String,
        /// Batch size.
        #[arg(long, default_value_t = 64)]
        batch_size: usize,
        /// Timed steps (after warm-up).
        #[arg(long, default_value_t = 10)]
        steps: usize,
        /// Untimed warm-up steps.
        #[arg(long, default_value_t = 2)]
        warmup: usize,
    },
}

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
    let schedule = NoiseSchedule::linear(1e-4, 0.02, 1000);
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

/// Runs `bench`.
pub fn run(args: BenchArgs, device: DeviceChoice) -> Result<()> {
    match args.case {
        BenchCase::Train {
            model,
            batch_size,
            steps,
            warmup,
        } => {
            let compute = resolve_device(device)?;
            let spec = ModelSpec::from_arg(&model)?;
            let built = spec.build(0, &compute.device)?;
            let params = built.num_params();
            let times = match built {
                AnyModel::UNet(m) => {
                    time_train(m, &spec, batch_size, warmup, steps.max(1), &compute.device)?
                }
                AnyModel::Mlp(m) => {
                    time_train(m, &spec, batch_size, warmup, steps.max(1), &compute.device)?
                }
            };
            let med = times[times.len() / 2];
            println!(
                "{}",
                serde_json::json!({
                    "impl": "deme-studio", "device": compute.reason, "model": model,
                    "batch_size": batch_size, "steps": steps, "params": params,
                    "step_ms_median": med * 1e3, "step_ms_min": times[0] * 1e3,
                    "step_ms_max": times[times.len() - 1] * 1e3,
                    "images_per_sec": batch_size as f64 / med,
                })
            );
        }
    }
    Ok(())
}

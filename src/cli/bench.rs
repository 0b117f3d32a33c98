//! `deme-studio bench`: throughput figures of the engine (our side of bench/*.py).

use super::resolve_device;
use crate::engine::device::DeviceChoice;
use crate::engine::diffusion::NoiseSchedule;
use crate::engine::merge::{MergeSpec, Merger};
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
        #[arg(long, default_value = "mnist-tiny")]
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
    /// Re-merging N random experts in place (the weight-slider path) against
    /// copying the same bytes once (the memory-bandwidth floor).
    Merge {
        /// Model presets or config.json files, comma-separated.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "mnist-tiny,ddpm-cifar10-32"
        )]
        models: Vec<String>,
        /// Number of experts N.
        #[arg(long, default_value_t = 4)]
        experts: usize,
        /// Timed repeats (after one untimed warm-up).
        #[arg(long, default_value_t = 10)]
        repeats: usize,
    },
}

/// Median, min and max of `times` (seconds) in milliseconds.
fn stats_ms(mut times: Vec<f64>) -> serde_json::Value {
    times.sort_by(f64::total_cmp);
    serde_json::json!({
        "median": times[times.len() / 2] * 1e3,
        "min": times[0] * 1e3,
        "max": times[times.len() - 1] * 1e3,
    })
}

/// Times `f` `repeats` times after one untimed call.
fn time_repeats(repeats: usize, mut f: impl FnMut(usize) -> Result<()>) -> Result<Vec<f64>> {
    f(0)?;
    let mut times = Vec::with_capacity(repeats);
    for r in 1..=repeats {
        let start = Instant::now();
        f(r)?;
        times.push(start.elapsed().as_secs_f64());
    }
    Ok(times)
}

/// One model of the merge benchmark: JSON figures.
fn bench_merge(
    model: &str,
    experts: usize,
    repeats: usize,
    device: &Device,
) -> Result<serde_json::Value> {
    let spec = ModelSpec::from_arg(model)?;
    let base = spec.build(0, device)?;
    let others: Vec<AnyModel> = (1..=experts as u64)
        .map(|s| spec.build(s, device))
        .collect::<Result<_>>()?;
    let labeled: Vec<(&str, &AnyModel)> = others.iter().map(|m| ("expert", m)).collect();
    let mut merger = Merger::new(("base", &base), &labeled)?;
    drop(others);
    let values = merger.num_values();
    let mut merged = Some(merger.merge(&MergeSpec::task_arithmetic(vec![0.5; experts]))?);
    let merge_times = time_repeats(repeats, |r| {
        // new weights every time, as a slider would give
        let w = (0..experts)
            .map(|i| 0.1 + 0.05 * ((r + i) % 7) as f32)
            .collect();
        let m = merged.take().expect("set before each call");
        merged = Some(merger.merge_into(m, &MergeSpec::task_arithmetic(w))?);
        device
            .sync()
            .map_err(|e| anyhow::anyhow!("device sync: {e:?}"))
    })?;
    let copy = |n: usize| -> Result<Vec<f64>> {
        let src: Vec<f32> = (0..n).map(|i| i as f32).collect();
        let mut dst = vec![0f32; n];
        time_repeats(repeats, |_| {
            dst.copy_from_slice(std::hint::black_box(&src));
            std::hint::black_box(&mut dst);
            Ok(())
        })
    };
    let model_copy = copy(values)?;
    let inputs_copy = copy(values * (experts + 1))?;
    let med = |t: &[f64]| {
        let mut t = t.to_vec();
        t.sort_by(f64::total_cmp);
        t[t.len() / 2]
    };
    let ratio_model = med(&merge_times) / med(&model_copy);
    let ratio_inputs = med(&merge_times) / med(&inputs_copy);
    Ok(serde_json::json!({
        "model": model, "params": values, "experts": experts, "repeats": repeats,
        "model_mb": values as f64 * 4.0 / 1e6,
        "remerge_ms": stats_ms(merge_times),
        "copy_model_ms": stats_ms(model_copy),
        "copy_inputs_ms": stats_ms(inputs_copy),
        "remerge_over_copy_model": ratio_model,
        "remerge_over_copy_inputs": ratio_inputs,
    }))
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
        BenchCase::Merge {
            models,
            experts,
            repeats,
        } => {
            let compute = resolve_device(device)?;
            for model in &models {
                let mut v = bench_merge(model, experts.max(1), repeats.max(1), &compute.device)?;
                v["impl"] = "deme-studio".into();
                v["device"] = compute.reason.clone().into();
                println!("{v}");
            }
        }
    }
    Ok(())
}

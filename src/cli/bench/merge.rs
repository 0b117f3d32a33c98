//! `bench merge`: re-merging in place against the copy floor (reference:
//! `bench/torch_merge.py`, the same arithmetic on PyTorch tensors).

use super::{emit, median, stats_ms, sync, time_repeats};
use crate::engine::device::ComputeDevice;
use crate::engine::merge::{MergeSpec, Merger};
use crate::engine::store::{AnyModel, ModelSpec};
use anyhow::Result;
use burn::tensor::Device;
use clap::Args;
use rayon::prelude::*;

/// Arguments of `bench merge`.
#[derive(Debug, Args)]
pub struct MergeCase {
    /// Model presets or config.json files, comma-separated (one line each).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "mnist-tiny,ddpm-cifar10-32"
    )]
    pub models: Vec<String>,
    /// Number of experts N.
    #[arg(long, default_value_t = 4)]
    pub experts: usize,
    /// Timed repeats (after one untimed warm-up).
    #[arg(long, default_value_t = 10)]
    pub repeats: usize,
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
        sync(device)
    })?;
    // the floor copies over the same worker pool as the merge (as PyTorch's
    // `copy_` uses its threads), in the merge's chunk size
    let copy = |n: usize| -> Result<Vec<f64>> {
        let src: Vec<f32> = (0..n).map(|i| i as f32).collect();
        let mut dst = vec![0f32; n];
        time_repeats(repeats, |_| {
            let src = std::hint::black_box(&src);
            dst.par_chunks_mut(1 << 15)
                .zip(src.par_chunks(1 << 15))
                .for_each(|(d, s)| d.copy_from_slice(s));
            std::hint::black_box(&mut dst);
            Ok(())
        })
    };
    let model_copy = copy(values)?;
    let inputs_copy = copy(values * (experts + 1))?;
    Ok(serde_json::json!({
        "case": "merge", "model": model, "params": values, "experts": experts,
        "repeats": repeats, "model_mb": values as f64 * 4.0 / 1e6,
        "remerge_ms": stats_ms(&merge_times),
        "copy_model_ms": stats_ms(&model_copy),
        "copy_inputs_ms": stats_ms(&inputs_copy),
        "remerge_over_copy_model": median(&merge_times) / median(&model_copy),
        "remerge_over_copy_inputs": median(&merge_times) / median(&inputs_copy),
    }))
}

/// Runs `bench merge`: one line per model.
pub fn run(c: MergeCase, compute: &ComputeDevice) -> Result<()> {
    for model in &c.models {
        let line = bench_merge(model, c.experts.max(1), c.repeats.max(1), &compute.device)?;
        emit(line, compute);
    }
    Ok(())
}

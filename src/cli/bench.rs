//! `deme-studio bench`: throughput figures of the engine, one JSON line per
//! measurement (our side of `bench/run_suite.py`; the reference side is
//! `bench/torch_*.py`).
//!
//! Every line carries `impl`, `device`, `profile` (release or debug build),
//! `threads` (the CPU worker threads: `RAYON_NUM_THREADS` when set) and
//! `peak_rss_mb` (the process's peak resident set, `VmHWM`, read at the end of
//! the case). On the CPU a line also carries `cpu_kernels`: the instruction
//! sets the kernels picked at run time (`gemm`'s micro-kernels, our loops). On a device with its own memory pools (wgpu) a line also carries
//! `device_reserved_mb` and `device_in_use_mb`: what the pools hold reserved
//! and what live tensors use at the end of the case. The pools keep the pages
//! they grew to, so the reserved figure is the case's device footprint.

mod coldstart;
mod flops;
mod gradsim;
mod handoff;
mod landscape;
mod latency;
mod load;
mod merge;
mod peak;
mod preview_worker;
mod sample;
mod search;
mod train;

use super::resolve_device;
use crate::engine::checkpoint::UNet2DConfig;
use crate::engine::device::{ComputeDevice, DeviceChoice};
use crate::engine::store::{AnyModel, ModelSpec, load_model};
use anyhow::Result;
use burn::tensor::Device;
use clap::{Args, Subcommand};
use std::path::Path;
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
    Train(train::TrainCase),
    /// Time to generate N images with DDIM or DDPM (random-init or loaded weights).
    Sample(sample::SampleCase),
    /// Re-merging N random experts in place (the weight-slider path) against
    /// copying the same bytes once (the memory-bandwidth floor).
    Merge(merge::MergeCase),
    /// The K x K gradient-similarity computation against K plain backward
    /// passes of the same batches on the same model.
    Gradsim(gradsim::GradsimCase),
    /// A G x G loss landscape against G^2 plain evaluations of the base on
    /// the same evaluation set, and the time to the first coarse picture.
    Landscape(landscape::LandscapeCase),
    /// Peak host memory of opening base + N experts as the merge view does.
    Load(load::LoadCase),
    /// From starting the program to the first merged preview of the shipped
    /// set, in fresh processes (the first cold, the rest warm).
    Coldstart(coldstart::ColdstartCase),
    /// Slider-to-preview latency of the merge worker: a drag's fast pass and
    /// a release's fine pass, from the request to the first and last picture.
    Latency(latency::LatencyCase),
    /// The device's f32 matmul throughput (square matrices): the measured
    /// peak that training and sampling GFLOP/s are read against.
    Peak(peak::PeakCase),
    /// The preview hand-off on wgpu: from the sampler's finished output to a
    /// drawable texture, through the host against laid out on the device.
    Handoff(handoff::HandoffCase),
    /// Learned merge weights (per expert, per expert and block) against the
    /// coordinate search: the time each takes to reach the coordinate search's
    /// held-out objective, on a real set (the shipped one by default).
    Search(search::SearchCase),
}

/// Runs `bench`.
pub fn run(args: BenchArgs, device: DeviceChoice) -> Result<()> {
    let compute = resolve_device(device)?;
    match args.case {
        BenchCase::Train(c) => train::run(c, &compute),
        BenchCase::Sample(c) => sample::run(c, &compute),
        BenchCase::Merge(c) => merge::run(c, &compute),
        BenchCase::Gradsim(c) => gradsim::run(c, &compute),
        BenchCase::Landscape(c) => landscape::run(c, &compute),
        BenchCase::Load(c) => load::run(c, &compute),
        BenchCase::Coldstart(c) => coldstart::run(c, &compute),
        BenchCase::Latency(c) => latency::run(c, &compute),
        BenchCase::Peak(c) => peak::run(c, &compute),
        BenchCase::Search(c) => search::run(c, &compute),
        BenchCase::Handoff(c) => handoff::run(c, &compute),
    }
}

/// Median, min and max of `times` (seconds) in milliseconds.
fn stats_ms(times: &[f64]) -> serde_json::Value {
    let mut t = times.to_vec();
    t.sort_by(f64::total_cmp);
    serde_json::json!({
        "median": t[t.len() / 2] * 1e3,
        "min": t[0] * 1e3,
        "max": t[t.len() - 1] * 1e3,
    })
}

/// Median of `times` (the upper one for an even count, as [`stats_ms`]).
fn median(times: &[f64]) -> f64 {
    let mut t = times.to_vec();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
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

/// Waits for the device's queued work.
fn sync(device: &Device) -> Result<()> {
    device
        .sync()
        .map_err(|e| anyhow::anyhow!("device sync: {e:?}"))
}

/// Peak resident set of this process in MB (`VmHWM` of `/proc/self/status`;
/// `None` where there is no procfs).
fn peak_rss_mb() -> Option<f64> {
    proc_status_mb("VmHWM:")
}

/// Device memory in MB, `(reserved, in use)`, once queued work is done; `None`
/// on a backend without device pools (flex on the CPU reports in RSS).
fn device_memory_mb(device: &Device) -> Option<(f64, f64)> {
    device.sync().ok()?;
    let usage = device.memory_pool_usage()?;
    let mb = |b: u64| b as f64 / (1024.0 * 1024.0);
    Some((mb(usage.bytes_reserved), mb(usage.bytes_in_use)))
}

/// A `kB` field of `/proc/self/status` (e.g. `VmRSS:`) in MB.
fn proc_status_mb(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: f64 = line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

/// CPU worker threads: `RAYON_NUM_THREADS` when set, else the available cores.
fn cpu_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n: &usize| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Adds the fields every line carries and prints it.
fn emit(mut line: serde_json::Value, compute: &ComputeDevice) {
    line["impl"] = "deme-studio".into();
    line["device"] = compute.reason.clone().into();
    line["profile"] = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    }
    .into();
    line["threads"] = cpu_threads().into();
    line["peak_rss_mb"] = peak_rss_mb().into();
    if crate::engine::kernels::on_flex(&compute.device) {
        let variants = crate::engine::kernels::kernel_variants();
        line["cpu_kernels"] = variants
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
            .collect::<serde_json::Map<_, _>>()
            .into();
    }
    if let Some((reserved, in_use)) = device_memory_mb(&compute.device) {
        line["device_reserved_mb"] = reserved.into();
        line["device_in_use_mb"] = in_use.into();
    }
    println!("{line}");
}

/// Forward and forward+backward FLOPs per image, when the model is a UNet.
fn flops_fields(spec: &ModelSpec) -> (Option<u64>, Option<u64>) {
    match spec {
        ModelSpec::UNet(c) => unet_flops(c),
        ModelSpec::Mlp(_) => (None, None),
    }
}

fn unet_flops(config: &UNet2DConfig) -> (Option<u64>, Option<u64>) {
    let cost = flops::unet_forward_cost(config);
    (Some(cost.flops), Some(cost.fwd_bwd_flops()))
}

/// `--model`: a model folder (loaded weights), else a preset or config.json
/// (random initialisation, seed 0). Returns the model and where it came from.
fn model_from_arg(arg: &str, device: &Device) -> Result<(ModelSpec, AnyModel, &'static str)> {
    let path = Path::new(arg);
    if path.is_dir() {
        let loaded = load_model(path, device)?;
        return Ok((loaded.spec, loaded.model, "loaded"));
    }
    let spec = ModelSpec::from_arg(arg)?;
    let model = spec.build(0, device)?;
    Ok((spec, model, "random-init"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_are_median_min_max_in_ms() {
        let s = stats_ms(&[0.5, 0.125, 0.25]);
        assert_eq!(s["median"], 250.0);
        assert_eq!(s["min"], 125.0);
        assert_eq!(s["max"], 500.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 3.0);
    }

    #[test]
    fn peak_rss_is_read_on_linux() {
        if cfg!(target_os = "linux") {
            let mb = peak_rss_mb().expect("VmHWM in /proc/self/status");
            assert!(mb > 0.0 && mb.is_finite());
        }
    }
}

//! `bench peak`: the device's measured f32 matmul throughput, the yardstick the
//! suite reads training and sampling GFLOP/s against (reference:
//! `bench/torch_peak.py`, `torch.mm` on the same device).

use super::{emit, median, stats_ms, sync, time_repeats};
use crate::engine::device::ComputeDevice;
use anyhow::{Result, bail};
use burn::tensor::{Distribution, Tensor};
use clap::Args;

/// Arguments of `bench peak`.
#[derive(Debug, Args)]
pub struct PeakCase {
    /// Side of the square matrices (`[n, n] x [n, n]`, 2 n^3 FLOPs).
    #[arg(long, default_value_t = 2048)]
    pub n: usize,
    /// Timed products (after one untimed warm-up).
    #[arg(long, default_value_t = 5)]
    pub repeats: usize,
}

/// FLOPs of one `[n, n] x [n, n]` product.
pub fn matmul_flops(n: usize) -> f64 {
    2.0 * (n as f64).powi(3)
}

/// Runs `bench peak`.
pub fn run(c: PeakCase, compute: &ComputeDevice) -> Result<()> {
    if c.n == 0 || c.repeats == 0 {
        bail!("--n and --repeats must be at least 1");
    }
    let device = &compute.device;
    let dist = Distribution::Uniform(-1.0, 1.0);
    let a = Tensor::<2>::random([c.n, c.n], dist, device);
    let b = Tensor::<2>::random([c.n, c.n], dist, device);
    sync(device)?;
    let times = time_repeats(c.repeats, |_| {
        let y = a.clone().matmul(b.clone());
        sync(device)?;
        drop(y);
        Ok(())
    })?;
    let flops = matmul_flops(c.n);
    let best = times.iter().copied().fold(f64::INFINITY, f64::min);
    emit(
        serde_json::json!({
            "case": "peak",
            "n": c.n,
            "repeats": c.repeats,
            "matmul_ms": stats_ms(&times),
            "gflops_per_sec": flops / median(&times) / 1e9,
            "gflops_per_sec_best": flops / best / 1e9,
        }),
        compute,
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_square_product_counts_two_flops_per_multiply_add() {
        assert_eq!(super::matmul_flops(2), 16.0);
        assert_eq!(super::matmul_flops(1024), 2.0 * 1024f64.powi(3));
    }
}

//! `bench latency`: slider-to-preview latency of the app's merge worker on the
//! shipped set (or `--set`). After the set is open and the base and ensemble
//! panels are done, each repeat requests a new merge as a slider drag does
//! (the fast DDIM pass) and then as its release does (the fine pass), and
//! times the first picture and the finished pass of each from the request.

use super::preview_worker::{self, the_set};
use super::{emit, stats_ms};
use crate::engine::device::ComputeDevice;
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

/// Arguments of `bench latency`.
#[derive(Debug, Args)]
pub struct LatencyCase {
    /// Weight changes to time (each a drag then a release).
    #[arg(long, default_value_t = 5)]
    pub repeats: usize,
    /// A folder holding a base and its experts, as the app opens it (default: the shipped set).
    #[arg(long)]
    pub set: Option<PathBuf>,
}

/// Runs `bench latency`.
pub fn run(c: LatencyCase, compute: &ComputeDevice) -> Result<()> {
    let set = the_set(c.set.as_deref())?;
    let open = preview_worker::open(&set, compute)?;
    open.settle()?;
    let n = open.experts;
    let (mut drag, mut release) = ((Vec::new(), Vec::new()), (Vec::new(), Vec::new()));
    for k in 0..c.repeats.max(1) {
        // a different weight each time, as a slider gives
        let mut weights = vec![1.0 / n as f32; n];
        weights[k % n] = 0.1 + 0.15 * (k % 5) as f32;
        let (first, done) = open.preview(weights.clone(), open.settings.fast_steps)?;
        drag.0.push(first);
        drag.1.push(done);
        let (first, done) = open.preview(weights, open.settings.fine_steps)?;
        release.0.push(first);
        release.1.push(done);
    }
    emit(
        serde_json::json!({
            "case": "latency",
            "drag_first_ms": stats_ms(&drag.0),
            "drag_done_ms": stats_ms(&drag.1),
            "release_first_ms": stats_ms(&release.0),
            "release_done_ms": stats_ms(&release.1),
            "samples": open.settings.samples,
            "fast_steps": open.settings.fast_steps,
            "fine_steps": open.settings.fine_steps,
            "experts": n,
            "repeats": c.repeats.max(1),
        }),
        compute,
    );
    Ok(())
}

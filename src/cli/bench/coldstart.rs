//! `bench coldstart`: from starting the program to the first merged preview of
//! the default set, as the app's merge view gets it (load base + experts,
//! merge with equal weights, sample with the fast DDIM pass).
//!
//! Each repeat is a fresh process (`bench coldstart --child`), timed from
//! spawning it to its report, so the figure includes starting the executable,
//! choosing the device and any kernel compilation. The first repeat is the
//! cold one; the rest run with whatever the first left cached (the OS file
//! cache; on wgpu, compiled pipelines).

use super::emit;
use super::preview_worker::{self, the_set};
use crate::engine::device::{Backend, ComputeDevice};
use anyhow::{Context, Result, bail};
use clap::Args;
use std::path::PathBuf;
use std::time::Instant;

/// Arguments of `bench coldstart`.
#[derive(Debug, Args)]
pub struct ColdstartCase {
    /// Fresh processes to time (the first is the cold start).
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// A folder holding a base and its experts, as the app opens it (default: the shipped set).
    #[arg(long)]
    pub set: Option<PathBuf>,
    /// Measure inside this process and print one JSON line (used by the parent).
    #[arg(long, hide = true)]
    pub child: bool,
}

fn child(c: &ColdstartCase, compute: &ComputeDevice) -> Result<()> {
    let start = Instant::now();
    let set = the_set(c.set.as_deref())?;
    let open = preview_worker::open(&set, compute)?;
    let loaded = start.elapsed().as_secs_f64();
    let n = open.experts;
    let (first, done) = open.preview(vec![1.0 / n as f32; n], open.settings.fast_steps)?;
    emit(
        serde_json::json!({
            "case": "coldstart-child",
            "load_ms": loaded * 1e3,
            "first_picture_ms": (loaded + first) * 1e3,
            "fast_pass_ms": (loaded + done) * 1e3,
            "samples": open.settings.samples,
            "fast_steps": open.settings.fast_steps,
            "experts": n,
        }),
        compute,
    );
    Ok(())
}

/// Runs `bench coldstart`.
pub fn run(c: ColdstartCase, compute: &ComputeDevice) -> Result<()> {
    if c.child {
        return child(&c, compute);
    }
    let set = the_set(c.set.as_deref())?;
    let exe = std::env::current_exe().context("finding this program")?;
    let device = match compute.backend {
        Backend::Flex => "cpu",
        _ => "wgpu",
    };
    let mut runs = Vec::new();
    for _ in 0..c.repeats.max(1) {
        let spawned = Instant::now();
        let out = std::process::Command::new(&exe)
            .args(["--device", device, "bench", "coldstart", "--child", "--set"])
            .arg(set.base.parent().context("the set's folder")?)
            .stderr(std::process::Stdio::null())
            .output()
            .context("running the measuring process")?;
        let wall = spawned.elapsed().as_secs_f64() * 1e3;
        if !out.status.success() {
            bail!("the measuring process failed ({})", out.status);
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .last()
            .context("the measuring process printed nothing")?;
        let mut value: serde_json::Value = serde_json::from_str(line)?;
        value["process_to_fast_pass_ms"] = serde_json::json!(wall);
        runs.push(value);
    }
    let field = |name: &str| -> Vec<f64> { runs.iter().filter_map(|r| r[name].as_f64()).collect() };
    let (wall, first) = (field("process_to_fast_pass_ms"), field("first_picture_ms"));
    let mut line = serde_json::json!({
        "case": "coldstart",
        "set": set.base.parent().map(|p| p.display().to_string()),
        "cold_process_to_fast_pass_ms": wall.first(),
        "cold_first_picture_ms": first.first(),
        "warm_process_to_fast_pass_ms": (wall.len() > 1).then(|| super::median(&wall[1..])),
        "child_peak_rss_mb": field("peak_rss_mb").into_iter().fold(0.0, f64::max),
        "runs": runs,
    });
    emit(line.take(), compute);
    Ok(())
}

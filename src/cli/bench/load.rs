//! `bench load`: peak host memory of opening a merge set, base plus N experts,
//! the way the app's merge view does (load every folder, build the merger,
//! keep the experts for the ensemble).
//!
//! The models are written to a temporary folder first, and the loading is
//! measured in a fresh child process (`bench load --from DIR`), so the peak
//! resident set counts the loading alone.

use super::emit;
use crate::engine::checkpoint::KeyStyle;
use crate::engine::device::{Backend, ComputeDevice};
use crate::engine::merge::Merger;
use crate::engine::store::{AnyModel, ModelSpec, load_model, save_model_folder};
use anyhow::{Context, Result, bail};
use clap::Args;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Arguments of `bench load`.
#[derive(Debug, Args)]
pub struct LoadCase {
    /// Model preset or config.json of the set written and loaded.
    #[arg(long, default_value = "ddpm-cifar10-32")]
    pub model: String,
    /// Number of experts N.
    #[arg(long, default_value_t = 4)]
    pub experts: usize,
    /// Measure an existing set instead: a folder holding `base` and
    /// `expert_1..N` model folders.
    #[arg(long)]
    pub from: Option<PathBuf>,
}

/// Current resident set in MB (`VmRSS`).
fn rss_mb() -> Option<f64> {
    super::proc_status_mb("VmRSS:")
}

/// Loads `dir/base` and `dir/expert_1..N` as the app does; one JSON line.
fn measure(dir: &Path, experts: usize, compute: &ComputeDevice) -> Result<serde_json::Value> {
    let before = rss_mb();
    let start = Instant::now();
    let base = load_model(&dir.join("base"), &compute.device)?;
    let loaded: Vec<_> = (1..=experts)
        .map(|i| load_model(&dir.join(format!("expert_{i}")), &compute.device))
        .collect::<Result<_>>()?;
    let labeled: Vec<(&str, &AnyModel)> = loaded.iter().map(|e| ("expert", &e.model)).collect();
    let merger = Merger::new(("base", &base.model), &labeled)?;
    let secs = start.elapsed().as_secs_f64();
    let values = merger.num_values();
    let model_mb = values as f64 * 4.0 / 1e6;
    let after = rss_mb();
    Ok(serde_json::json!({
        "case": "load", "params": values, "experts": experts, "model_mb": model_mb,
        "weights_on_disk_mb": model_mb * (experts + 1) as f64,
        "load_and_merger_s": secs,
        "rss_before_mb": before, "rss_after_mb": after,
    }))
}

/// Runs `bench load`.
pub fn run(c: LoadCase, compute: &ComputeDevice) -> Result<()> {
    if let Some(dir) = &c.from {
        let mut line = measure(dir, c.experts, compute)?;
        line["model"] = c.model.clone().into();
        emit(line, compute);
        return Ok(());
    }
    let spec = ModelSpec::from_arg(&c.model)?;
    let tmp = tempfile::tempdir().context("creating a temporary folder")?;
    for i in 0..=c.experts {
        let name = if i == 0 {
            "base".to_string()
        } else {
            format!("expert_{i}")
        };
        let model = spec.build(i as u64, &compute.device)?;
        save_model_folder(
            &tmp.path().join(name),
            &spec,
            model.export(),
            &BTreeMap::new(),
            KeyStyle::Modern,
            None,
        )?;
    }
    let exe = std::env::current_exe().context("finding this program")?;
    let device = match compute.backend {
        Backend::Flex => "cpu",
        _ => "wgpu",
    };
    let out = std::process::Command::new(exe)
        .args(["--device", device, "bench", "load", "--model", &c.model])
        .args(["--experts", &c.experts.to_string(), "--from"])
        .arg(tmp.path())
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("running the measuring process")?;
    if !out.status.success() {
        bail!("the measuring process failed ({})", out.status);
    }
    print!("{}", String::from_utf8_lossy(&out.stdout));
    Ok(())
}

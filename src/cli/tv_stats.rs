//! `deme-studio tv-stats`: magnitudes, norms and cosine similarities of the
//! experts' task vectors, per block or layer and overall.

use crate::engine::analysis::Granularity;
use crate::engine::analysis::tv_stats::{TvStats, tv_stats};
use crate::engine::analysis::tv_stats_files::write_tv_stats_files;
use crate::engine::merge::{HostTaskVectors, LabeledParams};
use crate::engine::store::load_model;
use anyhow::{Context, Result};
use burn::tensor::Device;
use clap::Args;
use std::path::{Path, PathBuf};

/// Arguments of `tv-stats`.
#[derive(Debug, Args)]
pub struct TvStatsArgs {
    /// The pretrained base model folder.
    #[arg(long)]
    pub base: PathBuf,
    /// Expert folders (comma-separated or repeated).
    #[arg(long, value_delimiter = ',', num_args = 1.., required = true)]
    pub experts: Vec<PathBuf>,
    /// Parameter grouping: block or layer.
    #[arg(long, default_value = "block")]
    pub granularity: Granularity,
    /// Output folder: tv_stats.json, tv_stats.csv, cosine.csv, cosine.npy, cosine.png.
    #[arg(long)]
    pub out: PathBuf,
}

/// Runs `tv-stats` (on the host: the statistics need every value once).
pub fn run(args: TvStatsArgs) -> Result<()> {
    crate::engine::output::ensure_writable_folder(&args.out)?;
    let device = Device::flex();
    let load = |p: &Path| -> Result<LabeledParams> {
        let m = load_model(p, &device).with_context(|| format!("loading {}", p.display()))?;
        Ok(LabeledParams::new(
            p.display().to_string(),
            m.model.export(),
        ))
    };
    let base = load(&args.base)?;
    let experts = args
        .experts
        .iter()
        .map(|p| load(p))
        .collect::<Result<Vec<_>>>()?;
    let tv = HostTaskVectors::new(base, experts)?;
    let stats = tv_stats(&tv, args.granularity);
    drop(tv);
    write_tv_stats_files(&stats, &args.out)?;
    print_summary(&stats);
    eprintln!("wrote {}", args.out.display());
    Ok(())
}

fn print_summary(stats: &TvStats) {
    let n = stats.num_experts();
    for (i, (s, label)) in stats.overall.iter().zip(&stats.labels).enumerate() {
        eprintln!(
            "expert {}: |tau| = {:.4e}, median |entry| {:.3e}, max {:.3e}  ({label})",
            i + 1,
            s.norm,
            s.abs.median,
            s.abs.max
        );
    }
    eprintln!("cosine similarity:");
    for i in 0..n {
        let row: Vec<String> = (0..n)
            .map(|j| format!("{:>6.3}", stats.cosine[i * n + j]))
            .collect();
        eprintln!("  {}", row.join(" "));
    }
    // the groups that moved most, relative to their size
    let mut moved: Vec<(&str, f64)> = stats
        .groups
        .iter()
        .map(|g| {
            let rms = g.experts.iter().map(|e| e.norm * e.norm).sum::<f64>()
                / (n * g.params.max(1)) as f64;
            (g.name.as_str(), rms.sqrt())
        })
        .collect();
    moved.sort_by(|a, b| b.1.total_cmp(&a.1));
    for (name, rms) in moved.iter().take(5) {
        eprintln!("  most changed: {name:<32} rms entry {rms:.3e}");
    }
}

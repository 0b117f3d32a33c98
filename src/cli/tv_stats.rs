//! `deme-studio tv-stats`: magnitudes, norms and cosine similarities of the
//! experts' task vectors, per block or layer and overall.

use crate::engine::analysis::Granularity;
use crate::engine::analysis::tv_stats::{ExpertGroupStats, TvStats, tv_stats};
use crate::engine::checkpoint::write_atomic_bytes;
use crate::engine::merge::{HostTaskVectors, LabeledParams};
use crate::engine::render::{ColorMap, Heatmap};
use crate::engine::store::load_model;
use anyhow::{Context, Result};
use burn::tensor::Device;
use clap::Args;
use std::fmt::Write as _;
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
    /// Output folder: tv_stats.json, tv_stats.csv, cosine.csv, cosine.png.
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
    write_outputs(&stats, &args.out)?;
    print_summary(&stats);
    eprintln!("wrote {}", args.out.display());
    Ok(())
}

fn row(csv: &mut String, group: &str, params: usize, expert: usize, s: &ExpertGroupStats) {
    let b = &s.abs;
    let _ = writeln!(
        csv,
        "{group},{params},{expert},{},{},{},{},{},{},{}",
        s.norm, b.min, b.q1, b.median, b.q3, b.max, b.mean
    );
}

/// Writes `tv_stats.json`, `tv_stats.csv` (one row per group and expert, the
/// whole model as group `(all)` first), `cosine.csv` and `cosine.png` into `dir`.
pub fn write_outputs(stats: &TvStats, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    write_atomic_bytes(
        dir.join("tv_stats.json"),
        serde_json::to_string_pretty(stats)?.as_bytes(),
    )?;
    let mut csv = String::from(
        "group,params,expert,norm,abs_min,abs_q1,abs_median,abs_q3,abs_max,abs_mean\n",
    );
    for (i, s) in stats.overall.iter().enumerate() {
        row(&mut csv, "(all)", stats.params, i + 1, s);
    }
    for g in &stats.groups {
        for (i, s) in g.experts.iter().enumerate() {
            row(&mut csv, &g.name, g.params, i + 1, s);
        }
    }
    write_atomic_bytes(dir.join("tv_stats.csv"), csv.as_bytes())?;
    let n = stats.num_experts();
    let mut cos = String::from("i,j,cosine\n");
    for i in 0..n {
        for j in 0..n {
            let _ = writeln!(cos, "{},{},{}", i + 1, j + 1, stats.cosine[i * n + j]);
        }
    }
    write_atomic_bytes(dir.join("cosine.csv"), cos.as_bytes())?;
    let labels: Vec<String> = (1..=n).map(|i| i.to_string()).collect();
    Heatmap {
        values: &stats.cosine,
        rows: n,
        cols: n,
        labels: &labels,
        map: ColorMap::Diverging,
        lo: -1.0,
        hi: 1.0,
    }
    .save_png(&dir.join("cosine.png"))
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

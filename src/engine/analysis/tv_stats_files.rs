//! A task-vector statistics result's files: `tv_stats.json`, `tv_stats.csv`,
//! `cosine.csv`, `cosine.npy` (the N x N matrix for numpy) and `cosine.png`, as the `tv-stats` command and the app's
//! Export write them.

use super::npy::write_npy_f64;
use super::tv_stats::{ExpertGroupStats, TvStats};
use crate::engine::checkpoint::write_atomic_bytes;
use crate::engine::render::{ColorMap, Heatmap};
use anyhow::{Context, Result};
use std::fmt::Write as _;
use std::path::Path;

fn row(csv: &mut String, group: &str, params: usize, expert: usize, s: &ExpertGroupStats) {
    let b = &s.abs;
    let _ = writeln!(
        csv,
        "{group},{params},{expert},{},{},{},{},{},{},{}",
        s.norm, b.min, b.q1, b.median, b.q3, b.max, b.mean
    );
}

/// Writes `tv_stats.json`, `tv_stats.csv` (one row per group and expert, the
/// whole model as group `(all)` first), `cosine.csv`, `cosine.npy` and
/// `cosine.png` into `dir`.
pub fn write_tv_stats_files(stats: &TvStats, dir: &Path) -> Result<()> {
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
    write_npy_f64(&dir.join("cosine.npy"), &[n, n], &stats.cosine)?;
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

//! A gradient-similarity result's files: `gradsim.json`, `cosine.csv` (a row
//! per pair of timesteps), `cosine.npy` and `timesteps.npy` (the K x K matrix
//! and its row timesteps for numpy), `groups.csv` (parameter groups by
//! conflict) and `heatmap.png`, as the `gradsim` command and the app's Export
//! write them.

use super::gradsim::GradSimResult;
use super::npy::{write_npy_f64, write_npy_i64};
use crate::engine::checkpoint::write_atomic_bytes;
use crate::engine::render::{ColorMap, Heatmap};
use anyhow::{Context, Result};
use std::fmt::Write as _;
use std::path::Path;

/// Writes `gradsim.json`, `cosine.csv`, `cosine.npy`, `timesteps.npy`,
/// `groups.csv` and `heatmap.png` into `dir`.
pub fn write_gradsim_files(result: &GradSimResult, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    write_atomic_bytes(
        dir.join("gradsim.json"),
        serde_json::to_string_pretty(result)?.as_bytes(),
    )?;
    let k = result.k();
    // the jackknife standard error beside each cosine, when there are batches to take it over
    let mut csv = String::from(if result.stderr.is_some() {
        "t_i,t_j,cosine,stderr\n"
    } else {
        "t_i,t_j,cosine\n"
    });
    for i in 0..k {
        for j in 0..k {
            let n = i * k + j;
            let _ = write!(
                csv,
                "{},{},{}",
                result.timesteps[i], result.timesteps[j], result.cosine[n]
            );
            if let Some(se) = &result.stderr {
                let _ = write!(csv, ",{}", se[n]);
            }
            csv.push('\n');
        }
    }
    write_atomic_bytes(dir.join("cosine.csv"), csv.as_bytes())?;
    write_npy_f64(&dir.join("cosine.npy"), &[k, k], &result.cosine)?;
    let timesteps: Vec<i64> = result.timesteps.iter().map(|&t| t as i64).collect();
    write_npy_i64(&dir.join("timesteps.npy"), &[k], &timesteps)?;
    let mut groups = String::from("group,params,mean_offdiag_cosine\n");
    for (name, params, mean) in result.groups_by_conflict() {
        let _ = writeln!(groups, "{name},{params},{mean}");
    }
    write_atomic_bytes(dir.join("groups.csv"), groups.as_bytes())?;
    let labels: Vec<String> = result.timesteps.iter().map(|t| t.to_string()).collect();
    Heatmap {
        values: &result.cosine,
        rows: k,
        cols: k,
        labels: &labels,
        map: ColorMap::Diverging,
        lo: -1.0,
        hi: 1.0,
    }
    .save_png(&dir.join("heatmap.png"))
}

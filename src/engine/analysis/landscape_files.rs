//! A landscape's files: `landscape.json`, `landscape.csv` (a row per scored
//! point), per surface a PNG and a `.npy` grid, and the grid's axes as `.npy`,
//! as the `landscape` command and the Landscape view's Export write them.

use super::landscape::Landscape;
use super::landscape_plot::render_surface;
use super::npy::write_npy_f64;
use crate::engine::checkpoint::write_atomic_bytes;
use crate::engine::render::save_png_atomic;
use anyhow::{Context, Result};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The landscape as CSV: one row per scored point with its plane coordinates,
/// the weights of experts a and b there and the loss of every surface.
pub fn landscape_csv(ls: &Landscape) -> String {
    let g = ls.grid.size;
    let mut csv = String::from("i,j,x,y,w_a,w_b");
    for s in &ls.surfaces {
        let _ = write!(csv, ",loss_{}", s.name);
    }
    csv.push('\n');
    for j in 0..g {
        for i in 0..g {
            let Some(values) = ls.at(i, j) else { continue };
            let w = ls.plane.weights_at(ls.xs[i], ls.ys[j]);
            let _ = write!(
                csv,
                "{i},{j},{},{},{},{}",
                ls.xs[i], ls.ys[j], w[ls.plane.a], w[ls.plane.b]
            );
            for v in values {
                let _ = write!(csv, ",{v}");
            }
            csv.push('\n');
        }
    }
    csv
}

/// Writes `landscape.json`, `landscape.csv`, and for every surface
/// `landscape_{surface}.png` and `landscape_{surface}.npy` (G x G float64,
/// `[j, i]` is the loss at `(x_i, y_j)`, NaN where not scored), with the axes
/// as `landscape_x.npy` and `landscape_y.npy`, into `dir`, each atomically.
/// Returns the files written.
pub fn write_landscape_files(ls: &Landscape, dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut written = Vec::new();
    let json = dir.join("landscape.json");
    write_atomic_bytes(&json, serde_json::to_string_pretty(ls)?.as_bytes())?;
    written.push(json);
    let csv = dir.join("landscape.csv");
    write_atomic_bytes(&csv, landscape_csv(ls).as_bytes())?;
    written.push(csv);
    for (k, s) in ls.surfaces.iter().enumerate() {
        let png = dir.join(format!("landscape_{}.png", s.name));
        save_png_atomic(&render_surface(ls, k)?, &png)?;
        written.push(png);
        let npy = dir.join(format!("landscape_{}.npy", s.name));
        let grid: Vec<f64> = s.values.iter().map(|v| v.unwrap_or(f64::NAN)).collect();
        write_npy_f64(&npy, &[ls.grid.size, ls.grid.size], &grid)?;
        written.push(npy);
    }
    for (axis, values) in [("x", &ls.xs), ("y", &ls.ys)] {
        let npy = dir.join(format!("landscape_{axis}.npy"));
        write_npy_f64(&npy, &[values.len()], values)?;
        written.push(npy);
    }
    Ok(written)
}

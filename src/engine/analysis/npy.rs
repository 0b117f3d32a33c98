//! NumPy `.npy` files of the analysis results (the gradient-similarity matrix,
//! landscape grids), for comparing with other tools in Python: `np.load(path)`.
//! The format is written by the `npyz` crate; the integration tests read the
//! files back with a parser of their own (`tests/integration/common/npy.rs`).

use crate::engine::checkpoint::write_atomic_bytes;
use anyhow::{Context, Result, ensure};
use npyz::WriterBuilder;
use std::path::Path;

/// Writes `values` (row-major, of `shape`) as a little-endian float64 `.npy`
/// file, atomically. Missing values are NaN.
pub fn write_npy_f64(path: &Path, shape: &[usize], values: &[f64]) -> Result<()> {
    write_npy(path, shape, values)
}

/// Writes `values` as a little-endian int64 `.npy` file, atomically.
pub fn write_npy_i64(path: &Path, shape: &[usize], values: &[i64]) -> Result<()> {
    write_npy(path, shape, values)
}

fn write_npy<T: npyz::AutoSerialize + Copy>(
    path: &Path,
    shape: &[usize],
    values: &[T],
) -> Result<()> {
    ensure!(
        shape.iter().product::<usize>() == values.len(),
        "{}: {} values for shape {shape:?}",
        path.display(),
        values.len()
    );
    let dims: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    let mut bytes = Vec::new();
    let mut writer = npyz::WriteOptions::new()
        .default_dtype()
        .shape(&dims)
        .writer(&mut bytes)
        .begin_nd()
        .context("npy header")?;
    writer.extend(values.iter().copied()).context("npy data")?;
    writer.finish().context("npy data")?;
    write_atomic_bytes(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_must_fill_the_shape() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("m.npy");
        let err = write_npy_f64(&f, &[2, 2], &[1.0]).unwrap_err();
        assert!(
            err.to_string().contains("1 values for shape [2, 2]"),
            "{err}"
        );
        assert!(!f.exists());
        write_npy_i64(&f, &[2], &[3, 4]).unwrap();
        assert!(std::fs::read(&f).unwrap().starts_with(b"\x93NUMPY"));
    }
}

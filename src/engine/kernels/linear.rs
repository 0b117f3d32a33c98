//! A fully connected layer on host memory, `y = x W^T + b` over rows of `x
//! [m, din]` with `W [dout, din]`, and its gradients, over the rayon pool.
//! Each worker writes its own block of rows (no buffer is zeroed first, the
//! bias joins the product's rows while they are in cache), and the bias
//! gradient's column sums run per block, where burn's ops would run a
//! broadcast add and a reduction on one thread.

use super::buffer::{assume_init, written};
use super::matmul::{View, matmul, matmul_strided_uninit};
use rayon::prelude::*;

/// Sizes of one call: `m` rows of `din` inputs, `dout` outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinearShape {
    /// Rows (every leading dimension of the input together).
    pub m: usize,
    /// Input features.
    pub din: usize,
    /// Output features.
    pub dout: usize,
}

/// Rows per worker job: about four jobs per worker, at least one row.
fn block_rows(m: usize) -> usize {
    m.div_ceil(4 * rayon::current_num_threads()).max(1)
}

/// `dst [rows, cols]` (whole, unwritten) `= a [rows, inner] * b [inner, cols]`
/// over blocks of rows, one rayon job each.
fn rows_product(
    a: &[f32],
    inner: usize,
    b: View<'_>,
    rows: usize,
    then: impl Fn(&mut [f32]) + Sync,
) -> Vec<f32> {
    let (cols, block) = (b.cols, block_rows(rows));
    // SAFETY: each job's product writes its whole block of rows.
    unsafe {
        written(
            rows * cols,
            block * cols,
            true,
            || (),
            |_, i, dst| {
                let r = dst.len() / cols.max(1);
                let a_block = View::rows(&a[i * block * inner..][..r * inner], r, inner);
                matmul_strided_uninit(dst, cols, a_block, b, false);
                then(assume_init(dst));
            },
        )
    }
}

/// Forward: `y [m, dout]`.
pub fn forward(s: &LinearShape, x: &[f32], weight: &[f32], bias: &[f32]) -> Vec<f32> {
    assert_eq!(x.len(), s.m * s.din, "input size");
    assert_eq!(weight.len(), s.dout * s.din, "weight size");
    assert_eq!(bias.len(), s.dout, "bias size");
    let w_t = View::rows(weight, s.dout, s.din).t();
    rows_product(x, s.din, w_t, s.m, |y| {
        for row in y.chunks_exact_mut(s.dout.max(1)) {
            row.iter_mut().zip(bias).for_each(|(v, &b)| *v += b);
        }
    })
}

/// Backward: `(dx [m, din] when asked, dW [dout, din], db [dout])`.
pub fn backward(
    s: &LinearShape,
    x: &[f32],
    weight: &[f32],
    dy: &[f32],
    need_dx: bool,
) -> (Option<Vec<f32>>, Vec<f32>, Vec<f32>) {
    assert_eq!(x.len(), s.m * s.din, "input size");
    assert_eq!(dy.len(), s.m * s.dout, "output gradient size");
    let dx = need_dx.then(|| {
        let w = View::rows(weight, s.dout, s.din);
        rows_product(dy, s.dout, w, s.m, |_| {})
    });
    let mut dw = vec![0.0f32; s.dout * s.din];
    let dy_t = View::rows(dy, s.m, s.dout).t();
    matmul(&mut dw, dy_t, View::rows(x, s.m, s.din), false, true);
    (dx, dw, column_sums(dy, s.dout, block_rows(s.m)))
}

/// The sums of `values [rows, cols]`'s columns: each block of `block` rows
/// summed in f64 by one rayon job, the blocks' sums added in order.
fn column_sums(values: &[f32], cols: usize, block: usize) -> Vec<f32> {
    if cols == 0 {
        return Vec::new();
    }
    let partial: Vec<Vec<f64>> = values
        .par_chunks(block * cols)
        .map(|rows| {
            let mut sums = vec![0.0f64; cols];
            for row in rows.chunks_exact(cols) {
                sums.iter_mut().zip(row).for_each(|(s, &v)| *s += v as f64);
            }
            sums
        })
        .collect();
    let mut total = vec![0.0f64; cols];
    for sums in partial {
        total.iter_mut().zip(sums).for_each(|(t, s)| *t += s);
    }
    total.into_iter().map(|v| v as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::kernels::test_data::{assert_close, data};

    /// Forward and every gradient against float64 sums written out, for row
    /// counts below, at and above the worker blocks.
    #[test]
    fn forward_and_gradients_match_float64_sums() {
        for (m, din, dout) in [(1, 3, 2), (7, 5, 4), (97, 16, 9), (300, 8, 1)] {
            let s = LinearShape { m, din, dout };
            let (x, w, b, dy) = (
                data(m * din, 1),
                data(dout * din, 2),
                data(dout, 3),
                data(m * dout, 4),
            );
            let dot = |a: &[f32], b: &[f32]| -> f64 {
                a.iter().zip(b).map(|(&p, &q)| p as f64 * q as f64).sum()
            };
            let want_y: Vec<f64> = (0..m * dout)
                .map(|e| {
                    b[e % dout] as f64
                        + dot(&x[e / dout * din..][..din], &w[e % dout * din..][..din])
                })
                .collect();
            let want_dx: Vec<f64> = (0..m * din)
                .map(|e| {
                    (0..dout)
                        .map(|o| dy[e / din * dout + o] as f64 * w[o * din + e % din] as f64)
                        .sum()
                })
                .collect();
            let want_dw: Vec<f64> = (0..dout * din)
                .map(|e| {
                    (0..m)
                        .map(|r| dy[r * dout + e / din] as f64 * x[r * din + e % din] as f64)
                        .sum()
                })
                .collect();
            let want_db: Vec<f64> = (0..dout)
                .map(|o| (0..m).map(|r| dy[r * dout + o] as f64).sum())
                .collect();
            let what = format!("{s:?}");
            assert_close(&forward(&s, &x, &w, &b), &want_y, &format!("y {what}"));
            let (dx, dw, db) = backward(&s, &x, &w, &dy, true);
            assert_close(&dx.unwrap(), &want_dx, &format!("dx {what}"));
            assert_close(&dw, &want_dw, &format!("dw {what}"));
            assert_close(&db, &want_db, &format!("db {what}"));
            assert!(backward(&s, &x, &w, &dy, false).0.is_none());
        }
    }
}

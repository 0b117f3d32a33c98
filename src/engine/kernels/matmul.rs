//! A checked wrapper over the `gemm` crate for row-major f32 matrices.

use std::mem::MaybeUninit;

/// A read-only matrix view: `data[r * row_stride + c * col_stride]`.
#[derive(Clone, Copy)]
pub struct View<'a> {
    /// The backing slice.
    pub data: &'a [f32],
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// Step between rows.
    pub row_stride: usize,
    /// Step between columns.
    pub col_stride: usize,
}

impl<'a> View<'a> {
    /// A contiguous row-major `[rows, cols]` matrix.
    pub fn rows(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// A row-major `[rows, cols]` block whose rows are `row_stride` apart
    /// (columns of a wider matrix).
    pub fn strided_rows(data: &'a [f32], rows: usize, cols: usize, row_stride: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            row_stride,
            col_stride: 1,
        }
    }

    /// The transpose (no copy).
    pub fn t(self) -> Self {
        Self {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
        }
    }

    fn check(&self) {
        if self.rows > 0 && self.cols > 0 {
            let last = (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride;
            assert!(last < self.data.len(), "matrix view out of bounds");
        }
    }
}

/// `dst = a * b` (or `dst += a * b` with `accumulate`), `dst` row-major `[a.rows, b.cols]`.
/// `parallel` lets gemm split the product over the rayon pool.
pub fn matmul(dst: &mut [f32], a: View<'_>, b: View<'_>, accumulate: bool, parallel: bool) {
    matmul_strided(dst, b.cols, a, b, accumulate, parallel)
}

/// [`matmul`] into a `[a.rows, b.cols]` block of `dst` whose rows are
/// `dst_row_stride` apart (columns of a wider matrix).
pub fn matmul_strided(
    dst: &mut [f32],
    dst_row_stride: usize,
    a: View<'_>,
    b: View<'_>,
    accumulate: bool,
    parallel: bool,
) {
    // SAFETY: `dst` is `dst.len()` initialised floats, borrowed mutably.
    unsafe {
        product_into(
            dst.as_mut_ptr(),
            dst.len(),
            dst_row_stride,
            a,
            b,
            accumulate,
            parallel,
        )
    }
}

/// [`matmul_strided`] without accumulation into memory not yet written:
/// afterwards the `[a.rows, b.cols]` block is initialised (and nothing else
/// is touched).
pub fn matmul_strided_uninit(
    dst: &mut [MaybeUninit<f32>],
    dst_row_stride: usize,
    a: View<'_>,
    b: View<'_>,
    parallel: bool,
) {
    // SAFETY: `dst` is `dst.len()` floats borrowed mutably; without
    // accumulation the product only writes them, never reads.
    unsafe {
        product_into(
            dst.as_mut_ptr().cast(),
            dst.len(),
            dst_row_stride,
            a,
            b,
            false,
            parallel,
        )
    }
}

/// The product behind [`matmul_strided`] and [`matmul_strided_uninit`].
///
/// # Safety
/// `dst` must be valid for writes of `dst_len` floats, and for reads of them
/// when `accumulate`.
unsafe fn product_into(
    dst: *mut f32,
    dst_len: usize,
    dst_row_stride: usize,
    a: View<'_>,
    b: View<'_>,
    accumulate: bool,
    parallel: bool,
) {
    assert_eq!(a.cols, b.rows, "inner dimensions differ");
    let (m, n, k) = (a.rows, b.cols, a.cols);
    assert!(dst_row_stride >= n, "destination rows overlap");
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        dst_len > (m - 1) * dst_row_stride + n - 1,
        "destination too small"
    );
    a.check();
    b.check();
    if k == 0 {
        if !accumulate {
            for r in 0..m {
                // SAFETY: row `r`'s `n` floats lie within `dst_len` (checked above).
                unsafe { std::ptr::write_bytes(dst.add(r * dst_row_stride), 0, n) };
            }
        }
        return;
    }
    let parallelism = if parallel {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: every index the product touches was bounds-checked above: dst is
    // [m, n] with rows `dst_row_stride` apart within `dst_len`, and `check`
    // covers the last element of a and b. gemm reads dst only to accumulate.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_row_stride as isize,
            accumulate,
            a.data.as_ptr(),
            a.col_stride as isize,
            a.row_stride as isize,
            b.data.as_ptr(),
            b.col_stride as isize,
            b.row_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: View<'_>, b: View<'_>) -> Vec<f64> {
        let mut out = vec![0.0f64; a.rows * b.cols];
        for i in 0..a.rows {
            for j in 0..b.cols {
                for p in 0..a.cols {
                    out[i * b.cols + j] += a.data[i * a.row_stride + p * a.col_stride] as f64
                        * b.data[p * b.row_stride + j * b.col_stride] as f64;
                }
            }
        }
        out
    }

    #[test]
    fn products_and_transposes_match_a_naive_product() {
        let a: Vec<f32> = (0..35).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..28).map(|i| (i as f32 * 0.91).cos()).collect();
        // a: [5, 7], b: [7, 4]; also a^T-shaped data used through .t()
        let cases = [
            (View::rows(&a, 5, 7), View::rows(&b, 7, 4)),
            (View::rows(&a, 7, 5).t(), View::rows(&b, 4, 7).t()),
        ];
        for (va, vb) in cases {
            let want = naive(va, vb);
            let mut got = vec![1.0f32; 20];
            matmul(&mut got, va, vb, false, false);
            for (g, w) in got.iter().zip(&want) {
                assert!((*g as f64 - w).abs() < 1e-5);
            }
            matmul(&mut got, va, vb, true, true);
            for (g, w) in got.iter().zip(&want) {
                assert!((*g as f64 - 2.0 * w).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn an_unwritten_destination_gets_the_product_in_its_block_only() {
        let a: Vec<f32> = (0..35).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..28).map(|i| (i as f32 * 0.91).cos()).collect();
        let (va, vb) = (View::rows(&a, 5, 7), View::rows(&b, 7, 4));
        let want = naive(va, vb);
        // columns 1..5 of a [5, 6] matrix; the rest holds sevens the product must not touch
        let mut dst = [MaybeUninit::new(7.0f32); 30];
        matmul_strided_uninit(&mut dst[1..], 6, va, vb, true);
        for (i, v) in dst.iter().enumerate() {
            // SAFETY: every element was either set above or written by the product.
            let v = unsafe { v.assume_init() };
            let (r, c) = (i / 6, i % 6);
            if (1..5).contains(&c) {
                assert!((v as f64 - want[r * 4 + c - 1]).abs() < 1e-5, "[{r}, {c}]");
            } else {
                assert_eq!(v, 7.0, "[{r}, {c}] outside the block");
            }
        }
    }

    #[test]
    fn a_strided_destination_gets_its_block_and_nothing_else() {
        let a: Vec<f32> = (0..35).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..28).map(|i| (i as f32 * 0.91).cos()).collect();
        // columns 1..3 of b ([7, 4] row-major) as a strided [7, 2] block
        let (va, vb) = (View::rows(&a, 5, 7), View::strided_rows(&b[1..], 7, 2, 4));
        let want = naive(va, vb);
        // into columns 2..4 of a [5, 6] matrix of sevens
        let mut dst = [7.0f32; 30];
        matmul_strided(&mut dst[2..], 6, va, vb, false, false);
        for (i, v) in dst.iter().enumerate() {
            let (r, c) = (i / 6, i % 6);
            if (2..4).contains(&c) {
                assert!((*v as f64 - want[r * 2 + c - 2]).abs() < 1e-5, "[{r}, {c}]");
            } else {
                assert_eq!(*v, 7.0, "[{r}, {c}] outside the block");
            }
        }
    }
}

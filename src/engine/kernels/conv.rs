//! 2D convolution on host memory (NCHW, groups 1, dilation 1): forward and both
//! gradients as im2col + one gemm per sample, parallel over the batch.
//!
//! For a sample, `col` is the `[cin * k * k, ho * wo]` matrix whose row
//! `(ci, ky, kx)` holds the input pixel each output position sees through that
//! tap (zero in the padding). Then
//! - forward: `y_n = W [cout, cin*k*k] x col_n`, plus the bias;
//! - input gradient: `dcol_n = W^T dy_n`, scattered back onto `dx_n` (col2im);
//! - weight gradient: `dW = sum_n dy_n col_n^T`, one partial per worker, summed;
//! - bias gradient: the sum of `dy` over the batch and the positions.
//!
//! A 1x1 stride-1 conv without padding skips im2col (`col_n` is `x_n`). A
//! stride-1 conv whose output is as wide as its input (3x3 with padding 1)
//! builds each tap's block as one shifted copy of the input plane, then zeroes
//! the columns that wrapped around; col2im adds in one run the same way.

use super::buffer::{filled, with_scratch};
use super::matmul::{View, matmul};
use rayon::prelude::*;

/// Shapes and settings of one convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeom {
    /// Batch size.
    pub n: usize,
    /// Input channels.
    pub cin: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Output channels.
    pub cout: usize,
    /// Square kernel size.
    pub k: usize,
    /// Stride (both axes).
    pub stride: usize,
    /// Padding (top, bottom, left, right).
    pub pad: [usize; 4],
}

impl ConvGeom {
    /// Output height.
    pub fn ho(&self) -> usize {
        (self.h + self.pad[0] + self.pad[1] - self.k) / self.stride + 1
    }

    /// Output width.
    pub fn wo(&self) -> usize {
        (self.w + self.pad[2] + self.pad[3] - self.k) / self.stride + 1
    }

    /// Rows of `col`: `cin * k * k`.
    pub fn taps(&self) -> usize {
        self.cin * self.k * self.k
    }

    /// Output positions per sample.
    pub fn positions(&self) -> usize {
        self.ho() * self.wo()
    }

    fn input_len(&self) -> usize {
        self.cin * self.h * self.w
    }

    fn output_len(&self) -> usize {
        self.cout * self.positions()
    }

    /// Whether `col_n` is `x_n` itself.
    fn pointwise(&self) -> bool {
        self.k == 1 && self.stride == 1 && self.pad == [0; 4]
    }

    /// Output columns `ox` whose input column `ox * stride + kx - left` lies inside `[0, w)`.
    fn valid_cols(&self, kx: usize) -> std::ops::Range<usize> {
        let (s, l, wo) = (self.stride, self.pad[2], self.wo());
        let lo = if kx >= l { 0 } else { (l - kx).div_ceil(s) };
        // largest ox with ox * s + kx - l <= w - 1
        let hi = if self.w + l > kx {
            ((self.w - 1 + l - kx) / s + 1).min(wo)
        } else {
            0
        };
        lo..hi.max(lo)
    }

    /// Whether each tap's block of `col` is the input plane shifted by a
    /// constant flat offset (stride 1, output as wide as the input), so it can
    /// be copied in one run and the few wrapped columns zeroed afterwards.
    fn flat_shift(&self) -> bool {
        self.stride == 1 && self.wo() == self.w && self.w > 0
    }

    /// For [`Self::flat_shift`] geometries and tap `(ky, kx)`: the output rows
    /// whose input row is inside, and the flat offset from an output position
    /// `oy * wo + ox` to the input position it sees.
    fn shift(&self, ky: usize, kx: usize) -> (std::ops::Range<usize>, isize) {
        let r = ky as isize - self.pad[0] as isize;
        let d = kx as isize - self.pad[2] as isize;
        let lo = (-r).max(0) as usize;
        let hi = (self.h as isize - r).clamp(0, self.ho() as isize) as usize;
        (lo.min(hi)..hi, r * self.w as isize + d)
    }

    /// The positions `q` of output rows `rows` whose `q + off` lies inside the
    /// input plane.
    fn in_plane(&self, rows: &std::ops::Range<usize>, off: isize) -> std::ops::Range<usize> {
        let plane = (self.h * self.w) as isize;
        let wo = self.wo() as isize;
        let (first, last) = (rows.start as isize * wo, rows.end as isize * wo);
        let (lo, hi) = (first.max(-off), last.min(plane - off));
        if hi <= lo {
            return first as usize..first as usize;
        }
        lo as usize..hi as usize
    }

    /// Input row seen by output row `oy` through tap row `ky`, if inside.
    fn input_row(&self, oy: usize, ky: usize) -> Option<usize> {
        (oy * self.stride + ky)
            .checked_sub(self.pad[0])
            .filter(|&iy| iy < self.h)
    }
}

/// Zeroes a short slice with an inline loop (no memset call for a few floats).
#[inline(always)]
fn zero(out: &mut [f32]) {
    for v in out {
        *v = 0.0;
    }
}

/// Fills `col` (`[taps, positions]`) from one sample `x_n` (`[cin, h, w]`).
fn im2col(g: &ConvGeom, x_n: &[f32], col: &mut [f32]) {
    if g.flat_shift() {
        return im2col_shifted(g, x_n, col);
    }
    let (k, s, wo, ho) = (g.k, g.stride, g.wo(), g.ho());
    let l = g.pad[2];
    let plane = g.h * g.w;
    for (row, dst) in col.chunks_exact_mut(ho * wo).enumerate() {
        let (ci, tap) = (row / (k * k), row % (k * k));
        let (ky, kx) = (tap / k, tap % k);
        let src = &x_n[ci * plane..(ci + 1) * plane];
        let cols = g.valid_cols(kx);
        for (oy, out) in dst.chunks_exact_mut(wo).enumerate() {
            let Some(iy) = g.input_row(oy, ky) else {
                zero(out);
                continue;
            };
            let (head, rest) = out.split_at_mut(cols.start);
            let (body, tail) = rest.split_at_mut(cols.len());
            zero(head);
            zero(tail);
            let first = iy * g.w + cols.start * s + kx - l;
            if s == 1 {
                for (o, &v) in body.iter_mut().zip(&src[first..first + cols.len()]) {
                    *o = v;
                }
            } else {
                for (o, &v) in body.iter_mut().zip(src[first..].iter().step_by(s)) {
                    *o = v;
                }
            }
        }
    }
}

/// [`im2col`] for [`ConvGeom::flat_shift`] geometries: per tap one copy of
/// the rows inside, then zeros over the rows and columns outside.
fn im2col_shifted(g: &ConvGeom, x_n: &[f32], col: &mut [f32]) {
    let (k, wo) = (g.k, g.wo());
    let plane = g.h * g.w;
    for (row, dst) in col.chunks_exact_mut(g.positions()).enumerate() {
        let (ci, tap) = (row / (k * k), row % (k * k));
        let src = &x_n[ci * plane..(ci + 1) * plane];
        let (rows, off) = g.shift(tap / k, tap % k);
        let copy = g.in_plane(&rows, off);
        if !copy.is_empty() {
            let from = (copy.start as isize + off) as usize;
            dst[copy.clone()].copy_from_slice(&src[from..from + copy.len()]);
        }
        zero(&mut dst[..copy.start]);
        zero(&mut dst[copy.end..]);
        zero_outside_cols(g, tap % k, &mut dst[rows.start * wo..rows.end * wo]);
    }
}

/// Zeroes, in each row of `block` (rows of `wo`), the columns outside
/// [`ConvGeom::valid_cols`] of tap column `kx`.
fn zero_outside_cols(g: &ConvGeom, kx: usize, block: &mut [f32]) {
    let (cols, wo) = (g.valid_cols(kx), g.wo());
    // column by column: few columns, many rows
    for j in (0..cols.start).chain(cols.end..wo) {
        for v in block.iter_mut().skip(j).step_by(wo) {
            *v = 0.0;
        }
    }
}

/// Adds `col` (`[taps, positions]`) back onto one sample's input gradient
/// `dx_n`; `col` is scratch and may be changed.
fn col2im_add(g: &ConvGeom, col: &mut [f32], dx_n: &mut [f32]) {
    if g.flat_shift() {
        return col2im_add_shifted(g, col, dx_n);
    }
    let (k, s, wo, ho) = (g.k, g.stride, g.wo(), g.ho());
    let l = g.pad[2];
    let plane = g.h * g.w;
    for (row, src) in col.chunks_exact(ho * wo).enumerate() {
        let (ci, tap) = (row / (k * k), row % (k * k));
        let (ky, kx) = (tap / k, tap % k);
        let dst = &mut dx_n[ci * plane..(ci + 1) * plane];
        let cols = g.valid_cols(kx);
        for oy in 0..ho {
            let Some(iy) = g.input_row(oy, ky) else {
                continue;
            };
            let src_row = &src[oy * wo..(oy + 1) * wo][cols.clone()];
            let dst_row = &mut dst[iy * g.w..(iy + 1) * g.w];
            let first = cols.start * s + kx - l;
            if s == 1 {
                for (d, v) in dst_row[first..first + cols.len()].iter_mut().zip(src_row) {
                    *d += v;
                }
            } else {
                for (j, v) in src_row.iter().enumerate() {
                    dst_row[first + j * s] += v;
                }
            }
        }
    }
}

/// [`col2im_add`] for [`ConvGeom::flat_shift`] geometries: per tap the
/// columns outside are zeroed in `col`, then the rows inside are added in one
/// run (the wrapped positions add zero).
fn col2im_add_shifted(g: &ConvGeom, col: &mut [f32], dx_n: &mut [f32]) {
    let (k, wo) = (g.k, g.wo());
    let plane = g.h * g.w;
    for (row, src) in col.chunks_exact_mut(g.positions()).enumerate() {
        let (ci, tap) = (row / (k * k), row % (k * k));
        let dst = &mut dx_n[ci * plane..(ci + 1) * plane];
        let (rows, off) = g.shift(tap / k, tap % k);
        zero_outside_cols(g, tap % k, &mut src[rows.start * wo..rows.end * wo]);
        let add = g.in_plane(&rows, off);
        if add.is_empty() {
            continue;
        }
        let to = (add.start as isize + off) as usize;
        for (d, v) in dst[to..to + add.len()].iter_mut().zip(&src[add]) {
            *d += v;
        }
    }
}

/// Parallel over the batch when it has an item per worker; otherwise gemm splits each product.
fn use_outer_parallelism(n: usize) -> bool {
    n >= rayon::current_num_threads()
}

/// Forward: `x [n, cin, h, w]`, `weight [cout, cin, k, k]`, `bias [cout]` -> `[n, cout, ho, wo]`.
pub fn forward(g: &ConvGeom, x: &[f32], weight: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    assert_eq!(x.len(), g.n * g.input_len(), "input size");
    assert_eq!(weight.len(), g.cout * g.taps(), "weight size");
    let (p, taps) = (g.positions(), g.taps());
    let w = View::rows(weight, g.cout, taps);
    let outer = use_outer_parallelism(g.n);
    let one = |(y_n, x_n): (&mut [f32], &[f32])| {
        if g.pointwise() {
            matmul(y_n, w, View::rows(x_n, taps, p), false, !outer);
        } else {
            with_scratch(taps * p, |col| {
                im2col(g, x_n, col);
                matmul(y_n, w, View::rows(col, taps, p), false, !outer);
            });
        }
        if let Some(b) = bias {
            for (row, &bv) in y_n.chunks_exact_mut(p).zip(b) {
                row.iter_mut().for_each(|v| *v += bv);
            }
        }
    };
    per_sample(g.n, g.output_len(), x, g.input_len(), outer, one)
}

/// A new `[n, dst_len]` buffer: `f((dst_i, src_i))` fills sample `i`
/// (zeroed first) from `src_i`, over the rayon pool when `outer`, otherwise
/// in order.
fn per_sample<F>(
    n: usize,
    dst_len: usize,
    src: &[f32],
    src_len: usize,
    outer: bool,
    f: F,
) -> Vec<f32>
where
    F: Fn((&mut [f32], &[f32])) + Send + Sync,
{
    filled(
        n * dst_len,
        dst_len,
        outer,
        || (),
        |_, i, dst| f((dst, &src[i * src_len..(i + 1) * src_len])),
    )
}

/// Input gradient: `dy [n, cout, ho, wo]` -> `dx [n, cin, h, w]`.
pub fn input_grad(g: &ConvGeom, dy: &[f32], weight: &[f32]) -> Vec<f32> {
    assert_eq!(dy.len(), g.n * g.output_len(), "output gradient size");
    let (p, taps) = (g.positions(), g.taps());
    let wt = View::rows(weight, g.cout, taps).t();
    let outer = use_outer_parallelism(g.n);
    let one = |(dx_n, dy_n): (&mut [f32], &[f32])| {
        let dy_view = View::rows(dy_n, g.cout, p);
        if g.pointwise() {
            matmul(dx_n, wt, dy_view, false, !outer);
        } else {
            with_scratch(taps * p, |col| {
                matmul(col, wt, dy_view, false, !outer);
                col2im_add(g, col, dx_n);
            });
        }
    };
    per_sample(g.n, g.input_len(), dy, g.output_len(), outer, one)
}

/// Weight and bias gradients: `(dW [cout, cin, k, k], db [cout])`.
pub fn weight_grad(g: &ConvGeom, x: &[f32], dy: &[f32]) -> (Vec<f32>, Vec<f32>) {
    assert_eq!(x.len(), g.n * g.input_len(), "input size");
    assert_eq!(dy.len(), g.n * g.output_len(), "output gradient size");
    let (p, taps) = (g.positions(), g.taps());
    let workers = rayon::current_num_threads().clamp(1, g.n.max(1));
    let per = g.n.div_ceil(workers);
    let partials: Vec<(Vec<f32>, Vec<f64>)> = (0..g.n.div_ceil(per))
        .into_par_iter()
        .map(|chunk| {
            let mut dwt = vec![0.0f32; taps * g.cout];
            let mut db = vec![0.0f64; g.cout];
            for i in chunk * per..((chunk + 1) * per).min(g.n) {
                let x_n = &x[i * g.input_len()..(i + 1) * g.input_len()];
                let dy_n = &dy[i * g.output_len()..(i + 1) * g.output_len()];
                // dW^T += col_n dy_n^T: gemm reads col_n in place (it would pack
                // it as the left operand of dy_n col_n^T)
                let dy_t = View::rows(dy_n, g.cout, p).t();
                if g.pointwise() {
                    matmul(&mut dwt, View::rows(x_n, taps, p), dy_t, true, false);
                } else {
                    with_scratch(taps * p, |col| {
                        im2col(g, x_n, col);
                        matmul(&mut dwt, View::rows(col, taps, p), dy_t, true, false);
                    });
                }
                for (acc, row) in db.iter_mut().zip(dy_n.chunks_exact(p)) {
                    *acc += row.iter().map(|&v| v as f64).sum::<f64>();
                }
            }
            (dwt, db)
        })
        .collect();
    let mut dw = vec![0.0f32; g.cout * taps];
    let mut db = vec![0.0f64; g.cout];
    for (pwt, pb) in partials {
        for (t, row) in pwt.chunks_exact(g.cout).enumerate() {
            for (co, v) in row.iter().enumerate() {
                dw[co * taps + t] += v;
            }
        }
        db.iter_mut().zip(&pb).for_each(|(a, b)| *a += b);
    }
    (dw, db.into_iter().map(|v| v as f32).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize, seed: u64) -> Vec<f32> {
        (0..len as u64)
            .map(|i| ((i.wrapping_mul(6364136223846793005) ^ seed) % 2001) as f32 / 1000.0 - 1.0)
            .collect()
    }

    /// Direct float64 convolution from the definition.
    fn reference(g: &ConvGeom, x: &[f32], w: &[f32], b: &[f32]) -> Vec<f64> {
        let (ho, wo) = (g.ho(), g.wo());
        let mut out = vec![0.0f64; g.n * g.cout * ho * wo];
        for n in 0..g.n {
            for co in 0..g.cout {
                for oy in 0..ho {
                    for ox in 0..wo {
                        let mut acc = b[co] as f64;
                        for ci in 0..g.cin {
                            for ky in 0..g.k {
                                for kx in 0..g.k {
                                    let iy = (oy * g.stride + ky) as isize - g.pad[0] as isize;
                                    let ix = (ox * g.stride + kx) as isize - g.pad[2] as isize;
                                    if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize
                                    {
                                        continue;
                                    }
                                    let xv = x[((n * g.cin + ci) * g.h + iy as usize) * g.w
                                        + ix as usize];
                                    let wv = w[((co * g.cin + ci) * g.k + ky) * g.k + kx];
                                    acc += xv as f64 * wv as f64;
                                }
                            }
                        }
                        out[((n * g.cout + co) * ho + oy) * wo + ox] = acc;
                    }
                }
            }
        }
        out
    }

    fn geoms() -> Vec<ConvGeom> {
        let base = ConvGeom {
            n: 3,
            cin: 2,
            h: 7,
            w: 6,
            cout: 3,
            k: 3,
            stride: 1,
            pad: [1; 4],
        };
        vec![
            base,
            ConvGeom { stride: 2, ..base },
            ConvGeom {
                stride: 2,
                pad: [0, 1, 0, 1],
                ..base
            },
            ConvGeom {
                k: 1,
                pad: [0; 4],
                ..base
            },
            ConvGeom {
                n: 1,
                h: 5,
                w: 5,
                pad: [0; 4],
                ..base
            },
            // stride 1 and as wide as the input: the shifted-copy path, with
            // a wide kernel, uneven padding and planes shorter than the kernel
            ConvGeom {
                k: 5,
                pad: [2; 4],
                ..base
            },
            ConvGeom {
                pad: [0, 2, 2, 0],
                ..base
            },
            ConvGeom { h: 1, w: 4, ..base },
            ConvGeom {
                h: 2,
                w: 3,
                k: 5,
                pad: [3, 1, 2, 2],
                ..base
            },
        ]
    }

    fn assert_close(got: &[f32], want: &[f64], what: &str) {
        assert_eq!(got.len(), want.len(), "{what}: length");
        for (i, (a, b)) in got.iter().zip(want).enumerate() {
            assert!(
                (*a as f64 - b).abs() < 1e-4 * (1.0 + b.abs()),
                "{what}[{i}]: {a} vs {b}"
            );
        }
    }

    #[test]
    fn forward_matches_a_float64_reference() {
        for g in geoms() {
            let x = data(g.n * g.cin * g.h * g.w, 1);
            let w = data(g.cout * g.taps(), 2);
            let b = data(g.cout, 3);
            assert_close(
                &forward(&g, &x, &w, Some(&b)),
                &reference(&g, &x, &w, &b),
                &format!("{g:?}"),
            );
        }
    }

    /// The gradients of `L = sum(dy * conv(x))` are linear, so the reference
    /// derives them from the float64 forward with unit inputs.
    #[test]
    fn gradients_match_the_float64_forward() {
        for g in geoms() {
            let x = data(g.n * g.cin * g.h * g.w, 4);
            let w = data(g.cout * g.taps(), 5);
            let dy = data(g.n * g.cout * g.positions(), 6);
            let zero_b = vec![0.0f32; g.cout];
            let loss = |x: &[f32], w: &[f32]| -> f64 {
                reference(&g, x, w, &zero_b)
                    .iter()
                    .zip(&dy)
                    .map(|(o, &d)| o * d as f64)
                    .sum()
            };
            let unit = |len: usize, i: usize| {
                let mut v = vec![0.0f32; len];
                v[i] = 1.0;
                v
            };
            let dx = input_grad(&g, &dy, &w);
            let want_dx: Vec<f64> = (0..x.len()).map(|i| loss(&unit(x.len(), i), &w)).collect();
            assert_close(&dx, &want_dx, &format!("dx {g:?}"));
            let (dw, db) = weight_grad(&g, &x, &dy);
            let want_dw: Vec<f64> = (0..w.len()).map(|i| loss(&x, &unit(w.len(), i))).collect();
            assert_close(&dw, &want_dw, &format!("dw {g:?}"));
            let want_db: Vec<f64> = (0..g.cout)
                .map(|co| {
                    dy.chunks(g.positions())
                        .enumerate()
                        .filter(|(j, _)| j % g.cout == co)
                        .flat_map(|(_, r)| r.iter().map(|&v| v as f64))
                        .sum()
                })
                .collect();
            assert_close(&db, &want_db, &format!("db {g:?}"));
        }
    }
}

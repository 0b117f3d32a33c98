//! 2D convolution on host memory (NCHW, groups 1, dilation 1): forward and both
//! gradients as im2col + one gemm per sample, parallel over the batch.
//!
//! For a sample, `col` is the `[cin * k * k, ho * wo]` matrix whose row
//! `(ci, ky, kx)` holds the input pixel each output position sees through that
//! tap (zero in the padding). Then
//! - forward: `y_n = W [cout, cin*k*k] x col_n`, plus the bias;
//! - input gradient: for stride 1, the forward of the transposed convolution
//!   (`dy` convolved with the kernels turned by 180 degrees, channels swapped:
//!   one product with `cout * k * k` terms and no scatter); for larger strides
//!   `dcol_n = W^T dy_n`, scattered back onto `dx_n` (col2im);
//! - weight gradient: `dW = sum_n dy_n col_n^T`, one partial per worker, summed;
//!   for stride 1 (with `dx` wanted) the transposed convolution's im2col matrix
//!   of `dy`, built for `dx`, gives it as well (see [`backward`]);
//! - bias gradient: the sum of `dy` over the positions, and over the batch
//!   unless the bias is per sample (`bias.rs`).
//!
//! A 1x1 stride-1 conv without padding skips im2col (`col_n` is `x_n`). A
//! stride-1 conv whose output is as wide as its input (3x3 with padding 1)
//! builds each tap's block as one shifted copy of the input plane, then zeroes
//! the columns that wrapped around.
//!
//! Wide 3x3 stride-1 convolutions (`winograd_shape`) take Winograd's
//! F(2x2, 3x3) instead, forward and both gradients (`winograd.rs`).

use super::bias::{Bias, add_residual};
use super::buffer::{
    assume_init, per_sample, use_outer_parallelism, with_scratch, written_with, zero_init,
};
use super::matmul::{View, matmul, matmul_strided_uninit};
use super::winograd;
use rayon::prelude::*;
use std::mem::MaybeUninit;

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

    /// For a stride-1 convolution, the convolution whose forward is this one's
    /// input gradient: it reads `dy` (`cout` channels of `ho x wo`) with the
    /// padding `k - 1 - pad` on each side and writes `cin` channels of `h x w`
    /// (weights from [`flipped_transpose`]). `None` for strides above 1, 1x1
    /// convs without padding (already a plain product) and paddings of `k` or
    /// more.
    fn transposed(&self) -> Option<ConvGeom> {
        if self.stride != 1 || self.pointwise() || self.pad.iter().any(|&p| p >= self.k) {
            return None;
        }
        Some(ConvGeom {
            n: self.n,
            cin: self.cout,
            h: self.ho(),
            w: self.wo(),
            cout: self.cin,
            k: self.k,
            stride: 1,
            pad: self.pad.map(|p| self.k - 1 - p),
        })
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

/// Output rows whose rows of `col` fill about 1 MB: a sample's im2col matrix
/// is built and multiplied block by block, so gemm reads each block from cache
/// (at 32 x 32, `ddpm-cifar10-32`'s forward took 0.86-0.90x the time of one
/// 4.7 MB piece; 512 KB and 256 KB blocks were slower than 1 MB).
///
/// Where a whole number of output rows makes 64 positions (`wo` divides 64),
/// the block holds the nearest multiple of that many rows: gemm's widest
/// AVX-512 micro-kernel covers 64 positions, and the narrower ones it takes
/// for a remainder were 13% of a `ddpm-cifar10-32` batch-16 step.
fn block_rows(g: &ConvGeom) -> usize {
    const BLOCK_FLOATS: usize = 1 << 18;
    const GEMM_TILE: usize = 64;
    let (ho, wo) = (g.ho().max(1), g.wo());
    let rows = BLOCK_FLOATS / (g.taps() * wo).max(1);
    let unit = match wo {
        0 => 1,
        wo if GEMM_TILE.is_multiple_of(wo) => GEMM_TILE / wo,
        _ => 1,
    };
    let rounded = ((rows + unit / 2) / unit).max(1) * unit;
    rounded.clamp(1, ho)
}

/// Calls `f(block, col)` for the blocks of `rows` output rows that cover
/// `0..ho`, `col` being this thread's scratch cut to the block's im2col
/// matrix (`[taps, block.len() * wo]`, contents left by earlier use).
fn in_row_blocks(g: &ConvGeom, rows: usize, mut f: impl FnMut(std::ops::Range<usize>, &mut [f32])) {
    let (ho, taps, wo) = (g.ho(), g.taps(), g.wo());
    let rows = rows.max(1);
    with_scratch(taps * rows * wo, |col| {
        for start in (0..ho).step_by(rows) {
            let block = start..(start + rows).min(ho);
            let len = taps * block.len() * wo;
            f(block, &mut col[..len]);
        }
    });
}

/// Fills `col` (`[taps, rows.len() * wo]`) from one sample `x_n` (`[cin, h,
/// w]`): the columns of output rows `rows`.
fn im2col(g: &ConvGeom, x_n: &[f32], col: &mut [f32], rows: std::ops::Range<usize>) {
    if g.flat_shift() {
        return im2col_shifted(g, x_n, col, rows);
    }
    let (k, s, wo) = (g.k, g.stride, g.wo());
    let l = g.pad[2];
    let plane = g.h * g.w;
    for (row, dst) in col.chunks_exact_mut(rows.len() * wo).enumerate() {
        let (ci, tap) = (row / (k * k), row % (k * k));
        let (ky, kx) = (tap / k, tap % k);
        let src = &x_n[ci * plane..(ci + 1) * plane];
        let cols = g.valid_cols(kx);
        for (oy, out) in rows.clone().zip(dst.chunks_exact_mut(wo)) {
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

/// What one tap's block of `col` holds in a [`ConvGeom::flat_shift`]
/// geometry, for a block of output rows: the same for every input channel.
struct TapCopy {
    /// Positions of the block (from its first) copied from the input plane.
    copy: std::ops::Range<usize>,
    /// Where in the input plane the copy starts.
    from: usize,
    /// Positions of the block in rows whose input row is inside: their
    /// columns outside `cols` wrapped around and are zeroed.
    inside: std::ops::Range<usize>,
    /// Output columns that see inside the input through this tap.
    cols: std::ops::Range<usize>,
}

impl TapCopy {
    /// The copy of tap `(ky, kx)` within output rows `rows`.
    fn new(g: &ConvGeom, ky: usize, kx: usize, rows: &std::ops::Range<usize>) -> Self {
        let wo = g.wo();
        let base = rows.start * wo;
        let (inside, off) = g.shift(ky, kx);
        let lo = inside.start.clamp(rows.start, rows.end);
        let inside = lo..inside.end.clamp(lo, rows.end);
        let copy = g.in_plane(&inside, off);
        let copy_at = if copy.is_empty() {
            0..0
        } else {
            copy.start - base..copy.end - base
        };
        Self {
            from: if copy.is_empty() {
                0
            } else {
                (copy.start as isize + off) as usize
            },
            copy: copy_at,
            inside: (inside.start - rows.start) * wo..(inside.end - rows.start) * wo,
            cols: g.valid_cols(kx),
        }
    }
}

/// [`im2col`] for [`ConvGeom::flat_shift`] geometries: per tap one copy of
/// the rows inside, then zeros over the rows and columns outside. Where each
/// tap copies from and what it zeroes is worked out once per block.
fn im2col_shifted(g: &ConvGeom, x_n: &[f32], col: &mut [f32], rows: std::ops::Range<usize>) {
    let (k, wo) = (g.k, g.wo());
    let plane = g.h * g.w;
    let taps: Vec<TapCopy> = (0..k * k)
        .map(|tap| TapCopy::new(g, tap / k, tap % k, &rows))
        .collect();
    let len = rows.len() * wo;
    for (src, dsts) in x_n
        .chunks_exact(plane)
        .zip(col.chunks_exact_mut(len * k * k))
    {
        for (t, dst) in taps.iter().zip(dsts.chunks_exact_mut(len)) {
            let (c0, c1) = (t.copy.start, t.copy.end);
            dst[c0..c1].copy_from_slice(&src[t.from..t.from + (c1 - c0)]);
            zero(&mut dst[..c0]);
            zero(&mut dst[c1..]);
            zero_outside_cols(&t.cols, wo, &mut dst[t.inside.clone()]);
        }
    }
}

/// Zeroes, in each row of `block` (rows of `wo`), the columns outside `cols`.
fn zero_outside_cols(cols: &std::ops::Range<usize>, wo: usize, block: &mut [f32]) {
    // column by column: few columns, many rows
    for j in (0..cols.start).chain(cols.end..wo) {
        for v in block.iter_mut().skip(j).step_by(wo) {
            *v = 0.0;
        }
    }
}

/// Adds `col` (`[taps, rows.len() * wo]`, the columns of output rows `rows`)
/// back onto one sample's input gradient `dx_n`.
fn col2im_add(g: &ConvGeom, col: &[f32], dx_n: &mut [f32], rows: std::ops::Range<usize>) {
    let (k, s, wo) = (g.k, g.stride, g.wo());
    let l = g.pad[2];
    let plane = g.h * g.w;
    for (row, src) in col.chunks_exact(rows.len() * wo).enumerate() {
        let (ci, tap) = (row / (k * k), row % (k * k));
        let (ky, kx) = (tap / k, tap % k);
        let dst = &mut dx_n[ci * plane..(ci + 1) * plane];
        let cols = g.valid_cols(kx);
        for (oy, src_row) in rows.clone().zip(src.chunks_exact(wo)) {
            let Some(iy) = g.input_row(oy, ky) else {
                continue;
            };
            let src_row = &src_row[cols.clone()];
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

/// The weights of [`ConvGeom::transposed`]: `[cin, cout, k, k]`, each kernel
/// turned by 180 degrees (`w'[ci, co, ky, kx] = w[co, ci, k-1-ky, k-1-kx]`).
fn flipped_transpose(g: &ConvGeom, weight: &[f32]) -> Vec<f32> {
    let kk = g.k * g.k;
    let mut out = Vec::with_capacity(weight.len());
    for ci in 0..g.cin {
        for co in 0..g.cout {
            let kernel = &weight[(co * g.cin + ci) * kk..][..kk];
            out.extend(kernel.iter().rev());
        }
    }
    out
}

/// A 3x3, stride-1, pad-1 convolution's sizes for [`winograd`].
fn winograd_sizes(g: &ConvGeom) -> winograd::Shape {
    winograd::Shape {
        n: g.n,
        cin: g.cin,
        cout: g.cout,
        h: g.h,
        w: g.w,
    }
}

/// The convolutions Winograd's F(2x2, 3x3) takes: 3x3, stride 1, padding 1, and wide
/// enough to pay ([`winograd::Shape::pays`]).
fn winograd_shape(g: &ConvGeom) -> Option<winograd::Shape> {
    let s = winograd_sizes(g);
    (g.k == 3 && g.stride == 1 && g.pad == [1; 4] && s.pays()).then_some(s)
}

/// Forward: `x [n, cin, h, w]`, `weight [cout, cin, k, k]`, `bias` (`[cout]`
/// or `[n, cout]`) -> `[n, cout, ho, wo]`, plus `residual` (`[n, cout, ho,
/// wo]`) when given, added in the same pass. Convolutions [`winograd_shape`]
/// picks go through Winograd's F(2x2, 3x3).
pub fn forward(
    g: &ConvGeom,
    x: &[f32],
    weight: &[f32],
    bias: Bias,
    residual: Option<&[f32]>,
) -> Vec<f32> {
    bias.check(g.n, g.cout);
    if let Some(r) = residual {
        assert_eq!(r.len(), g.n * g.output_len(), "residual size");
    }
    if let Some(s) = winograd_shape(g) {
        return winograd::forward(&s, x, weight, bias, residual);
    }
    forward_in_blocks(g, x, weight, bias, residual, block_rows(g))
}

/// [`forward`], building im2col `rows` output rows at a time.
fn forward_in_blocks(
    g: &ConvGeom,
    x: &[f32],
    weight: &[f32],
    bias: Bias,
    residual: Option<&[f32]>,
    rows: usize,
) -> Vec<f32> {
    assert_eq!(x.len(), g.n * g.input_len(), "input size");
    assert_eq!(weight.len(), g.cout * g.taps(), "weight size");
    let (p, taps, wo) = (g.positions(), g.taps(), g.wo());
    let w = View::rows(weight, g.cout, taps);
    let outer = use_outer_parallelism(g.n);
    let one = |i: usize, y_n: &mut [MaybeUninit<f32>], x_n: &[f32]| {
        if g.pointwise() {
            matmul_strided_uninit(y_n, p, w, View::rows(x_n, taps, p), !outer);
        } else {
            in_row_blocks(g, rows, |block, col| {
                let cols = block.len() * wo;
                let y_block = &mut y_n[block.start * wo..];
                im2col(g, x_n, col, block);
                matmul_strided_uninit(y_block, p, w, View::rows(col, taps, cols), !outer);
            });
        }
        // SAFETY: the products wrote every output channel's positions (the
        // row blocks cover `0..ho`).
        let y_n = unsafe { assume_init(y_n) };
        if let Some(b) = bias.of_sample(i, g.cout) {
            for (row, &bv) in y_n.chunks_exact_mut(p).zip(b) {
                row.iter_mut().for_each(|v| *v += bv);
            }
        }
        add_residual(y_n, residual, i);
    };
    // SAFETY: `one` writes its whole sample (above).
    unsafe { per_sample(g.n, g.output_len(), x, g.input_len(), outer, one) }
}

/// Input gradient `dy [n, cout, ho, wo]` -> `dx [n, cin, h, w]` by
/// scattering (for the convolutions [`shared_backward`] does not take),
/// `rows` output rows of `dcol` at a time.
fn input_grad_in_blocks(g: &ConvGeom, dy: &[f32], weight: &[f32], rows: usize) -> Vec<f32> {
    assert_eq!(dy.len(), g.n * g.output_len(), "output gradient size");
    let (p, taps, wo) = (g.positions(), g.taps(), g.wo());
    let wt = View::rows(weight, g.cout, taps).t();
    let outer = use_outer_parallelism(g.n);
    if g.pointwise() {
        let one = |_: usize, dx_n: &mut [MaybeUninit<f32>], dy_n: &[f32]| {
            matmul_strided_uninit(dx_n, p, wt, View::rows(dy_n, g.cout, p), !outer);
        };
        // SAFETY: the product writes all of `dx_n` (`[cin, p]`).
        return unsafe { per_sample(g.n, g.input_len(), dy, g.output_len(), outer, one) };
    }
    let one = |_: usize, dx_n: &mut [MaybeUninit<f32>], dy_n: &[f32]| {
        let dx_n = zero_init(dx_n);
        in_row_blocks(g, rows, |block, col| {
            let cols = block.len() * wo;
            let dy_block = View::strided_rows(&dy_n[block.start * wo..], g.cout, cols, p);
            matmul(col, wt, dy_block, false, !outer);
            col2im_add(g, col, dx_n, block);
        });
    };
    // SAFETY: `one` zeroes its sample first.
    unsafe { per_sample(g.n, g.input_len(), dy, g.output_len(), outer, one) }
}

/// The input and weight gradients: `(dx, dW)`, `dx` only when `need_dx` (the
/// bias gradient is [`bias::grad`]). For a stride-1 convolution each sample's
/// im2col matrix of `dy` under the transposed convolution is built once and
/// serves both products (`dx = W' col` and `dW'^T += col x^T`, `W'` the kernels
/// turned by 180 degrees), so the weight gradient needs no im2col matrix of `x`.
///
/// [`bias::grad`]: super::bias::grad
pub fn backward(
    g: &ConvGeom,
    x: &[f32],
    dy: &[f32],
    weight: &[f32],
    need_dx: bool,
) -> (Option<Vec<f32>>, Vec<f32>) {
    backward_in_blocks(g, x, dy, weight, need_dx, None)
}

/// [`backward`], `rows` output rows at a time (`None`: about 1 MB blocks).
fn backward_in_blocks(
    g: &ConvGeom,
    x: &[f32],
    dy: &[f32],
    weight: &[f32],
    need_dx: bool,
    rows: Option<usize>,
) -> (Option<Vec<f32>>, Vec<f32>) {
    let wide = match g.transposed() {
        Some(t) if need_dx => winograd_shape(g).zip(winograd_shape(&t)),
        _ => None,
    };
    if let Some((s, ts)) = wide {
        let dx = winograd::forward(&ts, dy, &flipped_transpose(g, weight), Bias::None, None);
        return (Some(dx), winograd::weight_grad(&s, x, dy));
    }
    match g.transposed() {
        Some(t) if need_dx => {
            let rows = rows.unwrap_or_else(|| block_rows(&t));
            let (dx, dw) = shared_backward(g, &t, x, dy, weight, rows);
            (Some(dx), dw)
        }
        _ => {
            let rows = rows.unwrap_or_else(|| block_rows(g));
            let dx = need_dx.then(|| input_grad_in_blocks(g, dy, weight, rows));
            (dx, weight_grad_in_blocks(g, x, dy, rows))
        }
    }
}

/// `(dx, dW)` of a stride-1 convolution from the transposed convolution `t`
/// ([`backward`]): one im2col matrix of `dy` per block, two products.
fn shared_backward(
    g: &ConvGeom,
    t: &ConvGeom,
    x: &[f32],
    dy: &[f32],
    weight: &[f32],
    rows: usize,
) -> (Vec<f32>, Vec<f32>) {
    assert_eq!(x.len(), g.n * g.input_len(), "input size");
    assert_eq!(dy.len(), g.n * g.output_len(), "output gradient size");
    assert_eq!(weight.len(), g.cout * g.taps(), "weight size");
    let flipped = flipped_transpose(g, weight);
    let (plane, ttaps, w) = (t.positions(), t.taps(), t.wo());
    let wt = View::rows(&flipped, g.cin, ttaps);
    let outer = use_outer_parallelism(g.n);
    let workers = if outer {
        rayon::current_num_threads().clamp(1, g.n.max(1))
    } else {
        1
    };
    let per = g.n.div_ceil(workers).max(1);
    // one dW'^T [cout * k * k, cin] per group of samples, summed below
    let mut partials = vec![Vec::new(); g.n.div_ceil(per).max(1)];
    // SAFETY: every sample's dx is written whole by the products over its
    // row blocks, which cover all of its positions.
    let dx = unsafe {
        written_with(
            g.n * g.input_len(),
            per * g.input_len(),
            &mut partials,
            outer,
            || (),
            |_, c, dx_group, part| {
                let dwt = &mut part[0];
                dwt.resize(ttaps * g.cin, 0.0);
                for (j, dx_n) in dx_group.chunks_mut(g.input_len()).enumerate() {
                    let i = c * per + j;
                    let dy_n = &dy[i * g.output_len()..(i + 1) * g.output_len()];
                    let x_n = &x[i * g.input_len()..(i + 1) * g.input_len()];
                    in_row_blocks(t, rows, |block, col| {
                        let cols = block.len() * w;
                        let start = block.start * w;
                        im2col(t, dy_n, col, block);
                        let col = View::rows(col, ttaps, cols);
                        matmul_strided_uninit(&mut dx_n[start..], plane, wt, col, !outer);
                        let x_t = View::strided_rows(&x_n[start..], g.cin, cols, plane).t();
                        matmul(dwt, col, x_t, true, !outer);
                    });
                }
            },
        )
    };
    // dW[co, ci, tap] = dW'^T[(co, k*k - 1 - tap), ci]
    let kk = g.k * g.k;
    let mut dw = vec![0.0f32; g.cout * g.taps()];
    for part in partials.iter().filter(|p| !p.is_empty()) {
        for (r, row) in part.chunks_exact(g.cin).enumerate() {
            let (co, tap) = (r / kk, kk - 1 - r % kk);
            for (ci, v) in row.iter().enumerate() {
                dw[(co * g.cin + ci) * kk + tap] += v;
            }
        }
    }
    (dx, dw)
}

/// Weight gradient `dW [cout, cin, k, k]` from an im2col matrix of `x`,
/// built `rows` output rows at a time.
fn weight_grad_in_blocks(g: &ConvGeom, x: &[f32], dy: &[f32], rows: usize) -> Vec<f32> {
    assert_eq!(x.len(), g.n * g.input_len(), "input size");
    assert_eq!(dy.len(), g.n * g.output_len(), "output gradient size");
    let (p, taps, wo) = (g.positions(), g.taps(), g.wo());
    let workers = rayon::current_num_threads().clamp(1, g.n.max(1));
    let per = g.n.div_ceil(workers);
    let partials: Vec<Vec<f32>> = (0..g.n.div_ceil(per))
        .into_par_iter()
        .map(|chunk| {
            let mut dwt = vec![0.0f32; taps * g.cout];
            for i in chunk * per..((chunk + 1) * per).min(g.n) {
                let x_n = &x[i * g.input_len()..(i + 1) * g.input_len()];
                let dy_n = &dy[i * g.output_len()..(i + 1) * g.output_len()];
                // dW^T += col_n dy_n^T: gemm reads col_n in place (it would pack
                // it as the left operand of dy_n col_n^T)
                if g.pointwise() {
                    let dy_t = View::rows(dy_n, g.cout, p).t();
                    matmul(&mut dwt, View::rows(x_n, taps, p), dy_t, true, false);
                } else {
                    in_row_blocks(g, rows, |block, col| {
                        let cols = block.len() * wo;
                        let dy_t =
                            View::strided_rows(&dy_n[block.start * wo..], g.cout, cols, p).t();
                        im2col(g, x_n, col, block);
                        matmul(&mut dwt, View::rows(col, taps, cols), dy_t, true, false);
                    });
                }
            }
            dwt
        })
        .collect();
    let mut dw = vec![0.0f32; g.cout * taps];
    for pwt in partials {
        for (t, row) in pwt.chunks_exact(g.cout).enumerate() {
            for (co, v) in row.iter().enumerate() {
                dw[co * taps + t] += v;
            }
        }
    }
    dw
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::kernels::test_data::{assert_close, data};

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

    /// Three samples of a 3x3, stride-1, pad-1 convolution from 2 channels to 3 on a
    /// 7 x 6 plane: the base of the geometries the tests vary.
    fn small_geom() -> ConvGeom {
        ConvGeom {
            n: 3,
            cin: 2,
            h: 7,
            w: 6,
            cout: 3,
            k: 3,
            stride: 1,
            pad: [1; 4],
        }
    }

    fn geoms() -> Vec<ConvGeom> {
        let base = small_geom();
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
            // stride 1 with a padding as wide as the kernel: no transposed
            // convolution, the input gradient scatters (col2im)
            ConvGeom {
                pad: [3, 0, 1, 1],
                ..base
            },
        ]
    }

    /// Row blocks to try: one row, two and three (blocks that do not divide
    /// the output evenly), and the whole output at once.
    fn block_sizes(g: &ConvGeom) -> Vec<usize> {
        let mut sizes: Vec<usize> = [1, 2, 3, g.ho()]
            .into_iter()
            .filter(|&r| r <= g.ho().max(1))
            .collect();
        sizes.dedup();
        sizes
    }

    #[test]
    fn forward_matches_a_float64_reference() {
        for g in geoms() {
            let x = data(g.n * g.cin * g.h * g.w, 1);
            let w = data(g.cout * g.taps(), 2);
            let b = data(g.cout, 3);
            let want = reference(&g, &x, &w, &b);
            assert_close(
                &forward(&g, &x, &w, Bias::Shared(&b), None),
                &want,
                &format!("{g:?}"),
            );
            for rows in block_sizes(&g) {
                let got = forward_in_blocks(&g, &x, &w, Bias::Shared(&b), None, rows);
                assert_close(&got, &want, &format!("{g:?} in blocks of {rows} rows"));
            }
        }
    }

    /// A per-sample bias adds sample i's row to its output channels, and a
    /// residual its values, on the im2col path (every geometry) and on Winograd's.
    #[test]
    fn a_per_sample_bias_and_a_residual_join_the_output() {
        let wide = ConvGeom {
            n: 2,
            cin: 128,
            cout: 128,
            h: 16,
            w: 16,
            ..small_geom()
        };
        assert!(winograd_shape(&wide).is_some());
        for g in geoms().into_iter().chain([wide]) {
            let x = data(g.n * g.cin * g.h * g.w, 1);
            let w = data(g.cout * g.taps(), 2);
            let rows = data(g.n * g.cout, 3);
            let mut want = reference(&g, &x, &w, &vec![0.0; g.cout]);
            for (j, plane) in want.chunks_exact_mut(g.positions()).enumerate() {
                plane.iter_mut().for_each(|v| *v += rows[j] as f64);
            }
            let got = forward(&g, &x, &w, Bias::PerSample(&rows), None);
            assert_close(&got, &want, &format!("{g:?}, per-sample bias"));
            // a residual joins the same pass
            let residual = data(want.len(), 4);
            want.iter_mut()
                .zip(&residual)
                .for_each(|(v, &r)| *v += r as f64);
            let got = forward(&g, &x, &w, Bias::PerSample(&rows), Some(&residual));
            assert_close(&got, &want, &format!("{g:?}, per-sample bias and residual"));
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
            let want_dx: Vec<f64> = (0..x.len()).map(|i| loss(&unit(x.len(), i), &w)).collect();
            let want_dw: Vec<f64> = (0..w.len()).map(|i| loss(&x, &unit(w.len(), i))).collect();
            let (dx, dw) = backward(&g, &x, &dy, &w, true);
            assert_close(&dx.unwrap(), &want_dx, &format!("dx {g:?}"));
            assert_close(&dw, &want_dw, &format!("dw {g:?}"));
            // without dx, stride-1 convolutions take the im2col matrix of x
            let (none, dw_alone) = backward(&g, &x, &dy, &w, false);
            assert!(none.is_none());
            assert_close(&dw_alone, &want_dw, &format!("dw alone {g:?}"));
            for rows in block_sizes(&g) {
                let what = format!("{g:?} in blocks of {rows} rows");
                for need_dx in [true, false] {
                    let (dx, dw) = backward_in_blocks(&g, &x, &dy, &w, need_dx, Some(rows));
                    if let Some(dx) = dx {
                        assert_close(&dx, &want_dx, &format!("dx {what}"));
                    }
                    assert_close(&dw, &want_dw, &format!("dw {what}, dx {need_dx}"));
                }
            }
        }
    }
    #[test]
    fn blocks_hold_whole_gemm_tiles_where_the_width_allows() {
        let conv = |cin: usize, side: usize| ConvGeom {
            n: 1,
            cin,
            h: side,
            w: side,
            cout: cin,
            k: 3,
            stride: 1,
            pad: [1; 4],
        };
        // ddpm-cifar10-32's levels: 7 rows of 32 (224 positions) became 8 (256),
        // 7 rows of 16 (112) became 8 (128), 4 x 4 keeps its 4 rows
        assert_eq!(block_rows(&conv(128, 32)), 8);
        assert_eq!(block_rows(&conv(256, 16)), 8);
        assert_eq!(block_rows(&conv(256, 8)), 8);
        assert_eq!(block_rows(&conv(256, 4)), 4);
        for (cin, side) in [(128, 32), (256, 16), (64, 64), (3, 32)] {
            let g = conv(cin, side);
            let positions = block_rows(&g) * g.wo();
            assert!(
                positions.is_multiple_of(64) || block_rows(&g) == g.ho(),
                "{g:?}"
            );
        }
        // widths that do not divide 64 keep the 1 MB rule: mnist-tiny's 28 x 28 at 64 channels
        let g = conv(64, 28);
        assert_eq!(block_rows(&g), (1 << 18) / (64 * 9 * 28));
    }
    /// Whether `forward` and `backward` take Winograd for `g`.
    fn wide(g: &ConvGeom) -> bool {
        winograd_shape(g).is_some()
    }

    #[test]
    fn winograd_matches_a_float64_reference() {
        let base = small_geom();
        // even and odd sides (a last tile half outside), planes of two rows, one sample
        let shapes = [
            base,
            ConvGeom { h: 6, w: 7, ..base },
            ConvGeom { h: 2, w: 3, ..base },
            ConvGeom {
                n: 1,
                h: 5,
                w: 5,
                cin: 5,
                cout: 4,
                ..base
            },
        ];
        for g in shapes {
            let x = data(g.n * g.cin * g.h * g.w, 4);
            let w = data(g.cout * g.taps(), 5);
            let b = data(g.cout, 6);
            let want = reference(&g, &x, &w, &b);
            let got = winograd::forward(&winograd_sizes(&g), &x, &w, Bias::Shared(&b), None);
            assert_close(&got, &want, &format!("Winograd {g:?}"));
            let zero = vec![0.0f32; g.cout];
            let want = reference(&g, &x, &w, &zero);
            assert_close(
                &winograd::forward(&winograd_sizes(&g), &x, &w, Bias::None, None),
                &want,
                &format!("{g:?}, no bias"),
            );
        }
        // the channel counts and plane sizes it is chosen for, through `forward`
        let g = ConvGeom {
            n: 2,
            cin: 128,
            cout: 130,
            h: 16,
            w: 15,
            ..base
        };
        assert!(wide(&g));
        let x = data(g.n * g.cin * g.h * g.w, 7);
        let w = data(g.cout * g.taps(), 8);
        let b = data(g.cout, 9);
        assert_close(
            &forward(&g, &x, &w, Bias::Shared(&b), None),
            &reference(&g, &x, &w, &b),
            "128 channels",
        );
    }

    #[test]
    fn winograd_takes_only_wide_3x3_stride_1_convolutions() {
        let cifar = ConvGeom {
            n: 16,
            cin: 128,
            h: 32,
            w: 32,
            cout: 128,
            k: 3,
            stride: 1,
            pad: [1; 4],
        };
        assert!(wide(&cifar));
        assert!(!wide(&ConvGeom { cin: 64, ..cifar }));
        assert!(!wide(&ConvGeom { cout: 3, ..cifar }));
        assert!(!wide(&ConvGeom { stride: 2, ..cifar }));
        assert!(!wide(&ConvGeom {
            k: 1,
            pad: [0; 4],
            ..cifar
        }));
        assert!(!wide(&ConvGeom {
            pad: [0, 1, 0, 1],
            ..cifar
        }));
        assert!(!wide(&ConvGeom { h: 1, ..cifar }));
        // 8 x 8 planes: 16 tiles, too few for gemm's 64-position kernel
        assert!(!wide(&ConvGeom {
            h: 8,
            w: 8,
            ..cifar
        }));
        assert!(wide(&ConvGeom {
            h: 16,
            w: 16,
            ..cifar
        }));
    }
    /// `dx` and `dW` of a 3 x 3, stride-1, pad-1 convolution summed directly in f64.
    fn pad1_gradients(g: &ConvGeom, x: &[f32], w: &[f32], dy: &[f32]) -> (Vec<f64>, Vec<f64>) {
        let (h, wd) = (g.h as isize, g.w as isize);
        let mut dx = vec![0.0f64; x.len()];
        let mut dw = vec![0.0f64; w.len()];
        for n in 0..g.n {
            for co in 0..g.cout {
                for oy in 0..h {
                    for ox in 0..wd {
                        let d =
                            dy[((n * g.cout + co) * g.h + oy as usize) * g.w + ox as usize] as f64;
                        for ci in 0..g.cin {
                            for ky in 0..3isize {
                                for kx in 0..3isize {
                                    let (iy, ix) = (oy + ky - 1, ox + kx - 1);
                                    if iy < 0 || ix < 0 || iy >= h || ix >= wd {
                                        continue;
                                    }
                                    let xi =
                                        ((n * g.cin + ci) * g.h + iy as usize) * g.w + ix as usize;
                                    let wi = (co * g.cin + ci) * 9 + (ky * 3 + kx) as usize;
                                    dw[wi] += d * x[xi] as f64;
                                    dx[xi] += d * w[wi] as f64;
                                }
                            }
                        }
                    }
                }
            }
        }
        (dx, dw)
    }

    #[test]
    fn winograd_gradients_match_a_float64_reference() {
        let base = small_geom();
        for g in [
            base,
            ConvGeom {
                h: 6,
                w: 5,
                n: 1,
                ..base
            },
            ConvGeom { h: 2, w: 3, ..base },
        ] {
            let x = data(g.n * g.cin * g.h * g.w, 10);
            let w = data(g.cout * g.taps(), 11);
            let dy = data(g.n * g.cout * g.positions(), 12);
            let (_, want_dw) = pad1_gradients(&g, &x, &w, &dy);
            assert_close(
                &winograd::weight_grad(&winograd_sizes(&g), &x, &dy),
                &want_dw,
                &format!("dW {g:?}"),
            );
        }
        // the channel counts and plane sizes it is chosen for, through `backward`
        let g = ConvGeom {
            n: 3,
            cin: 128,
            cout: 129,
            h: 16,
            w: 15,
            ..base
        };
        let x = data(g.n * g.cin * g.h * g.w, 13);
        let w = data(g.cout * g.taps(), 14);
        let dy = data(g.n * g.cout * g.positions(), 15);
        let (want_dx, want_dw) = pad1_gradients(&g, &x, &w, &dy);
        let (dx, dw) = backward(&g, &x, &dy, &w, true);
        assert_close(&dx.unwrap(), &want_dx, "dx, 128 channels");
        assert_close(&dw, &want_dw, "dW, 128 channels");
    }
}

//! Winograd's F(2x2, 3x3) for 3 x 3, stride-1, pad-1 convolutions with many
//! channels, forward and both gradients: each 2 x 2 output tile comes from a 4 x 4 input tile through
//! 16 elementwise products in the transformed domain, so the products do 16 multiplies
//! per tile and channel pair where im2col + gemm does 36. Per sample:
//!
//! - the input tiles `d` become `V = B^T d B` (`[16, cin, tiles]`),
//! - the kernels `g` become `U = G g G^T` (`[16, cout, cin]`, once per call),
//! - 16 gemm products `M_xi = U_xi V_xi` (`[cout, tiles]` each),
//! - each output tile is `A^T M A`, plus the bias.
//!
//! The input gradient is the transposed convolution's forward (`conv.rs` passes the
//! kernels turned by 180 degrees, channels swapped); the weight gradient sums
//! `dM_xi V_xi^T` over the tiles, `dM = A dy A^T`, and returns `G^T dU G`
//! ([`weight_grad`]).
//!
//! The transforms add and halve only (the points 0, 1, -1 and infinity), so the result
//! stays within float32 rounding of the direct sum (tested against float64 in `conv.rs`).

use super::bias::{Bias, add_residual};
use super::buffer::{assume_init, per_sample, use_outer_parallelism, with_scratch};
use super::matmul::{View, matmul};
use super::simd;
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// The transformed domain's size: 4 x 4 points.
const POINTS: usize = 16;

/// Channels below which the im2col product stays faster (its gemm then has few terms
/// per output and Winograd's 16 products fewer still): with 32 instead (and 16 tiles
/// for [`MIN_TILES`]), mnist-tiny's training at batch 64 fell from 258 / 278 to 203 / 203
/// images/s.
const MIN_CHANNELS: usize = 128;

/// The sizes of a 3 x 3, stride-1, pad-1 convolution (the only kind this module takes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// Batch size.
    pub n: usize,
    /// Input channels.
    pub cin: usize,
    /// Output channels.
    pub cout: usize,
    /// Height (input and output).
    pub h: usize,
    /// Width (input and output).
    pub w: usize,
}

impl Shape {
    /// Whether Winograd is faster than im2col + gemm here (channels and tiles enough).
    pub fn pays(&self) -> bool {
        self.cin >= MIN_CHANNELS
            && self.cout >= MIN_CHANNELS
            && self.h.div_ceil(2) * self.w.div_ceil(2) >= MIN_TILES
    }
}

/// Tiles per sample below which the 16 products are too narrow for gemm's
/// 64-position micro-kernel: with 16 instead (ddpm-cifar10-32's 8 x 8 layers too), that
/// model's batch-16 training fell from 6.69 / 6.79 to 6.50 / 6.49 images/s.
const MIN_TILES: usize = 64;

/// Tiles down and across: `ceil(h / 2)`, `ceil(w / 2)`.
fn tiles(g: &Shape) -> (usize, usize) {
    (g.h.div_ceil(2), g.w.div_ceil(2))
}

/// `U = G g G^T` for every kernel: `[16, cout, cin]`.
fn weight_transform(g: &Shape, weight: &[f32]) -> Vec<f32> {
    let (cout, cin) = (g.cout, g.cin);
    let mut u = vec![0.0f32; POINTS * cout * cin];
    // G = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]]
    let rows = |a: f32, b: f32, c: f32| [a, 0.5 * (a + b + c), 0.5 * (a - b + c), c];
    for (oc, kernels) in weight.chunks_exact(cin * 9).enumerate() {
        for (ic, k) in kernels.chunks_exact(9).enumerate() {
            let cols: [[f32; 4]; 3] = std::array::from_fn(|c| rows(k[c], k[3 + c], k[6 + c]));
            for r in 0..4 {
                let row = rows(cols[0][r], cols[1][r], cols[2][r]);
                for (c, v) in row.into_iter().enumerate() {
                    u[((r * 4 + c) * cout + oc) * cin + ic] = v;
                }
            }
        }
    }
    u
}

/// Scratch floats the transforms need: at most (in [`input_transform`]) four input
/// rows and four transformed rows, each split into even and odd padded columns.
fn row_scratch(tw: usize) -> usize {
    16 * (tw + 2)
}

/// `V = B^T d B` for every tile of one sample `x_n` (`[cin, h, w]`) into `v`
/// (`[16, cin, tiles]`), `rows` being [`row_scratch`] floats of scratch.
fn input_transform(g: &Shape, x_n: &[f32], v: &mut [f32], rows: &mut [f32]) {
    let (th, tw) = tiles(g);
    let (h, w, t) = (g.h, g.w, th * tw);
    // padded column j holds input column j - 1; split into even j (2k) and odd j (2k + 1)
    let half = tw + 2;
    let (d, b) = rows.split_at_mut(8 * half);
    for (ci, plane) in x_n.chunks_exact(h * w).enumerate() {
        for ty in 0..th {
            for (r, dr) in d.chunks_exact_mut(2 * half).enumerate() {
                let iy = (2 * ty + r).wrapping_sub(1);
                let src = (iy < h).then(|| &plane[iy * w..(iy + 1) * w]);
                split_padded(src, dr, half);
            }
            // B^T d down the columns: [d0 - d2, d1 + d2, d2 - d1, d1 - d3]
            let (d01, d23) = d.split_at(4 * half);
            let (d0, d1) = d01.split_at(2 * half);
            let (d2, d3) = d23.split_at(2 * half);
            let (b01, b23) = b.split_at_mut(4 * half);
            let (b0, b1) = b01.split_at_mut(2 * half);
            let (b2, b3) = b23.split_at_mut(2 * half);
            column_pass([b0, b1, b2, b3], [d0, d1, d2, d3]);
            // ... then B across each tile's columns 2tx .. 2tx + 3
            let at = ci * t + ty * tw;
            for (r, br) in b.chunks_exact(2 * half).enumerate() {
                let (even, odd) = br.split_at(half);
                let mut out = v[r * 4 * g.cin * t..].chunks_mut(g.cin * t);
                let mut next = || &mut out.next().expect("four points a row")[at..at + tw];
                row_pass([next(), next(), next(), next()], even, odd);
            }
        }
    }
}

/// Copies an input row (`None`: a row of padding) into `dst`'s even and odd padded
/// columns (`half` each; padded column j is input column j - 1, zero outside).
fn split_padded(src: Option<&[f32]>, dst: &mut [f32], half: usize) {
    dst.fill(0.0);
    let Some(src) = src else { return };
    let (even, odd) = dst.split_at_mut(half);
    // input column c is padded column c + 1: odd c -> even slot (c + 1) / 2
    for (k, v) in src.iter().skip(1).step_by(2).enumerate() {
        even[k + 1] = *v;
    }
    for (k, v) in src.iter().step_by(2).enumerate() {
        odd[k] = *v;
    }
}

simd::vectorised!(
    /// `B^T d` down four rows, elementwise: `[d0 - d2, d1 + d2, d2 - d1, d1 - d3]`.
    fn column_pass / column_pass_at(b: [&mut [f32]; 4], d: [&[f32]; 4]) = column_pass_body
);

#[inline(always)]
fn column_pass_body(b: [&mut [f32]; 4], d: [&[f32]; 4]) {
    let n = d[0].len();
    let [b0, b1, b2, b3] = b;
    let (b0, b1, b2, b3) = (&mut b0[..n], &mut b1[..n], &mut b2[..n], &mut b3[..n]);
    let (d0, d1, d2, d3) = (d[0], &d[1][..n], &d[2][..n], &d[3][..n]);
    for j in 0..n {
        b0[j] = d0[j] - d2[j];
        b1[j] = d1[j] + d2[j];
        b2[j] = d2[j] - d1[j];
        b3[j] = d1[j] - d3[j];
    }
}

simd::vectorised!(
    /// `B` across a row of tiles into the four points of one row, from the row's even
    /// and odd padded columns: tile `k` covers even `k, k + 1` and odd `k, k + 1`.
    fn row_pass / row_pass_at(out: [&mut [f32]; 4], even: &[f32], odd: &[f32]) = row_pass_body
);

#[inline(always)]
fn row_pass_body(out: [&mut [f32]; 4], even: &[f32], odd: &[f32]) {
    let [v0, v1, v2, v3] = out;
    let n = v0.len();
    let (v1, v2, v3) = (&mut v1[..n], &mut v2[..n], &mut v3[..n]);
    let (e0, e1, o0, o1) = (&even[..n], &even[1..n + 1], &odd[..n], &odd[1..n + 1]);
    for k in 0..n {
        v0[k] = e0[k] - e1[k];
        v1[k] = o0[k] + e1[k];
        v2[k] = e1[k] - o0[k];
        v3[k] = o0[k] - o1[k];
    }
}

/// `y = A^T M A` (+ bias) for every tile of one sample: `m` is `[16, cout, tiles]`,
/// `y_n` (`[cout, h, w]`) is written whole; `rows` is [`row_scratch`] floats of scratch.
fn output_transform(
    g: &Shape,
    m: &[f32],
    bias: Option<&[f32]>,
    y_n: &mut [MaybeUninit<f32>],
    rows: &mut [f32],
) {
    let (th, tw) = tiles(g);
    let (h, w, t) = (g.h, g.w, th * tw);
    let point = g.cout * t;
    let (down, out) = rows.split_at_mut(4 * tw);
    let (even, rest) = out.split_at_mut(tw);
    let odd = &mut rest[..tw];
    for (co, y_plane) in y_n.chunks_exact_mut(h * w).enumerate() {
        let b = bias.map_or(0.0, |b| b[co]);
        for ty in 0..th {
            let at = co * t + ty * tw;
            let p = |i: usize| &m[i * point + at..i * point + at + tw];
            for r in 0..2 {
                let oy = 2 * ty + r;
                if oy >= h {
                    continue;
                }
                // A^T down: row 0 is m0 + m1 + m2, row 1 is m1 - m2 - m3 (per column c)
                for (c, a) in down.chunks_exact_mut(tw).enumerate() {
                    let (m0, m1, m2, m3) = (p(c), p(4 + c), p(8 + c), p(12 + c));
                    tile_down(a, [m0, m1, m2, m3], r == 0);
                }
                // ... then across into the tile's two columns
                let (a01, a23) = down.split_at(2 * tw);
                let (a0, a1) = a01.split_at(tw);
                let (a2, a3) = a23.split_at(tw);
                tile_across(even, odd, [a0, a1, a2, a3], b);
                let row = &mut y_plane[oy * w..(oy + 1) * w];
                for (pair, (e, o)) in row.chunks_mut(2).zip(even.iter().zip(odd.iter())) {
                    pair[0].write(*e);
                    if let Some(second) = pair.get_mut(1) {
                        second.write(*o);
                    }
                }
            }
        }
    }
}

simd::vectorised!(
    /// One row of `A^T M` for a row of tiles: `m0 + m1 + m2` (`first`) or `m1 - m2 - m3`.
    fn tile_down / tile_down_at(a: &mut [f32], m: [&[f32]; 4], first: bool) = tile_down_body
);

#[inline(always)]
fn tile_down_body(a: &mut [f32], m: [&[f32]; 4], first: bool) {
    let n = a.len();
    let (m0, m1, m2, m3) = (&m[0][..n], &m[1][..n], &m[2][..n], &m[3][..n]);
    if first {
        for k in 0..n {
            a[k] = m0[k] + m1[k] + m2[k];
        }
    } else {
        for k in 0..n {
            a[k] = m1[k] - m2[k] - m3[k];
        }
    }
}

simd::vectorised!(
    /// `(. ) A` across a row of tiles: each tile's even and odd output column, plus `b`.
    fn tile_across / tile_across_at(even: &mut [f32], odd: &mut [f32], a: [&[f32]; 4], b: f32) = tile_across_body
);

#[inline(always)]
fn tile_across_body(even: &mut [f32], odd: &mut [f32], a: [&[f32]; 4], b: f32) {
    let n = even.len();
    let odd = &mut odd[..n];
    let (a0, a1, a2, a3) = (&a[0][..n], &a[1][..n], &a[2][..n], &a[3][..n]);
    for k in 0..n {
        even[k] = a0[k] + a1[k] + a2[k] + b;
        odd[k] = a1[k] - a2[k] - a3[k] + b;
    }
}

/// Forward: `x [n, cin, h, w]`, `weight [cout, cin, 3, 3]`, `bias` (`[cout]`
/// or `[n, cout]`) -> `[n, cout, h, w]`, plus `residual` when given.
pub fn forward(
    g: &Shape,
    x: &[f32],
    weight: &[f32],
    bias: Bias,
    residual: Option<&[f32]>,
) -> Vec<f32> {
    assert_eq!(x.len(), g.n * g.cin * g.h * g.w, "input size");
    assert_eq!(weight.len(), g.cout * g.cin * 9, "weight size");
    let (th, tw) = tiles(g);
    let t = th * tw;
    let u = weight_transform(g, weight);
    let outer = use_outer_parallelism(g.n);
    let (v_len, m_len, row_len) = (POINTS * g.cin * t, POINTS * g.cout * t, row_scratch(tw));
    let one = |i: usize, y_n: &mut [MaybeUninit<f32>], x_n: &[f32]| {
        with_scratch(v_len + m_len + row_len, |scratch| {
            let (v, rest) = scratch.split_at_mut(v_len);
            let (m, row) = rest.split_at_mut(m_len);
            input_transform(g, x_n, v, row);
            for xi in 0..POINTS {
                let u_xi = View::rows(&u[xi * g.cout * g.cin..][..g.cout * g.cin], g.cout, g.cin);
                let v_xi = View::rows(&v[xi * g.cin * t..][..g.cin * t], g.cin, t);
                matmul(
                    &mut m[xi * g.cout * t..][..g.cout * t],
                    u_xi,
                    v_xi,
                    false,
                    !outer,
                );
            }
            output_transform(g, m, bias.of_sample(i, g.cout), y_n, row);
            // SAFETY: the output transform wrote the whole sample.
            add_residual(unsafe { assume_init(y_n) }, residual, i);
        });
    };
    let (input_len, output_len) = (g.cin * g.h * g.w, g.cout * g.h * g.w);
    // SAFETY: the output transform writes every position of its sample (the tiles
    // cover `0..h` x `0..w`).
    unsafe { per_sample(g.n, output_len, x, input_len, outer, one) }
}

/// Weight gradient `dW [cout, cin, 3, 3]` from
/// `x [n, cin, h, w]` and `dy [n, cout, h, w]`: the gradient of `U` is
/// `dU_xi = sum over tiles of dM_xi V_xi^T`, where `V` is the input's transform (as in
/// [`forward`]) and `dM = A dy A^T` that of each 2 x 2 tile of `dy`; then `dW = G^T dU G`.
/// The samples are split over the rayon pool, each worker summing its own `dU`.
pub fn weight_grad(g: &Shape, x: &[f32], dy: &[f32]) -> Vec<f32> {
    let (plane_in, plane_out) = (g.cin * g.h * g.w, g.cout * g.h * g.w);
    assert_eq!(x.len(), g.n * plane_in, "input size");
    assert_eq!(dy.len(), g.n * plane_out, "output gradient size");
    let (th, tw) = tiles(g);
    let t = th * tw;
    let (v_len, m_len) = (POINTS * g.cin * t, POINTS * g.cout * t);
    let workers = rayon::current_num_threads().clamp(1, g.n.max(1));
    let per = g.n.div_ceil(workers).max(1);
    let partials: Vec<Vec<f32>> = (0..g.n.div_ceil(per))
        .into_par_iter()
        .map(|chunk| {
            let mut du = vec![0.0f32; POINTS * g.cout * g.cin];
            with_scratch(v_len + m_len + row_scratch(tw), |scratch| {
                let (v, rest) = scratch.split_at_mut(v_len);
                let (dm, row) = rest.split_at_mut(m_len);
                for i in chunk * per..((chunk + 1) * per).min(g.n) {
                    input_transform(g, &x[i * plane_in..(i + 1) * plane_in], v, row);
                    output_grad_transform(g, &dy[i * plane_out..(i + 1) * plane_out], dm, row);
                    for xi in 0..POINTS {
                        let dm_xi = View::rows(&dm[xi * g.cout * t..][..g.cout * t], g.cout, t);
                        let v_xi = View::rows(&v[xi * g.cin * t..][..g.cin * t], g.cin, t);
                        let du_xi = &mut du[xi * g.cout * g.cin..][..g.cout * g.cin];
                        matmul(du_xi, dm_xi, v_xi.t(), true, false);
                    }
                }
            });
            du
        })
        .collect();
    let mut du = vec![0.0f32; POINTS * g.cout * g.cin];
    for part in partials {
        du.iter_mut().zip(part).for_each(|(a, b)| *a += b);
    }
    // dW = G^T dU G, G^T taking a column (x0, x1, x2, x3) to
    // (x0 + (x1 + x2) / 2, (x1 - x2) / 2, (x1 + x2) / 2 + x3)
    let gt = |x: [f32; 4]| {
        [
            x[0] + 0.5 * (x[1] + x[2]),
            0.5 * (x[1] - x[2]),
            0.5 * (x[1] + x[2]) + x[3],
        ]
    };
    let pairs = g.cout * g.cin;
    let mut dw = vec![0.0f32; pairs * 9];
    for (pair, k) in dw.chunks_exact_mut(9).enumerate() {
        let at = |r: usize, c: usize| du[(r * 4 + c) * pairs + pair];
        let down: [[f32; 3]; 4] = std::array::from_fn(|c| gt(std::array::from_fn(|r| at(r, c))));
        for i in 0..3 {
            let across = gt(std::array::from_fn(|c| down[c][i]));
            k[i * 3..i * 3 + 3].copy_from_slice(&across);
        }
    }
    dw
}

/// `dM = A dy A^T` for every 2 x 2 tile of one sample's output gradient `dy_n`
/// (`[cout, h, w]`, zero beyond its edges) into `dm` (`[16, cout, tiles]`), with
/// `A = [[1, 0], [1, 1], [1, -1], [0, -1]]`; `rows` is [`row_scratch`] floats of scratch.
fn output_grad_transform(g: &Shape, dy_n: &[f32], dm: &mut [f32], rows: &mut [f32]) {
    let (th, tw) = tiles(g);
    let (h, w, t) = (g.h, g.w, th * tw);
    let point = g.cout * t;
    // the tile row's two dy rows, as even and odd columns (tw each, zero beyond w)
    let (d, rest) = rows.split_at_mut(4 * tw);
    let a = &mut rest[..2 * tw];
    for (co, plane) in dy_n.chunks_exact(h * w).enumerate() {
        for ty in 0..th {
            d.fill(0.0);
            for (r, dr) in d.chunks_exact_mut(2 * tw).enumerate() {
                let oy = 2 * ty + r;
                if oy < h {
                    let (even, odd) = dr.split_at_mut(tw);
                    let src = &plane[oy * w..(oy + 1) * w];
                    for (k, v) in src.iter().step_by(2).enumerate() {
                        even[k] = *v;
                    }
                    for (k, v) in src.iter().skip(1).step_by(2).enumerate() {
                        odd[k] = *v;
                    }
                }
            }
            let (top, bottom) = d.split_at(2 * tw);
            let at = co * t + ty * tw;
            // A down: [top, top + bottom, top - bottom, -bottom] (even and odd columns)
            for r in 0..4 {
                grad_down(a, top, bottom, r);
                let (even, odd) = a.split_at(tw);
                let mut out = dm[r * 4 * point..].chunks_mut(point);
                let mut next = || &mut out.next().expect("four points a row")[at..at + tw];
                // ... then across: [even, even + odd, even - odd, -odd]
                grad_across([next(), next(), next(), next()], even, odd);
            }
        }
    }
}

/// Row `r` of `A` applied down a tile row: `[top, top + bottom, top - bottom, -bottom]`.
fn grad_down(a: &mut [f32], top: &[f32], bottom: &[f32], r: usize) {
    let bottom = &bottom[..top.len()];
    let a = &mut a[..top.len()];
    for k in 0..a.len() {
        a[k] = match r {
            0 => top[k],
            1 => top[k] + bottom[k],
            2 => top[k] - bottom[k],
            _ => -bottom[k],
        };
    }
}

simd::vectorised!(
    /// `A` applied across a row of tiles into the four points of one row.
    fn grad_across / grad_across_at(out: [&mut [f32]; 4], even: &[f32], odd: &[f32]) = grad_across_body
);

#[inline(always)]
fn grad_across_body(out: [&mut [f32]; 4], even: &[f32], odd: &[f32]) {
    let n = even.len();
    let [o0, o1, o2, o3] = out;
    let (o0, o1, o2, o3) = (&mut o0[..n], &mut o1[..n], &mut o2[..n], &mut o3[..n]);
    let odd = &odd[..n];
    for k in 0..n {
        o0[k] = even[k];
        o1[k] = even[k] + odd[k];
        o2[k] = even[k] - odd[k];
        o3[k] = -odd[k];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::kernels::simd::{Level, supported};
    use crate::engine::kernels::test_data::data;

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    /// The transform passes at one level: every output, in one vector.
    fn passes(level: Level, n: usize) -> Vec<f32> {
        fn quad(out: &mut [Vec<f32>]) -> [&mut [f32]; 4] {
            let [a, b, c, e] = out else {
                unreachable!("four rows")
            };
            [&mut a[..], &mut b[..], &mut c[..], &mut e[..]]
        }
        let ins: Vec<Vec<f32>> = (0..4).map(|i| data(n + 1, i)).collect();
        let d = [&ins[0][..n], &ins[1][..n], &ins[2][..n], &ins[3][..n]];
        let mut out = vec![vec![0.0f32; n]; 4];
        let mut all = Vec::new();
        column_pass_at(level, quad(&mut out), d);
        all.extend(out.concat());
        row_pass_at(level, quad(&mut out), &ins[0], &ins[1]);
        all.extend(out.concat());
        grad_across_at(level, quad(&mut out), &ins[2][..n], &ins[3][..n]);
        all.extend(out.concat());
        for first in [true, false] {
            tile_down_at(level, &mut out[0], d, first);
            all.extend(&out[0]);
        }
        let (even, rest) = out.split_at_mut(1);
        tile_across_at(level, &mut even[0], &mut rest[0], d, 0.25);
        all.extend(out[0].iter().chain(&out[1]));
        all
    }

    /// Every build of the transform passes this CPU runs gives the baseline
    /// build's bits, at lengths with and without a tail past the vectors.
    #[test]
    fn every_vector_level_gives_the_baseline_bits() {
        for n in [1usize, 7, 16, 33, 100] {
            let want = bits(&passes(Level::Baseline, n));
            for level in supported() {
                assert_eq!(bits(&passes(level, n)), want, "{level:?}, n {n}");
            }
        }
    }
}

//! Winograd's F(2x2, 3x3) for the forward of 3 x 3, stride-1, pad-1 convolutions
//! with many channels: each 2 x 2 output tile comes from a 4 x 4 input tile through
//! 16 elementwise products in the transformed domain, so the products do 16 multiplies
//! per tile and channel pair where im2col + gemm does 36. Per sample:
//!
//! - the input tiles `d` become `V = B^T d B` (`[16, cin, tiles]`),
//! - the kernels `g` become `U = G g G^T` (`[16, cout, cin]`, once per call),
//! - 16 gemm products `M_xi = U_xi V_xi` (`[cout, tiles]` each),
//! - each output tile is `A^T M A`, plus the bias.
//!
//! The transforms add and halve only (the points 0, 1, -1 and infinity), so the result
//! stays within float32 rounding of the direct sum (tested against float64 in `conv.rs`).

use super::buffer::with_scratch;
use super::conv::{ConvGeom, per_sample, use_outer_parallelism};
use super::matmul::{View, matmul};
use super::simd;
use std::mem::MaybeUninit;

/// The transformed domain's size: 4 x 4 points.
const POINTS: usize = 16;

/// Channels below which the im2col product stays faster (its gemm then has few terms
/// per output and Winograd's 16 products fewer still).
const MIN_CHANNELS: usize = 128;

/// Whether [`forward`] takes this convolution.
pub fn applies(g: &ConvGeom) -> bool {
    g.k == 3
        && g.stride == 1
        && g.pad == [1; 4]
        && g.cin >= MIN_CHANNELS
        && g.cout >= MIN_CHANNELS
        && g.h.div_ceil(2) * g.w.div_ceil(2) >= MIN_TILES
}

/// Tiles per sample below which the 16 products are too narrow for gemm's
/// 64-position micro-kernel.
const MIN_TILES: usize = 64;

/// Tiles down and across: `ceil(h / 2)`, `ceil(w / 2)`.
fn tiles(g: &ConvGeom) -> (usize, usize) {
    (g.h.div_ceil(2), g.w.div_ceil(2))
}

/// `U = G g G^T` for every kernel: `[16, cout, cin]`.
fn weight_transform(g: &ConvGeom, weight: &[f32]) -> Vec<f32> {
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

/// Scratch floats [`input_transform`] needs: four input rows and four transformed
/// rows, each split into even and odd padded columns.
fn row_scratch(tw: usize) -> usize {
    16 * (tw + 2)
}

/// `V = B^T d B` for every tile of one sample `x_n` (`[cin, h, w]`) into `v`
/// (`[16, cin, tiles]`), `rows` being [`row_scratch`] floats of scratch.
fn input_transform(g: &ConvGeom, x_n: &[f32], v: &mut [f32], rows: &mut [f32]) {
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
                row_pass(next(), next(), next(), next(), even, odd);
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

simd::avx2!(
    /// `B^T d` down four rows, elementwise: `[d0 - d2, d1 + d2, d2 - d1, d1 - d3]`.
    fn column_pass(b: [&mut [f32]; 4], d: [&[f32]; 4]) = column_pass_body
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

simd::avx2!(
    /// `B` across a row of tiles, from the row's even and odd padded columns: tile
    /// `k` covers even `k, k + 1` and odd `k, k + 1`.
    fn row_pass(
        v0: &mut [f32],
        v1: &mut [f32],
        v2: &mut [f32],
        v3: &mut [f32],
        even: &[f32],
        odd: &[f32],
    ) = row_pass_body
);

#[inline(always)]
fn row_pass_body(
    v0: &mut [f32],
    v1: &mut [f32],
    v2: &mut [f32],
    v3: &mut [f32],
    even: &[f32],
    odd: &[f32],
) {
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
/// `y_n` (`[cout, h, w]`) is written whole; `rows` is `4 * tiles across` of scratch.
fn output_transform(
    g: &ConvGeom,
    m: &[f32],
    bias: Option<&[f32]>,
    y_n: &mut [MaybeUninit<f32>],
    rows: &mut [f32],
) {
    let (th, tw) = tiles(g);
    let (h, w, t) = (g.h, g.w, th * tw);
    let point = g.cout * t;
    let (top, bottom) = rows.split_at_mut(2 * tw);
    for (co, y_plane) in y_n.chunks_exact_mut(h * w).enumerate() {
        let b = bias.map_or(0.0, |b| b[co]);
        for ty in 0..th {
            let at = co * t + ty * tw;
            let p: [&[f32]; 16] = std::array::from_fn(|i| &m[i * point + at..i * point + at + tw]);
            // A^T down (rows 0 and 1 of the tile), then across into even and odd outputs
            let (top_even, top_odd) = top.split_at_mut(tw);
            out_pass(top_even, top_odd, &p, 0, b);
            let (bottom_even, bottom_odd) = bottom.split_at_mut(tw);
            out_pass(bottom_even, bottom_odd, &p, 1, b);
            for (r, (even, odd)) in [(&*top_even, &*top_odd), (&*bottom_even, &*bottom_odd)]
                .into_iter()
                .enumerate()
            {
                let oy = 2 * ty + r;
                if oy >= h {
                    continue;
                }
                let row = &mut y_plane[oy * w..(oy + 1) * w];
                for (pair, (e, o)) in row.chunks_mut(2).zip(even.iter().zip(odd)) {
                    pair[0].write(*e);
                    if let Some(second) = pair.get_mut(1) {
                        second.write(*o);
                    }
                }
            }
        }
    }
}

/// One output row of a row of tiles (`r` 0: `m0 + m1 + m2`, 1: `m1 - m2 - m3` down),
/// across into its even and odd columns, plus `b`.
fn out_pass(even: &mut [f32], odd: &mut [f32], p: &[&[f32]; 16], r: usize, b: f32) {
    let down = |c: usize, k: usize| {
        let (m0, m1, m2, m3) = (p[c][k], p[4 + c][k], p[8 + c][k], p[12 + c][k]);
        if r == 0 { m0 + m1 + m2 } else { m1 - m2 - m3 }
    };
    for k in 0..even.len() {
        let (a0, a1, a2, a3) = (down(0, k), down(1, k), down(2, k), down(3, k));
        even[k] = a0 + a1 + a2 + b;
        odd[k] = a1 - a2 - a3 + b;
    }
}

/// Forward: `x [n, cin, h, w]`, `weight [cout, cin, 3, 3]`, `bias [cout]` ->
/// `[n, cout, h, w]`, for a convolution [`applies`] accepts.
pub fn forward(g: &ConvGeom, x: &[f32], weight: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    assert!(
        g.k == 3 && g.stride == 1 && g.pad == [1; 4],
        "Winograd F(2x2, 3x3) takes 3 x 3, stride-1, pad-1 convolutions"
    );
    assert_eq!(x.len(), g.n * g.cin * g.h * g.w, "input size");
    assert_eq!(weight.len(), g.cout * g.cin * 9, "weight size");
    let (th, tw) = tiles(g);
    let t = th * tw;
    let u = weight_transform(g, weight);
    let outer = use_outer_parallelism(g.n);
    let (v_len, m_len, row_len) = (POINTS * g.cin * t, POINTS * g.cout * t, row_scratch(tw));
    let one = |y_n: &mut [MaybeUninit<f32>], x_n: &[f32]| {
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
            output_transform(g, m, bias, y_n, row);
        });
    };
    let (input_len, output_len) = (g.cin * g.h * g.w, g.cout * g.h * g.w);
    // SAFETY: the output transform writes every position of its sample (the tiles
    // cover `0..h` x `0..w`).
    unsafe { per_sample(g.n, output_len, x, input_len, outer, one) }
}

//! Fused GroupNorm (+ optional SiLU) on host memory: forward and backward in one
//! pass each, parallel over (sample, group).
//!
//! Layout is `[n, c, s]` contiguous f32 (`s` = spatial size). For each sample and
//! group of `c / g` channels, `xh = (x - mean) * rstd` with the biased variance
//! (as torch), `y = gamma_c * xh + beta_c`, and the output is `y` or `silu(y)`.
//! Statistics are accumulated in f64.

use super::buffer::{assume_init, written_with};
use super::exp::exp_fast;
use super::lane_sums::{FLUSH, LANES, lane_sums, lane_sums2, lane_total};
use super::simd::vectorised;
use std::mem::MaybeUninit;

/// Shape of one fused GroupNorm call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GnShape {
    /// Batch size.
    pub n: usize,
    /// Channels.
    pub c: usize,
    /// Spatial elements per channel (h * w).
    pub s: usize,
    /// Groups; divides `c`.
    pub groups: usize,
}

impl GnShape {
    /// Elements in one (sample, group) block.
    pub fn block(&self) -> usize {
        self.c / self.groups * self.s
    }
}

#[inline(always)]
fn sigmoid(v: f32) -> f32 {
    1.0 / (1.0 + exp_fast(-v))
}

/// `(sum (x - m), sum (x - m)^2)` over `values`: f32 lanes over runs of
/// [`FLUSH`] elements, carried across runs in f64.
#[inline(always)]
fn centred_sums(values: &[f32], m: f32) -> (f64, f64) {
    let (mut sa, mut sb) = (0.0f64, 0.0f64);
    for run in values.chunks(FLUSH) {
        // two loops over the run, not one: one loop with both sums was
        // compiled into scalar loads paired as (d, d * d)
        let a = lane_sums(run, |v| v - m);
        let b = lane_sums(run, |v| (v - m) * (v - m));
        for &v in run.chunks_exact(LANES).remainder() {
            let d = v - m;
            sa += d as f64;
            sb += (d * d) as f64;
        }
        sa += lane_total(a);
        sb += lane_total(b);
    }
    (sa, sb)
}

/// Values of a block averaged for the first guess of its mean.
const PROBES: usize = 64;

/// Mean and reciprocal standard deviation of one (sample, group) block.
///
/// Sums of deviations from a shift, less the square of their mean: exact to
/// f32 precision when the shift lies within about a standard deviation of
/// the mean, with an error that grows with the square of the distance (a
/// shift at a flat image's border loses all precision). The shift is the
/// mean of [`PROBES`] evenly spaced values; when the sums show it was too far
/// (its squared distance over a quarter of the mean square), a second pass
/// shifts by the mean just found, so the result is always as stable as the
/// two-pass algorithm's, at the cost of one pass in the common case.
#[inline(always)]
fn block_stats(xb: &[f32], eps: f64) -> [f32; 2] {
    let len = xb.len() as f64;
    let probes = xb.iter().step_by(xb.len().div_ceil(PROBES).max(1));
    let guess = probes.clone().map(|&v| v as f64).sum::<f64>() / probes.count() as f64;
    let mut shift = guess as f32;
    for pass in 0..2 {
        // the block's channels lie one after another: one run over all of it
        let (dev, sq) = centred_sums(xb, shift);
        let (dev, sq) = (dev / len, sq / len);
        let mean = shift as f64 + dev;
        if pass == 0 && dev * dev > 0.25 * sq {
            shift = mean as f32;
            continue;
        }
        let var = (sq - dev * dev).max(0.0);
        return [mean as f32, (1.0 / (var + eps).sqrt()) as f32];
    }
    unreachable!("the second pass returns")
}

vectorised!(
    /// One (sample, group) block of the forward pass; returns `[mean, rstd]`.
    #[inline(never)]
    fn forward_block / forward_block_at(
        o: &mut [MaybeUninit<f32>],
        xb: &[f32],
        gamma: &[f32],
        beta: &[f32],
        s: usize,
        eps: f64,
        silu: bool,
    ) -> [f32; 2] = forward_block_body
);

#[inline(always)]
fn forward_block_body(
    o: &mut [MaybeUninit<f32>],
    xb: &[f32],
    gamma: &[f32],
    beta: &[f32],
    s: usize,
    eps: f64,
    silu: bool,
) -> [f32; 2] {
    let [mean, rstd] = block_stats(xb, eps);
    for (k, (orow, xr)) in o.chunks_mut(s).zip(xb.chunks(s)).enumerate() {
        let (a, b) = (gamma[k] * rstd, beta[k] - gamma[k] * rstd * mean);
        if silu {
            for (ov, &xv) in orow.iter_mut().zip(xr) {
                let y = a * xv + b;
                ov.write(y * sigmoid(y));
            }
        } else {
            for (ov, &xv) in orow.iter_mut().zip(xr) {
                ov.write(a * xv + b);
            }
        }
    }
    [mean, rstd]
}

/// Forward. Returns the output and `(mean, rstd)` per (sample, group), row-major.
pub fn forward(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    shape: GnShape,
    eps: f64,
    silu: bool,
) -> (Vec<f32>, Vec<[f32; 2]>) {
    let block = shape.block();
    let cpg = shape.c / shape.groups;
    let mut stats = vec![[0.0f32; 2]; shape.n * shape.groups];
    // SAFETY: `forward_block` writes every element of its block.
    let out = unsafe {
        written_with(
            x.len(),
            block,
            &mut stats,
            true,
            || (),
            |_, i, o, st| {
                let ch = (i % shape.groups) * cpg..(i % shape.groups + 1) * cpg;
                let xb = &x[i * block..(i + 1) * block];
                st[0] = forward_block(o, xb, &gamma[ch.clone()], &beta[ch], shape.s, eps, silu);
            },
        )
    };
    (out, stats)
}

vectorised!(
    /// One (sample, group) block of the backward pass. Writes `dx` and
    /// `(sum dy * xh, sum dy)` per channel of the group into `part`.
    #[inline(never)]
    #[allow(clippy::too_many_arguments)]
    fn backward_block / backward_block_at(
        dxb: &mut [MaybeUninit<f32>],
        xb: &[f32],
        dzb: &[f32],
        gamma: &[f32],
        beta: &[f32],
        stats: [f32; 2],
        s: usize,
        silu: bool,
        part: &mut [[f64; 2]],
    ) = backward_block_body
);

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn backward_block_body(
    dxb: &mut [MaybeUninit<f32>],
    xb: &[f32],
    dzb: &[f32],
    gamma: &[f32],
    beta: &[f32],
    [mean, rstd]: [f32; 2],
    s: usize,
    silu: bool,
    part: &mut [[f64; 2]],
) {
    // pass 1: dy into dx, with the per-channel sums of dy * xh and dy
    let (mut m1, mut m2) = (0.0f64, 0.0f64);
    for (k, ((drow, xr), dzr)) in dxb
        .chunks_mut(s)
        .zip(xb.chunks(s))
        .zip(dzb.chunks(s))
        .enumerate()
    {
        let (gm, bt) = (gamma[k], beta[k]);
        // the gradient at the norm's output `y` (through the SiLU when fused)
        let dy_of = |xv: f32, dzv: f32| {
            if silu {
                let y = gm * ((xv - mean) * rstd) + bt;
                let sg = sigmoid(y);
                dzv * sg * (1.0 + y * (1.0 - sg))
            } else {
                dzv
            }
        };
        // dy first, elementwise; then its sums in separate loops (one loop
        // doing all three was compiled into scalar loads and inserts)
        for ((d, &xv), &zv) in drow.iter_mut().zip(xr).zip(dzr) {
            d.write(dy_of(xv, zv));
        }
        // SAFETY: the loop above wrote every element of the row.
        let drow = unsafe { assume_init(drow) };
        let xh_times = |dy: f32, xv: f32| dy * ((xv - mean) * rstd);
        let (mut g, mut b) = (0.0f64, 0.0f64);
        for (drun, xrun) in drow.chunks(FLUSH).zip(xr.chunks(FLUSH)) {
            let dg = lane_sums2(drun, xrun, xh_times);
            let db = lane_sums(drun, |dy| dy);
            let tail = drun.len() / LANES * LANES;
            for (&dy, &xv) in drun[tail..].iter().zip(&xrun[tail..]) {
                g += xh_times(dy, xv) as f64;
                b += dy as f64;
            }
            g += lane_total(dg);
            b += lane_total(db);
        }
        part[k] = [g, b];
        // dxh = dy * gamma, so its sums are gamma times these
        m1 += gm as f64 * b;
        m2 += gm as f64 * g;
    }
    let len = xb.len() as f64;
    let (m1, m2) = ((m1 / len) as f32, (m2 / len) as f32);
    // SAFETY: pass 1 wrote every element (its runs cover each row).
    let dxb = unsafe { assume_init(dxb) };
    // pass 2: dx = rstd * (gamma dy - mean(dxh) - xh * mean(dxh xh))
    for (k, (drow, xr)) in dxb.chunks_mut(s).zip(xb.chunks(s)).enumerate() {
        let gm = gamma[k];
        for (d, &xv) in drow.iter_mut().zip(xr) {
            let xh = (xv - mean) * rstd;
            *d = rstd * (gm * *d - m1 - xh * m2);
        }
    }
}

/// Gradients of [`forward`]: `(dx, dgamma, dbeta)` given the output gradient `dz`.
pub fn backward(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    stats: &[[f32; 2]],
    dz: &[f32],
    shape: GnShape,
    silu: bool,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let block = shape.block();
    let cpg = shape.c / shape.groups;
    // per (sample, channel) partial sums of dy * xh and dy
    let mut partial = vec![[0.0f64; 2]; shape.n * shape.c];
    // SAFETY: `backward_block` writes every element of its block.
    let dx = unsafe {
        written_with(
            x.len(),
            block,
            &mut partial,
            true,
            || (),
            |_, i, dxb, part| {
                let ch = (i % shape.groups) * cpg..(i % shape.groups + 1) * cpg;
                let blk = i * block..(i + 1) * block;
                backward_block(
                    dxb,
                    &x[blk.clone()],
                    &dz[blk],
                    &gamma[ch.clone()],
                    &beta[ch],
                    stats[i],
                    shape.s,
                    silu,
                    part,
                );
            },
        )
    };
    let mut dgamma = vec![0.0f32; shape.c];
    let mut dbeta = vec![0.0f32; shape.c];
    for ch in 0..shape.c {
        let (mut g, mut b) = (0.0f64, 0.0f64);
        for n in 0..shape.n {
            let [pg, pb] = partial[n * shape.c + ch];
            g += pg;
            b += pb;
        }
        dgamma[ch] = g as f32;
        dbeta[ch] = b as f32;
    }
    (dx, dgamma, dbeta)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::kernels::simd::supported;

    /// Float64 reference of the forward pass, straight from the definition.
    fn reference(x: &[f32], gamma: &[f32], beta: &[f32], sh: GnShape, silu: bool) -> Vec<f64> {
        let cpg = sh.c / sh.groups;
        let mut out = vec![0.0f64; x.len()];
        for n in 0..sh.n {
            for g in 0..sh.groups {
                let idx: Vec<usize> = (0..cpg)
                    .flat_map(|k| {
                        let ch = g * cpg + k;
                        (0..sh.s).map(move |j| (n * sh.c + ch) * sh.s + j)
                    })
                    .collect();
                let m = idx.iter().map(|&i| x[i] as f64).sum::<f64>() / idx.len() as f64;
                let v =
                    idx.iter().map(|&i| (x[i] as f64 - m).powi(2)).sum::<f64>() / idx.len() as f64;
                for &i in &idx {
                    let ch = (i / sh.s) % sh.c;
                    let y =
                        gamma[ch] as f64 * (x[i] as f64 - m) / (v + 1e-5).sqrt() + beta[ch] as f64;
                    out[i] = if silu { y / (1.0 + (-y).exp()) } else { y };
                }
            }
        }
        out
    }

    fn data(len: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed) % 1000) as f32 / 250.0 - 2.0)
            .collect()
    }

    /// A block's output buffer before the kernel writes it.
    fn unwritten(len: usize) -> Vec<MaybeUninit<f32>> {
        vec![MaybeUninit::uninit(); len]
    }

    fn loss(out: &[f64], w: &[f32]) -> f64 {
        out.iter().zip(w).map(|(o, &w)| o * w as f64).sum()
    }

    #[test]
    fn sigmoid_saturates_at_both_ends() {
        assert!(sigmoid(200.0) == 1.0 && sigmoid(-200.0) < 1e-37);
    }

    #[test]
    fn forward_matches_a_float64_reference() {
        let sh = GnShape {
            n: 3,
            c: 8,
            s: 10,
            groups: 4,
        };
        let x = data(sh.n * sh.c * sh.s, 7);
        let gamma = data(sh.c, 3);
        let beta = data(sh.c, 5);
        for silu in [false, true] {
            let (out, stats) = forward(&x, &gamma, &beta, sh, 1e-5, silu);
            let want = reference(&x, &gamma, &beta, sh, silu);
            let err = out
                .iter()
                .zip(&want)
                .map(|(a, b)| (*a as f64 - b).abs())
                .fold(0.0, f64::max);
            assert!(err < 1e-5, "silu {silu}: max |diff| {err}");
            assert_eq!(stats.len(), sh.n * sh.groups);
        }
    }

    /// Every gradient against central finite differences of the float64 reference.
    #[test]
    fn backward_matches_finite_differences() {
        let sh = GnShape {
            n: 2,
            c: 4,
            s: 6,
            groups: 2,
        };
        let x = data(sh.n * sh.c * sh.s, 11);
        let gamma = data(sh.c, 13);
        let beta = data(sh.c, 17);
        let w = data(x.len(), 19);
        for silu in [false, true] {
            let (_, stats) = forward(&x, &gamma, &beta, sh, 1e-5, silu);
            let (dx, dg, db) = backward(&x, &gamma, &beta, &stats, &w, sh, silu);
            let h = 1e-3f32;
            let fd = |f: &dyn Fn(f32) -> (Vec<f32>, Vec<f32>, Vec<f32>), v: f32| {
                let (vp, vm) = (v + h, v - h);
                let (xp, gp, bp) = f(vp);
                let (xm, gm, bm) = f(vm);
                (loss(&reference(&xp, &gp, &bp, sh, silu), &w)
                    - loss(&reference(&xm, &gm, &bm, sh, silu), &w))
                    / (vp as f64 - vm as f64)
            };
            let close = |got: f32, want: f64, what: &str| {
                assert!(
                    (got as f64 - want).abs() < 2e-3 * (1.0 + want.abs()),
                    "silu {silu}: {what}: {got} vs {want}"
                );
            };
            for i in 0..x.len() {
                let want = fd(
                    &|v| {
                        let mut x2 = x.clone();
                        x2[i] = v;
                        (x2, gamma.clone(), beta.clone())
                    },
                    x[i],
                );
                close(dx[i], want, &format!("dx[{i}]"));
            }
            for c in 0..sh.c {
                let want = fd(
                    &|v| {
                        let mut g2 = gamma.clone();
                        g2[c] = v;
                        (x.clone(), g2, beta.clone())
                    },
                    gamma[c],
                );
                close(dg[c], want, &format!("dgamma[{c}]"));
                let want = fd(
                    &|v| {
                        let mut b2 = beta.clone();
                        b2[c] = v;
                        (x.clone(), gamma.clone(), b2)
                    },
                    beta[c],
                );
                close(db[c], want, &format!("dbeta[{c}]"));
            }
        }
    }

    /// A flat 256 x 256 image after a zero-padded convolution: a constant
    /// interior with a darker border, the block's first value far from its
    /// mean. Statistics, output and the parameter gradients keep f32
    /// precision against float64 (a one-pass variance shifted by the first
    /// value loses it here).
    #[test]
    fn a_flat_large_image_keeps_float32_precision() {
        let side = 256;
        let sh = GnShape {
            n: 1,
            c: 2,
            s: side * side,
            groups: 1,
        };
        let x: Vec<f32> = (0..sh.n * sh.c * sh.s)
            .map(|i| {
                let (r, c) = ((i % sh.s) / side, i % side);
                let border = r == 0 || c == 0 || r == side - 1 || c == side - 1;
                let ripple = (i as f64 * 0.618_033_988_75).fract() - 0.5;
                if border {
                    0.0
                } else {
                    (0.7 + 1e-3 * ripple) as f32
                }
            })
            .collect();
        let (gamma, beta) = (vec![1.3, 0.7], vec![0.1, -0.2]);
        let (out, stats) = forward(&x, &gamma, &beta, sh, 1e-5, false);
        let want = reference(&x, &gamma, &beta, sh, false);
        let err = out
            .iter()
            .zip(&want)
            .map(|(a, b)| (*a as f64 - b).abs())
            .fold(0.0, f64::max);
        assert!(err < 1e-4, "output: max |diff| {err}");
        let m = x.iter().map(|&v| v as f64).sum::<f64>() / x.len() as f64;
        let v = x.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / x.len() as f64;
        let rstd = 1.0 / (v + 1e-5).sqrt();
        assert!(
            (stats[0][0] as f64 - m).abs() < 1e-6 * m,
            "mean {} vs {m}",
            stats[0][0]
        );
        assert!(
            (stats[0][1] as f64 / rstd - 1.0).abs() < 1e-5,
            "rstd {} vs {rstd}",
            stats[0][1]
        );
        let dz = data(x.len(), 29);
        let (_, dg, db) = backward(&x, &gamma, &beta, &stats, &dz, sh, false);
        for ch in 0..sh.c {
            let rows = ch * sh.s..(ch + 1) * sh.s;
            let b: f64 = dz[rows.clone()].iter().map(|&d| d as f64).sum();
            let g: f64 = rows.map(|i| dz[i] as f64 * (x[i] as f64 - m) * rstd).sum();
            assert!(
                (db[ch] as f64 - b).abs() < 1e-6 * sh.s as f64,
                "dbeta {} vs {b}",
                db[ch]
            );
            assert!(
                (dg[ch] as f64 - g).abs() < 1e-6 * sh.s as f64,
                "dgamma {} vs {g}",
                dg[ch]
            );
        }
    }

    /// A block whose evenly spaced probes all hit outliers: the first guess
    /// of the mean is far off, and the second pass still gives float64's
    /// statistics to f32 precision.
    #[test]
    fn a_misleading_first_guess_takes_the_second_pass() {
        let sh = GnShape {
            n: 1,
            c: 1,
            s: 64 * 64,
            groups: 1,
        };
        let step = sh.s.div_ceil(PROBES);
        let x: Vec<f32> = (0..sh.s)
            .map(|i| {
                let ripple = ((i as f64 * 0.618_033_988_75).fract() - 0.5) as f32;
                if i % step == 0 {
                    500.0
                } else {
                    0.25 + 1e-3 * ripple
                }
            })
            .collect();
        let (mut o, xs) = (unwritten(sh.s), x.iter().map(|&v| v as f64));
        let m = xs.clone().sum::<f64>() / sh.s as f64;
        let v = xs.map(|v| (v - m).powi(2)).sum::<f64>() / sh.s as f64;
        let [mean, rstd] = forward_block_body(&mut o, &x, &[1.0], &[0.0], sh.s, 1e-6, false);
        assert!((mean as f64 - m).abs() < 1e-6 * m, "mean {mean} vs {m}");
        let want = 1.0 / (v + 1e-6).sqrt();
        assert!(
            (rstd as f64 / want - 1.0).abs() < 1e-6,
            "rstd {rstd} vs {want}"
        );
    }

    /// Every build of the blocks this CPU runs (AVX2, AVX-512) gives the
    /// baseline build's bits, tails included.
    #[test]
    fn every_vector_level_gives_the_baseline_bits() {
        for (level, s) in supported()
            .into_iter()
            .flat_map(|l| [1usize, 7, 8, 29, 1030].map(|s| (l, s)))
        {
            let cpg = 3;
            let xb = data(cpg * s, s as u32);
            let dz = data(cpg * s, 99);
            let gamma = data(cpg, 3);
            let beta = data(cpg, 5);
            for silu in [false, true] {
                let (mut o1, mut o2) = (unwritten(xb.len()), unwritten(xb.len()));
                let st1 = forward_block_at(level, &mut o1, &xb, &gamma, &beta, s, 1e-5, silu);
                let st2 = forward_block_body(&mut o2, &xb, &gamma, &beta, s, 1e-5, silu);
                // SAFETY: the blocks write every element of their output.
                let bits = |v: &mut [MaybeUninit<f32>]| {
                    let v = unsafe { assume_init(v) };
                    v.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
                };
                assert_eq!(
                    bits(&mut o1),
                    bits(&mut o2),
                    "forward, {level:?}, s {s}, silu {silu}"
                );
                assert_eq!(st1.map(f32::to_bits), st2.map(f32::to_bits));
                let (mut p1, mut p2) = (vec![[0.0f64; 2]; cpg], vec![[0.0f64; 2]; cpg]);
                let (mut o1, mut o2) = (unwritten(xb.len()), unwritten(xb.len()));
                backward_block_at(
                    level, &mut o1, &xb, &dz, &gamma, &beta, st1, s, silu, &mut p1,
                );
                backward_block_body(&mut o2, &xb, &dz, &gamma, &beta, st2, s, silu, &mut p2);
                assert_eq!(
                    bits(&mut o1),
                    bits(&mut o2),
                    "backward, {level:?}, s {s}, silu {silu}"
                );
                assert_eq!(p1, p2);
            }
        }
    }
}

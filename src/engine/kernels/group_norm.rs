//! Fused GroupNorm (+ optional SiLU) on host memory: forward and backward in one
//! pass each, parallel over (sample, group).
//!
//! Layout is `[n, c, s]` contiguous f32 (`s` = spatial size). For each sample and
//! group of `c / g` channels, `xh = (x - mean) * rstd` with the biased variance
//! (as torch), `y = gamma_c * xh + beta_c`, and the output is `y` or `silu(y)`.
//! Statistics are accumulated in f64.

use rayon::prelude::*;

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

fn sigmoid(v: f32) -> f32 {
    1.0 / (1.0 + (-v).exp())
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
    let s = shape.s;
    let mut out = vec![0.0f32; x.len()];
    let mut stats = vec![[0.0f32; 2]; shape.n * shape.groups];
    out.par_chunks_mut(block)
        .zip(x.par_chunks(block))
        .zip(stats.par_iter_mut())
        .enumerate()
        .for_each(|(i, ((o, xb), st))| {
            let g = i % shape.groups;
            let mean = xb.iter().map(|&v| v as f64).sum::<f64>() / block as f64;
            let var = xb.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / block as f64;
            let rstd = 1.0 / (var + eps).sqrt();
            let (mean, rstd) = (mean as f32, rstd as f32);
            *st = [mean, rstd];
            for k in 0..cpg {
                let ch = g * cpg + k;
                let (a, b) = (gamma[ch] * rstd, beta[ch] - gamma[ch] * rstd * mean);
                let (xr, orow) = (&xb[k * s..(k + 1) * s], &mut o[k * s..(k + 1) * s]);
                if silu {
                    for (ov, &xv) in orow.iter_mut().zip(xr) {
                        let y = a * xv + b;
                        *ov = y * sigmoid(y);
                    }
                } else {
                    for (ov, &xv) in orow.iter_mut().zip(xr) {
                        *ov = a * xv + b;
                    }
                }
            }
        });
    (out, stats)
}

/// Gradients of [`forward`]: `(dx, dgamma, dbeta)` given the output gradient `dz`.
#[allow(clippy::too_many_arguments)]
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
    let s = shape.s;
    let mut dx = vec![0.0f32; x.len()];
    // per (sample, channel) partial sums of dy*xh and dy
    let mut partial = vec![[0.0f64; 2]; shape.n * shape.c];
    dx.par_chunks_mut(block)
        .zip(x.par_chunks(block))
        .zip(dz.par_chunks(block))
        .zip(partial.par_chunks_mut(cpg))
        .enumerate()
        .for_each(|(i, (((dxb, xb), dzb), part))| {
            let g = i % shape.groups;
            let [mean, rstd] = stats[i];
            let (mut sum_dxh, mut sum_dxh_xh) = (0.0f64, 0.0f64);
            for k in 0..cpg {
                let ch = g * cpg + k;
                let (gm, bt) = (gamma[ch], beta[ch]);
                let (mut dg, mut db) = (0.0f64, 0.0f64);
                let (mut s1, mut s2) = (0.0f32, 0.0f32);
                let range = k * s..(k + 1) * s;
                for ((d, &xv), &dzv) in dxb[range.clone()]
                    .iter_mut()
                    .zip(&xb[range.clone()])
                    .zip(&dzb[range])
                {
                    let xh = (xv - mean) * rstd;
                    let dy = if silu {
                        let y = gm * xh + bt;
                        let sg = sigmoid(y);
                        dzv * sg * (1.0 + y * (1.0 - sg))
                    } else {
                        dzv
                    };
                    dg += (dy * xh) as f64;
                    db += dy as f64;
                    let dxh = dy * gm;
                    s1 += dxh;
                    s2 += dxh * xh;
                    *d = dxh;
                }
                sum_dxh += s1 as f64;
                sum_dxh_xh += s2 as f64;
                part[k] = [dg, db];
            }
            let m1 = (sum_dxh / block as f64) as f32;
            let m2 = (sum_dxh_xh / block as f64) as f32;
            for (d, &xv) in dxb.iter_mut().zip(xb) {
                let xh = (xv - mean) * rstd;
                *d = rstd * (*d - m1 - xh * m2);
            }
        });
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

    fn loss(out: &[f64], w: &[f32]) -> f64 {
        out.iter().zip(w).map(|(o, &w)| o * w as f64).sum()
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
}

//! Scaled dot-product attention on host memory, forward and backward, one
//! sample per rayon job.
//!
//! `q`, `k`, `v` are `[n, len, c]` with `heads` heads side by side in the
//! channels (head `h` is channels `h * d .. (h + 1) * d`, `d = c / heads`).
//! Per sample and head, `P = softmax(scale Q K^T)` row by row (`scale =
//! 1 / sqrt(d)`) and `O = P V`, written into the head's channels of `out [n,
//! len, c]`: no head is split off into a tensor of its own and no copy joins
//! them again. The forward keeps `P` (`[n, heads, len, len]`) for the backward:
//! `dV = P^T dO`, `dP = dO V^T`, `dS = scale P * (dP - rowsum(dP * P))`,
//! `dQ = dS K`, `dK = dS^T Q`.

use super::buffer::{assume_init, per_sample_into, use_outer_parallelism, with_scratch};
use super::exp::exp_fast;
use super::lane_sums;
use super::matmul::{View, matmul, matmul_strided_uninit};
use super::simd::vectorised;

/// Sizes of one attention call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttnShape {
    /// Batch size.
    pub n: usize,
    /// Sequence length (pixels of the plane).
    pub len: usize,
    /// Channels, all heads together.
    pub c: usize,
    /// Heads; divides `c`.
    pub heads: usize,
}

impl AttnShape {
    /// Channels per head.
    fn d(&self) -> usize {
        self.c / self.heads
    }

    /// Floats of one sample of `q`, `k`, `v` or the output.
    fn sample(&self) -> usize {
        self.len * self.c
    }

    /// Floats of one sample's attention weights (all heads).
    fn probs(&self) -> usize {
        self.heads * self.len * self.len
    }

    /// `1 / sqrt(d)`, as the f32 burn's `scores * (1.0 / sqrt(d))` multiplies by.
    fn scale(&self) -> f32 {
        (1.0 / (self.d() as f64).sqrt()) as f32
    }

    fn check(&self, tensors: &[&[f32]]) {
        assert!(
            self.heads > 0 && self.c.is_multiple_of(self.heads),
            "{} heads do not divide {} channels",
            self.heads,
            self.c
        );
        for t in tensors {
            assert_eq!(t.len(), self.n * self.sample(), "attention input size");
        }
    }
}

/// Head `h` of one sample `[len, c]`: a `[len, d]` view.
fn head<'a>(s: &AttnShape, x_n: &'a [f32], h: usize) -> View<'a> {
    View::strided_rows(&x_n[h * s.d()..], s.len, s.d(), s.c)
}

vectorised!(
    /// `row <- softmax(scale * row)`, the sum carried in f64.
    fn softmax_row / softmax_row_at(row: &mut [f32], scale: f32) = softmax_body
);

#[inline(always)]
fn softmax_body(row: &mut [f32], scale: f32) {
    // scale > 0 keeps the order: the largest scaled value is the largest value, scaled
    let shift = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) * scale;
    row.iter_mut()
        .for_each(|v| *v = exp_fast(*v * scale - shift));
    let inv = (1.0 / lane_sums::sum(row)) as f32;
    row.iter_mut().for_each(|v| *v *= inv);
}

/// `dS` of one row from `dP` (in `g`) and `P`: `scale p (dp - <dp, p>)`.
fn softmax_grad_row(g: &mut [f32], p: &[f32], scale: f32) {
    let dot: f64 = g.iter().zip(p).map(|(&a, &b)| a as f64 * b as f64).sum();
    let dot = dot as f32;
    g.iter_mut()
        .zip(p)
        .for_each(|(g, &p)| *g = scale * p * (*g - dot));
}

/// Forward: `(out [n, len, c], probs [n, heads, len, len])`.
pub fn forward(s: &AttnShape, q: &[f32], k: &[f32], v: &[f32]) -> (Vec<f32>, Vec<f32>) {
    s.check(&[q, k, v]);
    let (len, c, d, scale) = (s.len, s.c, s.d(), s.scale());
    let outer = use_outer_parallelism(s.n);
    let one = |i: usize, [out_i, p_i]: [&mut [std::mem::MaybeUninit<f32>]; 2]| {
        let at = i * s.sample()..(i + 1) * s.sample();
        let (q_i, k_i, v_i) = (&q[at.clone()], &k[at.clone()], &v[at]);
        for (h, p) in p_i.chunks_exact_mut(len * len).enumerate() {
            matmul_strided_uninit(p, len, head(s, q_i, h), head(s, k_i, h).t(), !outer);
            // SAFETY: the product wrote the whole `[len, len]` block.
            let p = unsafe { assume_init(p) };
            p.chunks_exact_mut(len)
                .for_each(|row| softmax_row(row, scale));
            let p = View::rows(p, len, len);
            matmul_strided_uninit(&mut out_i[h * d..], c, p, head(s, v_i, h), !outer);
        }
    };
    // SAFETY: each head writes its `[len, len]` weights and its `[len, d]`
    // block of the output; the heads' blocks cover every channel.
    let [out, probs] = unsafe { per_sample_into(s.n, [s.sample(), s.probs()], outer, one) };
    (out, probs)
}

/// Backward: `[dq, dk, dv]`, each `[n, len, c]`, from the output gradient
/// `dout` and the forward's `probs`.
pub fn backward(
    s: &AttnShape,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    probs: &[f32],
    dout: &[f32],
) -> [Vec<f32>; 3] {
    s.check(&[q, k, v, dout]);
    assert_eq!(probs.len(), s.n * s.probs(), "attention weights size");
    let (len, c, d, scale) = (s.len, s.c, s.d(), s.scale());
    let outer = use_outer_parallelism(s.n);
    let one = |i: usize, [dq_i, dk_i, dv_i]: [&mut [std::mem::MaybeUninit<f32>]; 3]| {
        let at = i * s.sample()..(i + 1) * s.sample();
        let (q_i, k_i, v_i, do_i) = (&q[at.clone()], &k[at.clone()], &v[at.clone()], &dout[at]);
        let p_i = &probs[i * s.probs()..(i + 1) * s.probs()];
        with_scratch(len * len, |ds| {
            for (h, p) in p_i.chunks_exact(len * len).enumerate() {
                let (p_view, do_h) = (View::rows(p, len, len), head(s, do_i, h));
                matmul_strided_uninit(&mut dv_i[h * d..], c, p_view.t(), do_h, !outer);
                matmul(ds, do_h, head(s, v_i, h).t(), false, !outer);
                ds.chunks_exact_mut(len)
                    .zip(p.chunks_exact(len))
                    .for_each(|(g, p)| softmax_grad_row(g, p, scale));
                let ds = View::rows(ds, len, len);
                matmul_strided_uninit(&mut dq_i[h * d..], c, ds, head(s, k_i, h), !outer);
                matmul_strided_uninit(&mut dk_i[h * d..], c, ds.t(), head(s, q_i, h), !outer);
            }
        });
    };
    // SAFETY: each head writes its `[len, d]` block of all three gradients;
    // the heads' blocks cover every channel.
    unsafe { per_sample_into(s.n, [s.sample(); 3], outer, one) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::kernels::simd::{Level, supported};
    use crate::engine::kernels::test_data::data;

    /// Float64 attention: `out [n, len, c]`.
    fn reference(s: &AttnShape, q: &[f64], k: &[f64], v: &[f64]) -> Vec<f64> {
        let (len, c, d) = (s.len, s.c, s.d());
        let scale = 1.0 / (d as f64).sqrt();
        let mut out = vec![0.0; s.n * s.sample()];
        for i in 0..s.n {
            for h in 0..s.heads {
                let at = |x: &[f64], r: usize, j: usize| x[i * s.sample() + r * c + h * d + j];
                for r in 0..len {
                    let scores: Vec<f64> = (0..len)
                        .map(|t| scale * (0..d).map(|j| at(q, r, j) * at(k, t, j)).sum::<f64>())
                        .collect();
                    let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = scores.iter().map(|x| (x - max).exp()).collect();
                    let total: f64 = e.iter().sum();
                    for j in 0..d {
                        out[i * s.sample() + r * c + h * d + j] =
                            (0..len).map(|t| e[t] / total * at(v, t, j)).sum();
                    }
                }
            }
        }
        out
    }

    fn wide(x: &[f32]) -> Vec<f64> {
        x.iter().map(|&v| v as f64).collect()
    }

    fn shapes() -> [AttnShape; 3] {
        [
            AttnShape {
                n: 3,
                len: 7,
                c: 6,
                heads: 2,
            },
            AttnShape {
                n: 1,
                len: 49,
                c: 8,
                heads: 1,
            },
            AttnShape {
                n: 2,
                len: 20,
                c: 12,
                heads: 3,
            },
        ]
    }

    #[test]
    fn forward_matches_a_float64_reference() {
        for s in shapes() {
            let len = s.n * s.sample();
            let (q, k, v) = (data(len, 1), data(len, 2), data(len, 3));
            let (out, probs) = forward(&s, &q, &k, &v);
            let want = reference(&s, &wide(&q), &wide(&k), &wide(&v));
            for (a, b) in out.iter().zip(&want) {
                assert!(
                    (*a as f64 - b).abs() < 1e-5 * (1.0 + b.abs()),
                    "{s:?}: {a} vs {b}"
                );
            }
            for row in probs.chunks_exact(s.len) {
                let total: f64 = row.iter().map(|&p| p as f64).sum();
                assert!((total - 1.0).abs() < 1e-5, "{s:?}: a row sums to {total}");
            }
        }
    }

    /// The gradients of `L = sum(dout * attention(q, k, v))` against central
    /// differences of the float64 forward.
    #[test]
    fn gradients_match_finite_differences_of_the_float64_forward() {
        let s = AttnShape {
            n: 2,
            len: 5,
            c: 6,
            heads: 2,
        };
        let len = s.n * s.sample();
        let (q, k, v, dout) = (data(len, 4), data(len, 5), data(len, 6), data(len, 7));
        let (_, probs) = forward(&s, &q, &k, &v);
        let grads = backward(&s, &q, &k, &v, &probs, &dout);
        let inputs = [wide(&q), wide(&k), wide(&v)];
        let loss = |x: &[Vec<f64>; 3]| -> f64 {
            let out = reference(&s, &x[0], &x[1], &x[2]);
            out.iter().zip(&dout).map(|(o, &g)| o * g as f64).sum()
        };
        for (which, grad) in grads.iter().enumerate() {
            for e in 0..len {
                let (mut up, mut down) = (inputs.clone(), inputs.clone());
                up[which][e] += 1e-4;
                down[which][e] -= 1e-4;
                let want = (loss(&up) - loss(&down)) / 2e-4;
                let got = grad[e] as f64;
                assert!(
                    (got - want).abs() < 1e-4 * (1.0 + want.abs()),
                    "input {which}, element {e}: {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn every_vector_level_gives_the_baseline_softmax_bits() {
        let x = data(203, 8);
        let mut want = x.clone();
        softmax_row_at(Level::Baseline, &mut want, 0.3);
        for level in supported() {
            let mut got = x.clone();
            softmax_row_at(level, &mut got, 0.3);
            assert_eq!(got, want, "{level:?}");
        }
    }
}

//! Sums of f32 values carried in f64, in a fixed order the compiler
//! vectorises: [`LANES`] f32 partial sums over runs of [`FLUSH`] values, each
//! run's lanes folded pairwise and widened to f64. Every build of it
//! ([`simd::vectorised!`](super::simd)) gives the same bits.

use super::simd::vectorised;

/// Partial sums kept side by side (one AVX2 vector).
pub(super) const LANES: usize = 8;

/// Values summed in f32 lanes before the lane sums move into f64: short
/// enough that the f32 partial sums keep full precision at any length.
pub(super) const FLUSH: usize = 512;

/// The sum of `LANES` partial sums: pairwise in f32 (each holds at most
/// `FLUSH / LANES` terms), then widened.
#[inline(always)]
pub(super) fn lane_total(a: [f32; LANES]) -> f64 {
    let quad = [a[0] + a[4], a[1] + a[5], a[2] + a[6], a[3] + a[7]];
    ((quad[0] + quad[2]) + (quad[1] + quad[3])) as f64
}

/// `f` of each whole [`LANES`]-chunk of `run`, summed lane by lane in f32
/// (the tail past the last whole chunk is left to the caller).
#[inline(always)]
pub(super) fn lane_sums(run: &[f32], f: impl Fn(f32) -> f32) -> [f32; LANES] {
    let mut a = [0.0f32; LANES];
    for c in run.chunks_exact(LANES) {
        for l in 0..LANES {
            a[l] += f(c[l]);
        }
    }
    a
}

/// [`lane_sums`] of `f` over pairs from `run` and `other` (as long as `run`).
#[inline(always)]
pub(super) fn lane_sums2(run: &[f32], other: &[f32], f: impl Fn(f32, f32) -> f32) -> [f32; LANES] {
    let mut a = [0.0f32; LANES];
    for (c, o) in run.chunks_exact(LANES).zip(other.chunks_exact(LANES)) {
        for l in 0..LANES {
            a[l] += f(c[l], o[l]);
        }
    }
    a
}

vectorised!(
    /// The sum of `values` (see the module doc for its order).
    pub(super) fn sum / sum_at(values: &[f32]) -> f64 = sum_body
);

#[inline(always)]
fn sum_body(values: &[f32]) -> f64 {
    let mut total = 0.0f64;
    for run in values.chunks(FLUSH) {
        let a = lane_sums(run, |v| v);
        for &v in run.chunks_exact(LANES).remainder() {
            total += v as f64;
        }
        total += lane_total(a);
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::kernels::simd::{Level, supported};

    #[test]
    fn sums_match_a_float64_sum_at_every_level() {
        for len in [0usize, 1, 7, 8, 9, 511, 512, 513, 5000] {
            let v: Vec<f32> = (0..len)
                .map(|i| ((i * 37) % 101) as f32 / 7.0 - 6.0)
                .collect();
            let want: f64 = v.iter().map(|&x| x as f64).sum();
            let base = sum_at(Level::Baseline, &v);
            assert!(
                (base - want).abs() <= 1e-6 * (1.0 + want.abs()),
                "{len}: {base} vs {want}"
            );
            for level in supported() {
                assert_eq!(
                    sum_at(level, &v).to_bits(),
                    base.to_bits(),
                    "{level:?}, {len}"
                );
            }
        }
    }

    #[test]
    fn a_long_run_of_one_value_keeps_float32_precision() {
        // 2^24 + 1 is not a float32: a plain f32 running sum stops growing at 2^24
        let v = vec![1.0f32; (1 << 24) + 1];
        assert_eq!(sum(&v), (1u64 << 24) as f64 + 1.0);
    }
}

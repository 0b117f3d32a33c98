//! What a convolution adds to its output, and the bias's gradient. The bias is
//! one value per output channel, or one per sample and output channel: a
//! per-sample shift (a ResNet block's time embedding) added in the
//! convolution's own output pass instead of a second pass over the activation,
//! with its gradient summed in the same parallel pass as the channel bias's. A
//! residual (a ResNet block's skip path) joins the same pass.

use super::lane_sums;
use rayon::prelude::*;

/// What a convolution adds to each output channel.
#[derive(Debug, Clone, Copy)]
pub enum Bias<'a> {
    /// Nothing.
    None,
    /// `[cout]`: the same for every sample.
    Shared(&'a [f32]),
    /// `[n, cout]`: a row per sample.
    PerSample(&'a [f32]),
}

impl<'a> Bias<'a> {
    /// Sample `i`'s `cout` values, if there is a bias.
    pub fn of_sample(self, i: usize, cout: usize) -> Option<&'a [f32]> {
        match self {
            Bias::None => None,
            Bias::Shared(b) => Some(&b[..cout]),
            Bias::PerSample(b) => Some(&b[i * cout..(i + 1) * cout]),
        }
    }

    /// Panics unless the values fit a batch of `n` samples of `cout` channels.
    pub fn check(self, n: usize, cout: usize) {
        match self {
            Bias::None => {}
            Bias::Shared(b) => assert_eq!(b.len(), cout, "bias size"),
            Bias::PerSample(b) => assert_eq!(b.len(), n * cout, "per-sample bias size"),
        }
    }
}

/// `y_n += residual`'s sample `i` (as long as `y_n`), when there is a residual.
pub fn add_residual(y_n: &mut [f32], residual: Option<&[f32]>, i: usize) {
    if let Some(r) = residual {
        let r_n = &r[i * y_n.len()..(i + 1) * y_n.len()];
        y_n.iter_mut().zip(r_n).for_each(|(y, &r)| *y += r);
    }
}

/// The bias gradient of `dy [n, cout, positions]`: each channel of each sample
/// summed by [`lane_sums::sum`] (vectorised, carried in f64), one sample per
/// rayon job; `[n, cout]` when the bias is per sample, else summed over the
/// batch (in f64) to `[cout]`.
pub fn grad(dy: &[f32], cout: usize, positions: usize, per_sample: bool) -> Vec<f32> {
    let p = positions.max(1);
    let sample_len = (cout * p).max(1);
    assert_eq!(dy.len() % sample_len, 0, "output gradient size");
    let sums: Vec<Vec<f64>> = dy
        .par_chunks(sample_len)
        .map(|dy_n| dy_n.chunks_exact(p).map(lane_sums::sum).collect())
        .collect();
    if per_sample {
        return sums.into_iter().flatten().map(|v| v as f32).collect();
    }
    let mut db = vec![0.0f64; cout];
    for sample in sums {
        db.iter_mut().zip(sample).for_each(|(a, b)| *a += b);
    }
    db.into_iter().map(|v| v as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::kernels::test_data::data;

    #[test]
    fn each_sample_reads_its_own_row_or_the_shared_one() {
        let rows = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        assert_eq!(Bias::PerSample(&rows).of_sample(1, 3), Some(&rows[3..]));
        assert_eq!(Bias::Shared(&rows[..3]).of_sample(1, 3), Some(&rows[..3]));
        assert_eq!(Bias::None.of_sample(0, 3), None);
    }

    #[test]
    #[should_panic(expected = "per-sample bias size")]
    fn a_per_sample_bias_of_the_wrong_size_is_refused() {
        Bias::PerSample(&[1.0; 5]).check(2, 3);
    }

    #[test]
    fn gradients_are_the_float64_sums_per_sample_and_over_the_batch() {
        let (n, cout, p) = (3, 4, 37);
        let dy = data(n * cout * p, 11);
        let want = |i: usize, c: usize| -> f64 {
            dy[(i * cout + c) * p..][..p]
                .iter()
                .map(|&v| v as f64)
                .sum()
        };
        let per_sample = grad(&dy, cout, p, true);
        let shared = grad(&dy, cout, p, false);
        assert_eq!((per_sample.len(), shared.len()), (n * cout, cout));
        for c in 0..cout {
            for i in 0..n {
                let got = per_sample[i * cout + c] as f64;
                assert!((got - want(i, c)).abs() < 1e-5 * (1.0 + want(i, c).abs()));
            }
            let total: f64 = (0..n).map(|i| want(i, c)).sum();
            assert!((shared[c] as f64 - total).abs() < 1e-5 * (1.0 + total.abs()));
        }
    }
}

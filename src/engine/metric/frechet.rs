//! The Frechet distance between two Gaussians fitted to feature vectors (the "F"
//! of FID), in float64 on the host.
//!
//! `FD = |mu_1 - mu_2|^2 + tr(S_1) + tr(S_2) - 2 tr((S_1^{1/2} S_2 S_1^{1/2})^{1/2})`,
//! with unbiased covariances (divided by `n - 1`) as in pytorch-fid. The trace of
//! the matrix square root is the sum of square roots of the eigenvalues of the
//! symmetric PSD matrix `S_1^{1/2} S_2 S_1^{1/2}`, which equals `tr sqrt(S_1 S_2)`;
//! eigenvalues come from a tridiagonal QL solver, negative round-off clamped to 0.

use super::sym_eigen;
use anyhow::{Result, bail};

/// Mean and covariance of a set of feature vectors.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureStats {
    /// Feature dimension d.
    pub dim: usize,
    /// Number of vectors the statistics were taken over.
    pub count: usize,
    /// `[d]`
    pub mean: Vec<f64>,
    /// Row-major `[d, d]`, unbiased.
    pub cov: Vec<f64>,
}

impl FeatureStats {
    /// Statistics of `count` row-major vectors of dimension `dim`.
    pub fn from_rows(rows: &[f32], dim: usize) -> Result<Self> {
        if dim == 0 || !rows.len().is_multiple_of(dim) {
            bail!("{} values are not rows of dimension {dim}", rows.len());
        }
        let n = rows.len() / dim;
        if n < 2 {
            bail!("feature statistics need at least 2 vectors, got {n}");
        }
        let mut mean = vec![0.0f64; dim];
        for r in rows.chunks(dim) {
            for (m, &v) in mean.iter_mut().zip(r) {
                *m += f64::from(v);
            }
        }
        mean.iter_mut().for_each(|m| *m /= n as f64);
        let mut cov = vec![0.0f64; dim * dim];
        let mut centred = vec![0.0f64; dim];
        for r in rows.chunks(dim) {
            for ((c, &v), m) in centred.iter_mut().zip(r).zip(&mean) {
                *c = f64::from(v) - m;
            }
            for i in 0..dim {
                let ci = centred[i];
                for j in i..dim {
                    cov[i * dim + j] += ci * centred[j];
                }
            }
        }
        for i in 0..dim {
            for j in i..dim {
                let v = cov[i * dim + j] / (n - 1) as f64;
                cov[i * dim + j] = v;
                cov[j * dim + i] = v;
            }
        }
        Ok(Self {
            dim,
            count: n,
            mean,
            cov,
        })
    }
}

/// One side of many Frechet distances, prepared once: the reference's statistics
/// and the square root of its covariance. Bootstrapping the distance to a fixed
/// reference then costs one eigenvalue problem per resample.
#[derive(Debug, Clone)]
pub struct FrechetReference {
    stats: FeatureStats,
    sqrt_cov: Vec<f64>,
    trace: f64,
}

impl FrechetReference {
    /// Prepares the distance to the distribution `stats` describes.
    pub fn new(stats: FeatureStats) -> Result<Self> {
        let d = stats.dim;
        let e = sym_eigen::eigen(&stats.cov, d)?;
        let mut sqrt_cov = vec![0.0; d * d];
        for (k, &val) in e.values.iter().enumerate() {
            let s = val.max(0.0).sqrt();
            for i in 0..d {
                let vik = e.vectors[i * d + k] * s;
                if vik == 0.0 {
                    continue;
                }
                for j in 0..d {
                    sqrt_cov[i * d + j] += vik * e.vectors[j * d + k];
                }
            }
        }
        let trace = trace(&stats.cov, d);
        Ok(Self {
            stats,
            sqrt_cov,
            trace,
        })
    }

    /// The reference's statistics.
    pub fn stats(&self) -> &FeatureStats {
        &self.stats
    }

    /// The Frechet distance from `other` to the reference.
    pub fn distance(&self, other: &FeatureStats) -> Result<f64> {
        let a = &self.stats;
        if a.dim != other.dim {
            bail!("feature dimensions differ: {} vs {}", a.dim, other.dim);
        }
        let d = a.dim;
        let mean_term: f64 = a
            .mean
            .iter()
            .zip(&other.mean)
            .map(|(x, y)| (x - y).powi(2))
            .sum();
        let inner = matmul(&matmul(&self.sqrt_cov, &other.cov, d), &self.sqrt_cov, d);
        let cross: f64 = sym_eigen::eigenvalues(&symmetrize(inner, d), d)?
            .into_iter()
            .map(|e| e.max(0.0).sqrt())
            .sum();
        let fd = mean_term + self.trace + trace(&other.cov, d) - 2.0 * cross;
        if !fd.is_finite() {
            bail!("the Frechet distance is not finite (features contain NaN/inf)");
        }
        Ok(fd.max(0.0))
    }
}

/// The Frechet distance between two feature distributions.
pub fn frechet_distance(a: &FeatureStats, b: &FeatureStats) -> Result<f64> {
    if a.dim != b.dim {
        bail!("feature dimensions differ: {} vs {}", a.dim, b.dim);
    }
    if a.cov.iter().chain(&a.mean).any(|v| !v.is_finite()) {
        bail!("the Frechet distance is not finite (features contain NaN/inf)");
    }
    FrechetReference::new(a.clone())?.distance(b)
}

fn trace(m: &[f64], d: usize) -> f64 {
    (0..d).map(|i| m[i * d + i]).sum()
}

fn matmul(x: &[f64], y: &[f64], d: usize) -> Vec<f64> {
    let mut out = vec![0.0; d * d];
    for i in 0..d {
        for k in 0..d {
            let xik = x[i * d + k];
            if xik == 0.0 {
                continue;
            }
            for j in 0..d {
                out[i * d + j] += xik * y[k * d + j];
            }
        }
    }
    out
}

fn symmetrize(mut m: Vec<f64>, d: usize) -> Vec<f64> {
    for i in 0..d {
        for j in i + 1..d {
            let v = 0.5 * (m[i * d + j] + m[j * d + i]);
            m[i * d + j] = v;
            m[j * d + i] = v;
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(mean: Vec<f64>, cov: Vec<f64>) -> FeatureStats {
        FeatureStats {
            dim: mean.len(),
            count: 100,
            mean,
            cov,
        }
    }

    #[test]
    fn identical_distributions_are_at_distance_zero() {
        let s = stats(vec![1.0, -2.0], vec![2.0, 0.5, 0.5, 1.0]);
        assert!(frechet_distance(&s, &s).unwrap() < 1e-10);
    }

    #[test]
    fn diagonal_case_has_the_closed_form() {
        // FD = |dmu|^2 + sum (sqrt(a_i) - sqrt(b_i))^2 for diagonal covariances
        let a = stats(
            vec![0.0, 0.0, 1.0],
            vec![4.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 9.0],
        );
        let b = stats(
            vec![1.0, 0.0, 1.0],
            vec![1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 4.0],
        );
        let want = 1.0 + (2.0f64 - 1.0).powi(2) + 0.0 + (3.0f64 - 2.0).powi(2);
        let got = frechet_distance(&a, &b).unwrap();
        assert!((got - want).abs() < 1e-9, "{got} vs {want}");
    }

    #[test]
    fn rotation_invariance_on_a_full_covariance() {
        // the same pair rotated by 30 degrees keeps its distance
        let a = stats(vec![0.0, 0.0], vec![3.0, 0.0, 0.0, 1.0]);
        let b = stats(vec![0.5, 0.0], vec![1.0, 0.0, 0.0, 2.0]);
        let (c, s) = (30f64.to_radians().cos(), 30f64.to_radians().sin());
        let rot = |m: &[f64]| {
            let r = [c, -s, s, c];
            let rt = [c, s, -s, c];
            matmul(&matmul(&r, m, 2), &rt, 2)
        };
        let ra = stats(vec![0.0, 0.0], rot(&a.cov));
        let rb = stats(vec![0.5 * c, 0.5 * s], rot(&b.cov));
        let d1 = frechet_distance(&a, &b).unwrap();
        let d2 = frechet_distance(&ra, &rb).unwrap();
        assert!((d1 - d2).abs() < 1e-9, "{d1} vs {d2}");
    }

    #[test]
    fn the_distance_is_symmetric_on_full_and_singular_covariances() {
        // the computation is asymmetric (the square root is taken of one side only),
        // the distance is not; a rank-deficient side (a dead feature) is allowed
        let rows_a: Vec<f32> = (0..200)
            .flat_map(|i| {
                let x = (i as f32 * 0.37).sin();
                let y = (i as f32 * 1.3).cos();
                [x, x + 0.5 * y, 0.2 * y - x, 0.0]
            })
            .collect();
        let rows_b: Vec<f32> = (0..150)
            .flat_map(|i| {
                let x = (i as f32 * 0.91).sin();
                let y = (i as f32 * 0.23).cos();
                [1.0 + y, x * y, 0.3 * x, 0.1 * y]
            })
            .collect();
        let a = FeatureStats::from_rows(&rows_a, 4).unwrap();
        let b = FeatureStats::from_rows(&rows_b, 4).unwrap();
        let ab = frechet_distance(&a, &b).unwrap();
        let ba = frechet_distance(&b, &a).unwrap();
        // a zero eigenvalue's square root turns 1e-16 of round-off into 1e-8
        assert!(ab > 0.1 && (ab - ba).abs() < 1e-7 * ab, "{ab} vs {ba}");
        let reference = FrechetReference::new(b.clone()).unwrap();
        assert_eq!(reference.distance(&a).unwrap(), ba);
        assert!(frechet_distance(&a, &a).unwrap() < 1e-10);
    }

    #[test]
    fn stats_are_unbiased() {
        let rows = [0.0f32, 0.0, 2.0, 2.0];
        let s = FeatureStats::from_rows(&rows, 2).unwrap();
        assert_eq!(s.mean, vec![1.0, 1.0]);
        assert_eq!(s.cov, vec![2.0, 2.0, 2.0, 2.0]);
        assert!(FeatureStats::from_rows(&rows[..2], 2).is_err());
    }
}

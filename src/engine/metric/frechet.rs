//! The Frechet distance between two Gaussians fitted to feature vectors (the "F"
//! of FID), in float64 on the host.
//!
//! `FD = |mu_1 - mu_2|^2 + tr(S_1) + tr(S_2) - 2 tr((S_1^{1/2} S_2 S_1^{1/2})^{1/2})`,
//! with unbiased covariances (divided by `n - 1`) as in pytorch-fid. The trace of
//! the matrix square root is the sum of square roots of the eigenvalues of the
//! symmetric PSD matrix `S_1^{1/2} S_2 S_1^{1/2}`, which equals `tr sqrt(S_1 S_2)`;
//! eigenvalues come from cyclic Jacobi rotations, negative round-off clamped to 0.

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
        if dim == 0 || rows.len() % dim != 0 {
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

/// The Frechet distance between two feature distributions.
pub fn frechet_distance(a: &FeatureStats, b: &FeatureStats) -> Result<f64> {
    if a.dim != b.dim {
        bail!("feature dimensions differ: {} vs {}", a.dim, b.dim);
    }
    let d = a.dim;
    let mean_term: f64 = a
        .mean
        .iter()
        .zip(&b.mean)
        .map(|(x, y)| (x - y).powi(2))
        .sum();
    let trace = |m: &[f64]| (0..d).map(|i| m[i * d + i]).sum::<f64>();
    let sqrt_a = sym_sqrt(&a.cov, d);
    let inner = matmul(&matmul(&sqrt_a, &b.cov, d), &sqrt_a, d);
    let cross: f64 = jacobi_eigenvalues(&symmetrize(inner, d), d)
        .into_iter()
        .map(|e| e.max(0.0).sqrt())
        .sum();
    let fd = mean_term + trace(&a.cov) + trace(&b.cov) - 2.0 * cross;
    if !fd.is_finite() {
        bail!("the Frechet distance is not finite (features contain NaN/inf)");
    }
    Ok(fd.max(0.0))
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

/// Square root of a symmetric PSD matrix through its eigen-decomposition.
fn sym_sqrt(m: &[f64], d: usize) -> Vec<f64> {
    let (vals, vecs) = jacobi(m, d);
    let mut out = vec![0.0; d * d];
    for (k, &val) in vals.iter().enumerate() {
        let s = val.max(0.0).sqrt();
        for i in 0..d {
            let vik = vecs[i * d + k] * s;
            for j in 0..d {
                out[i * d + j] += vik * vecs[j * d + k];
            }
        }
    }
    out
}

fn jacobi_eigenvalues(m: &[f64], d: usize) -> Vec<f64> {
    jacobi(m, d).0
}

/// Cyclic Jacobi: eigenvalues and column eigenvectors (row-major `[d, d]`).
fn jacobi(m: &[f64], d: usize) -> (Vec<f64>, Vec<f64>) {
    let mut a = m.to_vec();
    let mut v = vec![0.0; d * d];
    for i in 0..d {
        v[i * d + i] = 1.0;
    }
    let scale: f64 = a.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-300);
    for _sweep in 0..100 {
        let off: f64 = (0..d)
            .flat_map(|i| (0..d).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * d + j].powi(2))
            .sum::<f64>()
            .sqrt();
        if off <= 1e-15 * scale {
            break;
        }
        for p in 0..d {
            for q in p + 1..d {
                let apq = a[p * d + q];
                if apq.abs() < 1e-300 {
                    continue;
                }
                let theta = (a[q * d + q] - a[p * d + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..d {
                    let akp = a[k * d + p];
                    let akq = a[k * d + q];
                    a[k * d + p] = c * akp - s * akq;
                    a[k * d + q] = s * akp + c * akq;
                }
                for k in 0..d {
                    let apk = a[p * d + k];
                    let aqk = a[q * d + k];
                    a[p * d + k] = c * apk - s * aqk;
                    a[q * d + k] = s * apk + c * aqk;
                }
                for k in 0..d {
                    let vkp = v[k * d + p];
                    let vkq = v[k * d + q];
                    v[k * d + p] = c * vkp - s * vkq;
                    v[k * d + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..d).map(|i| a[i * d + i]).collect(), v)
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
    fn stats_are_unbiased() {
        let rows = [0.0f32, 0.0, 2.0, 2.0];
        let s = FeatureStats::from_rows(&rows, 2).unwrap();
        assert_eq!(s.mean, vec![1.0, 1.0]);
        assert_eq!(s.cov, vec![2.0, 2.0, 2.0, 2.0]);
        assert!(FeatureStats::from_rows(&rows[..2], 2).is_err());
    }
}

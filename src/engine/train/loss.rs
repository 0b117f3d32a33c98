//! The epsilon-prediction objective: `|| eps - eps_theta(sqrt(a_t) x0 + sqrt(1 - a_t) eps, t) ||^2`.

use crate::engine::diffusion::NoiseSchedule;
use crate::engine::model::EpsModel;
use crate::engine::reduce::mean_rows;
use burn::tensor::Tensor;

/// Per-sample mean squared error over all but the batch dimension.
///
/// # Shapes
/// `[n, c, h, w] x2 -> [n]`
pub fn per_sample_mse(pred: Tensor<4>, target: Tensor<4>) -> Tensor<1> {
    let [n, c, h, w] = pred.dims();
    mean_rows((pred - target).square().reshape([n, c * h * w])).reshape([n])
}

/// The noise-prediction loss of each sample at its timestep.
///
/// # Shapes
/// `x0, noise: [n, c, h, w]`, `t: n -> [n]`
pub fn eps_loss_per_sample<M: EpsModel>(
    model: &M,
    schedule: &NoiseSchedule,
    x0: Tensor<4>,
    noise: Tensor<4>,
    t: &[usize],
) -> Tensor<1> {
    let xt = schedule.q_sample(x0, noise.clone(), t);
    let tf: Vec<f32> = t.iter().map(|&v| v as f32).collect();
    per_sample_mse(model.eps(xt, &tf), noise)
}

/// Per-timestep weights of the noise-prediction loss: the reweighting baselines of the
/// paper's Table 1, usable by any finetuning run. Weights are functions of the
/// signal-to-noise ratio `SNR(t) = a_t / (1 - a_t)` of the schedule.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum LossWeighting {
    /// Every timestep weighs 1.
    #[default]
    Uniform,
    /// Min-SNR-gamma (Hang et al., 2023) for noise prediction: `min(SNR, gamma) / SNR`.
    MinSnr {
        /// The clamp gamma (the authors use 5).
        gamma: f64,
    },
    /// P2 weighting (Choi et al., 2022): `1 / (k + SNR)^gamma`.
    P2 {
        /// The exponent gamma (1 in the paper's comparison).
        gamma: f64,
        /// The offset k (1 in the paper's comparison).
        k: f64,
    },
}

impl LossWeighting {
    /// The weight at signal-to-noise ratio `snr`.
    pub fn at_snr(&self, snr: f64) -> f64 {
        match *self {
            Self::Uniform => 1.0,
            Self::MinSnr { gamma } => snr.min(gamma) / snr,
            Self::P2 { gamma, k } => (k + snr).powf(-gamma),
        }
    }

    /// The weight of each timestep of `t`; `None` for uniform weights.
    pub fn weights(&self, schedule: &NoiseSchedule, t: &[usize]) -> Option<Vec<f32>> {
        if *self == Self::Uniform {
            return None;
        }
        Some(
            t.iter()
                .map(|&ti| {
                    let a = schedule.alphas_cumprod[ti];
                    self.at_snr(a / (1.0 - a)) as f32
                })
                .collect(),
        )
    }

    /// Checks the parameters, naming the bad one.
    pub fn validate(&self) -> anyhow::Result<()> {
        match *self {
            Self::Uniform => Ok(()),
            Self::MinSnr { gamma } if !(gamma.is_finite() && gamma > 0.0) => {
                anyhow::bail!("Min-SNR's gamma must be finite and > 0, not {gamma}")
            }
            Self::P2 { gamma, k }
                if !(gamma.is_finite() && gamma >= 0.0 && k.is_finite() && k > 0.0) =>
            {
                anyhow::bail!("P2 weighting needs gamma >= 0 and k > 0, not gamma {gamma}, k {k}")
            }
            _ => Ok(()),
        }
    }
}

impl std::str::FromStr for LossWeighting {
    type Err = anyhow::Error;

    /// `uniform`, `min-snr[:GAMMA]` (gamma 5 by default) or `p2[:GAMMA,K]` (1, 1).
    fn from_str(s: &str) -> anyhow::Result<Self> {
        let (name, params) = s.split_once(':').unwrap_or((s, ""));
        let nums: Vec<f64> = if params.is_empty() {
            Vec::new()
        } else {
            params
                .split(',')
                .map(|v| v.trim().parse::<f64>())
                .collect::<Result<_, _>>()
                .map_err(|_| {
                    anyhow::anyhow!("`{params}` are not numbers in loss weighting `{s}`")
                })?
        };
        let w = match (name.trim(), nums.as_slice()) {
            ("uniform", []) => Self::Uniform,
            ("min-snr", []) => Self::MinSnr { gamma: 5.0 },
            ("min-snr", [gamma]) => Self::MinSnr { gamma: *gamma },
            ("p2", []) => Self::P2 { gamma: 1.0, k: 1.0 },
            ("p2", [gamma, k]) => Self::P2 {
                gamma: *gamma,
                k: *k,
            },
            _ => anyhow::bail!(
                "unknown loss weighting `{s}`: use uniform, min-snr[:GAMMA] or p2[:GAMMA,K]"
            ),
        };
        w.validate()?;
        Ok(w)
    }
}

impl std::fmt::Display for LossWeighting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Uniform => write!(f, "uniform"),
            Self::MinSnr { gamma } => write!(f, "min-snr:{gamma}"),
            Self::P2 { gamma, k } => write!(f, "p2:{gamma},{k}"),
        }
    }
}

/// The mean of per-sample losses `[n]`, each times its weight (the plain mean without weights).
pub fn weighted_mean(per_sample: Tensor<1>, weights: Option<&[f32]>) -> Tensor<1> {
    match weights {
        None => per_sample.mean(),
        Some(w) => {
            let device = per_sample.device();
            let w = Tensor::<1>::from_data(
                burn::tensor::TensorData::new(w.to_vec(), [w.len()]),
                &device,
            );
            (per_sample * w).mean()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_equal_their_formulas() {
        let s = NoiseSchedule::ddpm(1000);
        let t = [0usize, 100, 500, 999];
        let snr: Vec<f64> = t
            .iter()
            .map(|&i| s.alphas_cumprod[i] / (1.0 - s.alphas_cumprod[i]))
            .collect();
        let min_snr = LossWeighting::MinSnr { gamma: 5.0 }
            .weights(&s, &t)
            .unwrap();
        let p2 = LossWeighting::P2 { gamma: 1.0, k: 1.0 }
            .weights(&s, &t)
            .unwrap();
        for i in 0..t.len() {
            let want = if snr[i] > 5.0 { 5.0 / snr[i] } else { 1.0 };
            assert!(
                (f64::from(min_snr[i]) - want).abs() <= 1e-6 * want,
                "t {}: {} vs {want}",
                t[i],
                min_snr[i]
            );
            let want = 1.0 / (1.0 + snr[i]);
            assert!(
                (f64::from(p2[i]) - want).abs() <= 1e-6 * want,
                "t {}: {} vs {want}",
                t[i],
                p2[i]
            );
        }
        // small t has a huge SNR: both schemes weigh it far below 1; t = 999 weighs 1 under Min-SNR
        assert!(min_snr[0] < 1e-3 && p2[0] < 1e-3);
        assert_eq!(min_snr[3], 1.0);
        assert_eq!(LossWeighting::Uniform.weights(&s, &t), None);
        assert!(LossWeighting::MinSnr { gamma: 0.0 }.validate().is_err());
        assert!(LossWeighting::P2 { gamma: 1.0, k: 0.0 }.validate().is_err());
    }

    #[test]
    fn weightings_parse_and_print_back() {
        for (text, want) in [
            ("uniform", LossWeighting::Uniform),
            ("min-snr", LossWeighting::MinSnr { gamma: 5.0 }),
            ("min-snr:3", LossWeighting::MinSnr { gamma: 3.0 }),
            ("p2", LossWeighting::P2 { gamma: 1.0, k: 1.0 }),
            ("p2:0.5,2", LossWeighting::P2 { gamma: 0.5, k: 2.0 }),
        ] {
            let got: LossWeighting = text.parse().unwrap();
            assert_eq!(got, want, "{text}");
            assert_eq!(got.to_string().parse::<LossWeighting>().unwrap(), want);
        }
        for bad in ["snr", "min-snr:x", "min-snr:-1", "p2:1", "uniform:2"] {
            assert!(bad.parse::<LossWeighting>().is_err(), "{bad}");
        }
    }

    #[test]
    fn weighted_mean_weighs_each_sample() {
        let d = burn::tensor::Device::flex();
        let l = Tensor::<1>::from_data(
            burn::tensor::TensorData::new(vec![1.0f32, 2.0, 3.0], [3]),
            &d,
        );
        let plain: f32 = weighted_mean(l.clone(), None).into_scalar();
        let w: f32 = weighted_mean(l, Some(&[1.0, 0.5, 0.0])).into_scalar();
        assert_eq!(plain, 2.0);
        assert_eq!(w, 2.0 / 3.0);
    }
}

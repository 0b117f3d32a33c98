//! The extra finetuning arms a replication can compare beside the main DeMe job and
//! its plain-finetune baseline: the rows of the paper's Table 3 (ablations), sweeps
//! of N and p, and the loss-reweighting baselines of its Table 1. Every arm gets the
//! same budget of optimizer steps as the main job (N x steps per expert), its own
//! folder per seed, and (for DeMe arms) its own merge-weight search.

use crate::engine::train::FinetuneConfig;
use crate::engine::train::loss::LossWeighting;
use anyhow::{Result, bail};
use serde::Serialize;

/// What an arm trains.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum ArmKind {
    /// One model finetuned on all timesteps with this loss weighting (a baseline-only job).
    Plain {
        /// Per-timestep weights of its loss.
        weighting: LossWeighting,
    },
    /// DeMe experts with these settings, merged by a searched weight per expert.
    Deme {
        /// The settings (the seed is set per run).
        config: FinetuneConfig,
    },
}

/// One arm: a name (its folder and row), what the row says, and what it trains.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Arm {
    /// Folder and row name.
    pub name: String,
    /// The row's description.
    pub description: String,
    /// What it trains.
    pub kind: ArmKind,
}

/// `main` with `experts` experts on uniform ranges, each given `main`'s whole
/// budget divided among them.
fn with_experts(main: &FinetuneConfig, experts: usize) -> FinetuneConfig {
    let budget = main.steps_per_expert * main.experts as u64;
    FinetuneConfig {
        experts,
        steps_per_expert: (budget / experts as u64).max(1),
        boundaries: None,
        ..main.clone()
    }
}

/// The rows of the paper's Table 3 beside the full method: N = 1 (one model on all
/// timesteps, with consistency loss and projection), no probabilistic sampling
/// (p = 0), and no consistency loss (lambda = 0).
pub fn ablations(main: &FinetuneConfig) -> Vec<Arm> {
    let n = main.experts;
    vec![
        Arm {
            name: "ablation-n1".into(),
            description: format!(
                "N = 1 with consistency loss{} ({} steps)",
                if main.projection {
                    " and projection"
                } else {
                    ""
                },
                main.steps_per_expert * n as u64
            ),
            kind: ArmKind::Deme {
                config: with_experts(main, 1),
            },
        },
        Arm {
            name: "ablation-p0".into(),
            description: format!(
                "DeMe after merge, N = {n}, without probabilistic sampling (p = 0)"
            ),
            kind: ArmKind::Deme {
                config: FinetuneConfig {
                    p: 0.0,
                    ..main.clone()
                },
            },
        },
        Arm {
            name: "ablation-no-consistency".into(),
            description: format!("DeMe after merge, N = {n}, without consistency loss"),
            kind: ArmKind::Deme {
                config: FinetuneConfig {
                    consistency_weight: 0.0,
                    ..main.clone()
                },
            },
        },
    ]
}

/// The loss-reweighting baselines of the paper's Table 1: plain finetunes with
/// Min-SNR-gamma (gamma 5) and P2 weighting (gamma 1, k 1).
pub fn reweighting(main: &FinetuneConfig) -> Vec<Arm> {
    let steps = main.steps_per_expert * main.experts as u64;
    vec![
        Arm {
            name: "min-snr".into(),
            description: format!("Plain finetuning with Min-SNR-5 weighting ({steps} steps)"),
            kind: ArmKind::Plain {
                weighting: LossWeighting::MinSnr { gamma: 5.0 },
            },
        },
        Arm {
            name: "p2".into(),
            description: format!(
                "Plain finetuning with P2 weighting (gamma 1, k 1; {steps} steps)"
            ),
            kind: ArmKind::Plain {
                weighting: LossWeighting::P2 { gamma: 1.0, k: 1.0 },
            },
        },
    ]
}

/// DeMe over the ranges `boundaries` (`0 = b_0 < ... < b_N = T`, e.g. the
/// conflict-driven ones of `gradsim --suggest-ranges`), with the main job's whole
/// budget divided among its N experts, so that it compares with the main job's
/// ranges at the same total steps.
pub fn ranges(boundaries: &[usize], main: &FinetuneConfig) -> Result<Arm> {
    let experts = boundaries.len().saturating_sub(1);
    if experts == 0 {
        bail!("ranges need at least two boundaries, e.g. 0,350,1000");
    }
    let config = FinetuneConfig {
        boundaries: Some(boundaries.to_vec()),
        ..with_experts(main, experts)
    };
    config.validate()?;
    let list: Vec<String> = boundaries.iter().map(usize::to_string).collect();
    Ok(Arm {
        name: format!("ranges-{}", list.join("-")),
        description: format!(
            "DeMe after merge, N = {experts} on the ranges {} ({} steps each)",
            list.join(", "),
            config.steps_per_expert
        ),
        kind: ArmKind::Deme { config },
    })
}

/// A sweep `n=2,4,8` (number of experts, same total budget) or `p=0,0.1,0.5`
/// (probabilistic-sampling rate): one DeMe arm per value that differs from `main`.
pub fn sweep(spec: &str, main: &FinetuneConfig) -> Result<Vec<Arm>> {
    let Some((key, values)) = spec.split_once('=') else {
        bail!("a sweep is KEY=V1,V2,... with KEY n or p, not `{spec}`");
    };
    let values: Vec<&str> = values
        .split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect();
    if values.is_empty() {
        bail!("the sweep `{spec}` has no values");
    }
    let mut arms = Vec::new();
    for v in values {
        match key.trim() {
            "n" => {
                let Ok(k) = v.parse::<usize>() else {
                    bail!("`{v}` in sweep `{spec}` is not a number of experts");
                };
                let config = with_experts(main, k);
                config.validate()?;
                if k != main.experts {
                    arms.push(Arm {
                        name: format!("sweep-n{k}"),
                        description: format!(
                            "DeMe after merge, N = {k} ({} steps each)",
                            config.steps_per_expert
                        ),
                        kind: ArmKind::Deme { config },
                    });
                }
            }
            "p" => {
                let Ok(p) = v.parse::<f64>() else {
                    bail!("`{v}` in sweep `{spec}` is not a probability");
                };
                let config = FinetuneConfig { p, ..main.clone() };
                config.validate()?;
                if p != main.p {
                    arms.push(Arm {
                        name: format!("sweep-p{v}"),
                        description: format!("DeMe after merge, p = {v}"),
                        kind: ArmKind::Deme { config },
                    });
                }
            }
            other => bail!("unknown sweep key `{other}`: use n or p"),
        }
    }
    Ok(arms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ranges_arm_splits_the_main_budget_over_its_own_ranges() {
        let main = FinetuneConfig {
            experts: 4,
            steps_per_expert: 100,
            ..FinetuneConfig::default()
        };
        let arm = ranges(&[0, 350, 550, 700, 1000], &main).unwrap();
        assert_eq!(arm.name, "ranges-0-350-550-700-1000");
        let ArmKind::Deme { config } = &arm.kind else {
            panic!("a ranges arm is a DeMe arm")
        };
        assert_eq!((config.experts, config.steps_per_expert), (4, 100));
        assert_eq!(
            config.expert_boundaries(),
            vec![0, 350, 550, 700, 1000],
            "the arm trains on its own ranges"
        );
        let three = ranges(&[0, 100, 1000], &main).unwrap();
        let ArmKind::Deme { config } = &three.kind else {
            panic!()
        };
        assert_eq!((config.experts, config.steps_per_expert), (2, 200));
        assert!(ranges(&[0], &main).is_err());
        assert!(
            ranges(&[0, 600, 500, 1000], &main).is_err(),
            "not increasing"
        );
    }

    #[test]
    fn every_arm_gets_the_main_budget() {
        let main = FinetuneConfig {
            experts: 4,
            steps_per_expert: 100,
            ..FinetuneConfig::default()
        };
        let a = ablations(&main);
        let names: Vec<&str> = a.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(
            names,
            ["ablation-n1", "ablation-p0", "ablation-no-consistency"]
        );
        let ArmKind::Deme { config: n1 } = &a[0].kind else {
            panic!("N = 1 is a DeMe arm")
        };
        assert_eq!((n1.experts, n1.steps_per_expert), (1, 400));
        assert!(n1.consistency_weight > 0.0 && n1.projection);
        let ArmKind::Deme { config: p0 } = &a[1].kind else {
            panic!()
        };
        assert_eq!((p0.p, p0.experts), (0.0, 4));
        let ArmKind::Deme { config: nc } = &a[2].kind else {
            panic!()
        };
        assert_eq!(nc.consistency_weight, 0.0);
        let r = reweighting(&main);
        assert_eq!(
            r[0].kind,
            ArmKind::Plain {
                weighting: LossWeighting::MinSnr { gamma: 5.0 }
            }
        );
        assert!(r[1].description.contains("400 steps"));
    }

    #[test]
    fn sweeps_skip_the_main_value_and_refuse_nonsense() {
        let main = FinetuneConfig {
            experts: 4,
            steps_per_expert: 100,
            ..FinetuneConfig::default()
        };
        let n = sweep("n=2,4,8", &main).unwrap();
        let got: Vec<(String, usize, u64)> = n
            .iter()
            .map(|a| match &a.kind {
                ArmKind::Deme { config } => {
                    (a.name.clone(), config.experts, config.steps_per_expert)
                }
                ArmKind::Plain { .. } => panic!("a sweep arm is DeMe"),
            })
            .collect();
        assert_eq!(
            got,
            [("sweep-n2".into(), 2, 200), ("sweep-n8".into(), 8, 50)]
        );
        let p = sweep("p=0,0.3,0.5", &main).unwrap();
        assert_eq!(p.len(), 2, "p = 0.3 is the main job");
        for bad in ["n", "q=1", "n=x", "p=2", "n="] {
            assert!(sweep(bad, &main).is_err(), "{bad}");
        }
    }
}

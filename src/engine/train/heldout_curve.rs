//! The held-out loss of a pretraining run: the published weights (the EMA when the
//! run keeps one) measured every few steps on one fixed set of held-out samples (an
//! [`EvalSet`]), kept as `loss_curve.csv` beside the checkpoint and drawn as
//! `loss_curve.png`, with the plateau test a run is judged converged by.
//!
//! The set is drawn from its own seed, so every measurement of a run, resumed or not,
//! is on the same items, noise and timesteps: differences between rows are the model's.

use super::batch::BatchSampler;
use super::train_config::TrainConfig;
use crate::engine::checkpoint::write_atomic_bytes;
use crate::engine::diffusion::NoiseSchedule;
use crate::engine::eval::{EvalSet, EvalSetConfig};
use crate::engine::model::EpsModel;
use crate::engine::render::{LinePlot, Series, save_png_atomic};
use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use std::path::Path;

/// The curve's CSV, in the run's folder.
pub const LOSS_CURVE_FILE: &str = "loss_curve.csv";
/// The curve's picture, in the run's folder.
pub const LOSS_CURVE_PNG: &str = "loss_curve.png";
/// Seed of the held-out set's items, noise and nothing else.
pub const HELDOUT_SEED: u64 = 2024;
const HEADER: &str = "step,lr,train_loss,heldout_loss";

/// One measurement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CurvePoint {
    /// Steps done when measured.
    pub step: u64,
    /// Learning rate of the last step.
    pub lr: f64,
    /// Mean training-batch loss since the previous measurement (NaN when none).
    pub train_loss: f64,
    /// Mean loss of the published weights on the held-out set.
    pub heldout_loss: f64,
}

/// Measures a run's held-out loss and keeps its curve on disk.
pub struct HeldOutWatch {
    set: EvalSet,
    every: u64,
    points: Vec<CurvePoint>,
    batch_sum: f64,
    batches: usize,
}

impl HeldOutWatch {
    /// Draws the set (`config.eval_samples` samples from `val`) on `device`. A run
    /// resumed at `first_step` keeps the curve's rows up to that step (later ones
    /// belong to weights that were never saved); a fresh run starts a new curve.
    pub fn new(
        val: &BatchSampler,
        schedule: &NoiseSchedule,
        config: &TrainConfig,
        dir: &Path,
        first_step: u64,
        device: &Device,
    ) -> Result<Self> {
        let set_config = EvalSetConfig {
            samples: config.eval_samples,
            batch_size: config.batch_size.clamp(1, 256),
            seed: HELDOUT_SEED,
        };
        let set = EvalSet::new(val, schedule, set_config, device)
            .context("drawing the held-out set of the loss curve")?;
        let path = dir.join(LOSS_CURVE_FILE);
        let points = if first_step > 0 && path.exists() {
            let mut p = read_curve(&path)?;
            p.retain(|p| p.step <= first_step);
            p
        } else {
            Vec::new()
        };
        Ok(Self {
            set,
            every: config.eval_every.max(1),
            points,
            batch_sum: 0.0,
            batches: 0,
        })
    }

    /// Counts one training batch's loss towards the next row's `train_loss`.
    pub fn add_batch_loss(&mut self, loss: f64) {
        if loss.is_finite() {
            self.batch_sum += loss;
            self.batches += 1;
        }
    }

    /// Whether a measurement is due after `step` steps of `total`.
    pub fn due(&self, step: u64, total: u64) -> bool {
        step.is_multiple_of(self.every) || step == total
    }

    /// Measures `model` after `step` steps, appends the row, and rewrites the CSV and
    /// the PNG in `dir` atomically. Returns the held-out loss.
    pub fn measure<M: EpsModel>(
        &mut self,
        step: u64,
        lr: f64,
        model: &M,
        dir: &Path,
    ) -> Result<f64> {
        let heldout_loss = self.set.evaluate(&|x, t| model.eps(x, t))?.mean();
        let train_loss = if self.batches > 0 {
            self.batch_sum / self.batches as f64
        } else {
            f64::NAN
        };
        (self.batch_sum, self.batches) = (0.0, 0);
        self.points.retain(|p| p.step < step);
        self.points.push(CurvePoint {
            step,
            lr,
            train_loss,
            heldout_loss,
        });
        write_curve(&dir.join(LOSS_CURVE_FILE), &self.points)?;
        save_curve_png(&dir.join(LOSS_CURVE_PNG), &self.points)?;
        Ok(heldout_loss)
    }

    /// The rows so far.
    pub fn points(&self) -> &[CurvePoint] {
        &self.points
    }
}

/// Writes `points` as CSV (`step,lr,train_loss,heldout_loss`) atomically.
pub fn write_curve(path: &Path, points: &[CurvePoint]) -> Result<()> {
    let mut text = format!("{HEADER}\n");
    for p in points {
        text += &format!(
            "{},{:e},{},{}\n",
            p.step, p.lr, p.train_loss, p.heldout_loss
        );
    }
    write_atomic_bytes(path, text.as_bytes()).with_context(|| format!("writing {}", path.display()))
}

/// Reads a curve written by [`write_curve`]; a malformed line is an error naming it.
pub fn read_curve(path: &Path) -> Result<Vec<CurvePoint>> {
    let text = deme_formats::input::read_text(path)?;
    let mut lines = text.lines();
    if lines.next().map(str::trim) != Some(HEADER) {
        bail!(
            "{} is not a loss curve: its first line is not `{HEADER}`",
            path.display()
        );
    }
    lines
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            let bad = || {
                format!(
                    "{} line {}: `{l}` is not a curve row",
                    path.display(),
                    i + 2
                )
            };
            let f: Vec<&str> = l.split(',').collect();
            if f.len() != 4 {
                bail!(bad());
            }
            let num = |s: &str| s.trim().parse::<f64>().with_context(bad);
            Ok(CurvePoint {
                step: f[0].trim().parse().with_context(bad)?,
                lr: num(f[1])?,
                train_loss: num(f[2])?,
                heldout_loss: num(f[3])?,
            })
        })
        .collect()
}

/// Relative improvement of the held-out loss over the last quarter of the steps:
/// `(L(s) - L(end)) / L(s)`, where `s` is the last row at or before three quarters
/// of the last row's step. `None` when the curve is too short to tell (fewer than
/// two rows, or none inside the first three quarters).
pub fn last_quarter_improvement(points: &[CurvePoint]) -> Option<f64> {
    let last = points.last()?;
    let cut = last.step * 3 / 4;
    let at = points
        .iter()
        .rev()
        .find(|p| p.step <= cut && p.step < last.step)?;
    Some((at.heldout_loss - last.heldout_loss) / at.heldout_loss)
}

/// Draws the held-out and training losses against the step.
pub fn save_curve_png(path: &Path, points: &[CurvePoint]) -> Result<()> {
    let heldout: Vec<(f64, f64)> = points
        .iter()
        .map(|p| (p.step as f64, p.heldout_loss))
        .collect();
    let train: Vec<(f64, f64)> = points
        .iter()
        .map(|p| (p.step as f64, p.train_loss))
        .collect();
    let series = [
        Series {
            name: "TRAIN BATCHES",
            color: [150, 150, 150],
            points: &train,
        },
        Series {
            name: "HELD OUT",
            color: [200, 60, 20],
            points: &heldout,
        },
    ];
    let img = LinePlot {
        title: "LOSS (LOG SCALE)",
        x_label: "STEP",
        series: &series,
        size: [720, 420],
    }
    .render()?;
    save_png_atomic(&img, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(step: u64, heldout_loss: f64) -> CurvePoint {
        CurvePoint {
            step,
            lr: 1e-3,
            train_loss: heldout_loss * 1.1,
            heldout_loss,
        }
    }

    #[test]
    fn csv_round_trips_and_bad_rows_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOSS_CURVE_FILE);
        let pts = vec![
            point(500, 0.08),
            point(1000, 0.05),
            CurvePoint {
                train_loss: f64::NAN,
                ..point(1500, 0.04)
            },
        ];
        write_curve(&path, &pts).unwrap();
        let back = read_curve(&path).unwrap();
        assert_eq!(back.len(), 3);
        assert_eq!(back[..2], pts[..2]);
        assert!(back[2].train_loss.is_nan());
        std::fs::write(&path, format!("{HEADER}\n500,0.001,0.1\n")).unwrap();
        let err = read_curve(&path).unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
        std::fs::write(&path, "step,loss\n").unwrap();
        assert!(read_curve(&path).is_err());
    }

    #[test]
    fn plateau_compares_the_last_quarter() {
        // 4000 steps: the row at or before step 3000 is 0.0500, the last 0.0497: 0.6%
        let pts: Vec<CurvePoint> = [(1000, 0.07), (2000, 0.052), (3000, 0.05), (4000, 0.0497)]
            .iter()
            .map(|&(s, l)| point(s, l))
            .collect();
        let r = last_quarter_improvement(&pts).unwrap();
        assert!((r - 0.006).abs() < 1e-9, "{r}");
        assert_eq!(last_quarter_improvement(&pts[..1]), None);
        assert_eq!(last_quarter_improvement(&[]), None);
    }
}

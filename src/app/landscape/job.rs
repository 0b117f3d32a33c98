//! The loss-landscape computation from the UI: a named thread over copies of
//! the open set's models that draws its own held-out set, finds the plane of
//! the two chosen experts, fits the lattice around the marked models and
//! sweeps it coarse to fine, reporting every point; cancellable between
//! points (what was scored stays).

use crate::app::job_slot::{Outcome, Sink};
use crate::app::session::{LandscapeInputs, Session, VAL_FRACTION};
use crate::engine::analysis::landscape::{Landscape, LandscapeGrid, Plane};
use crate::engine::analysis::{LandscapeConfig, LandscapeEvent, LandscapeModels, loss_landscape};
use crate::engine::data::split_items;
use crate::engine::eval::{EvalSet, EvalSetConfig};
use crate::engine::merge::Merger;
use crate::engine::store::AnyModel;
use crate::engine::train::CancelToken;
use anyhow::{Context, Result, anyhow};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Points drawn for toy (point-cloud) datasets, as the CLI's default.
const TOY_POINTS: usize = 20_000;
/// Seed of the held-out set, as the CLI's default.
const EVAL_SEED: u64 = 1234;

/// Where a computation reports: its stages and points, then the landscape
/// (a cancelled sweep ends with what it scored).
pub type LandscapeSink = Sink<LandscapeReport, Arc<Landscape>>;

/// A landscape computation to run.
#[derive(Debug, Clone)]
pub struct LandscapeJob {
    /// 0-based index of expert a (the x axis and the unit of both axes).
    pub a: usize,
    /// 0-based index of expert b.
    pub b: usize,
    /// Points per axis G.
    pub size: usize,
    /// Margin around the marked models, in units of `|tau_a|`.
    pub margin: f64,
    /// Held-out samples scored at every point.
    pub samples: usize,
    /// Cancelled by the UI's Cancel button.
    pub cancel: CancelToken,
    /// Where it reports.
    pub sink: LandscapeSink,
}

/// What the computation reports before its end.
#[derive(Debug, Clone)]
pub enum LandscapeReport {
    /// A stage of the preparation started.
    Preparing(String),
    /// The plane and the lattice are known; the sweep starts.
    Plane {
        /// The plane of experts a and b.
        plane: Plane,
        /// The lattice fitted around the marked models.
        grid: LandscapeGrid,
        /// The timestep range of each per-range surface.
        ranges: Vec<[usize; 2]>,
    },
    /// A mark was scored, a level started, or a point was scored.
    Event(LandscapeEvent),
}

/// The lattice over the square that holds every point of `points` with
/// `margin` around it (equal spans, so both axes keep the plane's scale).
pub fn fit_grid(points: &[[f64; 2]], size: usize, margin: f64) -> LandscapeGrid {
    let lo_hi = |k: usize| {
        points.iter().fold((0.0f64, 0.0f64), |(lo, hi), p| {
            if p[k].is_finite() {
                (lo.min(p[k]), hi.max(p[k]))
            } else {
                (lo, hi)
            }
        })
    };
    let ((x_lo, x_hi), (y_lo, y_hi)) = (lo_hi(0), lo_hi(1));
    let margin = margin.max(0.01);
    let span = (x_hi - x_lo).max(y_hi - y_lo) + 2.0 * margin;
    let around = |lo: f64, hi: f64| {
        let c = (lo + hi) / 2.0;
        [c - span / 2.0, c + span / 2.0]
    };
    LandscapeGrid {
        size,
        x: around(x_lo, x_hi),
        y: around(y_lo, y_hi),
    }
}

/// Runs `job` on `inputs`, reporting through `report` (except the end).
pub fn run_landscape(
    job: &LandscapeJob,
    inputs: &LandscapeInputs,
    report: &mut dyn FnMut(LandscapeReport),
) -> Result<Landscape> {
    let n = inputs.experts.len();
    if n < 2 {
        anyhow::bail!("the landscape needs two experts to span its plane; this set has {n}");
    }
    if job.a >= n || job.b >= n || job.a == job.b {
        anyhow::bail!(
            "choose two different experts for a and b (got {} and {})",
            job.a + 1,
            job.b + 1
        );
    }
    report(LandscapeReport::Preparing(
        "drawing the held-out set".into(),
    ));
    let data = inputs
        .data
        .clone()
        .map_err(|e| anyhow!("no held-out set: {e}"))?;
    let items = split_items(&data, &inputs.spec, VAL_FRACTION, TOY_POINTS)
        .with_context(|| format!("no held-out set of `{data}`"))?;
    let eval = EvalSet::new(
        &items.val,
        &inputs.schedule,
        EvalSetConfig {
            samples: job.samples.max(1),
            batch_size: job.samples.clamp(1, 64),
            seed: EVAL_SEED,
        },
        &inputs.device,
    )?;
    report(LandscapeReport::Preparing("finding the plane".into()));
    let labels: Vec<String> = inputs
        .labels
        .iter()
        .skip(1)
        .enumerate()
        .map(|(k, l)| format!("expert {} ({l})", k + 1))
        .collect();
    let pairs: Vec<(&str, &AnyModel)> = labels
        .iter()
        .zip(&inputs.experts)
        .map(|(l, m)| (l.as_str(), m))
        .collect();
    let base_label = inputs.labels.first().cloned().unwrap_or_default();
    let base = (base_label.as_str(), &inputs.base);
    let plane = {
        let merger = Merger::new(base, &pairs)?;
        Plane::from_task_vectors(&merger.host_task_vectors()?, job.a, job.b)?
    };
    // the base, every expert and the even merge stay inside the lattice
    let mut points = vec![[0.0, 0.0]];
    for k in 0..n {
        let mut w = vec![0.0; n];
        w[k] = 1.0;
        points.push(plane.project(&w)?.xy);
    }
    points.push(plane.project(&vec![1.0 / n as f64; n])?.xy);
    let grid = fit_grid(&points, job.size, job.margin);
    let config = LandscapeConfig {
        grid: grid.clone(),
        ranges: inputs.ranges.clone(),
    };
    report(LandscapeReport::Plane {
        plane,
        grid,
        ranges: inputs.ranges.clone(),
    });
    let models = LandscapeModels {
        base,
        models: &pairs,
        a: job.a,
        b: job.b,
        merges: &[],
    };
    let mut on_event = |e: LandscapeEvent| report(LandscapeReport::Event(e));
    loss_landscape(&models, &eval, &config, &job.cancel, &mut on_event)
}

/// Starts `job` on a thread named `landscape`.
pub fn spawn_landscape(job: LandscapeJob, inputs: LandscapeInputs) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name("landscape".into())
        .spawn(move || {
            let sink = job.sink.clone();
            let result = run_landscape(&job, &inputs, &mut |r| sink.update(r)).map(Arc::new);
            sink.finish(Outcome::of(result, &job.cancel));
        })
        .expect("spawning the landscape thread")
}

/// Starts `job` on the open session's models (reports an error without one).
pub fn start_landscape(job: LandscapeJob, session: Option<&Session>) {
    match session {
        Some(s) => {
            spawn_landscape(job, s.landscape_inputs());
        }
        None => job
            .sink
            .finish(Outcome::Failed("open a model set first".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fitted_lattice_is_square_and_holds_every_point() {
        let g = fit_grid(&[[0.0, 0.0], [1.0, 0.0], [0.3, 0.5]], 9, 0.2);
        assert_eq!(g.size, 9);
        let (wx, wy) = (g.x[1] - g.x[0], g.y[1] - g.y[0]);
        assert!((wx - wy).abs() < 1e-12);
        assert!((wx - 1.4).abs() < 1e-12);
        assert!(g.x[0] <= -0.2 + 1e-12 && g.x[1] >= 1.2 - 1e-12);
        assert!(g.y[0] <= -0.2 + 1e-12 && g.y[1] >= 0.7 - 1e-12);
        g.validate().unwrap();
    }
}

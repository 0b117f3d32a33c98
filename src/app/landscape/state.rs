//! The Landscape view's state: settings, the sweep as it is scored, the result.

use super::job::{LandscapeJob, LandscapeReport};
use crate::app::job_slot::{JobSlot, Outcome, Report, Waker};
use crate::engine::analysis::LandscapeEvent;
use crate::engine::analysis::landscape::{Landscape, LandscapeGrid, Mark, Plane};
use crate::engine::analysis::landscape_lattice::Fill;
use std::path::PathBuf;
use std::sync::Arc;

/// What a computation in progress shows.
#[derive(Debug, Clone)]
pub(super) struct Progress {
    pub(super) stage: String,
    pub(super) done: usize,
    pub(super) total: usize,
}

/// The plane and what has been scored on it.
#[derive(Debug, Clone)]
pub(super) struct Sweep {
    pub(super) plane: Plane,
    pub(super) grid: LandscapeGrid,
    /// Timestep range of each per-range surface.
    pub(super) ranges: Vec<[usize; 2]>,
    /// Per surface (all, then per range): row-major `G x G` scores so far.
    pub(super) values: Vec<Vec<Option<f64>>>,
    pub(super) fill: Fill,
    /// Stride of the level being scored.
    pub(super) stride: usize,
    pub(super) marks: Vec<Mark>,
}

/// Settings, progress and result of the view.
#[derive(Debug)]
pub struct LandscapeState {
    /// 0-based index of expert a (the x axis).
    pub a: usize,
    /// 0-based index of expert b.
    pub b: usize,
    /// Points per axis G.
    pub size: usize,
    /// Held-out samples scored at every point.
    pub samples: usize,
    /// Margin around the marked models, in units of `|tau_a|`.
    pub margin: f64,
    /// The surface shown: 0 for all timesteps, `k` for the k-th range.
    pub surface: usize,
    /// Folder the Export button writes into.
    pub export_dir: String,
    /// Why the last computation failed, or `cancelled`.
    pub error: Option<String>,
    /// The weights along the last learned search (drawn on the map).
    pub path: Vec<Vec<f32>>,
    pub(super) job: JobSlot<LandscapeReport, Arc<Landscape>, Progress>,
    pub(super) sweep: Option<Sweep>,
    pub(super) result: Option<Arc<Landscape>>,
    pub(super) hovered: Option<[f64; 2]>,
}

impl Default for LandscapeState {
    fn default() -> Self {
        Self {
            a: 0,
            b: 1,
            size: 9,
            samples: 16,
            margin: 0.2,
            surface: 0,
            export_dir: "landscape".into(),
            error: None,
            path: Vec::new(),
            job: JobSlot::default(),
            sweep: None,
            result: None,
            hovered: None,
        }
    }
}

/// What the view asks the app to do.
#[derive(Debug, Clone)]
pub enum LandscapeAction {
    /// Start this computation.
    Compute(LandscapeJob),
    /// Set the merge weights (a click, or a drag still in progress).
    SetWeights {
        /// The weights of the point under the pointer.
        weights: Vec<f32>,
        /// Whether the pointer is still held (fast previews, one undo entry per drag).
        dragging: bool,
    },
    /// A drag on the map ended.
    EndDrag,
    /// Write the landscape into this folder.
    Export(Arc<Landscape>, PathBuf),
}

impl LandscapeState {
    /// Whether a computation runs.
    pub fn is_running(&self) -> bool {
        self.job.is_running()
    }

    /// `(done, total)` lattice points of the running computation.
    pub fn progress(&self) -> Option<(usize, usize)> {
        self.job.progress().map(|r| (r.done, r.total))
    }

    /// The finished (or cancelled) landscape.
    pub fn result(&self) -> Option<&Arc<Landscape>> {
        self.result.as_ref()
    }

    /// The plane being drawn, once known.
    pub fn plane(&self) -> Option<&Plane> {
        self.sweep.as_ref().map(|s| &s.plane)
    }

    /// The lattice being drawn, once known.
    pub fn grid(&self) -> Option<&LandscapeGrid> {
        self.sweep.as_ref().map(|s| &s.grid)
    }

    /// Lattice points scored so far.
    pub fn scored(&self) -> usize {
        self.sweep
            .as_ref()
            .and_then(|s| s.values.first())
            .map_or(0, |v| v.iter().flatten().count())
    }

    /// Marks the computation as started and returns the job, or says why it cannot start.
    pub fn start(&mut self, num_experts: usize, waker: &Waker) -> Result<LandscapeJob, String> {
        if self.job.is_running() {
            return Err("a landscape is being computed".into());
        }
        let checked = if num_experts < 2 {
            Err(format!(
                "the landscape needs two experts to span its plane; this set has {num_experts}"
            ))
        } else if self.a == self.b {
            Err("choose two different experts for a and b".into())
        } else if self.a >= num_experts || self.b >= num_experts {
            Err(format!("there are {num_experts} experts"))
        } else {
            Ok(())
        };
        if let Err(e) = checked {
            self.error = Some(e.clone());
            return Err(e);
        }
        let progress = Progress {
            stage: "starting".into(),
            done: 0,
            total: self.size * self.size,
        };
        let (cancel, sink) = self.job.start(progress, waker);
        self.error = None;
        self.sweep = None;
        self.result = None;
        self.hovered = None;
        Ok(LandscapeJob {
            a: self.a,
            b: self.b,
            size: self.size.clamp(3, 101),
            margin: self.margin,
            samples: self.samples.max(1),
            cancel,
            sink,
        })
    }

    /// Forgets results tied to the open model set.
    pub fn reset(&mut self) {
        self.job.clear();
        self.sweep = None;
        self.result = None;
        self.error = None;
        self.hovered = None;
        self.surface = 0;
        self.path.clear();
    }

    /// Applies what the running computation reported since the last frame.
    pub fn poll(&mut self) {
        for report in self.job.poll() {
            match report {
                Report::Update(r) => self.apply(r),
                Report::Finished(outcome) => self.finish(outcome),
            }
        }
    }

    fn apply(&mut self, report: LandscapeReport) {
        match report {
            LandscapeReport::Preparing(stage) => {
                if let Some(r) = self.job.progress_mut() {
                    r.stage = stage;
                }
            }
            LandscapeReport::Plane {
                plane,
                grid,
                ranges,
            } => {
                let g = grid.size;
                self.sweep = Some(Sweep {
                    values: vec![vec![None; g * g]; ranges.len() + 1],
                    fill: Fill::new(g),
                    stride: grid.coarsest_stride(),
                    plane,
                    grid,
                    ranges,
                    marks: Vec::new(),
                });
                if let Some(r) = self.job.progress_mut() {
                    r.stage = "scoring the base and the experts".into();
                    r.total = g * g;
                }
            }
            LandscapeReport::Event(e) => self.apply_event(e),
        }
    }

    fn finish(&mut self, outcome: Outcome<Arc<Landscape>>) {
        match outcome {
            Outcome::Done(ls) => {
                if let Some(s) = &mut self.sweep {
                    for (k, surface) in ls.surfaces.iter().enumerate() {
                        if let Some(v) = s.values.get_mut(k) {
                            v.clone_from(&surface.values);
                        }
                    }
                    s.marks.clone_from(&ls.marks);
                }
                if ls.cancelled {
                    self.error = Some("cancelled".into());
                }
                self.result = Some(ls);
            }
            Outcome::Cancelled => self.error = Some("cancelled".into()),
            Outcome::Failed(e) => self.error = Some(e),
        }
    }

    fn apply_event(&mut self, e: LandscapeEvent) {
        let Some(s) = &mut self.sweep else { return };
        match e {
            LandscapeEvent::Mark(m) => s.marks.push(m),
            LandscapeEvent::Level { stride, .. } => {
                s.stride = stride;
                if let Some(r) = self.job.progress_mut() {
                    r.stage = match stride {
                        1 => "finest pass: every point".into(),
                        2 => "coarse pass: every 2nd point".into(),
                        s => format!("coarse pass: every {s}th point"),
                    };
                }
            }
            LandscapeEvent::Point {
                i,
                j,
                score,
                done,
                total,
                ..
            } => {
                let g = s.grid.size;
                let k = j * g + i;
                if let Some(v) = s.values.first_mut() {
                    v[k] = Some(score.loss);
                }
                for (v, l) in s.values.iter_mut().skip(1).zip(&score.per_range) {
                    v[k] = Some(*l);
                }
                s.fill.scored(i, j, s.stride);
                if let Some(r) = self.job.progress_mut() {
                    r.done = done;
                    r.total = total;
                }
            }
        }
    }
}

//! The Landscape view: the held-out loss on the plane through the base and two
//! chosen experts, filled in coarse to fine as the background sweep scores it,
//! with contour lines, a colour bar, the base, the experts (projected) and the
//! current merge marked. Clicking or dragging on the map sets the merge
//! weights to that point's, so map and sliders are one control.

use super::command::AppCommand;
use super::job_slot::{JobSlot, Outcome, Report, Waker};
use super::landscape_job::{LandscapeJob, LandscapeReport};
use super::merge_state::MergeState;
use super::merge_worker::Command;
use super::page_ctx::PageCtx;
use super::preview::Panel;
use super::save_job::SaveJob;
use crate::engine::analysis::LandscapeEvent;
use crate::engine::analysis::landscape::{Landscape, LandscapeGrid, Mark, MarkKind, Plane};
use crate::engine::analysis::landscape_plot::{fmt_axis, fmt_value};
use crate::engine::render::ColorMap;

use egui::{Align2, Color32, FontId, Pos2, Rect, Sense, Stroke, StrokeKind, Vec2};
use std::path::PathBuf;
use std::sync::Arc;

/// Label of the map (for tests and screen readers).
pub const MAP_LABEL: &str = "loss landscape map";

/// Number of contour levels between the lowest and highest loss shown.
const CONTOURS: usize = 8;

/// Where the lattice lies on the screen: cell centres sit on the lattice
/// values, so the rectangle reaches half a cell beyond the first and last.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MapFrame {
    /// The map on the screen.
    pub rect: Rect,
    /// `[lo, hi]` of the lattice's x values.
    pub x: [f64; 2],
    /// `[lo, hi]` of the lattice's y values (drawn upwards).
    pub y: [f64; 2],
    /// Points per axis G.
    pub size: usize,
}

impl MapFrame {
    /// The frame of `grid` drawn in `rect`.
    pub fn new(rect: Rect, grid: &LandscapeGrid) -> Self {
        Self {
            rect,
            x: grid.x,
            y: grid.y,
            size: grid.size.max(2),
        }
    }

    /// `[lo, hi]` of an axis as drawn: the lattice values plus half a step.
    fn extent(&self, [lo, hi]: [f64; 2]) -> [f64; 2] {
        let half = (hi - lo) / (self.size - 1) as f64 / 2.0;
        [lo - half, hi + half]
    }

    /// Plane coordinates of the screen point `p`.
    pub fn to_plane(&self, p: Pos2) -> [f64; 2] {
        let [x0, x1] = self.extent(self.x);
        let [y0, y1] = self.extent(self.y);
        let u = ((p.x - self.rect.left()) / self.rect.width()) as f64;
        let v = ((self.rect.bottom() - p.y) / self.rect.height()) as f64;
        [x0 + u * (x1 - x0), y0 + v * (y1 - y0)]
    }

    /// The screen point of plane coordinates `xy`.
    pub fn to_screen(&self, [x, y]: [f64; 2]) -> Pos2 {
        let [x0, x1] = self.extent(self.x);
        let [y0, y1] = self.extent(self.y);
        let u = ((x - x0) / (x1 - x0)) as f32;
        let v = ((y - y0) / (y1 - y0)) as f32;
        Pos2::new(
            self.rect.left() + u * self.rect.width(),
            self.rect.bottom() - v * self.rect.height(),
        )
    }

    /// The screen point of fractional lattice indices `(i, j)`.
    fn lattice_to_screen(&self, i: f64, j: f64) -> Pos2 {
        let g = (self.size - 1) as f64;
        let x = self.x[0] + (self.x[1] - self.x[0]) * i / g;
        let y = self.y[0] + (self.y[1] - self.y[0]) * j / g;
        self.to_screen([x, y])
    }

    /// The lattice point `(i, j)` whose cell holds `p` (None outside the map).
    pub fn cell_at(&self, p: Pos2) -> Option<(usize, usize)> {
        if !self.rect.contains(p) {
            return None;
        }
        let g = self.size as f32;
        let i = ((p.x - self.rect.left()) / self.rect.width() * g) as usize;
        let j = ((self.rect.bottom() - p.y) / self.rect.height() * g) as usize;
        Some((i.min(self.size - 1), j.min(self.size - 1)))
    }

    /// The cell of lattice point `(i, j)` on the screen.
    pub fn cell_rect(&self, i: usize, j: usize) -> Rect {
        let g = self.size as f32;
        let (w, h) = (self.rect.width() / g, self.rect.height() / g);
        Rect::from_min_size(
            Pos2::new(
                self.rect.left() + i as f32 * w,
                self.rect.bottom() - (j + 1) as f32 * h,
            ),
            Vec2::new(w, h),
        )
    }
}

/// The merge weights of plane point `xy` (zero except for experts a and b),
/// rounded to three decimals as a slider shows them.
pub fn point_weights(plane: &Plane, xy: [f64; 2]) -> Vec<f32> {
    plane
        .weights_at(xy[0], xy[1])
        .into_iter()
        .map(|w| ((w * 1000.0).round() / 1000.0) as f32)
        .collect()
}

/// Where the merge with `weights` lies on the plane (None for a wrong count).
pub fn merge_point(plane: &Plane, weights: &[f32]) -> Option<[f64; 2]> {
    let w: Vec<f64> = weights.iter().map(|&v| f64::from(v)).collect();
    plane.project(&w).ok().map(|p| p.xy)
}

/// Which scored point colours each cell while the sweep refines: a scored
/// point stands for the `stride x stride` block around it until finer points
/// (or its neighbours' own scores) replace it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Fill {
    size: usize,
    /// Per cell: the scored cell it shows and that point's stride (0: itself).
    source: Vec<Option<(usize, usize)>>,
}

impl Fill {
    /// An empty fill of a `size x size` lattice.
    pub fn new(size: usize) -> Self {
        Self {
            size,
            source: vec![None; size * size],
        }
    }

    /// Point `(i, j)` of a level with stride `stride` was scored.
    pub fn scored(&mut self, i: usize, j: usize, stride: usize) {
        let g = self.size;
        if i >= g || j >= g {
            return;
        }
        let k = j * g + i;
        let s = stride.max(1);
        let (lo, hi) = (s / 2, s / 2 + 1);
        for jj in j.saturating_sub(lo)..(j + hi).min(g) {
            for ii in i.saturating_sub(lo)..(i + hi).min(g) {
                let cell = jj * g + ii;
                let replaces = match self.source[cell] {
                    None => true,
                    Some((_, old)) => old >= s,
                };
                if replaces {
                    self.source[cell] = Some((k, s));
                }
            }
        }
        self.source[k] = Some((k, 0));
    }

    /// The scored cell that colours cell `(i, j)`, if any.
    pub fn source(&self, i: usize, j: usize) -> Option<usize> {
        self.source
            .get(j * self.size + i)
            .copied()
            .flatten()
            .map(|(k, _)| k)
    }
}

/// Segments of the contour lines of a `size x size` lattice of `values`
/// (row-major, rows bottom to top) at each of `levels`, in fractional lattice
/// indices `(i, j)`. Squares with a missing corner are skipped.
pub fn contour_segments(values: &[Option<f64>], size: usize, levels: &[f64]) -> Vec<[[f64; 2]; 2]> {
    let mut out = Vec::new();
    if size < 2 || values.len() != size * size {
        return out;
    }
    let at = |i: usize, j: usize| values[j * size + i].filter(|v| v.is_finite());
    for j in 0..size - 1 {
        for i in 0..size - 1 {
            let (Some(v00), Some(v10), Some(v11), Some(v01)) =
                (at(i, j), at(i + 1, j), at(i + 1, j + 1), at(i, j + 1))
            else {
                continue;
            };
            let (x, y) = (i as f64, j as f64);
            // corners counter-clockwise from the bottom left
            let corners = [
                ([x, y], v00),
                ([x + 1.0, y], v10),
                ([x + 1.0, y + 1.0], v11),
                ([x, y + 1.0], v01),
            ];
            for &level in levels {
                let mut hits: Vec<[f64; 2]> = Vec::with_capacity(4);
                for e in 0..4 {
                    let (pa, va) = corners[e];
                    let (pb, vb) = corners[(e + 1) % 4];
                    if (va < level) != (vb < level) {
                        let t = (level - va) / (vb - va);
                        hits.push([pa[0] + t * (pb[0] - pa[0]), pa[1] + t * (pb[1] - pa[1])]);
                    }
                }
                for pair in hits.chunks_exact(2) {
                    out.push([pair[0], pair[1]]);
                }
            }
        }
    }
    out
}

/// Contour segments (in lattice indices) of `values` on the finest sub-lattice
/// of the sweep's levels whose points are all scored (none before the first
/// level is complete), so that the lines are smooth at every stage.
pub fn scored_contours(
    values: &[Option<f64>],
    grid: &LandscapeGrid,
    levels: &[f64],
) -> Vec<[[f64; 2]; 2]> {
    let g = grid.size;
    let mut stride = grid.coarsest_stride();
    let axis_of =
        |s: usize| -> Vec<usize> { (0..g).filter(|&i| i % s == 0 || i == g - 1).collect() };
    let complete = |axis: &[usize]| {
        axis.iter()
            .all(|&j| axis.iter().all(|&i| values[j * g + i].is_some()))
    };
    let mut best: Option<Vec<usize>> = None;
    loop {
        let axis = axis_of(stride);
        if !complete(&axis) {
            break;
        }
        best = Some(axis);
        if stride == 1 {
            break;
        }
        stride /= 2;
    }
    let Some(axis) = best else { return vec![] };
    let m = axis.len();
    let sub: Vec<Option<f64>> = (0..m * m)
        .map(|k| values[axis[k / m] * g + axis[k % m]])
        .collect();
    // fractional sub-lattice index to fractional lattice index
    let map = |v: f64| {
        let lo = (v.floor() as usize).min(m - 1);
        let hi = (lo + 1).min(m - 1);
        let f = v - lo as f64;
        axis[lo] as f64 + f * (axis[hi] as f64 - axis[lo] as f64)
    };
    contour_segments(&sub, m, levels)
        .into_iter()
        .map(|[p, q]| [[map(p[0]), map(p[1])], [map(q[0]), map(q[1])]])
        .collect()
}

/// Tick values of `[lo, hi]`: multiples of a round step, at most `max` of them.
pub fn nice_ticks(lo: f64, hi: f64, max: usize) -> Vec<f64> {
    if !(hi > lo) || max == 0 {
        return vec![];
    }
    let raw = (hi - lo) / max as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| (hi - lo) / s <= max as f64)
        .unwrap_or(10.0 * mag);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last).map(|k| k as f64 * step).collect()
}

/// What a computation in progress shows.
#[derive(Debug, Clone)]
struct Progress {
    stage: String,
    done: usize,
    total: usize,
}

/// The plane and what has been scored on it.
#[derive(Debug, Clone)]
struct Sweep {
    plane: Plane,
    grid: LandscapeGrid,
    /// Timestep range of each per-range surface.
    ranges: Vec<[usize; 2]>,
    /// Per surface (all, then per range): row-major `G x G` scores so far.
    values: Vec<Vec<Option<f64>>>,
    fill: Fill,
    /// Stride of the level being scored.
    stride: usize,
    marks: Vec<Mark>,
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
    job: JobSlot<LandscapeReport, Arc<Landscape>, Progress>,
    sweep: Option<Sweep>,
    result: Option<Arc<Landscape>>,
    hovered: Option<[f64; 2]>,
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

    /// Asks the running computation to stop.
    pub fn cancel(&mut self) {
        self.job.cancel();
    }

    /// Forgets results tied to the open model set.
    pub fn reset(&mut self) {
        self.job.clear();
        self.sweep = None;
        self.result = None;
        self.error = None;
        self.hovered = None;
        self.surface = 0;
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

/// Draws the Landscape view (`merge`: the merged preview and the weights
/// its mark shows); returns what the app should do.
pub fn landscape_page(
    ui: &mut egui::Ui,
    state: &mut LandscapeState,
    merge: &mut MergeState,
    ctx: &PageCtx,
) -> Vec<AppCommand> {
    let Some(info) = &ctx.models.info else {
        return ctx.no_models_page(
            ui,
            "Loss landscape",
            "Open a model set: this view maps the held-out loss on the plane of two of its experts.",
        );
    };
    let names: Vec<String> = info
        .models
        .iter()
        .skip(1)
        .enumerate()
        .map(|(k, m)| format!("{} ({})", k + 1, m.name))
        .collect();
    let actions = egui::CentralPanel::default()
        .show(ui, |ui| landscape_ui(ui, state, merge, &names, ctx.waker))
        .inner;
    actions
        .into_iter()
        .map(|a| match a {
            LandscapeAction::Compute(job) => AppCommand::Worker(Command::Landscape(job)),
            LandscapeAction::SetWeights { weights, dragging } => {
                AppCommand::SetWeights { weights, dragging }
            }
            LandscapeAction::EndDrag => AppCommand::EndDrag,
            LandscapeAction::Export(ls, dir) => AppCommand::Save(SaveJob::landscape(ls, dir)),
        })
        .collect()
}

/// Draws the view; returns what the app should do.
fn landscape_ui(
    ui: &mut egui::Ui,
    state: &mut LandscapeState,
    merge: &mut MergeState,
    names: &[String],
    waker: &Waker,
) -> Vec<LandscapeAction> {
    let mut actions = Vec::new();
    ui.heading("Loss landscape on the plane of two task vectors");
    ui.label(
        "Held-out loss of the merges base + w_a τ_a + w_b τ_b, on the plane through the base \
         and experts a and b (axes in units of |τ_a|). Click or drag on the map to set the merge \
         weights to that point (the other experts' weights to 0); the merge mark follows the sliders.",
    );
    ui.add_space(4.0);
    controls_ui(ui, state, names, waker, &mut actions);
    if let Some(e) = &state.error {
        ui.colored_label(ui.visuals().error_fg_color, e);
    }
    ui.separator();
    if state.sweep.is_none() {
        if !state.job.is_running() {
            ui.label("Press Compute to map the loss (a 9 x 9 lattice takes about a minute on a small CPU; the coarse picture comes first).");
        }
        return actions;
    }
    ui.horizontal_top(|ui| {
        let side = (ui.available_height() - 70.0)
            .min(ui.available_width() - 380.0)
            .clamp(220.0, 600.0);
        ui.vertical(|ui| map_ui(ui, state, merge, side, &mut actions));
        ui.add_space(12.0);
        ui.vertical(|ui| side_ui(ui, state, merge, names, &mut actions));
    });
    actions
}

fn range_name(ranges: &[[usize; 2]], k: usize) -> String {
    match k {
        0 => "all timesteps".into(),
        k => ranges.get(k - 1).map_or(format!("range {k}"), |[lo, hi]| {
            format!("t in [{lo}, {hi})")
        }),
    }
}

fn controls_ui(
    ui: &mut egui::Ui,
    state: &mut LandscapeState,
    names: &[String],
    waker: &Waker,
    actions: &mut Vec<LandscapeAction>,
) {
    let running = state.job.is_running();
    let expert_combo = |ui: &mut egui::Ui, label: &str, value: &mut usize| {
        let label = ui.label(label);
        let text = names.get(*value).cloned().unwrap_or_else(|| "?".into());
        egui::ComboBox::from_id_salt(label.id)
            .selected_text(text)
            .show_ui(ui, |ui| {
                for (k, n) in names.iter().enumerate() {
                    ui.selectable_value(value, k, n);
                }
            })
            .response
            .labelled_by(label.id);
    };
    ui.horizontal_wrapped(|ui| {
        ui.add_enabled_ui(!running, |ui| {
            expert_combo(ui, "expert a", &mut state.a);
            expert_combo(ui, "expert b", &mut state.b);
            ui.label("grid");
            ui.add(egui::DragValue::new(&mut state.size).range(3..=41))
                .on_hover_text("points per axis G of the G x G lattice");
            ui.label("samples");
            ui.add(egui::DragValue::new(&mut state.samples).range(1..=256))
                .on_hover_text("held-out samples scored at every point (the same ones everywhere)");
            ui.label("margin");
            ui.add(
                egui::DragValue::new(&mut state.margin)
                    .range(0.05..=2.0)
                    .speed(0.01),
            )
            .on_hover_text("room around the base and the experts, in units of |τ_a|");
            if ui
                .button("Compute")
                .on_hover_text("score the held-out loss on the lattice, coarse points first")
                .clicked()
            {
                if let Ok(job) = state.start(names.len(), waker) {
                    actions.push(LandscapeAction::Compute(job));
                }
            }
        });
        if state.job.is_running() && ui.button("Cancel").clicked() {
            state.cancel();
        }
    });
    if let Some(r) = state.job.progress() {
        let fraction = if r.total > 0 {
            r.done as f32 / r.total as f32
        } else {
            0.0
        };
        ui.add(
            egui::ProgressBar::new(fraction)
                .desired_width(420.0)
                .text(format!("{} of {} points ({})", r.done, r.total, r.stage)),
        );
    }
}

fn color(v: f64, lo: f64, hi: f64) -> Color32 {
    let [r, g, b] = ColorMap::Viridis.map(v as f32, lo as f32, hi as f32);
    Color32::from_rgb(r, g, b)
}

/// The map with its axes and colour bar; clicks and drags set the weights.
fn map_ui(
    ui: &mut egui::Ui,
    state: &mut LandscapeState,
    merge: &MergeState,
    side: f32,
    actions: &mut Vec<LandscapeAction>,
) {
    let Some(sweep) = &state.sweep else { return };
    let surface = state.surface.min(sweep.values.len() - 1);
    let values = &sweep.values[surface];
    let g = sweep.grid.size;
    let (left, bottom, bar_gap, bar_w, bar_labels) = (44.0, 36.0, 14.0, 16.0, 60.0);
    // the outer area first, then the map inside it as its own widget
    let outer = Vec2::new(left + side + bar_gap + bar_w + bar_labels, side + bottom);
    let (outer_rect, _) = ui.allocate_exact_size(outer, Sense::hover());
    let map_rect = Rect::from_min_size(outer_rect.min + Vec2::new(left, 0.0), Vec2::splat(side));
    let response = ui.interact(
        map_rect,
        ui.make_persistent_id("landscape-map"),
        Sense::click_and_drag(),
    );
    response.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Image, true, MAP_LABEL));
    let frame = MapFrame::new(map_rect, &sweep.grid);
    let painter = ui.painter_at(outer_rect);
    let (lo, hi) = values
        .iter()
        .flatten()
        .filter(|v| v.is_finite())
        .fold(None, |acc: Option<(f64, f64)>, &v| match acc {
            None => Some((v, v)),
            Some((a, b)) => Some((a.min(v), b.max(v))),
        })
        .unwrap_or((0.0, 1.0));
    let hi = if hi > lo { hi } else { lo + 1e-12 };
    // cells: scored ones, the rest from the nearest coarser point scored
    painter.rect_filled(map_rect, 0.0, Color32::from_gray(200));
    for j in 0..g {
        for i in 0..g {
            let Some(v) = sweep.fill.source(i, j).and_then(|k| values[k]) else {
                continue;
            };
            // a hairline of overlap hides the seams between cells
            painter.rect_filled(frame.cell_rect(i, j).expand(0.3), 0.0, color(v, lo, hi));
        }
    }
    // contour lines over the finest sub-lattice scored throughout
    let levels: Vec<f64> = (1..CONTOURS)
        .map(|l| lo + (hi - lo) * l as f64 / CONTOURS as f64)
        .collect();
    let contour = Stroke::new(1.0, Color32::from_white_alpha(150));
    for [p, q] in scored_contours(values, &sweep.grid, &levels) {
        painter.line_segment(
            [
                frame.lattice_to_screen(p[0], p[1]),
                frame.lattice_to_screen(q[0], q[1]),
            ],
            contour,
        );
    }
    let ink = ui.visuals().text_color();
    painter.rect_stroke(map_rect, 0.0, Stroke::new(1.0, ink), StrokeKind::Outside);
    // axes
    let font = FontId::proportional(11.0);
    for x in nice_ticks(sweep.grid.x[0], sweep.grid.x[1], 6) {
        let p = frame.to_screen([x, sweep.grid.y[0]]);
        let px = p.x;
        painter.line_segment(
            [
                Pos2::new(px, map_rect.bottom()),
                Pos2::new(px, map_rect.bottom() + 4.0),
            ],
            Stroke::new(1.0, ink),
        );
        painter.text(
            Pos2::new(px, map_rect.bottom() + 5.0),
            Align2::CENTER_TOP,
            fmt_axis(x),
            font.clone(),
            ink,
        );
    }
    for y in nice_ticks(sweep.grid.y[0], sweep.grid.y[1], 6) {
        let py = frame.to_screen([sweep.grid.x[0], y]).y;
        painter.line_segment(
            [
                Pos2::new(map_rect.left() - 4.0, py),
                Pos2::new(map_rect.left(), py),
            ],
            Stroke::new(1.0, ink),
        );
        painter.text(
            Pos2::new(map_rect.left() - 6.0, py),
            Align2::RIGHT_CENTER,
            fmt_axis(y),
            font.clone(),
            ink,
        );
    }
    painter.text(
        Pos2::new(map_rect.center().x, map_rect.bottom() + 20.0),
        Align2::CENTER_TOP,
        "x (along τ_a)",
        font.clone(),
        ink,
    );
    painter.text(
        Pos2::new(outer_rect.left(), map_rect.top()),
        Align2::LEFT_TOP,
        "y",
        font.clone(),
        ink,
    );
    // colour bar: highest loss at the top
    let bar = Rect::from_min_size(
        Pos2::new(map_rect.right() + bar_gap, map_rect.top()),
        Vec2::new(bar_w, side),
    );
    let steps = 64;
    for s in 0..steps {
        let h = side / steps as f32;
        let u = 1.0 - (s as f64 + 0.5) / steps as f64;
        painter.rect_filled(
            Rect::from_min_size(
                Pos2::new(bar.left(), bar.top() + s as f32 * h),
                Vec2::new(bar_w, h + 0.5),
            ),
            0.0,
            color(lo + u * (hi - lo), lo, hi),
        );
    }
    painter.rect_stroke(bar, 0.0, Stroke::new(1.0, ink), StrokeKind::Inside);
    for (v, anchor) in [
        (hi, Align2::LEFT_TOP),
        ((lo + hi) / 2.0, Align2::LEFT_CENTER),
        (lo, Align2::LEFT_BOTTOM),
    ] {
        let y = bar.top() + ((hi - v) / (hi - lo)) as f32 * side;
        painter.text(
            Pos2::new(bar.right() + 4.0, y),
            anchor,
            fmt_value(v),
            font.clone(),
            ink,
        );
    }
    // marks, clipped to the map
    let marks = ui.painter_at(map_rect.expand(2.0));
    draw_marks(&marks, &frame, sweep, merge);
    // hover and clicks
    state.hovered = response
        .hover_pos()
        .filter(|p| map_rect.contains(*p))
        .map(|p| frame.to_plane(p));
    if response.clicked() || response.dragged() {
        if let Some(p) = response.interact_pointer_pos() {
            let xy = frame.to_plane(map_rect.clamp(p));
            actions.push(LandscapeAction::SetWeights {
                weights: point_weights(&sweep.plane, xy),
                dragging: response.dragged() && !response.clicked(),
            });
        }
    }
    if response.drag_stopped() {
        actions.push(LandscapeAction::EndDrag);
    }
    if let Some(xy) = state.hovered {
        let text = hover_text(sweep, surface, &frame, xy);
        response.on_hover_ui_at_pointer(|ui| {
            ui.label(text);
        });
    }
}

/// `x, y`, the loss of the lattice point there and the weights of the point.
fn hover_text(sweep: &Sweep, surface: usize, frame: &MapFrame, xy: [f64; 2]) -> String {
    let w = sweep.plane.weights_at(xy[0], xy[1]);
    let loss = frame
        .cell_at(frame.to_screen(xy))
        .and_then(|(i, j)| sweep.values[surface][j * sweep.grid.size + i])
        .map_or("not scored yet".to_string(), |v| format!("loss {v:.5}"));
    format!(
        "x = {:.3}, y = {:.3}: {loss}; w_a = {:.3}, w_b = {:.3}",
        xy[0], xy[1], w[sweep.plane.a], w[sweep.plane.b]
    )
}

fn draw_marks(painter: &egui::Painter, frame: &MapFrame, sweep: &Sweep, merge: &MergeState) {
    let plane = &sweep.plane;
    let n = plane.n;
    let font = FontId::proportional(12.0);
    let dark = Color32::from_gray(20);
    // experts: the number in a box; a and b solid, the others' projections hollow
    for k in 0..n {
        let mut w = vec![0.0; n];
        w[k] = 1.0;
        let Ok(p) = plane.project(&w) else { continue };
        let at = frame.to_screen(p.xy);
        let spanning = k == plane.a || k == plane.b;
        let text = if k == plane.a {
            format!("{} a", k + 1)
        } else if k == plane.b {
            format!("{} b", k + 1)
        } else {
            format!("{}", k + 1)
        };
        let galley = painter.layout_no_wrap(text, font.clone(), dark);
        let r = Rect::from_center_size(at, galley.size() + Vec2::new(8.0, 4.0));
        let fill = if spanning {
            Color32::WHITE
        } else {
            Color32::from_white_alpha(150)
        };
        painter.rect_filled(r, 3.0, fill);
        painter.rect_stroke(r, 3.0, Stroke::new(1.0, dark), StrokeKind::Inside);
        painter.galley(r.center() - galley.size() / 2.0, galley, dark);
    }
    // the base: a cross
    let b = frame.to_screen([0.0, 0.0]);
    for (d, stroke) in [
        (7.0, Stroke::new(4.0, Color32::WHITE)),
        (6.0, Stroke::new(2.0, dark)),
    ] {
        painter.line_segment([b - Vec2::splat(d), b + Vec2::splat(d)], stroke);
        painter.line_segment([b + Vec2::new(-d, d), b + Vec2::new(d, -d)], stroke);
    }
    // the current merge: a ring that follows the sliders
    if let Some(xy) = merge_point(plane, merge.weights()) {
        let at = frame.to_screen(xy);
        painter.circle_stroke(at, 7.0, Stroke::new(4.0, Color32::WHITE));
        painter.circle_stroke(at, 7.0, Stroke::new(2.0, Color32::from_rgb(220, 40, 40)));
    }
}

/// The readouts, the legend, the merged preview and the export beside the map.
fn side_ui(
    ui: &mut egui::Ui,
    state: &mut LandscapeState,
    merge: &mut MergeState,
    names: &[String],
    actions: &mut Vec<LandscapeAction>,
) {
    let Some(sweep) = &state.sweep else { return };
    ui.set_width(340.0);
    let surfaces = sweep.values.len();
    let ranges = sweep.ranges.clone();
    egui::ComboBox::from_label("timesteps")
        .selected_text(range_name(&ranges, state.surface))
        .show_ui(ui, |ui| {
            for k in 0..surfaces {
                ui.selectable_value(&mut state.surface, k, range_name(&ranges, k));
            }
        })
        .response
        .on_hover_text("the loss over all timesteps, or over one expert's range");
    let surface = state.surface.min(surfaces - 1);
    let frame = MapFrame::new(
        Rect::from_min_size(Pos2::ZERO, Vec2::splat(1.0)),
        &sweep.grid,
    );
    ui.label(match state.hovered {
        Some(xy) => hover_text(sweep, surface, &frame, xy),
        None => "hover the map for x, y, the loss and the weights".into(),
    });
    ui.add_space(4.0);
    let plane = &sweep.plane;
    let w = merge.weights();
    match plane.project(&w.iter().map(|&v| f64::from(v)).collect::<Vec<_>>()) {
        Ok(p) => ui.label(format!(
            "current merge (ring): x = {:.3}, y = {:.3}; off the plane: {:.0}% of its task vector",
            p.xy[0],
            p.xy[1],
            100.0 * p.residual_rel
        )),
        Err(e) => ui.label(format!("current merge: {e}")),
    };
    ui.label(format!(
        "weights: {}",
        w.iter()
            .map(|v| format!("{v:.3}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    ui.add_space(4.0);
    let nm = |k: usize| {
        names
            .get(k)
            .cloned()
            .unwrap_or_else(|| format!("{}", k + 1))
    };
    ui.label(format!(
        "a = expert {}, b = expert {} at ({:.3}, {:.3}); cross: base, boxes: experts (others projected), ring: current merge",
        nm(plane.a),
        nm(plane.b),
        plane.b_xy[0],
        plane.b_xy[1]
    ));
    if !sweep.marks.is_empty() {
        egui::Grid::new("landscape-marks")
            .striped(true)
            .num_columns(3)
            .show(ui, |ui| {
                ui.strong("model");
                ui.strong("x, y");
                ui.strong(format!("loss ({})", range_name(&ranges, surface)));
                ui.end_row();
                for m in &sweep.marks {
                    let name = match (m.kind, m.model) {
                        (MarkKind::Model, Some(k)) => format!("expert {k}"),
                        _ => m.label.clone(),
                    };
                    let loss = if surface == 0 {
                        Some(m.loss)
                    } else {
                        m.per_range.get(surface - 1).copied()
                    };
                    ui.label(name);
                    ui.label(format!(
                        "{:.2}, {:.2}",
                        m.projection.xy[0], m.projection.xy[1]
                    ));
                    ui.label(loss.map_or("–".into(), |l| format!("{l:.5}")));
                    ui.end_row();
                }
            });
    }
    ui.add_space(6.0);
    ui.strong("Merged samples");
    let ctx = ui.ctx().clone();
    match merge
        .panel_mut(Panel::Merged)
        .texture(&ctx, Panel::Merged.title())
    {
        Some(tex) => {
            let size = tex.size_vec2();
            let scale = (200.0 / size.x.max(size.y)).max(1.0).floor().max(1.0);
            let scale = if size.x * scale > 320.0 {
                320.0 / size.x
            } else {
                scale
            };
            ui.add(egui::Image::new((tex.id(), size * scale)))
                .on_hover_text(
                    "the merge the sliders (or your click) set, as the Merge view shows it",
                );
        }
        None => {
            ui.label("waiting for the merged preview…");
        }
    }
    ui.add_space(6.0);
    ui.strong("Export the landscape");
    ui.horizontal(|ui| {
        let label = ui.label("folder");
        ui.add(egui::TextEdit::singleline(&mut state.export_dir).desired_width(180.0))
            .labelled_by(label.id);
        let ready = state.result.is_some();
        let button = ui
            .add_enabled(ready, egui::Button::new("Export"))
            .on_hover_text(
                "landscape.csv, landscape.json, a PNG and a numpy grid (.npy) per surface",
            )
            .on_disabled_hover_text("compute a landscape first");
        if button.clicked()
            && let Some(ls) = &state.result
        {
            let dir = PathBuf::from(state.export_dir.trim());
            actions.push(LandscapeAction::Export(ls.clone(), dir));
        }
    });
    if let Some(ls) = &state.result {
        ui.label(if ls.cancelled {
            format!(
                "cancelled after {} of {} points: the export holds the points scored",
                ls.done, ls.total
            )
        } else {
            format!(
                "all {} points scored on {} held-out samples each",
                ls.total, ls.eval.samples
            )
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plane() -> Plane {
        // tau_1 = (2, 0), tau_2 = (1, 3), tau_3 = (0, 0, 4)-ish: Gram of three vectors
        let vs = [[2.0, 0.0, 0.0], [1.0, 3.0, 0.0], [0.0, 0.0, 4.0]];
        let mut g = vec![0.0; 9];
        for i in 0..3 {
            for j in 0..3 {
                g[i * 3 + j] = (0..3).map(|k| vs[i][k] * vs[j][k]).sum();
            }
        }
        Plane::new(g, 3, 0, 1).unwrap()
    }

    fn frame() -> MapFrame {
        let grid = LandscapeGrid {
            size: 5,
            x: [0.0, 1.0],
            y: [-1.0, 1.0],
        };
        MapFrame::new(
            Rect::from_min_size(Pos2::new(100.0, 50.0), Vec2::splat(200.0)),
            &grid,
        )
    }

    #[test]
    fn screen_and_plane_round_trip_with_cell_centres_on_the_lattice() {
        let f = frame();
        // 5 cells of 40 px: x values 0, 0.25, .., 1 at the cell centres
        assert_eq!(f.to_screen([0.0, -1.0]), Pos2::new(120.0, 230.0));
        assert_eq!(f.to_screen([1.0, 1.0]), Pos2::new(280.0, 70.0));
        let p = f.to_plane(Pos2::new(200.0, 150.0));
        assert!((p[0] - 0.5).abs() < 1e-9 && p[1].abs() < 1e-9);
        for xy in [[0.3, -0.7], [0.9, 0.2], [-0.1, 1.1]] {
            let back = f.to_plane(f.to_screen(xy));
            assert!((back[0] - xy[0]).abs() < 1e-5 && (back[1] - xy[1]).abs() < 1e-5);
        }
        assert_eq!(f.cell_at(Pos2::new(121.0, 229.0)), Some((0, 0)));
        assert_eq!(f.cell_at(Pos2::new(299.0, 51.0)), Some((4, 4)));
        assert_eq!(f.cell_at(Pos2::new(99.0, 100.0)), None);
        assert!(f.cell_rect(2, 3).contains(f.to_screen([0.5, 0.5])));
    }

    #[test]
    fn plane_points_give_weights_and_weights_give_back_the_point() {
        let p = plane();
        // b = (1, 3) is at (0.5, 1.5) in units of |tau_a| = 2
        assert_eq!(p.b_xy, [0.5, 1.5]);
        assert_eq!(point_weights(&p, [1.0, 0.0]), vec![1.0, 0.0, 0.0]);
        assert_eq!(point_weights(&p, [0.5, 1.5]), vec![0.0, 1.0, 0.0]);
        let w = point_weights(&p, [0.4, 0.3]);
        assert_eq!(w, vec![0.3, 0.2, 0.0]);
        let xy = merge_point(&p, &w).unwrap();
        assert!((xy[0] - 0.4).abs() < 1e-6 && (xy[1] - 0.3).abs() < 1e-6);
        // the third expert is off the plane: only its in-plane part moves the mark
        let moved = merge_point(&p, &[0.3, 0.2, 0.5]).unwrap();
        assert!((moved[0] - xy[0]).abs() < 1e-6 && (moved[1] - xy[1]).abs() < 1e-6);
        let moved = merge_point(&p, &[0.6, 0.2, 0.0]).unwrap();
        assert!((moved[0] - 0.7).abs() < 1e-6 && (moved[1] - 0.3).abs() < 1e-6);
        assert_eq!(merge_point(&p, &[1.0]), None);
    }

    #[test]
    fn coarse_points_fill_their_blocks_until_finer_ones_arrive() {
        let mut f = Fill::new(5);
        f.scored(0, 0, 2);
        f.scored(2, 0, 2);
        assert_eq!(f.source(0, 0), Some(0));
        assert_eq!(f.source(1, 0), Some(2)); // the block of (2, 0) reaches (1, 0)
        assert_eq!(f.source(1, 1), Some(2));
        assert_eq!(f.source(4, 4), None);
        f.scored(1, 0, 1);
        assert_eq!(f.source(1, 0), Some(1));
        // a coarser point never overwrites a scored cell
        f.scored(2, 0, 2);
        assert_eq!(f.source(1, 0), Some(1));
    }

    #[test]
    fn contours_cross_the_edges_where_the_level_lies() {
        // v = i on a 3 x 3 lattice: the level 0.5 is the line i = 0.5
        let values: Vec<Option<f64>> = (0..9).map(|k| Some((k % 3) as f64)).collect();
        let segs = contour_segments(&values, 3, &[0.5]);
        assert_eq!(segs.len(), 2);
        for [p, q] in segs {
            assert!((p[0] - 0.5).abs() < 1e-12 && (q[0] - 0.5).abs() < 1e-12);
        }
        let mut missing = values.clone();
        missing[0] = None;
        assert_eq!(contour_segments(&missing, 3, &[0.5]).len(), 1);
    }

    #[test]
    fn contours_use_the_finest_complete_level() {
        let grid = LandscapeGrid {
            size: 9,
            x: [0.0, 1.0],
            y: [0.0, 1.0],
        };
        // v = i; only the stride-2 points scored: the level 3 runs along i = 3
        let mut values = vec![None; 81];
        for j in (0..9).step_by(2) {
            for i in (0..9).step_by(2) {
                values[j * 9 + i] = Some(i as f64);
            }
        }
        assert!(scored_contours(&values, &grid, &[3.0]).len() == 4);
        for [p, q] in scored_contours(&values, &grid, &[3.0]) {
            assert!((p[0] - 3.0).abs() < 1e-12 && (q[0] - 3.0).abs() < 1e-12);
        }
        values[0] = None;
        assert!(scored_contours(&values, &grid, &[3.0]).is_empty());
    }

    #[test]
    fn ticks_are_round() {
        assert_eq!(nice_ticks(-0.2, 1.2, 6), vec![0.0, 0.25, 0.5, 0.75, 1.0]);
        let t = nice_ticks(0.0, 1.0, 5);
        assert_eq!(t.len(), 6);
        assert!((t[3] - 0.6).abs() < 1e-12);
        assert!(nice_ticks(1.0, 1.0, 5).is_empty());
    }
}

//! Grid search in the merge view: settings, start / cancel, progress, and the
//! results table whose rows load their weights when clicked.

use super::grid_job::GridJob;
use crate::app::job_slot::{JobSlot, Outcome, Report, Waker};
use crate::engine::search::{
    CmaesSettings, GridEvent, GridPoint, GridResult, GridSpec, LearnSettings, Strategy,
};

/// Rows shown in the results table.
const TABLE_ROWS: usize = 12;

/// What the grid panel asks the app to do.
#[derive(Debug, Clone)]
pub enum GridAction {
    /// Start this search.
    Start(GridJob),
    /// Load these weights into the sliders.
    Load(Vec<f32>),
}

/// How the panel visits the lattice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchKind {
    /// Coarse lattice, then around the 3 best points.
    Refine,
    /// One weight at a time (not with Σw = 1).
    Coordinate,
    /// Every point.
    Exhaustive,
    /// Gradient descent on the weights (not with Σw = 1).
    Learned,
    /// CMA-ES: samples the weights, derivative-free (not with Σw = 1).
    Cmaes,
}

impl SearchKind {
    /// Every kind, in menu order.
    pub const ALL: [SearchKind; 5] = [
        SearchKind::Refine,
        SearchKind::Coordinate,
        SearchKind::Exhaustive,
        SearchKind::Learned,
        SearchKind::Cmaes,
    ];

    /// Menu label.
    pub fn label(self) -> &'static str {
        match self {
            SearchKind::Refine => "refine",
            SearchKind::Coordinate => "coordinate",
            SearchKind::Exhaustive => "exhaustive",
            SearchKind::Learned => "learned",
            SearchKind::Cmaes => "CMA-ES",
        }
    }

    /// What the menu entry does.
    pub fn help(self) -> &'static str {
        match self {
            SearchKind::Refine => {
                "score a coarse lattice, then only around the best points (far fewer points)"
            }
            SearchKind::Coordinate => {
                "scan one weight at a time over all its values, sweeping until nothing moves (fewest points; weights not tied to Σw = 1)"
            }
            SearchKind::Exhaustive => "score every lattice point, coarse ones first",
            SearchKind::Learned => {
                "follow the gradient of the held-out loss in the weights (one backward pass a step), fitted on half the samples and stopped on the other half; the sliders move along the path (weights not tied to Σw = 1)"
            }
            SearchKind::Cmaes => {
                "sample weights from a normal distribution that learns where the better merges lie (derivative-free, as for objectives without a gradient); the sliders move to each new best; it stops after 60 merges or once its spread is below half the step (weights not tied to Σw = 1)"
            }
        }
    }

    /// Whether the kind can keep Σw = 1.
    pub fn supports_sum_to_one(self) -> bool {
        !matches!(
            self,
            SearchKind::Coordinate | SearchKind::Learned | SearchKind::Cmaes
        )
    }
}

/// Weights the sliders should take from a running learned search.
#[derive(Debug, Clone, PartialEq)]
pub struct Follow {
    /// The weights.
    pub weights: Vec<f32>,
    /// Still moving (a preview at drag quality, one undo entry at the end).
    pub dragging: bool,
}

fn as_f32(w: &[f64]) -> Vec<f32> {
    w.iter().map(|&v| v as f32).collect()
}

/// Settings, progress and results of the grid search.
pub struct GridState {
    /// Finest lattice spacing.
    pub step: f64,
    /// Only weights summing to 1.
    pub sum_to_one: bool,
    /// How the lattice is visited.
    pub kind: SearchKind,
    job: JobSlot<GridEvent, GridResult, ()>,
    /// The kind of the last search started.
    started: Option<SearchKind>,
    planned: usize,
    /// Points scored so far, in order.
    pub points: Vec<GridPoint>,
    /// Best point so far.
    pub best: Option<GridPoint>,
    /// How the last search ended.
    pub outcome: Option<String>,
}

impl Default for GridState {
    fn default() -> Self {
        Self {
            step: 0.25,
            sum_to_one: true,
            kind: SearchKind::Refine,
            job: JobSlot::default(),
            started: None,
            planned: 0,
            points: Vec::new(),
            best: None,
            outcome: None,
        }
    }
}

impl GridState {
    /// Whether a search is running.
    pub fn running(&self) -> bool {
        self.job.is_running()
    }

    /// A job for `n` weights with the current settings; marks the search running.
    pub fn start(&mut self, n: usize, waker: &Waker) -> GridJob {
        let (cancel, sink) = self.job.start((), waker);
        self.points.clear();
        self.best = None;
        self.planned = 0;
        self.outcome = None;
        self.started = Some(self.kind);
        GridJob {
            spec: GridSpec {
                n,
                lo: 0.0,
                hi: 1.0,
                step: self.step,
                sum_to_one: self.sum_to_one && self.kind.supports_sum_to_one(),
            },
            strategy: match self.kind {
                SearchKind::Refine => Strategy::Refine { keep: 3 },
                SearchKind::Coordinate => Strategy::Coordinate { sweeps: 8 },
                SearchKind::Exhaustive => Strategy::Exhaustive,
                SearchKind::Learned => Strategy::Learned(LearnSettings::default()),
                SearchKind::Cmaes => Strategy::Cmaes(CmaesSettings::default()),
            },
            cancel,
            sink,
        }
    }

    /// Asks the running search to stop after its current point.
    pub fn cancel(&mut self) {
        self.job.cancel();
    }

    /// The path of the last search when it was a learned one: the weights of
    /// the start and of every step, in order.
    pub fn learned_path(&self) -> Option<Vec<Vec<f32>>> {
        (self.started == Some(SearchKind::Learned))
            .then(|| self.points.iter().map(|p| as_f32(&p.weights)).collect())
    }

    /// Applies what the search reported since the last frame; for a learned
    /// search, the weights the sliders should follow (each new step while it
    /// runs, the best step once it ends); for CMA-ES, each new best.
    pub fn poll(&mut self) -> Option<Follow> {
        let learned = self.started == Some(SearchKind::Learned);
        let sampled = self.started == Some(SearchKind::Cmaes);
        let mut follow = None;
        for report in self.job.poll() {
            match report {
                Report::Update(GridEvent::Level { points, .. }) => self.planned += points,
                Report::Update(GridEvent::Point { point, best, .. }) => {
                    let new_best = self.best.as_ref() != Some(&best);
                    if learned || (sampled && new_best) {
                        let weights = if learned {
                            &point.weights
                        } else {
                            &best.weights
                        };
                        follow = Some(Follow {
                            weights: as_f32(weights),
                            dragging: true,
                        });
                    }
                    self.points.push(point);
                    self.best = Some(best);
                }
                Report::Finished(outcome) => {
                    if (learned || sampled)
                        && let Some(best) = &self.best
                    {
                        follow = Some(Follow {
                            weights: as_f32(&best.weights),
                            dragging: false,
                        });
                    }
                    self.outcome = Some(match outcome {
                        Outcome::Done(r) if r.cancelled => {
                            format!("cancelled after {} points", r.points.len())
                        }
                        Outcome::Done(r) => format!("finished: {} points scored", r.points.len()),
                        Outcome::Cancelled => "cancelled".into(),
                        Outcome::Failed(e) => format!("failed: {e}"),
                    })
                }
            }
        }
        follow
    }

    /// Forgets results (new models).
    pub fn reset(&mut self) {
        self.job.clear();
        *self = Self {
            step: self.step,
            sum_to_one: self.sum_to_one,
            kind: self.kind,
            ..Self::default()
        };
    }
}

fn fmt_weights(w: &[f64]) -> String {
    w.iter()
        .map(|v| format!("{v:.2}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Draws the grid-search section.
pub fn grid_ui(
    ui: &mut egui::Ui,
    g: &mut GridState,
    n: usize,
    can_run: bool,
    waker: &Waker,
) -> Option<GridAction> {
    let mut action = None;
    ui.horizontal_wrapped(|ui| {
        ui.label("step");
        ui.add_enabled(
            !g.running(),
            egui::DragValue::new(&mut g.step)
                .range(0.05..=0.5)
                .speed(0.01)
                .fixed_decimals(2),
        )
        .on_hover_text("finest lattice spacing of each weight in [0, 1]");
        ui.add_enabled_ui(!g.running(), |ui| {
            egui::ComboBox::from_id_salt("grid-search-kind")
                .selected_text(g.kind.label())
                .show_ui(ui, |ui| {
                    for kind in SearchKind::ALL {
                        ui.selectable_value(&mut g.kind, kind, kind.label())
                            .on_hover_text(kind.help());
                    }
                })
                .response
                .on_hover_text(g.kind.help());
        });
        let tie_ok = g.kind.supports_sum_to_one();
        // shown unticked where the kind cannot tie the weights; the setting is kept
        let mut tied = g.sum_to_one && tie_ok;
        ui.add_enabled(
            !g.running() && tie_ok,
            egui::Checkbox::new(&mut tied, "Σw = 1"),
        )
        .on_hover_text("only weights summing to 1")
        .on_disabled_hover_text(
            "the coordinate search, learned weights and CMA-ES move the weights freely",
        );
        if tie_ok {
            g.sum_to_one = tied;
        }
        if g.running() {
            if ui.button("Cancel").clicked() {
                g.cancel();
            }
        } else if ui
            .add_enabled(can_run && n > 0, egui::Button::new("Start search"))
            .on_hover_text("score merges on the held-out loss (task arithmetic, lower is better)")
            .on_disabled_hover_text("needs models with a held-out set")
            .clicked()
        {
            action = Some(GridAction::Start(g.start(n, waker)));
        }
    });
    if g.running() || !g.points.is_empty() {
        let done = g.points.len();
        let frac = if g.planned > 0 {
            done as f32 / g.planned as f32
        } else {
            0.0
        };
        let unit = if g.started == Some(SearchKind::Learned) {
            "steps"
        } else {
            "points"
        };
        let text = format!("{done} / {} {unit}", g.planned.max(done));
        ui.add(egui::ProgressBar::new(frac).text(text));
    }
    if let Some(o) = &g.outcome {
        ui.label(o);
    }
    if g.points.is_empty() {
        return action;
    }
    let mut ranked: Vec<&GridPoint> = g.points.iter().collect();
    ranked.sort_by(|a, b| a.score.loss.total_cmp(&b.score.loss));
    ui.label(if g.started == Some(SearchKind::Learned) {
        "best steps of the descent (click a row to load its weights; the Landscape view draws the path):"
    } else {
        "best merges (click a row to load its weights):"
    });
    egui::Grid::new("grid-results")
        .striped(true)
        .num_columns(3)
        .show(ui, |ui| {
            ui.strong("#");
            ui.strong("weights w₁…w_N");
            ui.strong(if g.started == Some(SearchKind::Learned) {
                "held-out loss (check half)"
            } else {
                "held-out loss"
            })
            .on_hover_text(if g.started == Some(SearchKind::Learned) {
                "learned weights are fitted on half the held-out samples and scored on the other half"
            } else {
                "on the fixed held-out samples"
            });
            ui.end_row();
            for (i, p) in ranked.iter().take(TABLE_ROWS).enumerate() {
                ui.label(format!("{}", i + 1));
                if ui
                    .selectable_label(false, fmt_weights(&p.weights))
                    .on_hover_text("load these weights")
                    .clicked()
                {
                    action = Some(GridAction::Load(as_f32(&p.weights)));
                }
                ui.label(format!("{:.5}", p.score.loss));
                ui.end_row();
            }
        });
    action
}

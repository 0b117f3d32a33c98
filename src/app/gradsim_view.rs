//! The gradient-conflict view: the base model's per-timestep gradient cosine
//! similarities as a K x K heatmap (hover for the values), the histogram of
//! pair similarities and the per-block breakdown, most conflicting first.

use super::command::AppCommand;
use super::gradsim_job::{GradSimJob, GradSimUpdate};
use super::job_slot::{JobSlot, Outcome, Report, Waker};
use super::merge_worker::Command;
use super::page_ctx::PageCtx;
use super::save_job::SaveJob;
use super::session::NUM_TRAIN_TIMESTEPS;
use super::widgets::heatmap::{Columns, CosineHeatmap, cosine_color};
use crate::engine::analysis::gradsim::{GradSimResult, describe_pairs};
use crate::engine::analysis::{GradSimConfig, Granularity};
use egui::{Color32, Sense, Vec2};
use egui_plot::{Bar, BarChart, Legend, Plot};
use std::sync::Arc;

/// The timestep range whose pairs the histogram shows apart (the first expert's
/// range of a four-way split).
pub const FOCUS_RANGE: (usize, usize) = (0, 250);

/// Label of the heatmap (for tests and screen readers).
pub const HEATMAP_LABEL: &str = "gradient cosine heatmap";

/// Settings, progress and result of the view.
#[derive(Debug)]
pub struct GradSimState {
    /// Number of timesteps K (evenly spaced over [0, T)).
    pub k: usize,
    /// Number of fixed batches M the gradients are averaged over.
    pub batches: usize,
    /// Samples per batch.
    pub batch_size: usize,
    /// The computation going: `(done, total)` backward passes.
    job: JobSlot<GradSimUpdate, Arc<GradSimResult>, (usize, usize)>,
    result: Option<Arc<GradSimResult>>,
    /// Where the shown result comes from when not from Compute (a training
    /// run's checkpoint); `None`: the open set's base.
    source: Option<String>,
    /// Why the last computation failed.
    pub error: Option<String>,
    /// The heatmap cell under the pointer, `(row, column)`.
    hovered: Option<(usize, usize)>,
    /// Folder the Export button writes into.
    pub export_dir: String,
}

impl Default for GradSimState {
    fn default() -> Self {
        Self {
            k: 10,
            batches: 1,
            batch_size: 8,
            job: JobSlot::default(),
            result: None,
            source: None,
            error: None,
            hovered: None,
            export_dir: "gradient-conflicts".into(),
        }
    }
}

/// What the view asks the app to do.
#[derive(Debug, Clone)]
pub enum GradSimAction {
    /// Start this computation.
    Compute(GradSimJob),
    /// Write the result (`heatmap.png`, `cosine.csv`, `cosine.npy`,
    /// `timesteps.npy`, `groups.csv`, `gradsim.json`) into this folder.
    Export(Arc<GradSimResult>, std::path::PathBuf),
}

impl GradSimState {
    /// The last result.
    pub fn result(&self) -> Option<&Arc<GradSimResult>> {
        self.result.as_ref()
    }

    /// Where the shown result comes from: `None` for the open set's base
    /// (Compute), else e.g. `training run pretrain, step 20`.
    pub fn source(&self) -> Option<&str> {
        self.source.as_deref()
    }

    /// What the shown result was taken of, for the caption.
    pub fn caption(&self) -> String {
        match &self.source {
            Some(s) => format!("Showing: {s} (updated at each checkpoint)"),
            None => "Showing: the base of the open model set".into(),
        }
    }

    /// Shows a result taken elsewhere (a training run's checkpoint) in place
    /// of the last one; a running computation keeps going, and its result
    /// replaces this one when it ends.
    pub fn show_live(&mut self, result: Arc<GradSimResult>, source: String) {
        if self.result.as_ref().is_none_or(|r| r.k() != result.k()) {
            self.hovered = None;
        }
        self.result = Some(result);
        self.source = Some(source);
        if !self.job.is_running() {
            self.error = None;
        }
    }

    /// Whether a computation runs.
    pub fn is_running(&self) -> bool {
        self.job.is_running()
    }

    /// `(done, total)` backward passes of the running computation.
    pub fn progress(&self) -> Option<(usize, usize)> {
        self.job.progress().copied()
    }

    /// The configuration the settings describe.
    pub fn config(&self) -> GradSimConfig {
        GradSimConfig {
            timesteps: GradSimConfig::even_timesteps(self.k.max(2), NUM_TRAIN_TIMESTEPS),
            batches: self.batches.max(1),
            batch_size: self.batch_size.max(1),
            granularity: Granularity::Block,
            ..GradSimConfig::default()
        }
    }

    /// Marks a computation as started (a running one is cancelled) and
    /// returns the job to run, reporting to this view through `waker`.
    pub fn start(&mut self, waker: &Waker) -> GradSimJob {
        let config = self.config();
        let total = config.batches * config.timesteps.len();
        let (cancel, sink) = self.job.start((0, total), waker);
        self.error = None;
        GradSimJob {
            config,
            cancel,
            sink,
        }
    }

    /// Asks the running computation to stop.
    pub fn cancel(&mut self) {
        self.job.cancel();
    }

    /// Forgets the result (another model set was opened).
    pub fn reset(&mut self) {
        self.job.clear();
        self.result = None;
        self.source = None;
        self.error = None;
        self.hovered = None;
    }

    /// Applies what the running computation reported since the last frame.
    pub fn poll(&mut self) {
        for report in self.job.poll() {
            match report {
                Report::Update(GradSimUpdate::Preparing) => {}
                Report::Update(GradSimUpdate::Progress(p)) => {
                    if let Some(progress) = self.job.progress_mut() {
                        *progress = (p.done, p.total);
                    }
                }
                Report::Finished(Outcome::Done(r)) => {
                    self.result = Some(r);
                    self.source = None;
                    self.hovered = None;
                }
                Report::Finished(Outcome::Cancelled) => self.error = Some("cancelled".into()),
                Report::Finished(Outcome::Failed(e)) => self.error = Some(e),
            }
        }
    }
}

/// Draws the view; returns what the app should do.
pub fn gradsim_ui(
    ui: &mut egui::Ui,
    state: &mut GradSimState,
    waker: &Waker,
) -> Vec<GradSimAction> {
    let mut actions = Vec::new();
    ui.heading(if state.source.is_some() {
        "Gradient conflicts of a training checkpoint"
    } else {
        "Gradient conflicts of the base model"
    });
    ui.label(
        "Cosine similarity of the loss gradients at K timesteps, averaged over M fixed batches. \
         Negative values (blue) mean that training at one timestep works against another: \
         the conflicts DeMe avoids by finetuning one expert per timestep range.",
    );
    ui.add_space(4.0);
    controls_ui(ui, state, waker, &mut actions);
    if let Some(e) = &state.error {
        ui.colored_label(ui.visuals().error_fg_color, e);
    }
    ui.separator();
    let Some(result) = state.result.clone() else {
        if !state.job.is_running() {
            ui.label(
                "Press Compute to take the gradients of the base model, \
                 or train with \"Gradient conflicts at each checkpoint\" ticked in the Train view.",
            );
        }
        return actions;
    };
    if state.source.is_some() {
        ui.strong(state.caption());
    }
    ui.horizontal(|ui| {
        let label = ui.label("Export (PNG, CSV, JSON) into");
        ui.add(egui::TextEdit::singleline(&mut state.export_dir).desired_width(320.0))
            .labelled_by(label.id)
            .on_hover_text(
                "heatmap.png, cosine.csv (t_i, t_j, cosine), cosine.npy and timesteps.npy (for numpy), groups.csv and gradsim.json",
            );
        let folder = state.export_dir.trim();
        if ui
            .add_enabled(!folder.is_empty(), egui::Button::new("Export"))
            .clicked()
        {
            actions.push(GradSimAction::Export(result.clone(), folder.into()));
        }
    });
    egui::ScrollArea::vertical()
        .id_salt("gradsim-scroll")
        .show(ui, |ui| result_ui(ui, state, &result));
    actions
}

fn controls_ui(
    ui: &mut egui::Ui,
    state: &mut GradSimState,
    waker: &Waker,
    actions: &mut Vec<GradSimAction>,
) {
    let running = state.job.is_running();
    ui.horizontal(|ui| {
        ui.add_enabled_ui(!running, |ui| {
            ui.label("K timesteps");
            ui.add(egui::DragValue::new(&mut state.k).range(2..=50))
                .on_hover_text("timesteps compared, evenly spaced over [0, 1000)");
            ui.label("M batches");
            ui.add(egui::DragValue::new(&mut state.batches).range(1..=16))
                .on_hover_text("fixed batches the gradients are averaged over");
            ui.label("batch size");
            ui.add(egui::DragValue::new(&mut state.batch_size).range(1..=256))
                .on_hover_text("samples per batch");
            if ui
                .button("Compute")
                .on_hover_text("take K x M backward passes of the base on its training data")
                .clicked()
            {
                actions.push(GradSimAction::Compute(state.start(waker)));
            }
        });
        if state.job.is_running() && ui.button("Cancel").clicked() {
            state.cancel();
        }
    });
    if let Some(&(done, total)) = state.job.progress() {
        let fraction = if total > 0 {
            done as f32 / total as f32
        } else {
            0.0
        };
        ui.add(
            egui::ProgressBar::new(fraction)
                .desired_width(360.0)
                .text(format!("{done} of {total} backward passes")),
        );
    }
}

fn result_ui(ui: &mut egui::Ui, state: &mut GradSimState, result: &GradSimResult) {
    let k = result.k();
    ui.label(format!(
        "K = {k} timesteps, M = {} batch(es) of {}, {} gradients",
        result.config.batches,
        result.config.batch_size,
        if result.exact { "exact" } else { "sketched" }
    ));
    ui.horizontal_top(|ui| {
        ui.vertical(|ui| {
            let side =
                (ui.available_height().min(ui.available_width() - 300.0)).clamp(200.0, 420.0);
            heatmap_ui(ui, state, result, side);
            let text = match state.hovered {
                Some((i, j)) => format!(
                    "t_i = {}, t_j = {}: cosine {:.3}",
                    result.timesteps[i],
                    result.timesteps[j],
                    result.cosine[i * k + j]
                ),
                None => "hover a cell for t_i, t_j and the cosine".to_string(),
            };
            ui.label(text);
        });
        ui.add_space(12.0);
        ui.vertical(|ui| {
            groups_ui(ui, result);
            ui.add_space(8.0);
            histogram_ui(ui, result);
        });
    });
}

fn heatmap_ui(ui: &mut egui::Ui, state: &mut GradSimState, result: &GradSimResult, side: f32) {
    let labels: Vec<String> = result.timesteps.iter().map(|t| t.to_string()).collect();
    let (response, hovered) = CosineHeatmap {
        values: &result.cosine,
        labels: &labels,
        side,
        columns: Columns::Below {
            rows: "t_i",
            columns: "t_j",
        },
        values_in_cells: false,
        name: HEATMAP_LABEL,
    }
    .show(ui);
    state.hovered = hovered;
    if let Some((i, j)) = hovered {
        let k = result.k();
        let (ti, tj, c) = (
            result.timesteps[i],
            result.timesteps[j],
            result.cosine[i * k + j],
        );
        response.on_hover_ui_at_pointer(|ui| {
            ui.label(format!("t_i = {ti}\nt_j = {tj}\ncosine {c:.3}"));
        });
    }
}

fn histogram_ui(ui: &mut egui::Ui, result: &GradSimResult) {
    let all = result.pair_values(None);
    let focus = result.pair_values(Some(FOCUS_RANGE));
    let (lo, hi) = FOCUS_RANGE;
    ui.strong("Pair similarities");
    ui.label(format!("all pairs: {}", describe_pairs(&all)));
    ui.label(format!("pairs in [{lo}, {hi}): {}", describe_pairs(&focus)));
    let bins = 20;
    let width = 2.0 / bins as f64;
    let histogram = |values: &[f64], bar_width: f64, fill: Color32| -> Vec<Bar> {
        let mut counts = vec![0usize; bins];
        for v in values {
            let b = (((v + 1.0) / width) as usize).min(bins - 1);
            counts[b] += 1;
        }
        counts
            .iter()
            .enumerate()
            .map(|(b, &n)| {
                Bar::new(-1.0 + (b as f64 + 0.5) * width, n as f64)
                    .width(bar_width)
                    .fill(fill)
            })
            .collect()
    };
    let all_color = Color32::from_rgb(120, 140, 170);
    let focus_color = Color32::from_rgb(230, 140, 40);
    let all_chart = BarChart::new(
        format!("all pairs ({})", all.len()),
        histogram(&all, width * 0.9, all_color),
    )
    .color(all_color);
    let focus_chart = BarChart::new(
        format!("pairs in [{lo}, {hi}) ({})", focus.len()),
        histogram(&focus, width * 0.45, focus_color),
    )
    .color(focus_color);
    Plot::new("gradsim-histogram")
        .height(180.0)
        .legend(Legend::default())
        .allow_drag(false)
        .allow_zoom(false)
        .allow_scroll(false)
        .allow_boxed_zoom(false)
        .include_x(-1.0)
        .include_x(1.0)
        .include_y(0.0)
        .x_axis_label("cosine similarity")
        .y_axis_label("pairs")
        .show(ui, |p| {
            p.bar_chart(all_chart);
            p.bar_chart(focus_chart);
        });
}

fn groups_ui(ui: &mut egui::Ui, result: &GradSimResult) {
    ui.strong("Per block, most conflicting first");
    ui.label("mean off-diagonal cosine of each block's gradient");
    egui::ScrollArea::vertical()
        .id_salt("gradsim-groups")
        .max_height(250.0)
        .show(ui, |ui| {
            egui::Grid::new("gradsim-groups-grid")
                .striped(true)
                .num_columns(3)
                .show(ui, |ui| {
                    ui.strong("block");
                    ui.strong("params");
                    ui.strong("mean cosine");
                    ui.end_row();
                    for (name, params, mean) in result.groups_by_conflict() {
                        ui.monospace(&name);
                        ui.label(params.to_string());
                        ui.horizontal(|ui| {
                            let (r, _) = ui.allocate_exact_size(Vec2::splat(12.0), Sense::hover());
                            ui.painter().rect_filled(r, 2.0, cosine_color(mean));
                            ui.label(format!("{mean:.3}"));
                        });
                        ui.end_row();
                    }
                });
        });
}

/// Draws the Gradient-conflicts view; returns what the app should do.
pub fn gradsim_page(ui: &mut egui::Ui, state: &mut GradSimState, ctx: &PageCtx) -> Vec<AppCommand> {
    // a training run's live result shows even without an open set
    if ctx.models.info.is_none() && state.source().is_none() {
        return ctx.no_models_page(
            ui,
            "Gradient conflicts of the base model",
            "Open a model set: this view computes the gradient conflicts of its base model.",
        );
    }
    let actions = egui::CentralPanel::default()
        .show(ui, |ui| gradsim_ui(ui, state, ctx.waker))
        .inner;
    actions
        .into_iter()
        .map(|a| match a {
            GradSimAction::Compute(job) => AppCommand::Worker(Command::GradSim(job)),
            GradSimAction::Export(result, dir) => AppCommand::Save(SaveJob::gradsim(result, dir)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::analysis::gradsim::GradSimProgress;

    fn result(k: usize) -> Arc<GradSimResult> {
        let cosine = (0..k * k)
            .map(|n| if n / k == n % k { 1.0 } else { 0.5 })
            .collect();
        Arc::new(GradSimResult {
            timesteps: GradSimConfig::even_timesteps(k, NUM_TRAIN_TIMESTEPS),
            cosine,
            norms: vec![1.0; k],
            groups: Vec::new(),
            exact: true,
            config: GradSimConfig::default(),
        })
    }

    #[test]
    fn a_live_result_shows_with_its_source() {
        let mut s = GradSimState::default();
        assert!(s.source().is_none());
        assert!(s.caption().contains("the base"));
        s.show_live(result(3), "training run pretrain, step 8".into());
        assert_eq!(s.result().map(|r| r.k()), Some(3));
        assert_eq!(s.source(), Some("training run pretrain, step 8"));
        assert!(s.caption().contains("training run pretrain, step 8"));
        assert!(!s.is_running());
        s.show_live(result(4), "training run pretrain, step 16".into());
        assert_eq!(s.result().map(|r| r.k()), Some(4));
        assert_eq!(s.source(), Some("training run pretrain, step 16"));
    }

    #[test]
    fn a_live_result_leaves_a_running_compute_alone_and_its_result_wins() {
        let mut s = GradSimState::default();
        let job = s.start(&Waker::new(|| {}));
        job.sink.update(GradSimUpdate::Progress(GradSimProgress {
            done: 3,
            total: 10,
        }));
        s.poll();
        s.show_live(result(3), "training run expert_0, step 50".into());
        assert!(s.is_running());
        assert_eq!(s.progress(), Some((3, 10)));
        assert!(!job.cancel.is_cancelled());
        assert_eq!(s.source(), Some("training run expert_0, step 50"));
        job.sink.update(GradSimUpdate::Progress(GradSimProgress {
            done: 4,
            total: 10,
        }));
        s.poll();
        assert_eq!(s.progress(), Some((4, 10)));
        job.sink.finish(Outcome::Done(result(10)));
        s.poll();
        assert!(!s.is_running());
        assert_eq!(s.result().map(|r| r.k()), Some(10));
        assert!(s.source().is_none(), "Compute's result is of the base");
        // and a later live update replaces Compute's
        s.show_live(result(5), "training run expert_0, step 100".into());
        assert_eq!(s.result().map(|r| r.k()), Some(5));
        assert!(s.source().is_some());
    }

    #[test]
    fn a_cancelled_or_failed_compute_keeps_the_live_result() {
        let mut s = GradSimState::default();
        s.show_live(result(3), "training run pretrain, step 8".into());
        let job = s.start(&Waker::new(|| {}));
        s.cancel();
        job.sink
            .finish(Outcome::of(Err(anyhow::anyhow!("stopped")), &job.cancel));
        s.poll();
        assert_eq!(s.error.as_deref(), Some("cancelled"));
        assert_eq!(s.result().map(|r| r.k()), Some(3));
        assert_eq!(s.source(), Some("training run pretrain, step 8"));
        // a live update clears the stale error; reset forgets everything
        s.show_live(result(3), "training run pretrain, step 16".into());
        assert!(s.error.is_none());
        s.reset();
        assert!(s.result().is_none() && s.source().is_none());
    }
}

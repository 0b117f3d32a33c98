//! The gradient-conflict page: settings, Compute and Cancel, progress, the
//! export row and the result.

use super::job::GradSimJob;
use super::plots::result_ui;
use super::state::GradSimState;
use crate::app::command::AppCommand;
use crate::app::job_slot::Waker;
use crate::app::merge_worker::Command;
use crate::app::page_ctx::PageCtx;
use crate::app::save_job::SaveJob;
use crate::app::session::NUM_TRAIN_TIMESTEPS;
use crate::engine::analysis::gradsim::GradSimResult;
use crate::engine::analysis::range_split::{suggest_ranges, uniform_split};
use crate::engine::train::fmt_boundaries;
use std::sync::Arc;

/// What the view asks the app to do.
#[derive(Debug, Clone)]
pub enum GradSimAction {
    /// Start this computation.
    Compute(GradSimJob),
    /// Write the result (`heatmap.png`, `cosine.csv`, `cosine.npy`,
    /// `timesteps.npy`, `groups.csv`, `gradsim.json`) into this folder.
    Export(Arc<GradSimResult>, std::path::PathBuf),
    /// Finetune experts on these range boundaries (fills the Train view).
    UseRanges(Vec<usize>),
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
            GradSimAction::UseRanges(boundaries) => AppCommand::UseBoundaries(boundaries),
        })
        .collect()
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
    suggest_ui(ui, state, &result, &mut actions);
    egui::ScrollArea::vertical()
        .id_salt("gradsim-scroll")
        .show(ui, |ui| result_ui(ui, state, &result));
    actions
}

/// The N ranges whose gradients agree most, beside the uniform split, and a
/// button that finetunes on them.
fn suggest_ui(
    ui: &mut egui::Ui,
    state: &mut GradSimState,
    result: &GradSimResult,
    actions: &mut Vec<GradSimAction>,
) {
    let big_t = NUM_TRAIN_TIMESTEPS;
    ui.horizontal_wrapped(|ui| {
        let label = ui.label("Suggest N ranges");
        let max = result.k().max(1);
        ui.add(egui::DragValue::new(&mut state.suggest_n).range(1..=max))
            .labelled_by(label.id)
            .on_hover_text(
                "the N contiguous timestep ranges whose gradients agree most within each range \
                 (dynamic programming over the K timesteps)",
            );
        let n = state.suggest_n.clamp(1, max);
        match suggest_ranges(&result.cosine, &result.timesteps, big_t, n) {
            Ok(split) => {
                let uniform = uniform_split(&result.cosine, &result.timesteps, big_t, n)
                    .map_or("n/a".to_string(), |u| format!("{:.3}", u.score));
                ui.label(format!(
                    "boundaries {} (within-range score {:.3}; uniform {uniform})",
                    fmt_boundaries(&split.boundaries),
                    split.score
                ));
                if ui
                    .button("Finetune on these ranges")
                    .on_hover_text("fill the Train view's range boundaries and open it")
                    .clicked()
                {
                    actions.push(GradSimAction::UseRanges(split.boundaries));
                }
            }
            Err(e) => {
                ui.colored_label(ui.visuals().error_fg_color, format!("{e:#}"));
            }
        }
    });
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
            state.job.cancel();
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

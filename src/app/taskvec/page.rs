//! The task-vector page: grouping, Recompute and Cancel, the summary, the
//! plots and the export row.

use super::job::{EXPORT_FILES, TaskVecResult};
use super::plots::{cosine_ui, groups_ui, norms_ui};
use super::state::{TaskVecAction, TaskVecState};
use crate::app::command::AppCommand;
use crate::app::dialogs::DialogKind;
use crate::app::job_slot::Waker;
use crate::app::merge_worker::Command;
use crate::app::page_ctx::PageCtx;
use crate::engine::analysis::Granularity;

/// Draws the task-vector view (computing the statistics of a newly opened
/// set by itself); returns what the app should do.
pub fn taskvec_page(ui: &mut egui::Ui, state: &mut TaskVecState, ctx: &PageCtx) -> Vec<AppCommand> {
    if ctx.models.info.is_none() {
        return ctx.no_models_page(
            ui,
            "Task vectors of the experts",
            "Open a model set: this view compares what finetuning changed in each expert.",
        );
    }
    let mut actions = Vec::new();
    if state.wants_auto_start() && ctx.models.loading.is_none() {
        actions.push(TaskVecAction::Compute(state.start(ctx.waker)));
    }
    let more = egui::CentralPanel::default()
        .show(ui, |ui| taskvec_ui(ui, state, ctx.waker))
        .inner;
    actions.extend(more);
    let mut commands = Vec::new();
    for a in actions {
        match a {
            TaskVecAction::Compute(job) => {
                commands.push(AppCommand::Worker(Command::TaskVectors(job)))
            }
            TaskVecAction::Export(task) => commands.push(AppCommand::Spawn(task)),
            TaskVecAction::PickFolder => {
                commands.push(AppCommand::Dialog(DialogKind::ExportTaskVectors))
            }
        }
    }
    commands
}

/// Draws the view; returns what the app should do.
pub fn taskvec_ui(
    ui: &mut egui::Ui,
    state: &mut TaskVecState,
    waker: &Waker,
) -> Vec<TaskVecAction> {
    let mut actions = Vec::new();
    ui.heading("Task vectors of the experts");
    ui.label(
        "A task vector τ_i = θ_i − θ is what finetuning changed in the base to make expert i. \
         Its norm says how far the expert moved, the cosine between two task vectors whether \
         two experts moved the same way (1), independently (0) or against each other (−1).",
    );
    ui.add_space(4.0);
    controls_ui(ui, state, waker, &mut actions);
    if let Some(e) = &state.error {
        ui.colored_label(ui.visuals().error_fg_color, e);
    }
    let Some(result) = state.result.clone() else {
        ui.separator();
        if !state.job.is_running() {
            ui.label("Press Recompute to compute the task vectors of the open set.");
        }
        return actions;
    };
    export_ui(ui, state, waker, &mut actions);
    ui.separator();
    egui::ScrollArea::vertical()
        .id_salt("taskvec-scroll")
        .show(ui, |ui| {
            summary_ui(ui, &result);
            ui.horizontal_top(|ui| {
                ui.vertical(|ui| norms_ui(ui, &result.stats));
                ui.add_space(16.0);
                ui.vertical(|ui| cosine_ui(ui, state, &result.stats));
            });
            ui.separator();
            groups_ui(ui, state, &result.stats);
        });
    actions
}

fn controls_ui(
    ui: &mut egui::Ui,
    state: &mut TaskVecState,
    waker: &Waker,
    actions: &mut Vec<TaskVecAction>,
) {
    ui.horizontal(|ui| {
        ui.label("Group by");
        let before = state.granularity;
        ui.radio_value(&mut state.granularity, Granularity::Block, "block")
            .on_hover_text("top-level parts of the network: conv_in, time_embedding, down_blocks.0, mid_block, …");
        ui.radio_value(&mut state.granularity, Granularity::Layer, "layer")
            .on_hover_text("every module owning weights: down_blocks.0.resnets.0.conv1, …");
        if state.granularity != before {
            state.page = 0;
            actions.push(TaskVecAction::Compute(state.start(waker)));
        }
        if ui
            .button("Recompute")
            .on_hover_text("copy the models to the host and compute the statistics again")
            .clicked()
        {
            actions.push(TaskVecAction::Compute(state.start(waker)));
        }
        if state.job.is_running()
            && ui
                .button("Cancel")
                .on_hover_text("stop after the current stage")
                .clicked()
        {
            state.job.cancel();
        }
    });
    if let Some(p) = state.job.progress() {
        let fraction = p.done as f32 / p.total.max(1) as f32;
        ui.add(
            egui::ProgressBar::new(fraction)
                .desired_width(360.0)
                .text(format!("{} (stage {} of {})", p.stage, p.done + 1, p.total)),
        );
    }
}

fn summary_ui(ui: &mut egui::Ui, result: &TaskVecResult) {
    let s = &result.stats;
    let what = match s.granularity {
        Granularity::Block => "blocks",
        Granularity::Layer => "layers",
    };
    ui.label(format!(
        "N = {} experts, {} parameters in {} {what}; computed in {:.2} s",
        s.num_experts(),
        s.params,
        s.groups.len(),
        result.elapsed.as_secs_f64()
    ));
}

fn export_ui(
    ui: &mut egui::Ui,
    state: &mut TaskVecState,
    waker: &Waker,
    actions: &mut Vec<TaskVecAction>,
) {
    ui.horizontal(|ui| {
        let label = ui.label("Export (CSV, PNG, JSON) into").on_hover_text(format!(
            "writes {}: the numbers behind every plot (CSV), the cosine table as a picture (PNG) \
             and everything as JSON",
            EXPORT_FILES.join(", ")
        ));
        ui.add(egui::TextEdit::singleline(&mut state.export_dir).desired_width(360.0))
            .labelled_by(label.id);
        ui.add_enabled_ui(!state.export.is_running(), |ui| {
            if ui
                .button("Choose…")
                .on_hover_text("pick the folder in a dialog, then export into it")
                .clicked()
            {
                actions.push(TaskVecAction::PickFolder);
            }
            if ui
                .button("Export")
                .on_hover_text("write the CSV, PNG and JSON files into the folder")
                .clicked()
                && let Some(a) = state.export(waker)
            {
                actions.push(a);
            }
        });
    });
    state.export.note_ui(ui);
}

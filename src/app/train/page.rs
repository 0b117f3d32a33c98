//! The Train view: pretraining and DeMe finetuning with every engine setting
//! (left), play / pause / step / cancel, a row per run with its progress,
//! live loss curves per run and per timestep range, throughput, ETA,
//! checkpoint previews and the CSV / PNG exports (centre).

use super::form::{FormAction, TrainMode, default_out};
use super::form_ui::form_ui;
use super::plan::TrainOutcome;
use super::plots::{loss_plot_ui, parts_plot_ui, write_loss_csv, write_loss_png};
use super::state::{RunView, TrainState};
use crate::app::command::AppCommand;
use crate::app::dialogs::DialogKind;
use crate::app::job_slot::Outcome;
use crate::app::job_slot::Task;
use crate::app::notice::Notice;
use crate::app::page_ctx::PageCtx;
use crate::app::settings::View;
use crate::app::widgets::export_row::Written;
use crate::app::widgets::palette::series_color;
use crate::engine::model_set::ModelSet;
use std::path::PathBuf;

/// File name of the CSV export inside the output folder.
pub const CSV_NAME: &str = "loss_curves.csv";
/// File name of the PNG export inside the output folder.
pub const PNG_NAME: &str = "loss_curves.png";

/// What the central panel asks the app to do.
#[derive(Debug, Clone, PartialEq)]
enum TrainAction {
    Start,
    Open(ModelSet),
    FinetuneThis(PathBuf),
    /// Write the loss curves (CSV or PNG, by the file name) to this file.
    Export(PathBuf),
}

fn duration(secs: f64) -> String {
    let s = secs.round() as u64;
    if s >= 3600 {
        format!("{}h {:02}m", s / 3600, s % 3600 / 60)
    } else {
        format!("{}m {:02}s", s / 60, s % 60)
    }
}

/// Fills the form's empty folders: the base of the open set (else of the
/// shipped default), and a fresh output folder for the mode.
fn fill_defaults(state: &mut TrainState, ctx: &PageCtx) {
    let form = &mut state.form;
    if form.base.is_empty() {
        let set = ctx.models.info.as_ref().map(|i| &i.set);
        if let Some(s) = set.or(ctx.default_set) {
            form.base = s.base.display().to_string();
        }
    }
    if form.out.is_empty() {
        form.out = default_out(form.mode);
    }
}

/// Draws the Train view; returns what the app should do.
pub fn train_page(ui: &mut egui::Ui, state: &mut TrainState, ctx: &PageCtx) -> Vec<AppCommand> {
    fill_defaults(state, ctx);
    let running = state.is_running();
    let form_actions = egui::Panel::left("train-settings")
        .default_size(370.0)
        .resizable(true)
        .show(ui, |ui| {
            egui::ScrollArea::vertical()
                .id_salt("train-settings-scroll")
                .show(ui, |ui| {
                    ui.heading("Settings");
                    form_ui(ui, &mut state.form, running)
                })
                .inner
        })
        .inner;
    let mut commands: Vec<AppCommand> = form_actions
        .into_iter()
        .map(|a| match a {
            FormAction::BrowseOut => AppCommand::Dialog(DialogKind::TrainOutput),
            FormAction::BrowseBase => AppCommand::Dialog(DialogKind::TrainBase),
        })
        .collect();
    let actions = egui::CentralPanel::default()
        .show(ui, |ui| {
            egui::ScrollArea::vertical()
                .id_salt("train-scroll")
                .show(ui, |ui| central_ui(ui, state))
                .inner
        })
        .inner;
    for a in actions {
        match a {
            TrainAction::Start => commands.push(AppCommand::StartTraining),
            TrainAction::Export(path) => {
                commands.push(AppCommand::Spawn(export_task(state, path, ctx)))
            }
            TrainAction::Open(set) => {
                commands.push(AppCommand::Open(set));
                commands.push(AppCommand::SwitchView(View::Merge));
            }
            TrainAction::FinetuneThis(base) => {
                let form = &mut state.form;
                form.mode = TrainMode::Finetune;
                form.base = base.display().to_string();
                form.out = default_out(TrainMode::Finetune);
                form.resume = false;
            }
        }
    }
    commands
}

/// The export of the runs' loss curves to `path` (CSV, or PNG when it ends
/// in `.png`), to run off the UI thread.
fn export_task(state: &mut TrainState, path: PathBuf, ctx: &PageCtx) -> Task {
    let runs: Vec<RunView> = state
        .runs()
        .iter()
        .map(|r| RunView {
            texture: None,
            ..r.clone()
        })
        .collect();
    let png = path.extension().is_some_and(|e| e == "png");
    state.export.start(
        ctx.waker,
        "export-loss-curves",
        "exporting the loss curves failed".into(),
        move || {
            if png {
                write_loss_png(&runs, &path)?;
            } else {
                write_loss_csv(&runs, &path)?;
            }
            Ok(Written {
                note: format!("wrote {}", path.display()),
                notice: format!("exported the loss curves to {}", path.display()),
            })
        },
    )
}

/// What the status bar says of the end of a training job.
pub fn end_notice(state: &TrainState, end: &Outcome<TrainOutcome>) -> Option<Notice> {
    match end {
        Outcome::Failed(e) => Some(Notice::error(format!("training failed: {e}"))),
        _ => state.summary().map(Notice::info),
    }
}

fn controls_ui(ui: &mut egui::Ui, state: &mut TrainState, actions: &mut Vec<TrainAction>) {
    let running = state.is_running();
    ui.horizontal(|ui| {
        if ui
            .add_enabled(!running, egui::Button::new("Start"))
            .on_hover_text("check the settings and start training in the background")
            .clicked()
        {
            actions.push(TrainAction::Start);
        }
        if state.is_paused() {
            if ui.button("Resume").clicked() {
                state.resume();
            }
        } else if ui
            .add_enabled(running, egui::Button::new("Pause"))
            .on_hover_text("hold after the current step")
            .clicked()
        {
            state.pause();
        }
        if ui
            .add_enabled(state.is_held(), egui::Button::new("Step"))
            .on_hover_text("take exactly one more optimizer step")
            .clicked()
        {
            state.step_once();
        }
        if ui
            .add_enabled(running, egui::Button::new("Cancel"))
            .on_hover_text("stop; every started run saves a resumable checkpoint first")
            .clicked()
        {
            state.cancel();
        }
        if let Some(stage) = state.stage() {
            ui.separator();
            let text = if state.is_held() {
                "paused".to_string()
            } else if state.is_paused() {
                "pausing after this step…".to_string()
            } else {
                stage.to_string()
            };
            ui.label(text);
        }
    });
}

fn progress_ui(ui: &mut egui::Ui, state: &TrainState) {
    let (done, total) = (state.steps_done(), state.steps_total());
    if total == 0 {
        return;
    }
    let ips = state.throughput();
    let eta = match state.eta_secs() {
        Some(s) if state.is_running() => format!(" · ETA {}", duration(s)),
        _ => String::new(),
    };
    ui.add(
        egui::ProgressBar::new(done as f32 / total as f32)
            .desired_width(ui.available_width().min(700.0))
            .text(format!("{done} of {total} steps · {ips:.0} img/s{eta}")),
    );
}

fn runs_table_ui(ui: &mut egui::Ui, state: &TrainState) {
    egui::Grid::new("train-runs")
        .striped(true)
        .num_columns(6)
        .show(ui, |ui| {
            for h in [
                "run",
                "timesteps",
                "status",
                "progress",
                "last loss",
                "checkpoint",
            ] {
                ui.strong(h);
            }
            ui.end_row();
            for (i, r) in state.runs().iter().enumerate() {
                ui.colored_label(series_color(i), r.label());
                ui.label(format!("[{}, {})", r.plan.range[0], r.plan.range[1]));
                ui.label(r.status.label());
                let total = r.plan.total_steps.max(1);
                ui.add(
                    egui::ProgressBar::new(r.done as f32 / total as f32)
                        .desired_width(220.0)
                        .text(format!("{} / {}", r.done, r.plan.total_steps)),
                );
                ui.label(r.last_loss().map_or("–".into(), |l| format!("{l:.4}")));
                match &r.checkpoint {
                    Some((step, path)) => {
                        ui.label(format!("step {step}"))
                            .on_hover_text(path.display().to_string());
                    }
                    None => {
                        ui.label("–");
                    }
                }
                ui.end_row();
            }
        });
}

fn previews_ui(ui: &mut egui::Ui, state: &mut TrainState) {
    if !state.runs().iter().any(|r| r.preview.is_some()) {
        return;
    }
    ui.strong("Samples from the latest checkpoints");
    ui.horizontal_wrapped(|ui| {
        for r in state.runs_mut() {
            let Some((step, image)) = r.preview.clone() else {
                continue;
            };
            let stale = r.texture.as_ref().is_none_or(|(s, _)| *s != step);
            if stale {
                let name = format!("train-preview-{}", r.label());
                let tex =
                    ui.ctx()
                        .load_texture(name, image.image.clone(), egui::TextureOptions::NEAREST);
                r.texture = Some((step, tex));
            }
            if let Some((_, tex)) = &r.texture {
                ui.vertical(|ui| {
                    ui.label(format!("{} · step {step}", r.label()));
                    let size = tex.size_vec2();
                    let scale = (240.0 / size.x).min(160.0 / size.y).max(1.0);
                    ui.image((tex.id(), size * scale));
                });
            }
        }
    });
}

fn export_ui(ui: &mut egui::Ui, state: &mut TrainState, actions: &mut Vec<TrainAction>) {
    ui.horizontal(|ui| {
        let out = state
            .outcome()
            .map(|o| o.out.clone())
            .unwrap_or_else(|| PathBuf::from(state.form.out.trim()));
        let has_points = state.runs().iter().any(|r| !r.points.is_empty());
        if ui
            .add_enabled(has_points, egui::Button::new("Export CSV"))
            .on_hover_text(format!(
                "every step of every run to {CSV_NAME} in the output folder"
            ))
            .clicked()
        {
            actions.push(TrainAction::Export(out.join(CSV_NAME)));
        }
        if ui
            .add_enabled(has_points, egui::Button::new("Export PNG"))
            .on_hover_text(format!(
                "the loss curves to {PNG_NAME} in the output folder"
            ))
            .clicked()
        {
            actions.push(TrainAction::Export(out.join(PNG_NAME)));
        }
        if let Some(o) = state.outcome().filter(|o| !o.cancelled) {
            if let Some(set) = &o.set {
                if ui
                    .button("Open in merge view")
                    .on_hover_text("open the base and the new experts in the merge view")
                    .clicked()
                {
                    actions.push(TrainAction::Open(set.clone()));
                }
            } else if state
                .runs()
                .first()
                .is_some_and(|r| r.plan.key == super::plan::RunKey::Pretrain)
                && ui
                    .button("Finetune this base")
                    .on_hover_text("switch the form to finetuning experts from the new base")
                    .clicked()
            {
                actions.push(TrainAction::FinetuneThis(o.out.clone()));
            }
        }
    });
    state.export.note_ui(ui);
}

fn central_ui(ui: &mut egui::Ui, state: &mut TrainState) -> Vec<TrainAction> {
    let mut actions = Vec::new();
    ui.heading("Train");
    controls_ui(ui, state, &mut actions);
    if let Some(e) = &state.error {
        ui.colored_label(ui.visuals().error_fg_color, e);
    }
    for n in state.notes() {
        ui.label(n);
    }
    if let Some(s) = state.summary() {
        ui.label(s);
    }
    if state.runs().is_empty() {
        if !state.is_running() {
            ui.label(
                "Choose what to train on the left and press Start. Finetuning trains N copies \
                 of the base, each mostly on its own timestep range, then opens them in the merge view.",
            );
        }
        return actions;
    }
    export_ui(ui, state, &mut actions);
    progress_ui(ui, state);
    ui.add_space(4.0);
    runs_table_ui(ui, state);
    ui.separator();
    let wide = ui.available_width() > 900.0;
    let height = (ui.available_height() - 230.0).clamp(220.0, 420.0);
    let plots = |ui: &mut egui::Ui, state: &TrainState, w: f32| {
        ui.vertical(|ui| {
            ui.set_width(w);
            ui.strong("Loss per run");
            loss_plot_ui(ui, state.runs(), height);
        });
        ui.vertical(|ui| {
            ui.set_width(w);
            ui.strong("Per timestep range: ε loss and consistency loss");
            if state.runs().iter().any(|r| r.points.iter().any(|p| p.eps.is_some())) {
                parts_plot_ui(ui, state.runs(), height);
            } else {
                ui.label("Pretraining covers all timesteps in one loss; finetune runs split it by range.");
            }
        });
    };
    if wide {
        let w = (ui.available_width() - 16.0) / 2.0;
        ui.horizontal_top(|ui| plots(ui, state, w));
    } else {
        let w = ui.available_width();
        plots(ui, state, w);
    }
    ui.separator();
    previews_ui(ui, state);
    actions
}

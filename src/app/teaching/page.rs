//! The Teaching page: the settings and the run on the left, the two clouds
//! and the loss curves in the centre.

use super::config::{Stage, TeachingConfig};
use super::job::teaching_task;
pub use super::plots::EXPORT_FILES;
use super::plots::{DATA_COLOR, SAMPLE_COLOR, cloud_plot, loss_plot};
use super::state::TeachingState;
use crate::app::command::AppCommand;
use crate::app::job_slot::Outcome;
use crate::app::notice::Notice;
use crate::app::page_ctx::PageCtx;
use crate::app::settings::View;
use crate::engine::data::ToyKind;
use crate::engine::model_set::ModelSet;

/// Label of the button that starts a run.
pub const TRAIN_LABEL: &str = "Train base + 4 experts";
/// Label of the button that opens the trained set in the Merge view.
pub const OPEN_LABEL: &str = "Open in the Merge view";

/// What the view asks the app to do.
enum TeachingAction {
    Start,
    Cancel,
    Open(ModelSet),
    Export,
}

fn export_ui(ui: &mut egui::Ui, s: &mut TeachingState, actions: &mut Vec<TeachingAction>) {
    ui.separator();
    ui.strong("Export the plots").on_hover_text(format!(
        "writes {}: both clouds and the loss of every step (CSV) and the clouds as a picture \
         (PNG; data left in blue, samples right in orange)",
        EXPORT_FILES.join(", ")
    ));
    ui.horizontal(|ui| {
        let label = ui.label("into");
        ui.add(egui::TextEdit::singleline(&mut s.export_dir).desired_width(180.0))
            .labelled_by(label.id)
            .on_hover_text("folder (made if missing)");
        if ui
            .button("Export")
            .on_hover_text("write the CSV and PNG files into the folder")
            .clicked()
        {
            actions.push(TeachingAction::Export);
        }
    });
    s.export.note_ui(ui);
}

fn kind_label(k: ToyKind) -> &'static str {
    match k {
        ToyKind::TwoMoons => "two moons",
        ToyKind::SwissRoll => "swiss roll",
        ToyKind::EightGaussians => "8 Gaussians",
        ToyKind::Checkerboard => "checkerboard",
    }
}

fn settings_ui(ui: &mut egui::Ui, c: &mut TeachingConfig) {
    egui::Grid::new("teaching-settings")
        .num_columns(2)
        .spacing([12.0, 6.0])
        .show(ui, |ui| {
            let label = ui.label("distribution");
            egui::ComboBox::from_id_salt("teaching-data")
                .selected_text(kind_label(c.data))
                .show_ui(ui, |ui| {
                    for k in ToyKind::ALL {
                        ui.selectable_value(&mut c.data, k, kind_label(k));
                    }
                })
                .response
                .labelled_by(label.id)
                .on_hover_text("the 2D distribution to learn");
            ui.end_row();
            ui.label("base steps");
            ui.add(egui::DragValue::new(&mut c.base_steps).range(10..=20_000))
                .on_hover_text("pretraining steps of the base on all timesteps");
            ui.end_row();
            ui.label("steps per expert");
            ui.add(egui::DragValue::new(&mut c.expert_steps).range(10..=5_000))
                .on_hover_text("finetuning steps of each expert on its timestep range");
            ui.end_row();
            ui.label("batch size");
            ui.add(egui::DragValue::new(&mut c.batch_size).range(8..=1024))
                .on_hover_text("points per step");
            ui.end_row();
            ui.label("samples every");
            ui.add(
                egui::DragValue::new(&mut c.sample_every)
                    .range(10..=5_000)
                    .suffix(" steps"),
            )
            .on_hover_text("how often the current weights draw a new sample cloud");
            ui.end_row();
        });
}

fn controls_ui(ui: &mut egui::Ui, s: &mut TeachingState) -> Vec<TeachingAction> {
    let mut actions = Vec::new();
    ui.heading("Teaching mode");
    ui.label(
        "DeMe on 2D points: a small MLP learns to denoise a toy distribution, then four \
         copies are finetuned, each on a quarter of the timesteps. Training takes seconds.",
    );
    ui.add_space(6.0);
    let running = s.job.is_running();
    ui.add_enabled_ui(!running, |ui| settings_ui(ui, &mut s.config));
    ui.add_space(6.0);
    ui.horizontal(|ui| {
        if ui
            .add_enabled(!running, egui::Button::new(TRAIN_LABEL))
            .on_hover_text("pretrain a base, finetune 4 experts, save them and open them")
            .clicked()
        {
            actions.push(TeachingAction::Start);
        }
        if running && ui.button("Cancel").clicked() {
            actions.push(TeachingAction::Cancel);
        }
    });
    if running {
        let (done, total) = s.progress();
        let what = if done < s.shown_base_steps {
            format!("pretraining the base: step {done}/{}", s.shown_base_steps)
        } else {
            format!(
                "finetuning the experts: {}/{} steps",
                done - s.shown_base_steps,
                total - s.shown_base_steps
            )
        };
        ui.add(egui::ProgressBar::new(done as f32 / total.max(1) as f32).text(what));
    }
    if let Some(e) = &s.error {
        ui.colored_label(ui.visuals().error_fg_color, e);
    }
    if let (Some(set), false) = (&s.saved, running) {
        ui.separator();
        ui.strong("Trained set");
        if let Some(t) = s.took {
            ui.label(format!("trained in {:.1} s, saved in", t.as_secs_f64()));
        }
        let folder = set.base.parent().unwrap_or(&set.base);
        ui.add(
            egui::Label::new(egui::RichText::new(folder.display().to_string()).monospace()).wrap(),
        )
        .on_hover_text(
            "base/ and deme/expert_1 … inside; open it later with Open set… in the Models panel",
        );
        if ui
            .button(OPEN_LABEL)
            .on_hover_text("merge its experts, compare base, ensemble and merge")
            .clicked()
        {
            actions.push(TeachingAction::Open(set.clone()));
        }
    }
    if !running && s.samples.is_some() {
        export_ui(ui, s, &mut actions);
    }
    actions
}

fn caption(s: &TeachingState) -> String {
    match &s.samples {
        None if s.job.is_running() => "samples: drawn after the first steps…".into(),
        None => "samples".into(),
        Some(c) => match c.stage {
            Stage::Base => format!("samples of the base after {} steps", c.step),
            Stage::Experts => format!(
                "samples of the experts' ensemble after {} steps each",
                c.step
            ),
        },
    }
}

fn plots_ui(ui: &mut egui::Ui, s: &TeachingState) {
    let loss_height = 180.0;
    let gap = ui.spacing().item_spacing.x;
    let side = ((ui.available_width() - gap) / 2.0)
        .min(ui.available_height() - loss_height - 60.0)
        .max(120.0);
    let data_title = match s.data() {
        Some(d) => format!("data: {} ({} points)", kind_label(s.config.data), d.len()),
        None => "data".into(),
    };
    ui.horizontal_top(|ui| {
        ui.vertical(|ui| {
            ui.label(&data_title);
            cloud_plot(
                ui,
                "teaching-data",
                side,
                "data",
                s.data(),
                DATA_COLOR,
                "press Train",
            );
        });
        ui.vertical(|ui| {
            ui.label(caption(s));
            cloud_plot(
                ui,
                "teaching-samples",
                side,
                "samples",
                s.samples.as_ref().map(|c| c.points.as_slice()),
                SAMPLE_COLOR,
                "no samples yet",
            );
        });
    });
    ui.add_space(4.0);
    ui.label("training loss (mean of the last 25 steps)");
    loss_plot(
        ui,
        loss_height,
        &s.base_loss,
        &s.expert_loss,
        s.shown_base_steps,
    );
}

/// Draws the Teaching view; returns what the app should do.
pub fn teaching_page(
    ui: &mut egui::Ui,
    state: &mut TeachingState,
    ctx: &PageCtx,
) -> Vec<AppCommand> {
    let actions = egui::Panel::left("teaching-controls")
        .default_size(300.0)
        .resizable(true)
        .show(ui, |ui| {
            egui::ScrollArea::vertical()
                .id_salt("teaching-controls-scroll")
                .show(ui, |ui| controls_ui(ui, state))
                .inner
        })
        .inner;
    state.refresh_preview();
    egui::CentralPanel::default().show(ui, |ui| plots_ui(ui, state));
    let mut commands = Vec::new();
    for a in actions {
        match a {
            TeachingAction::Start => {
                let job = state.start(ctx.waker);
                commands.push(AppCommand::Spawn(teaching_task(job, ctx.device.clone())));
            }
            TeachingAction::Cancel => state.job.cancel(),
            TeachingAction::Open(set) => {
                if ctx.models.info.as_ref().map(|i| &i.set) != Some(&set) {
                    commands.push(AppCommand::Open(set));
                }
                commands.push(AppCommand::SwitchView(View::Merge));
            }
            TeachingAction::Export => {
                if let Some(task) = state.export(ctx.waker) {
                    commands.push(AppCommand::Spawn(task));
                }
            }
        }
    }
    commands
}

/// What the status bar says of the end of a teaching run.
pub fn run_notice(end: &Outcome<ModelSet>) -> Notice {
    match end {
        Outcome::Done(set) => Notice::info(format!(
            "trained and saved a toy set in {}; opening it",
            set.base.parent().unwrap_or(&set.base).display()
        )),
        Outcome::Cancelled => Notice::info("teaching run: cancelled"),
        Outcome::Failed(e) => Notice::error(format!("teaching run: {e}")),
    }
}

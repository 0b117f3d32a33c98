//! The merge view: controls on the right, the base / ensemble / merged sample
//! grids side by side, the held-out loss per timestep range, grid search.

use super::controls::{blocks_ui, method_ui, preview_settings_ui, weight_tools_ui, weights_ui};
use super::grid_panel::{GridAction, GridState, grid_ui};
use super::state::MergeState;
use crate::app::command::AppCommand;
use crate::app::dialogs::DialogKind;
use crate::app::job_slot::Waker;
use crate::app::merge_worker::Command;
use crate::app::models_panel::models_panel_ui;
use crate::app::page_ctx::PageCtx;
use crate::app::preview::Panel;
use crate::app::settings::PreviewSettings;

/// What the merge view asks the app to do.
#[derive(Debug, Clone)]
pub enum MergeAction {
    /// Pick a folder and save the merge there.
    SaveMerge,
    /// Pick a file and export the previews as PNG.
    ExportPng,
    /// Grid search.
    Grid(GridAction),
    /// The preview settings changed.
    PreviewSettings,
}

fn panel_hint(p: Panel) -> &'static str {
    match p {
        Panel::Base => "the pretrained model θ",
        Panel::Ensemble => "timestep-wise ensemble: expert i denoises the timesteps of its range",
        Panel::Merged => "θ + Σ w_i τ_i for the current weights",
    }
}

/// The controls column.
pub fn controls_ui(
    ui: &mut egui::Ui,
    m: &mut MergeState,
    preview: &mut PreviewSettings,
    busy_saving: bool,
) -> Vec<MergeAction> {
    let mut actions = Vec::new();
    ui.heading("Merge weights");
    ui.add_space(4.0);
    weights_ui(ui, m);
    weight_tools_ui(ui, m);
    ui.separator();
    method_ui(ui, m);
    ui.separator();
    blocks_ui(ui, m);
    if preview_settings_ui(ui, preview) {
        actions.push(MergeAction::PreviewSettings);
    }
    ui.separator();
    ui.horizontal_wrapped(|ui| {
        if ui
            .add_enabled(!busy_saving, egui::Button::new("Save merge…"))
            .on_hover_text("write the merged checkpoint and its recipe.json into a folder")
            .clicked()
        {
            actions.push(MergeAction::SaveMerge);
        }
        if ui
            .button("Export PNG…")
            .on_hover_text("the three preview rows (base, ensemble, merged) as one PNG")
            .clicked()
        {
            actions.push(MergeAction::ExportPng);
        }
    });
    if let Some(err) = &m.error {
        ui.colored_label(ui.visuals().error_fg_color, err);
    }
    actions
}

fn caption(m: &MergeState, p: Panel, fine_steps: usize) -> String {
    let Some(s) = m.panel(p).shown() else {
        return "waiting…".into();
    };
    if !s.done {
        return format!("DDIM step {}/{}: denoised estimate", s.step, s.of);
    }
    if p == Panel::Merged && s.spec.as_ref() != Some(&m.spec()) {
        return format!("DDIM, {} steps (updating…)", s.of);
    }
    if s.of < fine_steps {
        format!("DDIM, {} steps (refining to {fine_steps}…)", s.of)
    } else {
        format!("DDIM, {} steps", s.of)
    }
}

/// The three sample grids, one row each, from the same starting noise: sample
/// `j` of every row lines up in one column.
pub fn previews_ui(ui: &mut egui::Ui, m: &mut MergeState, fine_steps: usize) {
    let natural = Panel::ALL
        .iter()
        .find_map(|&p| m.panel(p).size())
        .map(|[w, h]| egui::vec2(w as f32, h as f32))
        .unwrap_or(egui::vec2(274.0, 70.0));
    let label_width = 120.0;
    let spacing = ui.spacing().item_spacing.x;
    let fit_w = (ui.available_width() - label_width - spacing) / natural.x;
    let fit = fit_w.min(200.0 / natural.y).max(1.0);
    // whole multiples keep every sample pixel the same size
    let scale = if fit >= 2.0 { fit.floor() } else { fit };
    let size = natural * scale;
    for p in Panel::ALL {
        ui.horizontal_top(|ui| {
            ui.vertical(|ui| {
                ui.set_width(label_width);
                ui.label(egui::RichText::new(p.title()).strong())
                    .on_hover_text(panel_hint(p));
                ui.label(egui::RichText::new(caption(m, p, fine_steps)).weak());
            });
            let ctx = ui.ctx().clone();
            match m.panel_mut(p).texture(&ctx, p.title()) {
                Some((tex, _)) => {
                    ui.add(egui::Image::new((tex, size)))
                        .on_hover_text(panel_hint(p));
                }
                None => {
                    let (rect, _) = ui.allocate_exact_size(size, egui::Sense::hover());
                    let painter = ui.painter();
                    painter.rect_filled(rect, 4.0, ui.visuals().extreme_bg_color);
                    painter.text(
                        rect.center(),
                        egui::Align2::CENTER_CENTER,
                        "waiting for the worker…",
                        egui::FontId::proportional(13.0),
                        ui.visuals().weak_text_color(),
                    );
                }
            }
        });
        ui.add_space(6.0);
    }
}

/// Held-out loss per timestep range for the three panels.
pub fn loss_table_ui(ui: &mut egui::Ui, m: &MergeState) {
    let base = m.loss(Panel::Base);
    egui::Grid::new("losses")
        .striped(true)
        .num_columns(4)
        .spacing([24.0, 4.0])
        .show(ui, |ui| {
            ui.strong("timesteps");
            for p in Panel::ALL {
                ui.strong(p.title());
            }
            ui.end_row();
            let rows = m.ranges.len();
            for r in 0..=rows {
                let name = match m.ranges.get(r) {
                    Some([lo, hi]) => format!("t in [{lo}, {hi})"),
                    None => "all".to_string(),
                };
                ui.label(name);
                for p in Panel::ALL {
                    let value = |l: &crate::app::events::LossEvent| {
                        if r < rows {
                            l.per_range.get(r).copied()
                        } else {
                            Some(l.mean)
                        }
                    };
                    match m.loss(p).and_then(value) {
                        Some(v) => {
                            let reference = base.and_then(value);
                            let text = egui::RichText::new(format!("{v:.4}")).monospace();
                            let text = match reference {
                                Some(b) if p != Panel::Base && v < b => text
                                    .color(ui.visuals().widgets.active.fg_stroke.color)
                                    .strong(),
                                _ => text,
                            };
                            ui.label(text);
                        }
                        None => {
                            ui.label("–");
                        }
                    }
                }
                ui.end_row();
            }
        });
}

/// The whole central area of the merge view.
pub fn central_ui(
    ui: &mut egui::Ui,
    m: &mut MergeState,
    grid: &mut GridState,
    can_search: bool,
    fine_steps: usize,
    waker: &Waker,
) -> Vec<MergeAction> {
    let mut actions = Vec::new();
    egui::ScrollArea::vertical()
        .id_salt("merge-central")
        .show(ui, |ui| {
            ui.heading("Samples from the same noise")
                .on_hover_text("every row starts from the same seeded x_T, so differences come from the weights alone");
            ui.add_space(4.0);
            previews_ui(ui, m, fine_steps);
            ui.add_space(12.0);
            ui.heading("Held-out loss");
            ui.label(
                egui::RichText::new(
                    "mean squared error of the noise prediction ε on held-out data, per timestep range; \
                     lower is better, bold: below the base",
                )
                .weak(),
            );
            loss_table_ui(ui, m);
            ui.add_space(12.0);
            egui::CollapsingHeader::new("Grid search")
                .default_open(false)
                .show(ui, |ui| {
                    if let Some(a) = grid_ui(ui, grid, m.num_experts(), can_search, waker) {
                        actions.push(MergeAction::Grid(a));
                    }
                });
        });
    actions
}

/// The Merge page's own state: the merge, the grid search and the preview settings.
pub struct MergePage<'a> {
    /// Weights, method, previews, history.
    pub merge: &'a mut MergeState,
    /// The grid search.
    pub grid: &'a mut GridState,
    /// DDIM steps and samples of the previews (persisted).
    pub preview: &'a mut PreviewSettings,
    /// Whether the models side panel shows.
    pub show_models: bool,
    /// Whether a save runs (Save merge waits for it).
    pub saving: bool,
}

/// Draws the Merge view: the models panel (when shown), the merge controls
/// and the previews; returns what the app should do.
pub fn merge_page(ui: &mut egui::Ui, page: MergePage, ctx: &PageCtx) -> Vec<AppCommand> {
    if ctx.models.info.is_none() {
        return egui::CentralPanel::default()
            .show(ui, |ui| ctx.open_models_ui(ui))
            .inner;
    }
    let mut commands: Vec<AppCommand> = Vec::new();
    if page.show_models {
        let actions = egui::Panel::left("models-panel")
            .default_size(240.0)
            .resizable(true)
            .show(ui, |ui| {
                models_panel_ui(ui, ctx.models, ctx.default_set.is_some(), false)
            })
            .inner;
        commands.extend(actions.into_iter().map(AppCommand::from));
    }
    let MergePage {
        merge,
        grid,
        preview,
        saving,
        ..
    } = page;
    let mut actions = egui::Panel::right("merge-controls")
        .default_size(330.0)
        .resizable(true)
        .show(ui, |ui| {
            egui::ScrollArea::vertical()
                .id_salt("controls-scroll")
                .show(ui, |ui| controls_ui(ui, merge, preview, saving))
                .inner
        })
        .inner;
    let can_search = ctx.models.info.as_ref().is_some_and(|i| i.eval.is_ok());
    let fine = preview.fine_steps;
    actions.extend(
        egui::CentralPanel::default()
            .show(ui, |ui| {
                central_ui(ui, merge, grid, can_search, fine, ctx.waker)
            })
            .inner,
    );
    for a in actions {
        match a {
            MergeAction::SaveMerge => commands.push(AppCommand::Dialog(DialogKind::SaveMerge)),
            MergeAction::ExportPng => commands.push(AppCommand::Dialog(DialogKind::ExportPng)),
            MergeAction::Grid(GridAction::Start(job)) => {
                commands.push(AppCommand::Worker(Command::Grid(job)))
            }
            MergeAction::Grid(GridAction::Load(w)) => merge.set_weights(&w),
            MergeAction::PreviewSettings => {
                commands.push(AppCommand::Worker(Command::Configure(*preview)));
                merge.refresh();
            }
        }
    }
    commands
}

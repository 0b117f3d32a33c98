//! The Landscape page: the settings row, the map beside its readouts, the
//! merged preview and the export.

use super::map::{MapFrame, hover_text, map_ui};
use super::state::{LandscapeAction, LandscapeState};
use crate::app::command::AppCommand;
use crate::app::job_slot::Waker;
use crate::app::merge::state::MergeState;
use crate::app::merge_worker::Command;
use crate::app::page_ctx::PageCtx;
use crate::app::preview::Panel;
use crate::app::save_job::SaveJob;
use crate::engine::analysis::landscape::MarkKind;
use egui::{Pos2, Rect, Vec2};
use std::path::PathBuf;

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
                && let Ok(job) = state.start(names.len(), waker)
            {
                actions.push(LandscapeAction::Compute(job));
            }
        });
        if state.job.is_running() && ui.button("Cancel").clicked() {
            state.job.cancel();
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
        Some((tex, size)) => {
            let scale = (200.0 / size.x.max(size.y)).max(1.0).floor().max(1.0);
            let scale = if size.x * scale > 320.0 {
                320.0 / size.x
            } else {
                scale
            };
            ui.add(egui::Image::new((tex, size * scale))).on_hover_text(
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

//! The gradient-conflict plots: the K x K heatmap, the histogram of pair
//! similarities and the blocks by conflict.

use super::state::GradSimState;
use crate::app::widgets::heatmap::{Columns, CosineHeatmap, cosine_color};
use crate::engine::analysis::gradsim::{GradSimResult, describe_pairs};
use egui::{Color32, Sense, Vec2};
use egui_plot::{Bar, BarChart, Legend, Plot};

/// The timestep range whose pairs the histogram shows apart (the first expert's
/// range of a four-way split).
pub const FOCUS_RANGE: (usize, usize) = (0, 250);

/// Label of the heatmap (for tests and screen readers).
pub const HEATMAP_LABEL: &str = "gradient cosine heatmap";

pub(super) fn result_ui(ui: &mut egui::Ui, state: &mut GradSimState, result: &GradSimResult) {
    let k = result.k();
    ui.label(format!(
        "K = {k} timesteps, M = {} batch(es) of {}, {} gradients",
        result.config.batches,
        result.config.batch_size,
        if result.exact { "exact" } else { "sketched" }
    ));
    ceiling_ui(ui, state, result);
    ui.horizontal_top(|ui| {
        ui.vertical(|ui| {
            let side =
                (ui.available_height().min(ui.available_width() - 300.0)).clamp(200.0, 420.0);
            heatmap_ui(ui, state, result, side);
            let text =
                match state.hovered {
                    Some((i, j)) => format!(
                        "t_i = {}, t_j = {}: cosine {:.3}{}{}",
                        result.timesteps[i],
                        result.timesteps[j],
                        result.cosine[i * k + j],
                        result.stderr.as_ref().filter(|_| i != j).map_or(
                            String::new(),
                            |se| format!(" ± {:.3} (s.e.)", se[i * k + j])
                        ),
                        ceiling_words(result, i, j)
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

/// Below this median noise ceiling the view says the matrix is mostly noise.
pub const NOISY_CEILING: f64 = 0.5;

/// The noise ceiling of each timestep, and the switch to show the matrix
/// relative to it (only with two batches or more).
fn ceiling_ui(ui: &mut egui::Ui, state: &mut GradSimState, result: &GradSimResult) {
    let Some(c) = &result.ceiling else {
        state.relative = false;
        ui.label("noise ceiling: needs M >= 2 batches (two halves to compare)");
        return;
    };
    let mut sorted = c.clone();
    sorted.sort_by(f64::total_cmp);
    let all: Vec<String> = result
        .timesteps
        .iter()
        .zip(c)
        .map(|(t, v)| format!("t = {t}: {v:.3}"))
        .collect();
    ui.horizontal(|ui| {
        ui.label(format!(
            "noise ceiling c_k: min {:.2}, median {:.2}",
            sorted[0],
            sorted[sorted.len() / 2]
        ))
        .on_hover_text(format!(
            "cosine of the gradients of the even and the odd batches at the same timestep: \
             the most the matrix can show through the noise of M batches\n{}",
            all.join("\n")
        ));
        ui.checkbox(&mut state.relative, "relative to the ceiling")
            .on_hover_text("show S_kl / sqrt(c_k c_l): near 1 agrees as well as the noise allows");
    });
    let median = sorted[sorted.len() / 2];
    if median < NOISY_CEILING {
        ui.colored_label(
            ui.visuals().warn_fg_color,
            format!(
                "mostly noise: median ceiling {median:.2} at {} samples per timestep; average over more or larger batches",
                result.config.batches * result.config.batch_size
            ),
        );
    }
}

/// `, ceilings c_i, c_j, relative r` for the hover readout (empty without a ceiling).
fn ceiling_words(result: &GradSimResult, i: usize, j: usize) -> String {
    match (&result.ceiling, result.relative_to_ceiling()) {
        (Some(c), Some(rel)) => format!(
            "; ceilings {:.3}, {:.3}; relative {:.3}",
            c[i],
            c[j],
            rel[i * result.k() + j]
        ),
        _ => String::new(),
    }
}

fn heatmap_ui(ui: &mut egui::Ui, state: &mut GradSimState, result: &GradSimResult, side: f32) {
    let labels: Vec<String> = result.timesteps.iter().map(|t| t.to_string()).collect();
    let relative = result.relative_to_ceiling().filter(|_| state.relative);
    let (response, hovered) = CosineHeatmap {
        values: relative.as_deref().unwrap_or(&result.cosine),
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
            ui.label(format!(
                "t_i = {ti}\nt_j = {tj}\ncosine {c:.3}{}",
                ceiling_words(result, i, j)
            ));
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

//! The task-vector plots: norms per expert, the cosine table, per-group
//! magnitudes and norms, with their axes and paging.

use super::state::TaskVecState;
use crate::app::widgets::heatmap::{Columns, CosineHeatmap};
use crate::app::widgets::palette::series_color;
use crate::engine::analysis::Granularity;
use crate::engine::analysis::tv_stats::TvStats;
use egui::{Sense, Vec2};
use egui_plot::{
    AxisHints, Bar, BarChart, BoxElem, BoxPlot, BoxSpread, GridInput, GridMark, Plot, VPlacement,
};

pub const COSINE_LABEL: &str = "task-vector cosine table";

/// Groups plotted at once (Previous / Next page through more).
pub const PAGE_ROWS: usize = 16;

/// Smallest magnitude drawn on the log axis (zeros sit here).
const LOG_FLOOR: f64 = 1e-9;

/// Whether group `name` passes `filter` (case-insensitive substring; empty passes all).
pub fn group_matches(name: &str, filter: &str) -> bool {
    let f = filter.trim().to_lowercase();
    f.is_empty() || name.to_lowercase().contains(&f)
}

/// Offset of expert `i` of `n` inside a row of height `span`, first on top.
pub fn expert_offset(i: usize, n: usize, span: f64) -> f64 {
    if n <= 1 {
        return 0.0;
    }
    let step = span / n as f64;
    (((n - 1) as f64) / 2.0 - i as f64) * step
}

/// A magnitude on the plotted axis: itself, or its log10 (zeros at [`LOG_FLOOR`]).
pub fn axis_value(v: f64, log: bool) -> f64 {
    if log { v.max(LOG_FLOOR).log10() } else { v }
}

/// Short form of a number for tables and tooltips.
pub fn fmt_value(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if (1e-3..1e4).contains(&v.abs()) {
        format!("{v:.4}")
    } else {
        format!("{v:.3e}")
    }
}

/// Bar chart of each expert's task-vector norm.
pub(super) fn norms_ui(ui: &mut egui::Ui, stats: &TvStats) {
    ui.strong("Norm ||τ_i|| per expert").on_hover_text(
        "the length of each task vector over all parameters: how far finetuning moved the expert from the base",
    );
    let bars: Vec<Bar> = stats
        .overall
        .iter()
        .enumerate()
        .map(|(i, e)| {
            Bar::new((i + 1) as f64, e.norm)
                .width(0.6)
                .fill(series_color(i))
                .name(format!("expert {} ({})", i + 1, stats.labels[i]))
        })
        .collect();
    let n = stats.num_experts();
    Plot::new("taskvec-norms")
        .width(320.0)
        .height(200.0)
        .allow_drag(false)
        .allow_zoom(false)
        .allow_scroll(false)
        .allow_boxed_zoom(false)
        .include_y(0.0)
        .include_x(0.4)
        .include_x(n as f64 + 0.6)
        .x_grid_spacer(integer_marks)
        .custom_x_axes(vec![
            AxisHints::new_x()
                .label("expert")
                .label_spacing(16.0..=24.0)
                .formatter(move |m, _| {
                    let i = m.value.round();
                    if (m.value - i).abs() < 1e-6 && i >= 1.0 && i <= n as f64 {
                        format!("{i}")
                    } else {
                        String::new()
                    }
                }),
        ])
        .custom_y_axes(vec![
            AxisHints::new_y()
                .label("||τ_i||")
                .label_spacing(12.0..=18.0),
        ])
        .show(ui, |p| p.bar_chart(BarChart::new("norm", bars)));
    egui::Grid::new("taskvec-norm-table")
        .striped(true)
        .num_columns(4)
        .show(ui, |ui| {
            ui.strong("expert");
            ui.strong("||τ_i||")
                .on_hover_text("L2 norm of the task vector over all parameters");
            ui.strong("median |τ|")
                .on_hover_text("half of the entries changed by less than this");
            ui.strong("max |τ|")
                .on_hover_text("the largest change of a single parameter");
            ui.end_row();
            for (i, e) in stats.overall.iter().enumerate() {
                ui.label(format!("{}", i + 1))
                    .on_hover_text(stats.labels[i].as_str());
                ui.label(fmt_value(e.norm));
                ui.label(fmt_value(e.abs.median));
                ui.label(fmt_value(e.abs.max));
                ui.end_row();
            }
        });
}

/// Grid marks at the integers in view.
fn integer_marks(input: GridInput) -> Vec<GridMark> {
    let (lo, hi) = input.bounds;
    let (lo, hi) = (lo.ceil() as i64, hi.floor() as i64);
    if hi - lo > 2000 {
        return Vec::new();
    }
    (lo..=hi)
        .map(|v| GridMark {
            value: v as f64,
            step_size: 1.0,
        })
        .collect()
}

/// The experts' pairwise cosine matrix, with the hovered cell's readout.
pub(super) fn cosine_ui(ui: &mut egui::Ui, state: &mut TaskVecState, stats: &TvStats) {
    ui.strong("Cosine similarity cos(τ_i, τ_j)").on_hover_text(
        "<τ_i, τ_j> / (||τ_i|| ||τ_j||) over all parameters: red = the experts moved the same way, \
         white = unrelated directions, blue = opposite directions (a merge partly cancels them)",
    );
    let n = stats.num_experts();
    let side = (320.0 / n as f32).clamp(14.0, 64.0) * n as f32;
    let labels: Vec<String> = (1..=n).map(|i| i.to_string()).collect();
    let (response, hovered) = CosineHeatmap {
        values: &stats.cosine,
        labels: &labels,
        side,
        columns: Columns::Above,
        values_in_cells: true,
        name: COSINE_LABEL,
    }
    .show(ui);
    state.hovered = hovered;
    let readout = match hovered {
        Some((i, j)) => {
            let c = stats.cosine[i * n + j];
            let (a, b) = (stats.labels[i].clone(), stats.labels[j].clone());
            response.on_hover_ui_at_pointer(|ui| {
                ui.label(format!(
                    "expert {} ({a})\nexpert {} ({b})\ncosine {c:.4}",
                    i + 1,
                    j + 1
                ));
            });
            format!("expert {} vs expert {}: cosine {c:.3}", i + 1, j + 1)
        }
        None => "hover a cell for the pair and its cosine".to_string(),
    };
    ui.label(readout);
}

/// Per-group (block or layer) magnitudes of every expert, filtered and paged.
pub(super) fn groups_ui(ui: &mut egui::Ui, state: &mut TaskVecState, stats: &TvStats) {
    let what = match stats.granularity {
        Granularity::Block => "block",
        Granularity::Layer => "layer",
    };
    let shown: Vec<usize> = (0..stats.groups.len())
        .filter(|&g| group_matches(&stats.groups[g].name, &state.filter))
        .collect();
    ui.strong(format!("Per {what}, in model order")).on_hover_text(
        "left: the spread of the changes |τ_i| of single parameters in each group (box = middle half, \
         line = median, whiskers = smallest and largest); right: the norm of each expert's task vector \
         restricted to the group: where finetuning changed the network most",
    );
    ui.horizontal(|ui| {
        ui.label("filter");
        if ui
            .add(
                egui::TextEdit::singleline(&mut state.filter)
                    .hint_text(format!("part of a {what} name"))
                    .desired_width(180.0),
            )
            .on_hover_text("only plot the groups whose name contains this")
            .changed()
        {
            state.page = 0;
        }
        ui.checkbox(&mut state.log_scale, "log10 magnitudes")
            .on_hover_text("magnitudes on a log10 axis (zeros drawn at 1e-9)");
        ui.label(format!("{} of {} {what}s", shown.len(), stats.groups.len()));
        ui.add_space(12.0);
        for i in 0..stats.num_experts() {
            let (r, _) = ui.allocate_exact_size(Vec2::splat(12.0), Sense::hover());
            ui.painter().rect_filled(r, 2.0, series_color(i));
            ui.label(format!("expert {}", i + 1))
                .on_hover_text(stats.labels[i].as_str());
        }
    });
    if shown.is_empty() {
        ui.label("no group matches the filter");
        return;
    }
    let (start, end, page, pages) = page_of(shown.len(), state.page, PAGE_ROWS);
    state.page = page;
    if pages > 1 {
        ui.horizontal(|ui| {
            if ui
                .add_enabled(page > 0, egui::Button::new("Previous"))
                .on_hover_text(format!("the {PAGE_ROWS} {what}s before these"))
                .clicked()
            {
                state.page -= 1;
            }
            ui.label(format!("{what}s {}-{end} of {}", start + 1, shown.len()));
            if ui
                .add_enabled(page + 1 < pages, egui::Button::new("Next"))
                .on_hover_text(format!("the next {PAGE_ROWS} {what}s"))
                .clicked()
            {
                state.page += 1;
            }
        });
    }
    let shown = &shown[start..end];
    let n = stats.num_experts();
    let rows = shown.len();
    let row_h = (n as f32 * 9.0 + 10.0).max(26.0);
    let height = rows as f32 * row_h + 50.0;
    let names: Vec<String> = shown
        .iter()
        .map(|&g| stats.groups[g].name.clone())
        .collect();
    let name_w = names.iter().map(|s| s.len()).max().unwrap_or(8) as f32 * 6.6 + 12.0;
    let link = ui.scope_id().with("taskvec-groups-link");
    let log = state.log_scale;
    let span = 0.8;
    egui::ScrollArea::vertical()
        .id_salt("taskvec-groups-scroll")
        .max_height(2000.0)
        .show(ui, |ui| {
            ui.horizontal_top(|ui| {
                let width = ((ui.available_width() - 16.0) * 0.6).max(360.0);
                let labels = names.clone();
                let mut plot = Plot::new("taskvec-boxes")
                    .width(width)
                    .height(height)
                    .allow_drag(false)
                    .allow_zoom(false)
                    .allow_scroll(false)
                    .allow_boxed_zoom(false)
                    .include_y(0.5)
                    .include_y(-(rows as f64) + 0.5)
                    .y_grid_spacer(integer_marks)
                    .y_axis_min_width(name_w)
                    .y_axis_formatter(move |m, _| row_name(&labels, m.value))
                    .custom_x_axes(vec![magnitude_axis(log)])
                    .link_axis(link, [false, true]);
                if !log {
                    plot = plot.include_x(0.0);
                }
                plot.show(ui, |p| {
                    for i in 0..n {
                        let boxes: Vec<BoxElem> = shown
                            .iter()
                            .enumerate()
                            .map(|(row, &g)| {
                                let b = &stats.groups[g].experts[i].abs;
                                let y = -(row as f64) + expert_offset(i, n, span);
                                BoxElem::new(
                                    y,
                                    BoxSpread::new(
                                        axis_value(b.min, log),
                                        axis_value(b.q1, log),
                                        axis_value(b.median, log),
                                        axis_value(b.q3, log),
                                        axis_value(b.max, log),
                                    ),
                                )
                                .name(format!(
                                    "{}, expert {}\nmin {}  q1 {}  median {}  q3 {}  max {}",
                                    stats.groups[g].name,
                                    i + 1,
                                    fmt_value(b.min),
                                    fmt_value(b.q1),
                                    fmt_value(b.median),
                                    fmt_value(b.q3),
                                    fmt_value(b.max)
                                ))
                                .box_width(span / n as f64 * 0.8)
                                .whisker_width(span / n as f64 * 0.5)
                            })
                            .collect();
                        p.box_plot(
                            BoxPlot::new(format!("expert {}", i + 1), boxes)
                                .color(series_color(i))
                                .horizontal()
                                .element_formatter(Box::new(|e, _| e.name.clone())),
                        );
                    }
                });
                Plot::new("taskvec-group-norms")
                    .width((ui.available_width() - 8.0).max(200.0))
                    .height(height)
                    .allow_drag(false)
                    .allow_zoom(false)
                    .allow_scroll(false)
                    .allow_boxed_zoom(false)
                    .include_x(0.0)
                    .include_y(0.5)
                    .include_y(-(rows as f64) + 0.5)
                    .y_grid_spacer(integer_marks)
                    .y_axis_formatter(|_, _| String::new())
                    .y_axis_min_width(4.0)
                    .custom_x_axes(vec![
                        AxisHints::new_x()
                            .label("||τ_i|| in the group")
                            .label_spacing(30.0..=50.0)
                            .placement(VPlacement::Top),
                    ])
                    .link_axis(link, [false, true])
                    .show(ui, |p| {
                        for i in 0..n {
                            let bars: Vec<Bar> = shown
                                .iter()
                                .enumerate()
                                .map(|(row, &g)| {
                                    let group = &stats.groups[g];
                                    Bar::new(
                                        -(row as f64) + expert_offset(i, n, span),
                                        group.experts[i].norm,
                                    )
                                    .width(span / n as f64 * 0.9)
                                    .name(format!(
                                        "{}, expert {}: ||τ|| = {} ({} parameters)",
                                        group.name,
                                        i + 1,
                                        fmt_value(group.experts[i].norm),
                                        group.params
                                    ))
                                })
                                .collect();
                            p.bar_chart(
                                BarChart::new(format!("norm expert {}", i + 1), bars)
                                    .color(series_color(i))
                                    .horizontal()
                                    .element_formatter(Box::new(|b, _| b.name.clone())),
                            );
                        }
                    });
            });
        });
}

/// The x axis of the magnitudes: `1e-3`-style ticks on the log axis.
fn magnitude_axis<'a>(log: bool) -> AxisHints<'a> {
    if !log {
        return AxisHints::new_x()
            .label("|τ_i| per parameter")
            .placement(VPlacement::Top);
    }
    AxisHints::new_x()
        .label("|τ_i| per parameter (log scale)")
        .placement(VPlacement::Top)
        .formatter(|m, _| log_tick(m.value))
}

/// Tick label of `v` on a log10 axis: `1e-3` at whole powers, else nothing.
pub fn log_tick(v: f64) -> String {
    let p = v.round();
    if (v - p).abs() > 1e-6 {
        return String::new();
    }
    if p == 0.0 {
        "1".into()
    } else {
        format!("1e{p}")
    }
}

/// Rows `start..end` of page `page` (clamped) of `len` rows, `size` a page,
/// and the number of pages: `(start, end, page, pages)`.
pub fn page_of(len: usize, page: usize, size: usize) -> (usize, usize, usize, usize) {
    let size = size.max(1);
    let pages = len.div_ceil(size).max(1);
    let page = page.min(pages - 1);
    let start = page * size;
    (start, (start + size).min(len), page, pages)
}

/// The name of the group plotted at row `-y` (empty between rows).
fn row_name(names: &[String], y: f64) -> String {
    let row = -y.round();
    if (y + row).abs() > 1e-6 || row < 0.0 {
        return String::new();
    }
    names.get(row as usize).cloned().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_is_a_case_insensitive_substring() {
        assert!(group_matches("down_blocks.1", ""));
        assert!(group_matches("down_blocks.1", "  "));
        assert!(group_matches("down_blocks.1", "DOWN"));
        assert!(!group_matches("mid_block", "down"));
    }

    #[test]
    fn experts_spread_around_the_row_first_on_top() {
        assert_eq!(expert_offset(0, 1, 0.8), 0.0);
        let offs: Vec<f64> = (0..4).map(|i| expert_offset(i, 4, 0.8)).collect();
        assert!((offs[0] - 0.3).abs() < 1e-12);
        assert!((offs[3] + 0.3).abs() < 1e-12);
        assert!(offs.windows(2).all(|w| w[0] > w[1]));
        assert!((offs.iter().sum::<f64>()).abs() < 1e-12);
    }

    #[test]
    fn log_axis_floors_zeros() {
        assert_eq!(axis_value(0.5, false), 0.5);
        assert!((axis_value(1e-3, true) + 3.0).abs() < 1e-12);
        assert_eq!(axis_value(0.0, true), -9.0);
    }

    #[test]
    fn row_names_only_on_whole_rows() {
        let names = vec!["a".to_string(), "b".to_string()];
        assert_eq!(row_name(&names, 0.0), "a");
        assert_eq!(row_name(&names, -1.0), "b");
        assert_eq!(row_name(&names, -0.5), "");
        assert_eq!(row_name(&names, -2.0), "");
        assert_eq!(row_name(&names, 1.0), "");
    }

    #[test]
    fn log_ticks_only_at_whole_powers() {
        assert_eq!(log_tick(-3.0), "1e-3");
        assert_eq!(log_tick(0.0), "1");
        assert_eq!(log_tick(-2.5), "");
    }

    #[test]
    fn pages_cover_every_row_once() {
        assert_eq!(page_of(0, 3, 16), (0, 0, 0, 1));
        assert_eq!(page_of(18, 0, 16), (0, 16, 0, 2));
        assert_eq!(page_of(18, 1, 16), (16, 18, 1, 2));
        assert_eq!(page_of(18, 9, 16), (16, 18, 1, 2));
        assert_eq!(page_of(16, 1, 16), (0, 16, 0, 1));
    }

    #[test]
    fn numbers_are_short() {
        assert_eq!(fmt_value(0.0), "0");
        assert_eq!(fmt_value(0.12345), "0.1235");
        assert_eq!(fmt_value(1.5e-5), "1.500e-5");
    }
}

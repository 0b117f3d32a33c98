//! A square matrix of cosines in [-1, 1] as coloured cells (drawn by
//! `shaders/field.wgsl` where the renderer has it) with row and column labels
//! and a colour bar; the cell under the pointer is outlined and returned, so
//! the caller says what it means.

use crate::app::field_paint::{self, FieldCallback, generation_of};
use crate::engine::render::ColorMap;
use crate::engine::render::field::{Field, FieldStyle, Interp};
use eframe::egui_wgpu;
use egui::{Align2, Color32, FontId, Pos2, Rect, Response, Sense, Stroke, StrokeKind, Vec2};
use std::sync::Arc;

/// The colour of cosine `value` (blue -1, white 0, red +1).
pub fn cosine_color(value: f64) -> Color32 {
    let [r, g, b] = ColorMap::Diverging.map(value as f32, -1.0, 1.0);
    Color32::from_rgb(r, g, b)
}

/// Where the column labels go.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Columns<'a> {
    /// Under the matrix, with the names of the row and column axes.
    Below {
        /// Name of the rows' axis, top left (e.g. `t_i`).
        rows: &'a str,
        /// Name of the columns' axis, under the labels (e.g. `t_j`).
        columns: &'a str,
    },
    /// Above the matrix.
    Above,
}

/// A cosine matrix to draw.
pub struct CosineHeatmap<'a> {
    /// Row-major `n x n` values, `n` = the number of labels.
    pub values: &'a [f64],
    /// Row (and column) labels.
    pub labels: &'a [String],
    /// Side of the matrix in points.
    pub side: f32,
    /// Where the column labels go.
    pub columns: Columns<'a>,
    /// Write each value in its cell when the cells are large enough.
    pub values_in_cells: bool,
    /// The widget's name for screen readers and tests.
    pub name: &'a str,
}

/// The `(row, column)` of an `n x n` grid drawn in `grid` under `p`.
pub fn cell_at(p: Pos2, grid: Rect, n: usize) -> Option<(usize, usize)> {
    if n == 0 || !grid.contains(p) {
        return None;
    }
    let cell = grid.width() / n as f32;
    let j = (((p.x - grid.left()) / cell) as usize).min(n - 1);
    let i = (((p.y - grid.top()) / cell) as usize).min(n - 1);
    Some((i, j))
}

impl CosineHeatmap<'_> {
    /// Draws the matrix; returns its response and the cell under the pointer.
    pub fn show(self, ui: &mut egui::Ui) -> (Response, Option<(usize, usize)>) {
        let n = self.labels.len();
        let side = self.side;
        let (left, top, bottom) = match self.columns {
            Columns::Below { .. } => (40.0, 0.0, 34.0),
            Columns::Above => (28.0, 18.0, 4.0),
        };
        let (bar_gap, bar_w, bar_labels) = (12.0, 16.0, 36.0);
        let size = Vec2::new(
            left + side + bar_gap + bar_w + bar_labels,
            top + side + bottom,
        );
        let (rect, response) = ui.allocate_exact_size(size, Sense::hover());
        let name = self.name.to_string();
        response.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Image, true, &name));
        let grid = Rect::from_min_size(rect.min + Vec2::new(left, top), Vec2::splat(side));
        let cell = side / n.max(1) as f32;
        let cell_rect = |i: usize, j: usize| {
            Rect::from_min_size(
                grid.min + Vec2::new(j as f32 * cell, i as f32 * cell),
                Vec2::splat(cell),
            )
        };
        let painter = ui.painter_at(rect);
        let text_color = ui.visuals().text_color();
        let font = FontId::proportional(11.0);
        let cell_font = FontId::proportional((cell * 0.3).clamp(9.0, 14.0));
        let on_device = field_paint::available(ui) && n > 1;
        if on_device {
            // the cells per pixel by shaders/field.wgsl (rows from the bottom there)
            let field = Arc::new(Field {
                g: n,
                values: (0..n * n)
                    .map(|k| self.values[(n - 1 - k / n) * n + k % n] as f32)
                    .collect(),
            });
            let callback = FieldCallback {
                key: egui::Id::unique(self.name).value(),
                generation: generation_of(&field),
                field,
                style: FieldStyle {
                    lo: -1.0,
                    hi: 1.0,
                    bands: 0,
                    map: ColorMap::Diverging,
                    interp: Interp::Nearest,
                },
            };
            painter.add(egui_wgpu::Callback::new_paint_callback(grid, callback));
        }
        for i in 0..n {
            for j in 0..n {
                let v = self.values[i * n + j];
                let r = cell_rect(i, j);
                if !on_device {
                    painter.rect_filled(r, 0.0, cosine_color(v));
                }
                if self.values_in_cells && cell >= 30.0 {
                    let ink = if v.abs() > 0.6 {
                        Color32::WHITE
                    } else {
                        Color32::BLACK
                    };
                    painter.text(
                        r.center(),
                        Align2::CENTER_CENTER,
                        format!("{v:.2}"),
                        cell_font.clone(),
                        ink,
                    );
                }
            }
        }
        // label every row when there is room, else every few
        let every = ((28.0 / cell).ceil() as usize).max(1);
        for (i, label) in self.labels.iter().enumerate().step_by(every) {
            let c = (i as f32 + 0.5) * cell;
            painter.text(
                Pos2::new(grid.left() - 5.0, grid.top() + c),
                Align2::RIGHT_CENTER,
                label,
                font.clone(),
                text_color,
            );
            let (at, anchor) = match self.columns {
                Columns::Below { .. } => (grid.bottom() + 3.0, Align2::CENTER_TOP),
                Columns::Above => (grid.top() - 3.0, Align2::CENTER_BOTTOM),
            };
            painter.text(
                Pos2::new(grid.left() + c, at),
                anchor,
                label,
                font.clone(),
                text_color,
            );
        }
        if let Columns::Below { rows, columns } = self.columns {
            painter.text(
                Pos2::new(grid.center().x, grid.bottom() + 18.0),
                Align2::CENTER_TOP,
                columns,
                font.clone(),
                text_color,
            );
            painter.text(
                Pos2::new(rect.left(), grid.top()),
                Align2::LEFT_TOP,
                rows,
                font.clone(),
                text_color,
            );
        }
        color_bar(&painter, ui, grid, bar_gap, bar_w, &font);
        let hovered = response.hover_pos().and_then(|p| cell_at(p, grid, n));
        if let Some((i, j)) = hovered {
            painter.rect_stroke(
                cell_rect(i, j),
                0.0,
                Stroke::new(2.0, Color32::BLACK),
                StrokeKind::Inside,
            );
        }
        (response, hovered)
    }
}

/// The colour bar right of `grid`: +1 at the top, -1 at the bottom.
fn color_bar(
    painter: &egui::Painter,
    ui: &egui::Ui,
    grid: Rect,
    gap: f32,
    width: f32,
    font: &FontId,
) {
    let side = grid.height();
    let bar = Rect::from_min_size(
        Pos2::new(grid.right() + gap, grid.top()),
        Vec2::new(width, side),
    );
    let steps = 64;
    let h = side / steps as f32;
    for s in 0..steps {
        let v = 1.0 - 2.0 * (s as f64 + 0.5) / steps as f64;
        painter.rect_filled(
            Rect::from_min_size(
                Pos2::new(bar.left(), bar.top() + s as f32 * h),
                Vec2::new(width, h + 0.5),
            ),
            0.0,
            cosine_color(v),
        );
    }
    painter.rect_stroke(
        bar,
        0.0,
        Stroke::new(1.0, ui.visuals().weak_text_color()),
        StrokeKind::Inside,
    );
    for (v, anchor) in [
        (1.0f32, Align2::LEFT_TOP),
        (0.0, Align2::LEFT_CENTER),
        (-1.0, Align2::LEFT_BOTTOM),
    ] {
        let y = bar.top() + (1.0 - v) / 2.0 * side;
        let text = if v == 0.0 {
            "0".to_string()
        } else {
            format!("{v:+.0}")
        };
        painter.text(
            Pos2::new(bar.right() + 4.0, y),
            anchor,
            text,
            font.clone(),
            ui.visuals().text_color(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_under_the_pointer() {
        let grid = Rect::from_min_size(Pos2::new(10.0, 10.0), Vec2::splat(40.0));
        assert_eq!(cell_at(Pos2::new(11.0, 11.0), grid, 4), Some((0, 0)));
        assert_eq!(cell_at(Pos2::new(49.0, 21.0), grid, 4), Some((1, 3)));
        assert_eq!(cell_at(Pos2::new(5.0, 11.0), grid, 4), None);
        assert_eq!(cell_at(Pos2::new(11.0, 11.0), grid, 0), None);
    }

    #[test]
    fn the_ramp_runs_from_blue_through_white_to_red() {
        let (lo, mid, hi) = (cosine_color(-1.0), cosine_color(0.0), cosine_color(1.0));
        assert!(lo.b() > lo.r() && hi.r() > hi.b());
        assert!(mid.r() > 240 && mid.g() > 240 && mid.b() > 240, "{mid:?}");
    }
}

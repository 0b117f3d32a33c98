//! The landscape map: where the lattice lies on the screen, the field (per
//! pixel by `shaders/field.wgsl` where the renderer has it, else cell by cell)
//! with its contour lines, axes, colour bar and marks, and the pointer that
//! reads a point or sets the merge weights there.

use super::state::{LandscapeAction, LandscapeState, Sweep};
use crate::app::field_paint::{self, FieldCallback, generation_of};
use crate::app::merge::state::MergeState;
use crate::engine::analysis::landscape::{LandscapeGrid, Plane};
use crate::engine::analysis::landscape_lattice::{nice_ticks, scored_contours};
use crate::engine::analysis::landscape_plot::{fmt_axis, fmt_distinct};
use crate::engine::render::ColorMap;
use crate::engine::render::field::{Field, FieldStyle, Interp, LANDSCAPE_BANDS};
use eframe::egui_wgpu;
use egui::{Align2, Color32, FontId, Pos2, Rect, Sense, Stroke, StrokeKind, Vec2};
use std::sync::Arc;

/// Label of the map (for tests and screen readers).
pub const MAP_LABEL: &str = "loss landscape map";

/// The map's slot of device buffers in the field pipeline.
const MAP_FIELD_KEY: u64 = 1;

/// Number of bands between the lowest and highest loss shown (contour lines between them).
const CONTOURS: usize = LANDSCAPE_BANDS as usize;

/// Where the lattice lies on the screen: cell centres sit on the lattice
/// values, so the rectangle reaches half a cell beyond the first and last.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MapFrame {
    /// The map on the screen.
    pub rect: Rect,
    /// `[lo, hi]` of the lattice's x values.
    pub x: [f64; 2],
    /// `[lo, hi]` of the lattice's y values (drawn upwards).
    pub y: [f64; 2],
    /// Points per axis G.
    pub size: usize,
}

impl MapFrame {
    /// The frame of `grid` drawn in `rect`.
    pub fn new(rect: Rect, grid: &LandscapeGrid) -> Self {
        Self {
            rect,
            x: grid.x,
            y: grid.y,
            size: grid.size.max(2),
        }
    }

    /// `[lo, hi]` of an axis as drawn: the lattice values plus half a step.
    fn extent(&self, [lo, hi]: [f64; 2]) -> [f64; 2] {
        let half = (hi - lo) / (self.size - 1) as f64 / 2.0;
        [lo - half, hi + half]
    }

    /// Plane coordinates of the screen point `p`.
    pub fn to_plane(&self, p: Pos2) -> [f64; 2] {
        let [x0, x1] = self.extent(self.x);
        let [y0, y1] = self.extent(self.y);
        let u = ((p.x - self.rect.left()) / self.rect.width()) as f64;
        let v = ((self.rect.bottom() - p.y) / self.rect.height()) as f64;
        [x0 + u * (x1 - x0), y0 + v * (y1 - y0)]
    }

    /// The screen point of plane coordinates `xy`.
    pub fn to_screen(&self, [x, y]: [f64; 2]) -> Pos2 {
        let [x0, x1] = self.extent(self.x);
        let [y0, y1] = self.extent(self.y);
        let u = ((x - x0) / (x1 - x0)) as f32;
        let v = ((y - y0) / (y1 - y0)) as f32;
        Pos2::new(
            self.rect.left() + u * self.rect.width(),
            self.rect.bottom() - v * self.rect.height(),
        )
    }

    /// The screen point of fractional lattice indices `(i, j)`.
    fn lattice_to_screen(&self, i: f64, j: f64) -> Pos2 {
        let g = (self.size - 1) as f64;
        let x = self.x[0] + (self.x[1] - self.x[0]) * i / g;
        let y = self.y[0] + (self.y[1] - self.y[0]) * j / g;
        self.to_screen([x, y])
    }

    /// The lattice point `(i, j)` whose cell holds `p` (None outside the map).
    pub fn cell_at(&self, p: Pos2) -> Option<(usize, usize)> {
        if !self.rect.contains(p) {
            return None;
        }
        let g = self.size as f32;
        let i = ((p.x - self.rect.left()) / self.rect.width() * g) as usize;
        let j = ((self.rect.bottom() - p.y) / self.rect.height() * g) as usize;
        Some((i.min(self.size - 1), j.min(self.size - 1)))
    }

    /// The cell of lattice point `(i, j)` on the screen.
    pub fn cell_rect(&self, i: usize, j: usize) -> Rect {
        let g = self.size as f32;
        let (w, h) = (self.rect.width() / g, self.rect.height() / g);
        Rect::from_min_size(
            Pos2::new(
                self.rect.left() + i as f32 * w,
                self.rect.bottom() - (j + 1) as f32 * h,
            ),
            Vec2::new(w, h),
        )
    }
}

/// The merge weights of plane point `xy` (zero except for experts a and b),
/// rounded to three decimals as a slider shows them.
pub fn point_weights(plane: &Plane, xy: [f64; 2]) -> Vec<f32> {
    plane
        .weights_at(xy[0], xy[1])
        .into_iter()
        .map(|w| ((w * 1000.0).round() / 1000.0) as f32)
        .collect()
}

/// Where the merge with `weights` lies on the plane (None for a wrong count).
pub fn merge_point(plane: &Plane, weights: &[f32]) -> Option<[f64; 2]> {
    let w: Vec<f64> = weights.iter().map(|&v| f64::from(v)).collect();
    plane.project(&w).ok().map(|p| p.xy)
}

fn color(v: f64, lo: f64, hi: f64) -> Color32 {
    let [r, g, b] = ColorMap::Viridis.map(v as f32, lo as f32, hi as f32);
    Color32::from_rgb(r, g, b)
}

/// The map cell by cell, where the renderer has no field pipeline: scored
/// cells, the rest from the nearest coarser point scored, and contour lines
/// over the finest sub-lattice scored throughout.
fn paint_cells(
    painter: &egui::Painter,
    frame: &MapFrame,
    sweep: &Sweep,
    values: &[Option<f64>],
    lo: f64,
    hi: f64,
) {
    let g = sweep.grid.size;
    painter.rect_filled(frame.rect, 0.0, Color32::from_gray(200));
    for j in 0..g {
        for i in 0..g {
            let Some(v) = sweep.fill.source(i, j).and_then(|k| values[k]) else {
                continue;
            };
            // a hairline of overlap hides the seams between cells
            painter.rect_filled(frame.cell_rect(i, j).expand(0.3), 0.0, color(v, lo, hi));
        }
    }
    let levels: Vec<f64> = (1..CONTOURS)
        .map(|l| lo + (hi - lo) * l as f64 / CONTOURS as f64)
        .collect();
    let contour = Stroke::new(1.0, Color32::from_white_alpha(150));
    for [p, q] in scored_contours(values, &sweep.grid, &levels) {
        painter.line_segment(
            [
                frame.lattice_to_screen(p[0], p[1]),
                frame.lattice_to_screen(q[0], q[1]),
            ],
            contour,
        );
    }
}

/// The map with its axes and colour bar; clicks and drags set the weights.
pub(super) fn map_ui(
    ui: &mut egui::Ui,
    state: &mut LandscapeState,
    merge: &MergeState,
    side: f32,
    actions: &mut Vec<LandscapeAction>,
) {
    let Some(sweep) = &state.sweep else { return };
    let surface = state.surface.min(sweep.values.len() - 1);
    let values = &sweep.values[surface];
    let g = sweep.grid.size;
    let (left, bottom, bar_gap, bar_w, bar_labels) = (44.0, 36.0, 14.0, 16.0, 60.0);
    // the outer area first, then the map inside it as its own widget
    let outer = Vec2::new(left + side + bar_gap + bar_w + bar_labels, side + bottom);
    let (outer_rect, _) = ui.allocate_exact_size(outer, Sense::hover());
    let map_rect = Rect::from_min_size(outer_rect.min + Vec2::new(left, 0.0), Vec2::splat(side));
    let response = ui.interact(
        map_rect,
        ui.make_persistent_id("landscape-map"),
        Sense::click_and_drag(),
    );
    response.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Image, true, MAP_LABEL));
    let frame = MapFrame::new(map_rect, &sweep.grid);
    let painter = ui.painter_at(outer_rect);
    let (lo, hi) = values
        .iter()
        .flatten()
        .filter(|v| v.is_finite())
        .fold(None, |acc: Option<(f64, f64)>, &v| match acc {
            None => Some((v, v)),
            Some((a, b)) => Some((a.min(v), b.max(v))),
        })
        .unwrap_or((0.0, 1.0));
    let hi = if hi > lo { hi } else { lo + 1e-12 };
    if field_paint::available(ui) {
        // per pixel on the device: interpolated, coloured and contoured by shaders/field.wgsl
        let field = Arc::new(Field {
            g,
            values: (0..g * g)
                .map(|k| {
                    let v = sweep.fill.source(k % g, k / g).and_then(|p| values[p]);
                    v.map_or(f32::NAN, |v| v as f32)
                })
                .collect(),
        });
        let callback = FieldCallback {
            key: MAP_FIELD_KEY,
            generation: generation_of(&field),
            field,
            style: FieldStyle {
                lo: lo as f32,
                hi: hi as f32,
                bands: CONTOURS as u32,
                map: ColorMap::Viridis,
                interp: Interp::Bicubic,
            },
        };
        painter.add(egui_wgpu::Callback::new_paint_callback(map_rect, callback));
    } else {
        paint_cells(&painter, &frame, sweep, values, lo, hi);
    }
    let ink = ui.visuals().text_color();
    painter.rect_stroke(map_rect, 0.0, Stroke::new(1.0, ink), StrokeKind::Outside);
    // axes
    let font = FontId::proportional(11.0);
    for x in nice_ticks(sweep.grid.x[0], sweep.grid.x[1], 6) {
        let p = frame.to_screen([x, sweep.grid.y[0]]);
        let px = p.x;
        painter.line_segment(
            [
                Pos2::new(px, map_rect.bottom()),
                Pos2::new(px, map_rect.bottom() + 4.0),
            ],
            Stroke::new(1.0, ink),
        );
        painter.text(
            Pos2::new(px, map_rect.bottom() + 5.0),
            Align2::CENTER_TOP,
            fmt_axis(x),
            font.clone(),
            ink,
        );
    }
    for y in nice_ticks(sweep.grid.y[0], sweep.grid.y[1], 6) {
        let py = frame.to_screen([sweep.grid.x[0], y]).y;
        painter.line_segment(
            [
                Pos2::new(map_rect.left() - 4.0, py),
                Pos2::new(map_rect.left(), py),
            ],
            Stroke::new(1.0, ink),
        );
        painter.text(
            Pos2::new(map_rect.left() - 6.0, py),
            Align2::RIGHT_CENTER,
            fmt_axis(y),
            font.clone(),
            ink,
        );
    }
    painter.text(
        Pos2::new(map_rect.center().x, map_rect.bottom() + 20.0),
        Align2::CENTER_TOP,
        "x (along τ_a)",
        font.clone(),
        ink,
    );
    painter.text(
        Pos2::new(outer_rect.left(), map_rect.top()),
        Align2::LEFT_TOP,
        "y",
        font.clone(),
        ink,
    );
    // colour bar: highest loss at the top
    let bar = Rect::from_min_size(
        Pos2::new(map_rect.right() + bar_gap, map_rect.top()),
        Vec2::new(bar_w, side),
    );
    let steps = 64;
    for s in 0..steps {
        let h = side / steps as f32;
        let u = 1.0 - (s as f64 + 0.5) / steps as f64;
        painter.rect_filled(
            Rect::from_min_size(
                Pos2::new(bar.left(), bar.top() + s as f32 * h),
                Vec2::new(bar_w, h + 0.5),
            ),
            0.0,
            color(lo + u * (hi - lo), lo, hi),
        );
    }
    painter.rect_stroke(bar, 0.0, Stroke::new(1.0, ink), StrokeKind::Inside);
    let ticks = [hi, (lo + hi) / 2.0, lo];
    let anchors = [Align2::LEFT_TOP, Align2::LEFT_CENTER, Align2::LEFT_BOTTOM];
    for ((v, label), anchor) in ticks.iter().zip(fmt_distinct(&ticks)).zip(anchors) {
        let y = bar.top() + ((hi - v) / (hi - lo)) as f32 * side;
        painter.text(
            Pos2::new(bar.right() + 4.0, y),
            anchor,
            label,
            font.clone(),
            ink,
        );
    }
    // marks, clipped to the map
    let marks = ui.painter_at(map_rect.expand(2.0));
    draw_path(&marks, &frame, &sweep.plane, &state.path);
    draw_marks(&marks, &frame, sweep, merge);
    // hover and clicks
    state.hovered = response
        .hover_pos()
        .filter(|p| map_rect.contains(*p))
        .map(|p| frame.to_plane(p));
    if (response.clicked() || response.dragged())
        && let Some(p) = response.interact_pointer_pos()
    {
        let xy = frame.to_plane(map_rect.clamp(p));
        actions.push(LandscapeAction::SetWeights {
            weights: point_weights(&sweep.plane, xy),
            dragging: response.dragged() && !response.clicked(),
        });
    }
    if response.drag_stopped() {
        actions.push(LandscapeAction::EndDrag);
    }
    if let Some(xy) = state.hovered {
        let text = hover_text(sweep, surface, &frame, xy);
        response.on_hover_ui_at_pointer(|ui| {
            ui.label(text);
        });
    }
}

/// `x, y`, the loss of the lattice point there and the weights of the point.
pub(super) fn hover_text(sweep: &Sweep, surface: usize, frame: &MapFrame, xy: [f64; 2]) -> String {
    let w = sweep.plane.weights_at(xy[0], xy[1]);
    let loss = frame
        .cell_at(frame.to_screen(xy))
        .and_then(|(i, j)| sweep.values[surface][j * sweep.grid.size + i])
        .map_or("not scored yet".to_string(), |v| format!("loss {v:.5}"));
    format!(
        "x = {:.3}, y = {:.3}: {loss}; w_a = {:.3}, w_b = {:.3}",
        xy[0], xy[1], w[sweep.plane.a], w[sweep.plane.b]
    )
}

/// The path of a learned search: its steps projected onto the plane, joined,
/// with a dot at each step and a ring at its start.
fn draw_path(painter: &egui::Painter, frame: &MapFrame, plane: &Plane, path: &[Vec<f32>]) {
    let at: Vec<Pos2> = path
        .iter()
        .filter_map(|w| merge_point(plane, w))
        .map(|xy| frame.to_screen(xy))
        .collect();
    if at.is_empty() {
        return;
    }
    let ink = Color32::from_rgb(255, 150, 30);
    painter.add(egui::Shape::line(
        at.clone(),
        Stroke::new(4.0, Color32::WHITE),
    ));
    painter.add(egui::Shape::line(at.clone(), Stroke::new(2.0, ink)));
    for p in &at {
        painter.circle_filled(*p, 2.5, ink);
    }
    painter.circle_stroke(at[0], 5.0, Stroke::new(2.0, ink));
}

pub(super) fn draw_marks(
    painter: &egui::Painter,
    frame: &MapFrame,
    sweep: &Sweep,
    merge: &MergeState,
) {
    let plane = &sweep.plane;
    let n = plane.n;
    let font = FontId::proportional(12.0);
    let dark = Color32::from_gray(20);
    // experts: the number in a box; a and b solid, the others' projections hollow
    for k in 0..n {
        let mut w = vec![0.0; n];
        w[k] = 1.0;
        let Ok(p) = plane.project(&w) else { continue };
        let at = frame.to_screen(p.xy);
        let spanning = k == plane.a || k == plane.b;
        let text = if k == plane.a {
            format!("{} a", k + 1)
        } else if k == plane.b {
            format!("{} b", k + 1)
        } else {
            format!("{}", k + 1)
        };
        let galley = painter.layout_no_wrap(text, font.clone(), dark);
        let r = Rect::from_center_size(at, galley.size() + Vec2::new(8.0, 4.0));
        let fill = if spanning {
            Color32::WHITE
        } else {
            Color32::from_white_alpha(150)
        };
        painter.rect_filled(r, 3.0, fill);
        painter.rect_stroke(r, 3.0, Stroke::new(1.0, dark), StrokeKind::Inside);
        painter.galley(r.center() - galley.size() / 2.0, galley, dark);
    }
    // the base: a cross
    let b = frame.to_screen([0.0, 0.0]);
    for (d, stroke) in [
        (7.0, Stroke::new(4.0, Color32::WHITE)),
        (6.0, Stroke::new(2.0, dark)),
    ] {
        painter.line_segment([b - Vec2::splat(d), b + Vec2::splat(d)], stroke);
        painter.line_segment([b + Vec2::new(-d, d), b + Vec2::new(d, -d)], stroke);
    }
    // the current merge: a ring that follows the sliders
    if let Some(xy) = merge_point(plane, merge.weights()) {
        let at = frame.to_screen(xy);
        painter.circle_stroke(at, 7.0, Stroke::new(4.0, Color32::WHITE));
        painter.circle_stroke(at, 7.0, Stroke::new(2.0, Color32::from_rgb(220, 40, 40)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plane() -> Plane {
        // tau_1 = (2, 0), tau_2 = (1, 3), tau_3 = (0, 0, 4)-ish: Gram of three vectors
        let vs = [[2.0, 0.0, 0.0], [1.0, 3.0, 0.0], [0.0, 0.0, 4.0]];
        let mut g = vec![0.0; 9];
        for i in 0..3 {
            for j in 0..3 {
                g[i * 3 + j] = (0..3).map(|k| vs[i][k] * vs[j][k]).sum();
            }
        }
        Plane::new(g, 3, 0, 1).unwrap()
    }

    fn frame() -> MapFrame {
        let grid = LandscapeGrid {
            size: 5,
            x: [0.0, 1.0],
            y: [-1.0, 1.0],
        };
        MapFrame::new(
            Rect::from_min_size(Pos2::new(100.0, 50.0), Vec2::splat(200.0)),
            &grid,
        )
    }

    #[test]
    fn screen_and_plane_round_trip_with_cell_centres_on_the_lattice() {
        let f = frame();
        // 5 cells of 40 px: x values 0, 0.25, .., 1 at the cell centres
        assert_eq!(f.to_screen([0.0, -1.0]), Pos2::new(120.0, 230.0));
        assert_eq!(f.to_screen([1.0, 1.0]), Pos2::new(280.0, 70.0));
        let p = f.to_plane(Pos2::new(200.0, 150.0));
        assert!((p[0] - 0.5).abs() < 1e-9 && p[1].abs() < 1e-9);
        for xy in [[0.3, -0.7], [0.9, 0.2], [-0.1, 1.1]] {
            let back = f.to_plane(f.to_screen(xy));
            assert!((back[0] - xy[0]).abs() < 1e-5 && (back[1] - xy[1]).abs() < 1e-5);
        }
        assert_eq!(f.cell_at(Pos2::new(121.0, 229.0)), Some((0, 0)));
        assert_eq!(f.cell_at(Pos2::new(299.0, 51.0)), Some((4, 4)));
        assert_eq!(f.cell_at(Pos2::new(99.0, 100.0)), None);
        assert!(f.cell_rect(2, 3).contains(f.to_screen([0.5, 0.5])));
    }

    #[test]
    fn plane_points_give_weights_and_weights_give_back_the_point() {
        let p = plane();
        // b = (1, 3) is at (0.5, 1.5) in units of |tau_a| = 2
        assert_eq!(p.b_xy, [0.5, 1.5]);
        assert_eq!(point_weights(&p, [1.0, 0.0]), vec![1.0, 0.0, 0.0]);
        assert_eq!(point_weights(&p, [0.5, 1.5]), vec![0.0, 1.0, 0.0]);
        let w = point_weights(&p, [0.4, 0.3]);
        assert_eq!(w, vec![0.3, 0.2, 0.0]);
        let xy = merge_point(&p, &w).unwrap();
        assert!((xy[0] - 0.4).abs() < 1e-6 && (xy[1] - 0.3).abs() < 1e-6);
        // the third expert is off the plane: only its in-plane part moves the mark
        let moved = merge_point(&p, &[0.3, 0.2, 0.5]).unwrap();
        assert!((moved[0] - xy[0]).abs() < 1e-6 && (moved[1] - xy[1]).abs() < 1e-6);
        let moved = merge_point(&p, &[0.6, 0.2, 0.0]).unwrap();
        assert!((moved[0] - 0.7).abs() < 1e-6 && (moved[1] - 0.3).abs() < 1e-6);
        assert_eq!(merge_point(&p, &[1.0]), None);
    }
}

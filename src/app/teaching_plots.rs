//! The Teaching view's plots: the data and the current samples as two point
//! clouds over the same square, and the loss curves of the base and the experts.

use super::preview::POINT_RANGE;
use super::teaching_job::Point;
use egui::Color32;
use egui_plot::{Legend, Line, Plot, PlotPoints, Points};

/// Colour of the data points.
pub const DATA_COLOR: Color32 = Color32::from_rgb(110, 160, 230);
/// Colour of the sampled points.
pub const SAMPLE_COLOR: Color32 = Color32::from_rgb(240, 160, 70);
/// Colours of the base's and the experts' loss curves.
const LOSS_COLORS: [Color32; 5] = [
    Color32::from_rgb(200, 200, 200),
    Color32::from_rgb(230, 100, 90),
    Color32::from_rgb(240, 180, 60),
    Color32::from_rgb(110, 200, 120),
    Color32::from_rgb(120, 160, 240),
];

/// Steps a loss curve is averaged over (single batches are noisy).
const SMOOTHING: usize = 25;

/// A square point-cloud plot of `points` in `[-R, R]^2` ([`POINT_RANGE`]), or
/// of nothing yet (with `empty` written in its middle).
pub fn cloud_plot(
    ui: &mut egui::Ui,
    id: &str,
    side: f32,
    name: &str,
    points: Option<&[Point]>,
    color: Color32,
    empty: &str,
) {
    let r = POINT_RANGE as f64;
    let series: Vec<[f64; 2]> = points
        .unwrap_or_default()
        .iter()
        .filter(|p| p[0].is_finite() && p[1].is_finite())
        .map(|p| [p[0] as f64, p[1] as f64])
        .collect();
    let response = Plot::new(id)
        .width(side)
        .height(side)
        .data_aspect(1.0)
        .default_x_bounds(-r, r)
        .default_y_bounds(-r, r)
        .allow_drag(false)
        .allow_zoom(false)
        .allow_scroll(false)
        .allow_boxed_zoom(false)
        .allow_double_click_reset(false)
        .show_x(true)
        .show_y(true)
        .show(ui, |p| {
            p.points(
                Points::new(name, PlotPoints::new(series))
                    .radius(1.5)
                    .filled(true)
                    .color(color),
            );
        })
        .response;
    if points.is_none() {
        ui.painter().text(
            response.rect.center(),
            egui::Align2::CENTER_CENTER,
            empty,
            egui::FontId::proportional(14.0),
            ui.visuals().weak_text_color(),
        );
    }
}

/// Running mean over the last [`SMOOTHING`] values, as plot points `[x0 + step, loss]`.
pub fn smoothed(losses: &[(u64, f64)], x0: u64) -> Vec<[f64; 2]> {
    let mut out = Vec::with_capacity(losses.len());
    let mut sum = 0.0;
    for (i, &(step, loss)) in losses.iter().enumerate() {
        sum += loss;
        if i >= SMOOTHING {
            sum -= losses[i - SMOOTHING].1;
        }
        let n = (i + 1).min(SMOOTHING) as f64;
        out.push([(x0 + step) as f64, sum / n]);
    }
    out
}

/// The loss curves: the base over its steps, then each expert over the
/// steps after the base's.
pub fn loss_plot(
    ui: &mut egui::Ui,
    height: f32,
    base: &[(u64, f64)],
    experts: &[Vec<(u64, f64)>],
    base_steps: u64,
) {
    Plot::new("teaching-loss")
        .height(height)
        .legend(Legend::default())
        .allow_drag(false)
        .allow_zoom(false)
        .allow_scroll(false)
        .allow_boxed_zoom(false)
        .include_x(0.0)
        .include_y(0.0)
        .x_axis_label("step")
        .y_axis_label("loss")
        .show(ui, |p| {
            if !base.is_empty() {
                p.line(
                    Line::new("base", PlotPoints::new(smoothed(base, 0)))
                        .color(LOSS_COLORS[0])
                        .width(1.5),
                );
            }
            for (i, e) in experts.iter().enumerate().filter(|(_, e)| !e.is_empty()) {
                p.line(
                    Line::new(
                        format!("expert {}", i + 1),
                        PlotPoints::new(smoothed(e, base_steps)),
                    )
                    .color(LOSS_COLORS[1 + i % 4])
                    .width(1.5),
                );
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smoothing_is_a_running_mean_shifted_by_the_offset() {
        let losses: Vec<(u64, f64)> = (1..=30)
            .map(|s| (s, if s <= 25 { 1.0 } else { 0.0 }))
            .collect();
        let s = smoothed(&losses, 100);
        assert_eq!(s.len(), 30);
        assert_eq!(s[0], [101.0, 1.0]);
        assert_eq!(s[24], [125.0, 1.0]);
        // the last 25 hold 20 ones and 5 zeros
        assert_eq!(s[29], [130.0, 20.0 / 25.0]);
        assert!(smoothed(&[], 0).is_empty());
    }
}

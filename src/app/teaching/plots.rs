//! The Teaching view's plots: the data and the current samples as two point
//! clouds over the same square, and the loss curves of the base and the experts;
//! their export as CSV files and a PNG of the two clouds.

use super::config::Point;
use crate::app::preview::{POINT_RANGE, scatter_picture};
use crate::app::widgets::palette::series_color;
use crate::engine::render::save_png_atomic;
use anyhow::{Context, Result, bail};
use egui::Color32;
use egui_plot::{Legend, Line, Plot, PlotPoints, Points};
use std::fmt::Write as _;
use std::path::Path;

/// Colour of the data points.
pub const DATA_COLOR: Color32 = Color32::from_rgb(110, 160, 230);
/// Colour of the sampled points.
pub const SAMPLE_COLOR: Color32 = Color32::from_rgb(240, 160, 70);
/// Colour of the base's loss curve (the experts' are the shared series colours).
const BASE_LOSS_COLOR: Color32 = Color32::from_rgb(200, 200, 200);

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
                        .color(BASE_LOSS_COLOR)
                        .width(1.5),
                );
            }
            for (i, e) in experts.iter().enumerate().filter(|(_, e)| !e.is_empty()) {
                p.line(
                    Line::new(
                        format!("expert {}", i + 1),
                        PlotPoints::new(smoothed(e, base_steps)),
                    )
                    .color(series_color(i))
                    .width(1.5),
                );
            }
        });
}

/// Files [`export_plots`] writes.
pub const EXPORT_FILES: [&str; 4] = ["data.csv", "samples.csv", "loss.csv", "clouds.png"];

/// Side in pixels of each cloud in the exported picture.
const CLOUD_SIDE: usize = 400;

/// `x,y` and a row per point.
pub fn points_csv(points: &[Point]) -> String {
    let mut out = String::from("x,y\n");
    for p in points {
        let _ = writeln!(out, "{},{}", p[0], p[1]);
    }
    out
}

/// `run,step,loss` and a row per optimizer step: run 0 is the base, run
/// `i` the `i`-th expert (steps counted within each run).
pub fn loss_csv(base: &[(u64, f64)], experts: &[Vec<(u64, f64)>]) -> String {
    let mut out = String::from("run,step,loss\n");
    let runs = std::iter::once(base).chain(experts.iter().map(Vec::as_slice));
    for (run, losses) in runs.enumerate() {
        for (step, loss) in losses {
            let _ = writeln!(out, "{run},{step},{loss}");
        }
    }
    out
}

/// The data (left, blue) and the samples (right, orange) as two scatter
/// pictures of `[-R, R]^2` side by side.
pub fn clouds_picture(data: &[Point], samples: &[Point]) -> image::RgbImage {
    let gap = 8usize;
    let side = CLOUD_SIDE;
    let width = 2 * side + gap;
    let mut out = image::RgbImage::from_pixel(width as u32, side as u32, image::Rgb([40, 40, 40]));
    let flat = |p: &[Point]| p.iter().flatten().copied().collect::<Vec<f32>>();
    for (i, (points, blue)) in [(data, true), (samples, false)].into_iter().enumerate() {
        let x0 = i * (side + gap);
        let img = scatter_picture(&flat(points), side, POINT_RANGE);
        for y in 0..side {
            for x in 0..side {
                let c = img[(x, y)];
                // the scatter's points are orange; swapping red and blue makes
                // them blue and leaves the grey background and lines as they are
                let rgb = if blue {
                    [c.b(), c.g(), c.r()]
                } else {
                    [c.r(), c.g(), c.b()]
                };
                out.put_pixel((x0 + x) as u32, y as u32, image::Rgb(rgb));
            }
        }
    }
    out
}

/// Writes [`EXPORT_FILES`] into `dir` (made if missing), each atomically.
pub fn export_plots(
    dir: &Path,
    data: &[Point],
    samples: &[Point],
    base: &[(u64, f64)],
    experts: &[Vec<(u64, f64)>],
) -> Result<()> {
    if data.is_empty() || samples.is_empty() {
        bail!("there are no point clouds to export yet");
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let write = |name: &str, text: String| {
        let path = dir.join(name);
        crate::engine::checkpoint::write_atomic_bytes(&path, text.as_bytes())
            .with_context(|| format!("writing {}", path.display()))
    };
    write(EXPORT_FILES[0], points_csv(data))?;
    write(EXPORT_FILES[1], points_csv(samples))?;
    write(EXPORT_FILES[2], loss_csv(base, experts))?;
    save_png_atomic(&clouds_picture(data, samples), &dir.join(EXPORT_FILES[3]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_hold_every_point_and_step() {
        assert_eq!(
            points_csv(&[[0.5, -1.0], [2.0, 0.25]]),
            "x,y\n0.5,-1\n2,0.25\n"
        );
        let csv = loss_csv(&[(1, 0.5), (2, 0.25)], &[vec![(1, 0.125)], vec![]]);
        assert_eq!(csv, "run,step,loss\n0,1,0.5\n0,2,0.25\n1,1,0.125\n");
    }

    #[test]
    fn the_picture_puts_data_left_in_blue_and_samples_right_in_orange() {
        let img = clouds_picture(&[[0.0, 0.0]], &[[0.0, 0.0]]);
        let side = CLOUD_SIDE as u32;
        assert_eq!((img.width(), img.height()), (2 * side + 8, side));
        // (0, 0) is the pixel (side / 2, side / 2) of each cloud
        let at = |x: u32| img.get_pixel(x, side / 2).0;
        let (left, right) = (at(side / 2), at(side + 8 + side / 2));
        assert!(left[2] > left[0], "blue data: {left:?}");
        assert!(right[0] > right[2], "orange samples: {right:?}");
    }

    #[test]
    fn export_without_clouds_or_into_a_file_fails() {
        let dir = tempfile::tempdir().unwrap();
        assert!(export_plots(dir.path(), &[], &[], &[], &[]).is_err());
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        let p = [[0.0f32, 0.0]];
        assert!(export_plots(&file.join("sub"), &p, &p, &[], &[]).is_err());
    }

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

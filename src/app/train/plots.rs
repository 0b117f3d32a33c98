//! The Train view's loss plots (egui_plot) and their exports: a CSV of every
//! step of every run, and a PNG of the loss curves drawn with the engine's
//! figure helpers.

use super::state::RunView;
use crate::app::widgets::palette::series_color;
use crate::engine::render::font::{draw_text, text_width};
use crate::engine::render::save_png_atomic;
use anyhow::{Context, Result, bail};
use egui_plot::{HoverPosition, Legend, Line, LineStyle, Plot, PlotPoints};
use std::fmt::Write as _;
use std::path::Path;

fn log10_points(points: impl Iterator<Item = (u64, f64)>) -> PlotPoints<'static> {
    points
        .filter(|(_, v)| *v > 0.0 && v.is_finite())
        .map(|(s, v)| [s as f64, v.log10()])
        .collect()
}

fn log_axis(plot: Plot<'_>) -> Plot<'_> {
    plot.y_axis_formatter(|mark, _| format!("{:.2e}", 10f64.powf(mark.value)))
        .label_formatter(|hover| {
            let (name, p) = match hover {
                HoverPosition::NearDataPoint {
                    plot_name,
                    position,
                    ..
                } => (*plot_name, position),
                HoverPosition::Elsewhere { position } => ("", position),
            };
            Some(format!(
                "{name}\nstep {:.0}\nloss {:.4e}",
                p.x,
                10f64.powf(p.y)
            ))
        })
}

/// One loss curve per run, log scale.
pub fn loss_plot_ui(ui: &mut egui::Ui, runs: &[RunView], height: f32) {
    let plot = Plot::new("train-loss")
        .height(height)
        .legend(Legend::default())
        .x_axis_label("step")
        .y_axis_label("loss (log)");
    log_axis(plot).show(ui, |p| {
        for (i, r) in runs.iter().enumerate() {
            let pts = log10_points(r.points.iter().map(|q| (q.step, q.loss)));
            p.line(Line::new(r.label(), pts).color(series_color(i)));
        }
    });
}

/// Per timestep range: each run's epsilon loss (solid) and consistency loss
/// (dashed), named by the range it trains on.
pub fn parts_plot_ui(ui: &mut egui::Ui, runs: &[RunView], height: f32) {
    let plot = Plot::new("train-parts")
        .height(height)
        .legend(Legend::default())
        .x_axis_label("step")
        .y_axis_label("loss part (log)");
    log_axis(plot).show(ui, |p| {
        for (i, r) in runs.iter().enumerate() {
            let [lo, hi] = r.plan.range;
            let eps = log10_points(r.points.iter().filter_map(|q| Some((q.step, q.eps?))));
            p.line(Line::new(format!("eps [{lo},{hi})"), eps).color(series_color(i)));
            if r.points.iter().any(|q| q.consistency.is_some()) {
                let c = log10_points(
                    r.points
                        .iter()
                        .filter_map(|q| Some((q.step, q.consistency?))),
                );
                p.line(
                    Line::new(format!("cons. [{lo},{hi})"), c)
                        .color(series_color(i))
                        .style(LineStyle::dashed_loose()),
                );
            }
        }
    });
}

/// Every step of every run as CSV.
pub fn loss_csv(runs: &[RunView]) -> String {
    let mut s = String::from(
        "run,range_lo,range_hi,step,loss,eps,consistency,lr,grad_norm,images_per_sec\n",
    );
    let opt = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:e}"));
    for r in runs {
        let [lo, hi] = r.plan.range;
        for p in &r.points {
            let _ = writeln!(
                s,
                "{},{lo},{hi},{},{:e},{},{},{:e},{:e},{:.1}",
                r.label(),
                p.step,
                p.loss,
                opt(p.eps),
                opt(p.consistency),
                p.lr,
                p.grad_norm,
                p.images_per_sec
            );
        }
    }
    s
}

/// Writes [`loss_csv`] to `path`.
pub fn write_loss_csv(runs: &[RunView], path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, loss_csv(runs)).with_context(|| format!("writing {}", path.display()))
}

fn line(img: &mut image::RgbImage, a: (f64, f64), b: (f64, f64), color: [u8; 3]) {
    let n = ((b.0 - a.0).abs().max((b.1 - a.1).abs()).ceil() as usize).max(1);
    for k in 0..=n {
        let u = k as f64 / n as f64;
        let (x, y) = (a.0 + (b.0 - a.0) * u, a.1 + (b.1 - a.1) * u);
        for (dx, dy) in [(0, 0), (1, 0), (0, 1)] {
            let (px, py) = (x.round() as i64 + dx, y.round() as i64 + dy);
            if px >= 0 && py >= 0 && (px as u32) < img.width() && (py as u32) < img.height() {
                img.put_pixel(px as u32, py as u32, image::Rgb(color));
            }
        }
    }
}

/// The loss curves (log scale) as a PNG: white background, axes with step
/// and loss ticks, one colour per run as in the view; a key of colour
/// swatches numbered by run order sits top right (the CSV names the runs).
pub fn render_loss_png(runs: &[RunView]) -> Result<image::RgbImage> {
    let pts: Vec<(u64, f64)> = runs
        .iter()
        .flat_map(|r| r.points.iter().map(|p| (p.step, p.loss)))
        .filter(|(_, v)| *v > 0.0 && v.is_finite())
        .collect();
    if pts.is_empty() {
        bail!("no loss points to draw yet");
    }
    let (w, h) = (900u32, 500u32);
    let (left, right, top, bottom) = (90.0, 20.0, 20.0, 40.0);
    let mut img = image::RgbImage::from_pixel(w, h, image::Rgb([255, 255, 255]));
    let x_max = pts.iter().map(|p| p.0).max().unwrap_or(1).max(1) as f64;
    let (mut y_lo, mut y_hi) = pts.iter().fold((f64::MAX, f64::MIN), |(lo, hi), p| {
        (lo.min(p.1.log10()), hi.max(p.1.log10()))
    });
    if y_hi - y_lo < 1e-6 {
        y_lo -= 0.5;
        y_hi += 0.5;
    }
    let (pw, ph) = (w as f64 - left - right, h as f64 - top - bottom);
    let to_px = |s: f64, v: f64| {
        (
            left + s / x_max * pw,
            top + (y_hi - v.log10()) / (y_hi - y_lo) * ph,
        )
    };
    let axis = [80, 80, 80];
    let grid = [225, 225, 225];
    for k in 0..=4 {
        let u = k as f64 / 4.0;
        let y = top + u * ph;
        line(&mut img, (left, y), (left + pw, y), grid);
        let label = format!("{:.2e}", 10f64.powf(y_hi - u * (y_hi - y_lo)));
        let tw = text_width(&label, 2) as i64;
        draw_text(
            &mut img,
            left as i64 - tw - 6,
            y as i64 - 5,
            &label,
            2,
            axis,
        );
        let x = left + u * pw;
        let label = format!("{:.0}", u * x_max);
        let tw = text_width(&label, 2) as i64;
        draw_text(
            &mut img,
            x as i64 - tw / 2,
            (top + ph) as i64 + 8,
            &label,
            2,
            axis,
        );
    }
    line(&mut img, (left, top), (left, top + ph), axis);
    line(&mut img, (left, top + ph), (left + pw, top + ph), axis);
    for (i, r) in runs.iter().enumerate() {
        let c = series_color(i);
        let color = [c.r(), c.g(), c.b()];
        let mut prev: Option<(f64, f64)> = None;
        for p in r
            .points
            .iter()
            .filter(|p| p.loss > 0.0 && p.loss.is_finite())
        {
            let q = to_px(p.step as f64, p.loss);
            line(&mut img, prev.unwrap_or(q), q, color);
            prev = Some(q);
        }
        let (kx, ky) = (w as i64 - 70, top as i64 + 6 + 16 * i as i64);
        for dy in 0..10 {
            for dx in 0..18 {
                img.put_pixel((kx + dx) as u32, (ky + dy) as u32, image::Rgb(color));
            }
        }
        draw_text(&mut img, kx + 24, ky, &(i + 1).to_string(), 2, axis);
    }
    Ok(img)
}

/// Writes [`render_loss_png`] to `path`.
pub fn write_loss_png(runs: &[RunView], path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    save_png_atomic(&render_loss_png(runs)?, path)
}

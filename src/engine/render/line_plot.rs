//! Curves over one x axis rendered as a PNG: loss curves of training runs, with a
//! logarithmic y axis so that the first steps and the plateau both stay readable.

use super::font::{draw_text, text_height, text_width};
use anyhow::{Result, bail};
use image::{Rgb, RgbImage};

/// One curve: a name for the legend, a colour and its `(x, y)` points (y > 0).
pub struct Series<'a> {
    /// Legend text.
    pub name: &'a str,
    /// Line colour.
    pub color: [u8; 3],
    /// Points in drawing order.
    pub points: &'a [(f64, f64)],
}

/// What to draw.
pub struct LinePlot<'a> {
    /// Title above the plot.
    pub title: &'a str,
    /// Label under the x axis.
    pub x_label: &'a str,
    /// The curves.
    pub series: &'a [Series<'a>],
    /// Picture size in pixels.
    pub size: [u32; 2],
}

const BG: [u8; 3] = [255, 255, 255];
const INK: [u8; 3] = [30, 30, 30];
const GRID: [u8; 3] = [225, 225, 225];
const SCALE: u32 = 2;

impl LinePlot<'_> {
    /// Draws the curves on a log10 y axis spanning every finite positive value, with
    /// ticks at 1, 2 and 5 times powers of ten, x ticks at round steps, and a legend.
    pub fn render(&self) -> Result<RgbImage> {
        let points = || {
            self.series
                .iter()
                .flat_map(|s| s.points.iter())
                .filter(|(x, y)| x.is_finite() && y.is_finite() && *y > 0.0)
        };
        if points().next().is_none() {
            bail!("the plot has no finite positive values to draw");
        }
        let (x_lo, x_hi) = bounds(points().map(|p| p.0));
        let (y_lo, y_hi) = bounds(points().map(|p| p.1.log10()));
        let (y_lo, y_hi) = (y_lo - 0.02 * (y_hi - y_lo), y_hi + 0.02 * (y_hi - y_lo));
        let [w, h] = self.size;
        let th = text_height(SCALE);
        let (left, right, top, bottom) = (
            text_width("0.0001", SCALE) + 14,
            16,
            2 * th + 16,
            2 * th + 24,
        );
        if w < left + right + 40 || h < top + bottom + 40 {
            bail!("a {w} x {h} picture is too small for a plot");
        }
        let (pw, ph) = ((w - left - right) as f64, (h - top - bottom) as f64);
        let px = |x: f64| left as f64 + (x - x_lo) / (x_hi - x_lo) * pw;
        let py = |ly: f64| top as f64 + (y_hi - ly) / (y_hi - y_lo) * ph;
        let mut img = RgbImage::from_pixel(w, h, Rgb(BG));

        for v in log_ticks(y_lo, y_hi) {
            let y = py(v.log10()).round() as i64;
            line(
                &mut img,
                (left as f64, y as f64),
                ((w - right) as f64, y as f64),
                GRID,
            );
            let label = fmt_num(v);
            let tx = left as i64 - 6 - text_width(&label, SCALE) as i64;
            draw_text(&mut img, tx, y - th as i64 / 2, &label, SCALE, INK);
        }
        for v in linear_ticks(x_lo, x_hi) {
            let x = px(v).round();
            line(&mut img, (x, top as f64), (x, (h - bottom) as f64), GRID);
            let label = fmt_num(v);
            let tx = x as i64 - text_width(&label, SCALE) as i64 / 2;
            draw_text(&mut img, tx, (h - bottom + 6) as i64, &label, SCALE, INK);
        }
        let (l, r, t, b) = (
            left as f64,
            (w - right) as f64,
            top as f64,
            (h - bottom) as f64,
        );
        for (a, z) in [((l, b), (r, b)), ((l, t), (l, b))] {
            line(&mut img, a, z, INK);
        }
        for s in self.series {
            let pts: Vec<(f64, f64)> = s
                .points
                .iter()
                .filter(|(x, y)| x.is_finite() && y.is_finite() && *y > 0.0)
                .map(|&(x, y)| (px(x), py(y.log10())))
                .collect();
            for pair in pts.windows(2) {
                line(&mut img, pair[0], pair[1], s.color);
            }
            if let [only] = pts.as_slice() {
                line(&mut img, *only, *only, s.color);
            }
        }
        draw_text(&mut img, left as i64, 6, self.title, SCALE, INK);
        let xl = self.x_label;
        let tx = (w as i64 - text_width(xl, SCALE) as i64) / 2;
        draw_text(&mut img, tx, (h - th - 6) as i64, xl, SCALE, INK);
        let mut lx = w as i64 - right as i64;
        for s in self.series.iter().rev() {
            lx -= text_width(s.name, SCALE) as i64 + 26;
            let ly = (top - th - 6) as i64;
            let mid = (ly + th as i64 / 2) as f64;
            line(&mut img, (lx as f64, mid), (lx as f64 + 14.0, mid), s.color);
            draw_text(&mut img, lx + 18, ly, s.name, SCALE, INK);
        }
        Ok(img)
    }
}

/// Smallest and largest value, widened to a unit interval around a single value.
fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if hi > lo {
        (lo, hi)
    } else {
        (lo - 0.5, hi + 0.5)
    }
}

/// Values 1, 2 and 5 times a power of ten inside `[10^lo, 10^hi]` (only the
/// powers of ten when that gives at least three).
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let (first, last) = (lo.floor() as i32, hi.ceil() as i32);
    let inside = |v: &f64| (lo..=hi).contains(&v.log10());
    let decades: Vec<f64> = (first..=last)
        .map(|e| 10f64.powi(e))
        .filter(inside)
        .collect();
    if decades.len() >= 3 {
        return decades;
    }
    (first..=last)
        .flat_map(|e| [1.0, 2.0, 5.0].map(|m| m * 10f64.powi(e)))
        .filter(inside)
        .collect()
}

/// About five round values (1, 2 or 5 times a power of ten apart) inside `[lo, hi]`.
fn linear_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let raw = (hi - lo) / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let mut v = (lo / step).ceil() * step;
    let mut out = Vec::new();
    while v <= hi + step * 1e-9 {
        out.push(v);
        v += step;
    }
    out
}

/// A tick label: whole numbers as they are, others to their first significant digit.
fn fmt_num(v: f64) -> String {
    if v == v.round() && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        let digits = (-v.abs().log10().floor()).clamp(1.0, 12.0) as usize;
        format!("{v:.digits$}")
    }
}

/// A 2-pixel-wide straight line, clipped to the picture.
fn line(img: &mut RgbImage, a: (f64, f64), b: (f64, f64), color: [u8; 3]) {
    let n = ((b.0 - a.0).abs().max((b.1 - a.1).abs()).ceil() as usize).max(1);
    for i in 0..=n {
        let f = i as f64 / n as f64;
        let (x, y) = (a.0 + f * (b.0 - a.0), a.1 + f * (b.1 - a.1));
        for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
            let (px, py) = (x.round() as i64 + dx, y.round() as i64 + dy);
            if px >= 0 && py >= 0 && (px as u32) < img.width() && (py as u32) < img.height() {
                img.put_pixel(px as u32, py as u32, Rgb(color));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_inside() {
        assert_eq!(
            linear_ticks(0.0, 10_000.0),
            vec![0.0, 2000.0, 4000.0, 6000.0, 8000.0, 10_000.0]
        );
        // 0.03..0.2: no three decades, so 1-2-5 ticks
        let t = log_ticks(0.03f64.log10(), 0.2f64.log10());
        assert_eq!(t.len(), 3);
        for (got, want) in t.iter().zip([0.05, 0.1, 0.2]) {
            assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        }
        assert_eq!(fmt_num(0.05), "0.05");
        assert_eq!(fmt_num(2000.0), "2000");
        assert_eq!(fmt_num(0.0), "0");
        assert_eq!(fmt_num(0.2), "0.2");
    }

    #[test]
    fn curves_are_drawn_in_their_colours_and_empty_plots_refused() {
        let red = [200, 0, 0];
        let pts = [(0.0, 1.0), (100.0, 0.1), (200.0, 0.05)];
        let series = [Series {
            name: "held-out",
            color: red,
            points: &pts,
        }];
        let plot = LinePlot {
            title: "loss",
            x_label: "step",
            series: &series,
            size: [400, 300],
        };
        let img = plot.render().unwrap();
        assert_eq!(img.dimensions(), (400, 300));
        let reds = img.pixels().filter(|p| p.0 == red).count();
        assert!(reds > 200, "the curve is drawn ({reds} red pixels)");
        let empty = [Series {
            name: "none",
            color: red,
            points: &[(0.0, 0.0), (1.0, f64::NAN)],
        }];
        let err = LinePlot {
            series: &empty,
            ..plot
        }
        .render()
        .unwrap_err();
        assert!(
            err.to_string().contains("no finite positive values"),
            "{err}"
        );
    }
}

//! A landscape surface as a PNG: the field per pixel with its contour lines,
//! exactly as the app's map draws it (`engine::render::field`, the reference of
//! `shaders/field.wgsl`; y up), axis ticks at the ends and at 0 and 1 (the base
//! and model a), a colour bar, and the marked points: a cross for the base, the
//! model's number in a box for each model, a ring for each merge. Around points
//! not scored (a cancelled sweep) the field is grey.

use super::landscape::{Landscape, MarkKind};
use crate::engine::render::ColorMap;
use crate::engine::render::field::{self, Field, FieldStyle, Interp, LANDSCAPE_BANDS};
use crate::engine::render::font::{draw_text, text_height, text_width};
use anyhow::{Result, anyhow, bail};
use image::{Rgb, RgbImage};

const BG: [u8; 3] = [255, 255, 255];
const INK: [u8; 3] = [30, 30, 30];
const SCALE: u32 = 2;

/// Pixel geometry of the lattice part of the figure.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlotGeometry {
    /// Left edge of the lattice.
    pub x0: u32,
    /// Top edge of the lattice.
    pub y0: u32,
    /// Side of one cell.
    pub cell: u32,
    /// Points per axis.
    pub size: usize,
}

impl PlotGeometry {
    /// Top-left pixel of cell `(i, j)` (`j` counts rows from the bottom).
    pub fn cell_origin(&self, i: usize, j: usize) -> (u32, u32) {
        (
            self.x0 + i as u32 * self.cell,
            self.y0 + (self.size - 1 - j) as u32 * self.cell,
        )
    }

    /// Pixel of plane coordinate `v` on an axis `[lo, hi]`, cell centres at the
    /// lattice values; `flip` for the y axis (up).
    fn pixel(&self, v: f64, [lo, hi]: [f64; 2], flip: bool) -> f64 {
        let span = (self.size - 1) as f64 * self.cell as f64;
        let u = (v - lo) / (hi - lo);
        let u = if flip { 1.0 - u } else { u };
        let origin = if flip { self.y0 } else { self.x0 };
        origin as f64 + self.cell as f64 / 2.0 + u * span
    }
}

/// Numbers with three significant digits (the font has digits, `.`, `-`, `e`).
pub fn fmt_value(v: f64) -> String {
    fmt_significant(v, 3)
}

/// `v` with `digits` significant digits.
fn fmt_significant(v: f64, digits: i32) -> String {
    if v == 0.0 || !v.is_finite() {
        return "0".into();
    }
    let mag = v.abs().log10().floor() as i32;
    if (-3..5).contains(&mag) {
        let prec = (digits - 1 - mag).max(0) as usize;
        format!("{v:.prec$}")
    } else {
        let prec = (digits - 1).max(0) as usize;
        format!("{v:.prec$e}")
    }
}

/// Labels of `values` with three significant digits, or as many more (up to
/// eight) as it takes for different values to read differently: a colour bar
/// over a narrow range of losses would otherwise repeat one label.
pub fn fmt_distinct(values: &[f64]) -> Vec<String> {
    let mut labels = Vec::new();
    for digits in 3..=8 {
        labels = values.iter().map(|&v| fmt_significant(v, digits)).collect();
        let clash = (0..values.len())
            .any(|i| (0..i).any(|j| labels[i] == labels[j] && values[i] != values[j]));
        if !clash {
            break;
        }
    }
    labels
}

/// Side of a cell for a `size x size` lattice.
fn cell_size(size: usize) -> u32 {
    (480 / size.max(1)).clamp(4, 40) as u32
}

/// Geometry for a `size x size` lattice with y tick labels `labels`.
fn geometry(size: usize, y_labels: &[String]) -> PlotGeometry {
    let cell = cell_size(size);
    let label_w = y_labels
        .iter()
        .map(|l| text_width(l, SCALE))
        .max()
        .unwrap_or(0);
    PlotGeometry {
        x0: label_w + 12,
        y0: 12,
        cell,
        size,
    }
}

/// Axis numbers: at most three decimals, trailing zeros dropped (`-0.2`, `1`).
pub fn fmt_axis(v: f64) -> String {
    let s = format!("{:.3}", v);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.to_string() }
}

/// Ticks of an axis `[lo, hi]` drawn over `span` pixels: 0 and 1 (the base and
/// model a) when inside, then both ends, each kept only where its label (of
/// extent `extent(label)` along the axis) does not crowd one already kept.
fn ticks([lo, hi]: [f64; 2], span: f64, extent: &dyn Fn(&str) -> f64) -> Ticks {
    let mut kept: Vec<(f64, String)> = Vec::new();
    for v in [0.0, 1.0, lo, hi] {
        if v < lo || v > hi || kept.iter().any(|(k, _)| *k == v) {
            continue;
        }
        let label = fmt_axis(v);
        let at = (v - lo) / (hi - lo) * span;
        let clear = kept.iter().all(|(k, l)| {
            let other = (k - lo) / (hi - lo) * span;
            (at - other).abs() >= (extent(&label) + extent(l)) / 2.0 + 6.0
        });
        if clear {
            kept.push((v, label));
        }
    }
    kept
}

/// The field of a surface's `G x G` values (row-major from the bottom row) and
/// how the map draws it over `[lo, hi]`.
pub fn surface_field(values: &[Option<f64>], g: usize, lo: f64, hi: f64) -> (Field, FieldStyle) {
    let field = Field {
        g,
        values: values
            .iter()
            .map(|v| v.map_or(f32::NAN, |v| v as f32))
            .collect(),
    };
    let style = FieldStyle {
        lo: lo as f32,
        hi: hi as f32,
        bands: LANDSCAPE_BANDS,
        map: ColorMap::Viridis,
        interp: Interp::Bicubic,
    };
    (field, style)
}

/// Axis ticks: each value with its label.
type Ticks = Vec<(f64, String)>;

/// The axis ticks (x, y) and where the lattice lies in the figure of `ls`.
fn layout(ls: &Landscape) -> (Ticks, Ticks, PlotGeometry) {
    let g = ls.grid.size;
    let span = ((g - 1) as u32 * cell_size(g)) as f64;
    let y_ticks = ticks(ls.grid.y, span, &|_| text_height(SCALE) as f64);
    let x_ticks = ticks(ls.grid.x, span, &|l| text_width(l, SCALE) as f64);
    let y_labels: Vec<String> = y_ticks.iter().map(|(_, l)| l.clone()).collect();
    let geo = geometry(g, &y_labels);
    (x_ticks, y_ticks, geo)
}

/// Renders surface `index` of `ls`.
pub fn render_surface(ls: &Landscape, index: usize) -> Result<RgbImage> {
    let surface = ls
        .surfaces
        .get(index)
        .ok_or_else(|| anyhow!("the landscape has no surface {index}"))?;
    let g = ls.grid.size;
    if surface.values.len() != g * g {
        bail!("surface `{}` does not fill the lattice", surface.name);
    }
    let (lo, hi) = surface.min_max().unwrap_or((0.0, 1.0));
    let hi = if hi > lo { hi } else { lo + 1e-12 };
    let (x_ticks, y_ticks, geo) = layout(ls);
    let side = geo.cell * g as u32;
    let bar_x = geo.x0 + side + 24;
    let bar_ticks = [hi, (lo + hi) / 2.0, lo];
    let bar_labels = fmt_distinct(&bar_ticks);
    let bar_w = bar_labels
        .iter()
        .map(|l| text_width(l, SCALE))
        .max()
        .unwrap_or(0);
    let width = bar_x + 20 + 12 + bar_w + 10;
    let height = geo.y0 + side + 10 + text_height(SCALE) + 10;
    let mut img = RgbImage::from_pixel(width, height, Rgb(BG));
    let (map, style) = surface_field(&surface.values, g, lo, hi);
    let pixels = field::render(&map, &style, side, side);
    for (k, p) in pixels.chunks_exact(4).enumerate() {
        let (x, y) = (k as u32 % side, k as u32 / side);
        img.put_pixel(geo.x0 + x, geo.y0 + y, Rgb([p[0], p[1], p[2]]));
    }
    // axes
    for (v, label) in &x_ticks {
        let px = geo.pixel(*v, ls.grid.x, false).round() as i64;
        fill(&mut img, px.max(0) as u32, geo.y0 + side, 1, 4, INK);
        draw_text(
            &mut img,
            px - (text_width(label, SCALE) / 2) as i64,
            (geo.y0 + side + 8) as i64,
            label,
            SCALE,
            INK,
        );
    }
    for (v, label) in &y_ticks {
        let py = geo.pixel(*v, ls.grid.y, true).round() as i64;
        fill(&mut img, geo.x0 - 4, py.max(0) as u32, 4, 1, INK);
        draw_text(
            &mut img,
            (geo.x0 - 6 - text_width(label, SCALE)) as i64,
            py - (text_height(SCALE) / 2) as i64,
            label,
            SCALE,
            INK,
        );
    }
    // colour bar
    for y in 0..side {
        let u = 1.0 - y as f32 / (side - 1).max(1) as f32;
        fill(&mut img, bar_x, geo.y0 + y, 20, 1, ColorMap::Viridis.at(u));
    }
    for (k, label) in bar_labels.iter().enumerate() {
        let y = geo.y0 + (side - 1) * k as u32 / 2;
        fill(&mut img, bar_x + 20, y, 4, 1, INK);
        draw_text(
            &mut img,
            (bar_x + 32) as i64,
            y as i64 - (text_height(SCALE) / 2) as i64,
            label,
            SCALE,
            INK,
        );
    }
    // marks, merges first so the models and the base stay on top
    let mut marks: Vec<_> = ls.marks.iter().collect();
    marks.sort_by_key(|m| match m.kind {
        MarkKind::Merge => 0,
        MarkKind::Model => 1,
        MarkKind::Base => 2,
    });
    let half = geo.cell as f64 / 2.0;
    let (left, top) = (geo.x0 as f64 - half, geo.y0 as f64 - half);
    let (right, bottom) = ((geo.x0 + side) as f64 + half, (geo.y0 + side) as f64 + half);
    for m in marks {
        let px = geo.pixel(m.projection.xy[0], ls.grid.x, false);
        let py = geo.pixel(m.projection.xy[1], ls.grid.y, true);
        if !(px >= left && px <= right && py >= top && py <= bottom) {
            continue;
        }
        let (cx, cy) = (px.round() as i64, py.round() as i64);
        match m.kind {
            MarkKind::Base => cross(&mut img, cx, cy),
            MarkKind::Model => {
                let label = m.model.map_or_else(String::new, |k| k.to_string());
                tag(&mut img, cx, cy, &label);
            }
            MarkKind::Merge => ring(&mut img, cx, cy),
        }
    }
    Ok(img)
}

fn put(img: &mut RgbImage, x: i64, y: i64, c: [u8; 3]) {
    if x >= 0 && y >= 0 && (x as u32) < img.width() && (y as u32) < img.height() {
        img.put_pixel(x as u32, y as u32, Rgb(c));
    }
}

fn fill(img: &mut RgbImage, x: u32, y: u32, w: u32, h: u32, c: [u8; 3]) {
    for yy in y..(y + h).min(img.height()) {
        for xx in x..(x + w).min(img.width()) {
            img.put_pixel(xx, yy, Rgb(c));
        }
    }
}

/// An X, white on a dark outline.
fn cross(img: &mut RgbImage, cx: i64, cy: i64) {
    for (color, thick) in [(INK, 1i64), (BG, 0)] {
        for d in -5i64..=5 {
            for o in -thick..=thick {
                put(img, cx + d + o, cy + d, color);
                put(img, cx + d + o, cy - d, color);
            }
        }
    }
}

/// `text` in a white box with a dark border, centred on `(cx, cy)`.
fn tag(img: &mut RgbImage, cx: i64, cy: i64, text: &str) {
    let (w, h) = (text_width(text, SCALE) as i64, text_height(SCALE) as i64);
    let (x, y) = (cx - w / 2, cy - h / 2);
    for yy in y - 3..=y + h + 2 {
        for xx in x - 3..=x + w + 2 {
            let border = yy == y - 3 || yy == y + h + 2 || xx == x - 3 || xx == x + w + 2;
            put(img, xx, yy, if border { INK } else { BG });
        }
    }
    draw_text(img, x, y, text, SCALE, INK);
}

/// A ring of radius 5, white inside a dark outline.
fn ring(img: &mut RgbImage, cx: i64, cy: i64) {
    for dy in -7i64..=7 {
        for dx in -7i64..=7 {
            let r = ((dx * dx + dy * dy) as f64).sqrt();
            if (3.5..=6.5).contains(&r) {
                let c = if (4.5..=5.5).contains(&r) { BG } else { INK };
                put(img, cx + dx, cy + dy, c);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_map_is_the_field_the_app_draws() {
        use crate::engine::analysis::landscape::{LandscapeGrid, Plane, Surface};
        let g = 5;
        let values: Vec<Option<f64>> = (0..g * g)
            .map(|k| Some(0.02 + 0.001 * ((k % g) as f64 - 2.0).powi(2) + 0.0005 * (k / g) as f64))
            .collect();
        let ls = Landscape {
            grid: LandscapeGrid {
                size: g,
                x: [-0.2, 1.2],
                y: [-0.2, 1.2],
            },
            xs: vec![],
            ys: vec![],
            plane: Plane {
                a: 0,
                b: 1,
                unit: 1.0,
                b_xy: [0.0, 1.0],
                n: 2,
                gram: vec![1.0, 0.0, 0.0, 1.0],
            },
            labels: vec!["a".into(), "b".into()],
            surfaces: vec![Surface {
                name: "all".into(),
                range: None,
                values: values.clone(),
            }],
            marks: vec![],
            order: vec![],
            done: g * g,
            total: g * g,
            cancelled: false,
            eval: Default::default(),
        };
        let img = render_surface(&ls, 0).unwrap();
        let (lo, hi) = ls.surfaces[0].min_max().unwrap();
        let (map, style) = surface_field(&values, g, lo, hi);
        let (_, _, geo) = layout(&ls);
        let side = geo.cell * g as u32;
        let want = field::render(&map, &style, side, side);
        let mut contour = 0;
        for y in 0..side {
            for x in 0..side {
                let p = img.get_pixel(geo.x0 + x, geo.y0 + y).0;
                let k = ((y * side + x) * 4) as usize;
                assert_eq!(p, [want[k], want[k + 1], want[k + 2]], "pixel {x}, {y}");
                let (lx, ly) = map.lattice_of_pixel(x as f32, y as f32, side as f32, side as f32);
                let plain = style.map.map(map.at(lx, ly), style.lo, style.hi);
                contour += usize::from(p != plain);
            }
        }
        assert!(contour > 0, "the figure has contour lines");
    }

    #[test]
    fn values_keep_three_significant_digits() {
        assert_eq!(fmt_value(0.034567), "0.0346");
        assert_eq!(fmt_value(1.2), "1.20");
        assert_eq!(fmt_value(-0.2), "-0.200");
        assert_eq!(fmt_value(123.4), "123");
        assert_eq!(fmt_value(0.0), "0");
        assert_eq!(fmt_value(1.5e-5), "1.50e-5");
    }

    #[test]
    fn colour_bar_labels_of_a_narrow_range_read_differently() {
        // three significant digits would read 0.0249, 0.0249, 0.0248
        let labels = fmt_distinct(&[0.02494, 0.02488, 0.02482]);
        assert_eq!(labels, ["0.02494", "0.02488", "0.02482"]);
        // a wide range keeps three digits
        assert_eq!(fmt_distinct(&[0.9, 0.5, 0.1]), ["0.900", "0.500", "0.100"]);
        // equal values may share a label
        assert_eq!(fmt_distinct(&[0.3, 0.3]), ["0.300", "0.300"]);
        assert_eq!(fmt_distinct(&[2.5e-6, 2.4e-6]), ["2.50e-6", "2.40e-6"]);
    }

    #[test]
    fn axis_ticks_do_not_crowd() {
        assert_eq!(fmt_axis(-0.2), "-0.2");
        assert_eq!(fmt_axis(1.0), "1");
        assert_eq!(fmt_axis(-0.0), "0");
        let w = |l: &str| text_width(l, SCALE) as f64;
        let t: Vec<String> = ticks([-0.2, 1.2], 800.0, &w)
            .into_iter()
            .map(|t| t.1)
            .collect();
        assert_eq!(t, ["0", "1", "-0.2", "1.2"]);
        // on a small figure the ends give way to 0 and 1
        let t: Vec<String> = ticks([-0.2, 1.2], 60.0, &w)
            .into_iter()
            .map(|t| t.1)
            .collect();
        assert_eq!(t, ["0", "1"]);
        let t: Vec<String> = ticks([2.0, 3.0], 60.0, &w)
            .into_iter()
            .map(|t| t.1)
            .collect();
        assert_eq!(t, ["2", "3"]);
    }

    #[test]
    fn rows_go_up_and_ticks_sit_on_cell_centres() {
        let geo = geometry(5, &["1".into()]);
        assert_eq!(geo.cell_origin(0, 4).1, geo.y0);
        assert_eq!(geo.cell_origin(0, 0).1, geo.y0 + 4 * geo.cell);
        let x = geo.pixel(0.5, [0.0, 1.0], false);
        assert_eq!(x, (geo.x0 + 2 * geo.cell) as f64 + geo.cell as f64 / 2.0);
        let y = geo.pixel(0.0, [0.0, 1.0], true);
        assert_eq!(y, (geo.y0 + 4 * geo.cell) as f64 + geo.cell as f64 / 2.0);
    }
}

//! A K x K matrix rendered as a PNG heatmap with axis labels and a colour bar.

use super::colormap::ColorMap;
use super::font::{draw_text, text_height, text_width};
use anyhow::{Context, Result, bail};
use image::{Rgb, RgbImage};
use std::path::Path;

/// What to draw.
pub struct Heatmap<'a> {
    /// Row-major `rows x cols` values.
    pub values: &'a [f64],
    /// Number of rows.
    pub rows: usize,
    /// Number of columns.
    pub cols: usize,
    /// Label of each row (top to bottom) and column (left to right).
    pub labels: &'a [String],
    /// Colour scale.
    pub map: ColorMap,
    /// Value at the bottom of the scale.
    pub lo: f64,
    /// Value at the top of the scale.
    pub hi: f64,
}

const BG: [u8; 3] = [255, 255, 255];
const INK: [u8; 3] = [30, 30, 30];

impl Heatmap<'_> {
    /// Draws the figure: cells of equal size, every other label when crowded, and a
    /// vertical colour bar labelled with `lo`, the middle and `hi`.
    pub fn render(&self) -> Result<RgbImage> {
        if self.rows == 0 || self.cols == 0 || self.values.len() != self.rows * self.cols {
            bail!(
                "heatmap: {} values do not fill {} x {}",
                self.values.len(),
                self.rows,
                self.cols
            );
        }
        let cell = (512 / self.rows.max(self.cols)).clamp(6, 48) as u32;
        let scale = 2;
        let label_w = self
            .labels
            .iter()
            .map(|l| text_width(l, scale))
            .max()
            .unwrap_or(0)
            + 8;
        let (gw, gh) = (cell * self.cols as u32, cell * self.rows as u32);
        let (x0, y0) = (label_w, 10);
        let bar_x = x0 + gw + 20;
        let ticks = [self.hi, (self.lo + self.hi) / 2.0, self.lo];
        let tick_w = ticks
            .iter()
            .map(|t| text_width(&fmt_tick(*t), scale))
            .max()
            .unwrap_or(0);
        let width = bar_x + 32 + tick_w + 10;
        let height = y0 + gh + 8 + text_height(scale) + 10;
        let mut img = RgbImage::from_pixel(width, height, Rgb(BG));
        for r in 0..self.rows {
            for c in 0..self.cols {
                let v = self.values[r * self.cols + c] as f32;
                let color = self.map.map(v, self.lo as f32, self.hi as f32);
                fill(
                    &mut img,
                    x0 + c as u32 * cell,
                    y0 + r as u32 * cell,
                    cell,
                    cell,
                    color,
                );
            }
        }
        let stride = label_stride(self.labels, cell, scale);
        for (i, l) in self.labels.iter().enumerate() {
            if i % stride != 0 {
                continue;
            }
            let cy = y0 + i as u32 * cell + cell / 2;
            draw_text(
                &mut img,
                (x0 - 4 - text_width(l, scale)) as i64,
                cy as i64 - (text_height(scale) / 2) as i64,
                l,
                scale,
                INK,
            );
            if i < self.cols {
                let cx = x0 + i as u32 * cell + cell / 2;
                draw_text(
                    &mut img,
                    cx as i64 - (text_width(l, scale) / 2) as i64,
                    (y0 + gh + 6) as i64,
                    l,
                    scale,
                    INK,
                );
            }
        }
        for y in 0..gh {
            let u = 1.0 - y as f32 / (gh - 1).max(1) as f32;
            fill(&mut img, bar_x, y0 + y, 20, 1, self.map.at(u));
        }
        for (i, t) in ticks.iter().enumerate() {
            let y = y0 + (gh - 1) * i as u32 / 2;
            fill(&mut img, bar_x + 20, y, 4, 1, INK);
            draw_text(
                &mut img,
                (bar_x + 32) as i64,
                y as i64 - (text_height(scale) / 2) as i64,
                &fmt_tick(*t),
                scale,
                INK,
            );
        }
        Ok(img)
    }

    /// Renders and writes a PNG atomically.
    pub fn save_png(&self, path: &Path) -> Result<()> {
        save_png_atomic(&self.render()?, path)
    }
}

/// Encodes `img` as PNG and writes it atomically.
pub fn save_png_atomic(img: &RgbImage, path: &Path) -> Result<()> {
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .context("encoding PNG")?;
    crate::engine::checkpoint::write_atomic_bytes(path, &bytes)
        .with_context(|| format!("writing {}", path.display()))
}

fn fmt_tick(v: f64) -> String {
    if v == v.round() && v.abs() < 1e6 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

fn label_stride(labels: &[String], cell: u32, scale: u32) -> usize {
    let widest = labels
        .iter()
        .map(|l| text_width(l, scale))
        .max()
        .unwrap_or(0);
    let need = widest.max(text_height(scale)) + 4;
    (need.div_ceil(cell.max(1))).max(1) as usize
}

fn fill(img: &mut RgbImage, x: u32, y: u32, w: u32, h: u32, c: [u8; 3]) {
    for yy in y..(y + h).min(img.height()) {
        for xx in x..(x + w).min(img.width()) {
            img.put_pixel(xx, yy, Rgb(c));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_take_their_colours() {
        let values = [1.0, -1.0, 0.0, 1.0];
        let labels = vec!["0".to_string(), "500".to_string()];
        let h = Heatmap {
            values: &values,
            rows: 2,
            cols: 2,
            labels: &labels,
            map: ColorMap::Diverging,
            lo: -1.0,
            hi: 1.0,
        };
        let img = h.render().unwrap();
        let cell = 48;
        let x0 = text_width("500", 2) + 8;
        let at = |r: u32, c: u32| {
            img.get_pixel(x0 + c * cell + cell / 2, 10 + r * cell + cell / 2)
                .0
        };
        assert_eq!(at(0, 0), ColorMap::Diverging.at(1.0));
        assert_eq!(at(0, 1), ColorMap::Diverging.at(0.0));
        assert_eq!(at(1, 0), ColorMap::Diverging.at(0.5));
    }

    #[test]
    fn mismatched_sizes_are_an_error() {
        let h = Heatmap {
            values: &[1.0, 2.0, 3.0],
            rows: 2,
            cols: 2,
            labels: &[],
            map: ColorMap::Viridis,
            lo: 0.0,
            hi: 1.0,
        };
        assert!(h.render().is_err());
    }
}

//! Image grids: model-space tensors in [-1, 1] to 8-bit pictures.

use anyhow::{Context, Result, bail};
use image::{ImageBuffer, ImageFormat, Rgb};
use std::io::Cursor;
use std::path::Path;

/// Pixels between the images of a grid (and around them).
pub const GRID_GAP: usize = 2;

/// The gray of the ground between the images.
pub const GRID_GROUND: u8 = 40;

/// Columns of a preview grid of `n` samples: wide rather than square (8 for
/// 16 samples), so that the panels stack as rows and sample `j` of every
/// panel lines up in one column.
pub fn grid_columns(n: usize) -> usize {
    n.div_ceil(4).max(n.min(8)).max(1)
}

/// `[width, height]` of a grid of `n` images of `h x w` in `cols` columns.
pub fn grid_size(n: usize, h: usize, w: usize, cols: usize) -> [usize; 2] {
    let cols = cols.max(1);
    let rows = n.div_ceil(cols);
    [
        cols * (w + GRID_GAP) + GRID_GAP,
        rows * (h + GRID_GAP) + GRID_GAP,
    ]
}

/// The byte of a model-space value: [-1, 1] (clamped) to 0..=255, rounded
/// half away from zero.
pub fn level_u8(v: f32) -> u8 {
    ((v.clamp(-1.0, 1.0) + 1.0) * 127.5).round() as u8
}

/// Lays out `n` images of `[c, h, w]` (values in [-1, 1], clamped) in a near-square
/// grid with a 2-pixel gap; grayscale for `c = 1`, RGB for `c = 3`.
pub fn grid_rgb(
    values: &[f32],
    n: usize,
    c: usize,
    h: usize,
    w: usize,
) -> Result<ImageBuffer<Rgb<u8>, Vec<u8>>> {
    grid_rgb_in(values, [n, c, h, w], (n as f64).sqrt().ceil() as usize)
}

/// Lays out `n` images of `[c, h, w]` (values in [-1, 1], clamped) in `cols`
/// columns with [`GRID_GAP`]-pixel gaps on a [`GRID_GROUND`] ground;
/// grayscale for `c = 1`, RGB for `c = 3`. The reference of
/// `shaders/preview.wgsl`.
pub fn grid_rgb_in(
    values: &[f32],
    [n, c, h, w]: [usize; 4],
    cols: usize,
) -> Result<ImageBuffer<Rgb<u8>, Vec<u8>>> {
    if c != 1 && c != 3 {
        bail!("cannot draw {c}-channel images (1 or 3 expected)");
    }
    if values.len() != n * c * h * w || n == 0 {
        bail!(
            "{} values do not make {n} images of {c}x{h}x{w}",
            values.len()
        );
    }
    let cols = cols.max(1);
    let gap = GRID_GAP;
    let [gw, gh] = grid_size(n, h, w, cols);
    let mut img = ImageBuffer::from_pixel(gw as u32, gh as u32, Rgb([GRID_GROUND; 3]));
    for k in 0..n {
        let (ox, oy) = (gap + (k % cols) * (w + gap), gap + (k / cols) * (h + gap));
        let base = k * c * h * w;
        for y in 0..h {
            for x in 0..w {
                let px = |ch: usize| level_u8(values[base + ch * h * w + y * w + x]);
                let rgb = if c == 1 {
                    [px(0); 3]
                } else {
                    [px(0), px(1), px(2)]
                };
                img.put_pixel((ox + x) as u32, (oy + y) as u32, Rgb(rgb));
            }
        }
    }
    Ok(img)
}

/// Encodes a grid as PNG and writes it atomically.
pub fn save_grid_png(
    path: &Path,
    values: &[f32],
    n: usize,
    c: usize,
    h: usize,
    w: usize,
) -> Result<()> {
    let img = grid_rgb(values, n, c, h, w)?;
    let mut bytes = Vec::new();
    img.write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png)
        .context("encoding PNG")?;
    crate::engine::checkpoint::write_atomic_bytes(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_places_and_scales_pixels() {
        // two 1x2x2 images: -1 (black) and +1 (white)
        let v = [-1.0, -1.0, -1.0, -1.0, 1.0, 1.0, 1.0, 1.0];
        let img = grid_rgb(&v, 2, 1, 2, 2).unwrap();
        assert_eq!(img.dimensions(), (2 * 4 + 2, 4 + 2)); // 2 cols, 1 row
        assert_eq!(img.get_pixel(2, 2).0, [0, 0, 0]);
        assert_eq!(img.get_pixel(6, 2).0, [255, 255, 255]);
        assert_eq!(img.get_pixel(0, 0).0, [40, 40, 40]);
        assert!(grid_rgb(&v, 3, 1, 2, 2).is_err());
    }
}

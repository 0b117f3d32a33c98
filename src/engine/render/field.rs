//! A scalar field on a `G x G` lattice drawn per pixel: bicubic (Catmull-Rom)
//! or bilinear between the lattice values, or the nearest one for a matrix of
//! cells, coloured by a [`ColorMap`], with iso-value contour lines.
//! `shaders/field.wgsl` draws the same on the GPU; this file is its reference
//! (the shader's test renders offscreen and compares with [`render`]).
//!
//! Geometry: a `w x h` pixel target covers the lattice cells, each cell
//! centred on its lattice value, so pixel `(px, py)` (row 0 at the top) reads
//! the lattice at `x = (px + 0.5) / w * G - 0.5`, `y = (h - py - 0.5) / h * G - 0.5`,
//! clamped to `[0, G - 1]`. A pixel lies on a contour when its band
//! `floor(C (v - lo) / (hi - lo))` differs from that of the pixel to its right
//! or the one below: lines one pixel wide at the `C - 1` levels between `lo`
//! and `hi` at any size. Missing values (NaN) are mid-grey and bound no contour.

use super::ColorMap;

/// How a field is drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FieldStyle {
    /// Value at the bottom of the colour map.
    pub lo: f32,
    /// Value at its top.
    pub hi: f32,
    /// Number of bands C: contour lines at the `C - 1` levels between `lo` and `hi` (0: none).
    pub bands: u32,
    /// The colour map.
    pub map: ColorMap,
    /// How values between lattice points are read.
    pub interp: Interp,
}

/// How a field is read between its lattice points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interp {
    /// Each pixel takes its cell's value (a matrix).
    Nearest,
    /// Bilinear between the four nearest points.
    Bilinear,
    /// Catmull-Rom between the sixteen nearest (edges repeated): smooth
    /// contours through the lattice values (a landscape).
    Bicubic,
}

impl Interp {
    /// Index used by the shader's `interp` uniform.
    pub fn shader_id(self) -> u32 {
        match self {
            Self::Nearest => 0,
            Self::Bilinear => 1,
            Self::Bicubic => 2,
        }
    }
}

/// Catmull-Rom weights of the four points around `t` in `[0, 1]`.
fn catmull_rom(t: f32) -> [f32; 4] {
    let (t2, t3) = (t * t, t * t * t);
    [
        (-t3 + 2.0 * t2 - t) * 0.5,
        (3.0 * t3 - 5.0 * t2 + 2.0) * 0.5,
        (-3.0 * t3 + 4.0 * t2 + t) * 0.5,
        (t3 - t2) * 0.5,
    ]
}

/// Bands of a landscape map (the app's and the PNG's): contour lines at the 7
/// levels between its lowest and highest loss.
pub const LANDSCAPE_BANDS: u32 = 8;

/// White at this opacity (of 255) is laid over the colour of a contour pixel.
pub const CONTOUR_ALPHA: f32 = 150.0;

/// The field's values, row-major from the bottom row (`values[j * g + i]` at
/// lattice point `(i, j)`, `j` upwards); NaN where missing.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    /// Points per axis G (at least 2).
    pub g: usize,
    /// `G * G` values.
    pub values: Vec<f32>,
}

impl Field {
    /// The field at lattice coordinates `(x, y)` (clamped to the lattice),
    /// bilinear between the four nearest points; NaN if any of them is.
    pub fn at(&self, x: f32, y: f32) -> f32 {
        let last = (self.g - 1) as f32;
        let (x, y) = (x.clamp(0.0, last), y.clamp(0.0, last));
        let i = (x.floor() as usize).min(self.g - 2);
        let j = (y.floor() as usize).min(self.g - 2);
        let (fx, fy) = (x - i as f32, y - j as f32);
        let v = |i: usize, j: usize| self.values[j * self.g + i];
        let bottom = v(i, j) * (1.0 - fx) + v(i + 1, j) * fx;
        let top = v(i, j + 1) * (1.0 - fx) + v(i + 1, j + 1) * fx;
        bottom * (1.0 - fy) + top * fy
    }

    /// The value of the lattice point whose cell holds `(x, y)` (clamped).
    pub fn nearest(&self, x: f32, y: f32) -> f32 {
        let last = (self.g - 1) as f32;
        let i = (x + 0.5).floor().clamp(0.0, last) as usize;
        let j = (y + 0.5).floor().clamp(0.0, last) as usize;
        self.values[j * self.g + i]
    }

    /// The field at lattice coordinates `(x, y)` (clamped), Catmull-Rom
    /// between the sixteen nearest points (indices clamped at the edges); NaN
    /// if any of them is.
    pub fn bicubic(&self, x: f32, y: f32) -> f32 {
        let last = (self.g - 1) as f32;
        let (x, y) = (x.clamp(0.0, last), y.clamp(0.0, last));
        let i = (x.floor() as usize).min(self.g - 2);
        let j = (y.floor() as usize).min(self.g - 2);
        let (wx, wy) = (catmull_rom(x - i as f32), catmull_rom(y - j as f32));
        let at = |a: usize, b: usize| {
            let ii = (i + a).saturating_sub(1).min(self.g - 1);
            let jj = (j + b).saturating_sub(1).min(self.g - 1);
            self.values[jj * self.g + ii]
        };
        let mut total = 0.0;
        for (b, wyb) in wy.iter().enumerate() {
            let row = wx[0] * at(0, b) + wx[1] * at(1, b) + wx[2] * at(2, b) + wx[3] * at(3, b);
            total += wyb * row;
        }
        total
    }

    /// The field at `(x, y)` as `style` reads it.
    pub fn sample(&self, x: f32, y: f32, style: &FieldStyle) -> f32 {
        match style.interp {
            Interp::Nearest => self.nearest(x, y),
            Interp::Bilinear => self.at(x, y),
            Interp::Bicubic => self.bicubic(x, y),
        }
    }

    /// Lattice coordinates of the centre of pixel `(px, py)` of a `w x h` target.
    pub fn lattice_of_pixel(&self, px: f32, py: f32, w: f32, h: f32) -> (f32, f32) {
        let g = self.g as f32;
        ((px + 0.5) / w * g - 0.5, (h - py - 0.5) / h * g - 0.5)
    }
}

/// The band of `v` (None for NaN).
pub fn band(v: f32, style: &FieldStyle) -> Option<i32> {
    if v.is_nan() {
        return None;
    }
    let span = style.hi - style.lo;
    let u = if span > 0.0 {
        (v - style.lo) / span
    } else {
        0.5
    };
    let c = style.bands as f32;
    Some(((u * c).floor()).clamp(0.0, c - 1.0) as i32)
}

/// The colour of pixel `(px, py)` of a `w x h` target, RGBA.
pub fn shade(field: &Field, style: &FieldStyle, px: u32, py: u32, w: u32, h: u32) -> [u8; 4] {
    let (wf, hf) = (w as f32, h as f32);
    let (x, y) = field.lattice_of_pixel(px as f32, py as f32, wf, hf);
    let v = field.sample(x, y, style);
    let [r, g, b] = style.map.map(v, style.lo, style.hi);
    let mut rgb = [r as f32, g as f32, b as f32];
    if style.bands > 1 && !v.is_nan() {
        let step = field.g as f32;
        let right = field.sample(x + step / wf, y, style);
        let below = field.sample(x, y - step / hf, style);
        let here = band(v, style);
        let crosses = |n: f32| !n.is_nan() && band(n, style) != here;
        if crosses(right) || crosses(below) {
            let a = CONTOUR_ALPHA / 255.0;
            for c in &mut rgb {
                *c = (*c + (255.0 - *c) * a + 0.5).floor();
            }
        }
    }
    [rgb[0] as u8, rgb[1] as u8, rgb[2] as u8, 255]
}

/// The whole `w x h` target, RGBA rows from the top.
pub fn render(field: &Field, style: &FieldStyle, w: u32, h: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity((w * h * 4) as usize);
    for py in 0..h {
        for px in 0..w {
            out.extend_from_slice(&shade(field, style, px, py, w, h));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(g: usize) -> Field {
        // v = i + 10 j
        Field {
            g,
            values: (0..g * g)
                .map(|k| (k % g) as f32 + 10.0 * (k / g) as f32)
                .collect(),
        }
    }

    #[test]
    fn bilinear_is_exact_on_a_plane_and_clamps_at_the_edges() {
        let f = ramp(4);
        assert_eq!(f.at(1.0, 2.0), 21.0);
        assert!((f.at(1.25, 0.5) - 6.25).abs() < 1e-6);
        assert_eq!(f.at(-3.0, -1.0), 0.0);
        assert_eq!(f.at(9.0, 9.0), 33.0);
    }

    #[test]
    fn pixel_centres_map_onto_cell_centres() {
        let f = ramp(4);
        // 8 pixels across 4 cells: pixels 0 and 1 share cell 0, whose centre is between them
        let (x0, _) = f.lattice_of_pixel(0.0, 0.0, 8.0, 8.0);
        let (x1, _) = f.lattice_of_pixel(1.0, 0.0, 8.0, 8.0);
        assert!((x0 + 0.25).abs() < 1e-6 && (x1 - 0.25).abs() < 1e-6);
        // the top row of pixels reads the top of the lattice
        let (_, y) = f.lattice_of_pixel(0.0, 0.0, 8.0, 8.0);
        assert!((y - 3.25).abs() < 1e-6);
    }

    #[test]
    fn contours_cross_where_the_band_changes_and_nan_is_grey() {
        // v = x only: bands change at x = 1.5 with lo 0, hi 3, 2 bands
        let g = 4;
        let f = Field {
            g,
            values: (0..g * g).map(|k| (k % g) as f32).collect(),
        };
        let style = FieldStyle {
            lo: 0.0,
            hi: 3.0,
            bands: 2,
            map: ColorMap::Viridis,
            interp: Interp::Bilinear,
        };
        let (w, h) = (40, 8);
        let img = render(&f, &style, w, h);
        let lit: Vec<u32> = (0..w)
            .filter(|&px| {
                let plain = style.map.map(
                    f.at(f.lattice_of_pixel(px as f32, 3.0, 40.0, 8.0).0, 1.0),
                    0.0,
                    3.0,
                );
                img[(3 * w + px) as usize * 4] != plain[0]
            })
            .collect();
        // exactly one column lit, just left of x = 1.5 (pixel 19 reads x = 1.45, its right neighbour 1.55)
        assert_eq!(lit, [19]);
        let mut holes = ramp(3);
        holes.values[4] = f32::NAN;
        let grey = shade(&holes, &style, 1, 1, 3, 3);
        assert_eq!(grey, [128, 128, 128, 255]);
    }

    #[test]
    fn bicubic_passes_through_the_lattice_and_is_exact_on_a_plane() {
        let plane = ramp(5);
        assert!((plane.bicubic(2.3, 1.6) - 18.3).abs() < 1e-4);
        let mut bumpy = ramp(5);
        bumpy.values[12] = 50.0;
        for (i, j) in [(2usize, 2usize), (1, 3), (4, 0)] {
            let v = bumpy.values[j * 5 + i];
            assert!((bumpy.bicubic(i as f32, j as f32) - v).abs() < 1e-4);
        }
        // no kink at a lattice point, where bilinear has one: the slope
        // changes far less across the bump's peak
        let kink = |f: &dyn Fn(f32) -> f32| ((f(2.01) - f(2.0)) - (f(2.0) - f(1.99))).abs();
        let cubic = kink(&|x| bumpy.bicubic(x, 2.0));
        let linear = kink(&|x| bumpy.at(x, 2.0));
        assert!(cubic < 0.1 * linear, "{cubic} vs {linear}");
        bumpy.values[0] = f32::NAN;
        assert!(bumpy.bicubic(0.5, 0.5).is_nan());
    }

    #[test]
    fn a_matrix_reads_each_cell_whole() {
        let f = ramp(3);
        assert_eq!(f.nearest(0.49, 1.51), 20.0);
        assert_eq!(f.nearest(-4.0, 9.0), 20.0);
        let style = FieldStyle {
            lo: 0.0,
            hi: 22.0,
            bands: 0,
            map: ColorMap::Diverging,
            interp: Interp::Nearest,
        };
        // 3 x 3 cells of 4 pixels: every pixel of a cell has the cell's colour
        let img = render(&f, &style, 12, 12);
        for py in 0..12u32 {
            for px in 0..12u32 {
                let (i, j) = (px / 4, 2 - py / 4);
                let want = style.map.map(f.values[(j * 3 + i) as usize], 0.0, 22.0);
                assert_eq!(
                    img[((py * 12 + px) * 4) as usize..][..3],
                    want,
                    "{px}, {py}"
                );
            }
        }
    }
}

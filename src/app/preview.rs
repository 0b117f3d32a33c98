//! Sample previews: sampled tensors to pictures, pictures to textures, and the
//! PNG export of the preview grid.

use crate::engine::merge::MergeSpec;
use anyhow::{Context, Result, anyhow, bail};
use burn::tensor::Tensor;
use egui::{Color32, ColorImage, TextureHandle, TextureOptions};
use std::path::Path;
use std::sync::Arc;

/// The three sample panels, drawn from the same starting noise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Panel {
    /// The pretrained model theta.
    Base,
    /// The timestep-wise ensemble (expert i on range i).
    Ensemble,
    /// `theta + sum_i w_i tau_i` for the current weights.
    Merged,
}

impl Panel {
    /// All panels, in display order.
    pub const ALL: [Panel; 3] = [Panel::Base, Panel::Ensemble, Panel::Merged];

    /// Display name.
    pub fn title(self) -> &'static str {
        match self {
            Panel::Base => "Base",
            Panel::Ensemble => "Ensemble",
            Panel::Merged => "Merged",
        }
    }

    /// Index in [`Self::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Samples on the host, `[n, c, h, w]`, in model space ([-1, 1] for images).
#[derive(Debug, Clone, PartialEq)]
pub struct Samples {
    /// Values in row-major order.
    pub values: Vec<f32>,
    /// `[n, c, h, w]`.
    pub shape: [usize; 4],
}

impl Samples {
    /// Copies a device tensor to the host.
    pub fn from_tensor(x: &Tensor<4>) -> Result<Self> {
        let shape = x.dims();
        let values = x
            .clone()
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| anyhow!("reading samples back from the device: {e:?}"))?;
        Ok(Self { values, shape })
    }

    /// Whether these are 2D points (`[n, 2, 1, 1]`) rather than images.
    pub fn are_points(&self) -> bool {
        let [_, c, h, w] = self.shape;
        c == 2 && h == 1 && w == 1
    }
}

/// A preview: the samples and their picture.
#[derive(Debug, Clone)]
pub struct PreviewImage {
    /// What was sampled.
    pub samples: Samples,
    /// The picture (a grid of images, or a scatter plot of points).
    pub image: ColorImage,
}

impl PreviewImage {
    /// Draws `samples`.
    pub fn new(samples: Samples) -> Result<Self> {
        let image = if samples.are_points() {
            scatter(&samples.values, 160)
        } else {
            grid_picture(&samples.values, samples.shape)?
        };
        Ok(Self { samples, image })
    }

    /// Copies `x` to the host and draws it.
    pub fn from_tensor(x: &Tensor<4>) -> Result<Self> {
        Self::new(Samples::from_tensor(x)?)
    }
}

/// Columns of a preview grid of `n` samples: wide rather than square (8 for
/// 16 samples), so that the panels stack as rows and sample `j` of every
/// panel lines up in one column.
pub fn grid_columns(n: usize) -> usize {
    n.div_ceil(4).max(n.min(8)).max(1)
}

/// `n` images `[c, h, w]` in [-1, 1] (clamped) in [`grid_columns`] columns with
/// 2-pixel gaps; grayscale for one channel, RGB for three.
pub fn grid_picture(values: &[f32], shape: [usize; 4]) -> Result<ColorImage> {
    let [n, c, h, w] = shape;
    if c != 1 && c != 3 {
        bail!("cannot draw {c}-channel images (1 or 3 expected)");
    }
    if n == 0 || values.len() != n * c * h * w {
        bail!(
            "{} values do not make {n} images of {c}x{h}x{w}",
            values.len()
        );
    }
    let cols = grid_columns(n);
    let rows = n.div_ceil(cols);
    let gap = 2;
    let size = [cols * (w + gap) + gap, rows * (h + gap) + gap];
    let mut img = ColorImage::filled(size, Color32::from_gray(40));
    let to_u8 = |v: f32| ((v.clamp(-1.0, 1.0) + 1.0) * 127.5).round() as u8;
    for k in 0..n {
        let (ox, oy) = (gap + (k % cols) * (w + gap), gap + (k / cols) * (h + gap));
        let base = k * c * h * w;
        for y in 0..h {
            for x in 0..w {
                let px = |ch: usize| to_u8(values[base + ch * h * w + y * w + x]);
                img[(ox + x, oy + y)] = if c == 1 {
                    Color32::from_gray(px(0))
                } else {
                    Color32::from_rgb(px(0), px(1), px(2))
                };
            }
        }
    }
    Ok(img)
}

/// 2D points (pairs of values) in [-4, 4]^2 drawn as white dots on `size` x `size`.
fn scatter(values: &[f32], size: usize) -> ColorImage {
    let mut img = ColorImage::filled([size, size], Color32::from_gray(24));
    let to_px = |v: f32| ((v + 4.0) / 8.0 * (size - 1) as f32).round();
    for p in values.chunks_exact(2) {
        let (x, y) = (to_px(p[0]), to_px(-p[1]));
        if (0.0..size as f32).contains(&x) && (0.0..size as f32).contains(&y) {
            img[(x as usize, y as usize)] = Color32::WHITE;
        }
    }
    img
}

/// What a panel shows now.
#[derive(Debug, Clone)]
pub struct Shown {
    /// The picture.
    pub preview: Arc<PreviewImage>,
    /// The merge it shows (`None` for base and ensemble).
    pub spec: Option<MergeSpec>,
    /// Sampler steps taken so far.
    pub step: usize,
    /// Sampler steps of the run.
    pub of: usize,
    /// Whether the run finished (else an intermediate step).
    pub done: bool,
    /// The request it answers (0 for base and ensemble).
    pub generation: u64,
}

/// One panel's texture and what it shows.
#[derive(Default)]
pub struct PanelPreview {
    texture: Option<TextureHandle>,
    shown: Option<Shown>,
    dirty: bool,
}

impl PanelPreview {
    /// What is shown, if anything.
    pub fn shown(&self) -> Option<&Shown> {
        self.shown.as_ref()
    }

    /// The picture shown, if any.
    pub fn image(&self) -> Option<&ColorImage> {
        self.shown.as_ref().map(|s| &s.preview.image)
    }

    /// Shows `shown` (the texture is updated at the next draw).
    pub fn show(&mut self, shown: Shown) {
        self.shown = Some(shown);
        self.dirty = true;
    }

    /// Forgets the picture (new models).
    pub fn clear(&mut self) {
        self.shown = None;
        self.dirty = true;
    }

    /// The texture, uploaded or updated as needed; nearest filtering keeps
    /// upscaled pixels crisp.
    pub fn texture(&mut self, ctx: &egui::Context, name: &str) -> Option<&TextureHandle> {
        let Some(shown) = &self.shown else {
            self.texture = None;
            return None;
        };
        let image = shown.preview.image.clone();
        match &mut self.texture {
            Some(t) if self.dirty => t.set(image, TextureOptions::NEAREST),
            Some(_) => {}
            None => self.texture = Some(ctx.load_texture(name, image, TextureOptions::NEAREST)),
        }
        self.dirty = false;
        self.texture.as_ref()
    }
}

/// Writes pictures one above the other (8-pixel gaps) as one PNG.
pub fn save_stacked_png(images: &[&ColorImage], path: &Path) -> Result<()> {
    if images.is_empty() {
        bail!("there is no preview to export yet");
    }
    let gap = 8;
    let width = images.iter().map(|i| i.size[0]).max().unwrap_or(0);
    let height = images.iter().map(|i| i.size[1]).sum::<usize>() + gap * (images.len() - 1);
    let mut out =
        image::RgbImage::from_pixel(width as u32, height as u32, image::Rgb([40, 40, 40]));
    let mut y0 = 0;
    for img in images {
        for y in 0..img.size[1] {
            for x in 0..img.size[0] {
                let c = img[(x, y)];
                out.put_pixel(x as u32, (y0 + y) as u32, image::Rgb([c.r(), c.g(), c.b()]));
            }
        }
        y0 += img.size[1] + gap;
    }
    let mut bytes = Vec::new();
    out.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .context("encoding PNG")?;
    crate::engine::checkpoint::write_atomic_bytes(path, &bytes)
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_become_grids_and_points_become_scatters() {
        let s = Samples {
            values: vec![-1.0, 1.0, 1.0, -1.0],
            shape: [1, 1, 2, 2],
        };
        let p = PreviewImage::new(s).unwrap();
        assert_eq!(p.image.size, [6, 6]);
        assert_eq!(p.image[(2, 2)], Color32::from_gray(0));
        assert_eq!(p.image[(3, 2)], Color32::from_gray(255));
        assert_eq!(p.image[(1, 1)], Color32::from_gray(40));
        let pts = Samples {
            values: vec![0.0, 0.0, 10.0, 10.0],
            shape: [2, 2, 1, 1],
        };
        assert!(pts.are_points());
        let p = PreviewImage::new(pts).unwrap();
        assert_eq!(p.image[(80, 80)], Color32::WHITE);
    }

    #[test]
    fn grids_are_wide_and_exports_stack() {
        assert_eq!(grid_columns(16), 8);
        assert_eq!(grid_columns(4), 4);
        assert_eq!(grid_columns(64), 16);
        let img = grid_picture(&vec![0.0; 16 * 4], [16, 1, 2, 2]).unwrap();
        assert_eq!(img.size, [8 * 4 + 2, 2 * 4 + 2]);
        assert!(grid_picture(&[0.0; 3], [1, 1, 2, 2]).is_err());
        let dir = tempfile::tempdir().unwrap();
        let a = ColorImage::filled([3, 2], Color32::WHITE);
        let b = ColorImage::filled([2, 4], Color32::BLACK);
        let path = dir.path().join("rows.png");
        save_stacked_png(&[&a, &b], &path).unwrap();
        let back = image::open(&path).unwrap().to_rgb8();
        assert_eq!(back.dimensions(), (3, 2 + 8 + 4));
        assert_eq!(back.get_pixel(0, 0).0, [255, 255, 255]);
        assert_eq!(back.get_pixel(1, 13).0, [0, 0, 0]);
        assert_eq!(back.get_pixel(2, 13).0, [40, 40, 40]);
        assert!(save_stacked_png(&[], &path).is_err());
    }
}

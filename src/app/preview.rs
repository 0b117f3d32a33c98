//! Sample previews: sampled tensors to pictures, pictures to textures, and the
//! PNG export of the preview grid.

use super::preview_gpu::DevicePicture;
pub use crate::engine::grid_image::grid_columns;
use crate::engine::grid_image::grid_rgb_in;
use crate::engine::merge::MergeSpec;
use anyhow::{Context, Result, anyhow, bail};
use burn::tensor::Tensor;
use eframe::egui_wgpu;
use egui::mutex::RwLock;
use egui::{Color32, ColorImage, TextureHandle, TextureId, TextureOptions};
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
        are_points(self.shape)
    }
}

/// Whether samples of `shape` are 2D points (`[n, 2, 1, 1]`) rather than images.
pub fn are_points([_, c, h, w]: [usize; 4]) -> bool {
    c == 2 && h == 1 && w == 1
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
            scatter_picture(&samples.values, SCATTER_SIZE, POINT_RANGE)
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

/// `n` images `[c, h, w]` in [-1, 1] (clamped) in [`grid_columns`] columns
/// (see [`grid_rgb_in`]); grayscale for one channel, RGB for three.
pub fn grid_picture(values: &[f32], shape: [usize; 4]) -> Result<ColorImage> {
    let img = grid_rgb_in(values, shape, grid_columns(shape[0]))?;
    let size = [img.width() as usize, img.height() as usize];
    Ok(ColorImage::from_rgb(size, img.as_raw()))
}

/// Half-width of the square of model space a point picture shows: `[-R, R]^2`
/// (toy data is standardised, so nearly every point lies within 3).
pub const POINT_RANGE: f32 = 3.0;
/// Side of a point picture in pixels.
pub const SCATTER_SIZE: usize = 200;
/// Background of a point picture.
pub const SCATTER_BACKGROUND: Color32 = Color32::from_gray(24);
/// Colour of a lone point (denser places get brighter).
pub const SCATTER_POINT: Color32 = Color32::from_rgb(240, 160, 70);

/// The pixel `(column, row)` of the point `(x, y)` on a `size` x `size`
/// picture of `[-range, range]^2` (y up), or `None` when it falls outside
/// (or is not finite).
pub fn point_pixel(x: f32, y: f32, size: usize, range: f32) -> Option<(usize, usize)> {
    let to_px = |v: f32| ((v + range) / (2.0 * range) * (size - 1) as f32).round();
    let (px, py) = (to_px(x), to_px(-y));
    let inside = |p: f32| p.is_finite() && (0.0..size as f32).contains(&p);
    (size > 1 && inside(px) && inside(py)).then_some((px as usize, py as usize))
}

/// 2D points (pairs of values) in `[-range, range]^2` as 2x2 dots on a dark
/// `size` x `size` picture with faint lines at the integers and brighter
/// axes; where dots pile up they get brighter. Points outside are left out.
pub fn scatter_picture(values: &[f32], size: usize, range: f32) -> ColorImage {
    let mut img = ColorImage::filled([size, size], SCATTER_BACKGROUND);
    if size < 2 || !(range.is_finite() && range > 0.0) {
        return img;
    }
    let mut line = |v: f32, gray: u8| {
        if let Some((p, _)) = point_pixel(v, 0.0, size, range) {
            for q in 0..size {
                img[(p, q)] = Color32::from_gray(gray);
                img[(size - 1 - p, q)] = Color32::from_gray(gray);
                img[(q, p)] = Color32::from_gray(gray);
                img[(q, size - 1 - p)] = Color32::from_gray(gray);
            }
        }
    };
    for k in 1..range.ceil() as i32 {
        line(k as f32, 36);
    }
    line(0.0, 52);
    let mut hits = vec![0u16; size * size];
    for p in values.chunks_exact(2) {
        let Some((x, y)) = point_pixel(p[0], p[1], size, range) else {
            continue;
        };
        for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
            let (x, y) = (x + dx, y + dy);
            if x < size && y < size {
                hits[y * size + x] = hits[y * size + x].saturating_add(1);
            }
        }
    }
    let [r, g, b, _] = SCATTER_POINT.to_array();
    for (i, &n) in hits.iter().enumerate() {
        if n > 0 {
            // 1 hit: the point colour; more: towards white
            let t = (n as f32 - 1.0).min(6.0) / 6.0;
            let mix = |c: u8| (c as f32 + (255.0 - c as f32) * t).round() as u8;
            img[(i % size, i / size)] = Color32::from_rgb(mix(r), mix(g), mix(b));
        }
    }
    img
}

/// A panel's picture: drawn on the host, or laid out on the device straight
/// from the sampler's tensor (see [`super::preview_gpu`]).
#[derive(Debug, Clone)]
pub enum Picture {
    /// Samples read back and drawn on the host.
    Host(Arc<PreviewImage>),
    /// A texture on the device the window draws with.
    Device(Arc<DevicePicture>),
}

impl From<PreviewImage> for Picture {
    fn from(p: PreviewImage) -> Self {
        Picture::Host(Arc::new(p))
    }
}

impl Picture {
    /// `[width, height]` in pixels.
    pub fn size(&self) -> [usize; 2] {
        match self {
            Picture::Host(p) => p.image.size,
            Picture::Device(d) => d.size,
        }
    }

    /// The picture on the host (a device picture is read back once; `None`
    /// if that fails).
    pub fn host_image(&self) -> Option<&ColorImage> {
        match self {
            Picture::Host(p) => Some(&p.image),
            Picture::Device(d) => d.host().ok(),
        }
    }
}

/// The renderer of the window, kept in the context's temporary data so that
/// panels can register device pictures with it.
#[derive(Clone)]
struct WindowRenderer(Arc<RwLock<egui_wgpu::Renderer>>);

fn renderer_id() -> egui::Id {
    egui::Id::unique("deme-studio window renderer")
}

/// Lets this frame's panels draw device pictures with `renderer` (set every
/// frame by the app when the window draws with wgpu).
pub fn set_window_renderer(ctx: &egui::Context, renderer: &Arc<RwLock<egui_wgpu::Renderer>>) {
    ctx.data_mut(|d| d.insert_temp(renderer_id(), WindowRenderer(renderer.clone())));
}

fn window_renderer(ctx: &egui::Context) -> Option<Arc<RwLock<egui_wgpu::Renderer>>> {
    ctx.data(|d| d.get_temp::<WindowRenderer>(renderer_id()))
        .map(|r| r.0)
}

/// What a panel shows now.
#[derive(Debug, Clone)]
pub struct Shown {
    /// The picture.
    pub preview: Picture,
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

    /// The picture shown, on the host (read back once if it lives on the
    /// device), if any.
    pub fn image(&self) -> Option<&ColorImage> {
        self.shown.as_ref().and_then(|s| s.preview.host_image())
    }

    /// `[width, height]` of the picture shown, if any.
    pub fn size(&self) -> Option<[usize; 2]> {
        self.shown.as_ref().map(|s| s.preview.size())
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

    /// The texture to draw and its size in pixels: a device picture as it
    /// lies (registered with the window's renderer), a host picture uploaded
    /// or updated as needed; nearest filtering keeps upscaled pixels crisp.
    pub fn texture(&mut self, ctx: &egui::Context, name: &str) -> Option<(TextureId, egui::Vec2)> {
        let Some(shown) = &self.shown else {
            self.texture = None;
            return None;
        };
        let [w, h] = shown.preview.size();
        let size = egui::vec2(w as f32, h as f32);
        if let (Picture::Device(d), Some(renderer)) = (&shown.preview, window_renderer(ctx)) {
            self.texture = None;
            return Some((d.texture_id(&renderer), size));
        }
        if self.texture.is_none() || self.dirty {
            // a device picture without a renderer to hand it to (a window
            // that does not draw with wgpu) goes by its host copy
            let image = shown.preview.host_image()?.clone();
            match &mut self.texture {
                Some(t) => t.set(image, TextureOptions::NEAREST),
                None => self.texture = Some(ctx.load_texture(name, image, TextureOptions::NEAREST)),
            }
        }
        self.dirty = false;
        self.texture.as_ref().map(|t| (t.id(), size))
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
        assert_eq!(p.image.size, [SCATTER_SIZE, SCATTER_SIZE]);
        assert_eq!(p.image[(100, 100)], SCATTER_POINT);
    }

    #[test]
    fn points_land_on_their_pixels_and_the_rest_is_clipped() {
        // 9 px over [-2, 2]: 0.5 per pixel, y up
        assert_eq!(point_pixel(0.0, 0.0, 9, 2.0), Some((4, 4)));
        assert_eq!(point_pixel(-2.0, 2.0, 9, 2.0), Some((0, 0)));
        assert_eq!(point_pixel(2.0, -2.0, 9, 2.0), Some((8, 8)));
        assert_eq!(point_pixel(1.0, 0.5, 9, 2.0), Some((6, 3)));
        assert_eq!(point_pixel(2.3, 0.0, 9, 2.0), None);
        assert_eq!(point_pixel(0.0, -2.3, 9, 2.0), None);
        assert_eq!(point_pixel(f32::NAN, 0.0, 9, 2.0), None);
        assert_eq!(point_pixel(0.0, f32::INFINITY, 9, 2.0), None);

        let size = SCATTER_SIZE;
        let empty = scatter_picture(&[], size, POINT_RANGE);
        // a point at (1, -1), one far outside, NaN and infinity, twice the same point
        let values = [
            1.0,
            -1.0,
            50.0,
            0.0,
            f32::NAN,
            0.5,
            0.0,
            f32::NEG_INFINITY,
            -2.0,
            2.0,
            -2.0,
            2.0,
        ];
        let img = scatter_picture(&values, size, POINT_RANGE);
        let (x, y) = point_pixel(1.0, -1.0, size, POINT_RANGE).unwrap();
        assert_eq!((x, y), (133, 133));
        for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
            assert_eq!(img[(x + dx, y + dy)], SCATTER_POINT);
        }
        assert_eq!(img[(x + 2, y)], empty[(x + 2, y)], "a dot is 2x2");
        assert_eq!(img[(x - 1, y)], empty[(x - 1, y)]);
        // the doubled point is brighter than a lone one
        let (x2, y2) = point_pixel(-2.0, 2.0, size, POINT_RANGE).unwrap();
        let lone = SCATTER_POINT.to_array();
        let twice = img[(x2, y2)].to_array();
        assert!(twice[2] > lone[2], "{twice:?} vs {lone:?}");
        // only those two dots changed pixels
        let changed = (0..size * size)
            .filter(|&i| img.pixels[i] != empty.pixels[i])
            .count();
        assert_eq!(changed, 8);
        assert_eq!(empty[(7, 150)], SCATTER_BACKGROUND);
        // degenerate sizes and ranges do not panic
        assert_eq!(scatter_picture(&values, 1, POINT_RANGE).size, [1, 1]);
        assert_eq!(scatter_picture(&values, 0, POINT_RANGE).size, [0, 0]);
        assert_eq!(
            scatter_picture(&values, 8, f32::NAN).pixels,
            vec![SCATTER_BACKGROUND; 64]
        );
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

//! [`ImageSet`]: a batch of same-sized images held as `f32` in NCHW order.
//!
//! Pixel values are scaled to `[-1, 1]` (a byte `v` becomes `v / 127.5 - 1`), the
//! range diffusion models are trained on. [`ImageSet::fit_to`] adapts a set to a
//! model's input shape (padding, bilinear resizing, channel conversion).

use anyhow::{Result, bail, ensure};

/// Largest padding, in pixels per side, that [`ImageSet::fit_to`] applies before it
/// falls back to resizing.
pub const MAX_PAD_PER_SIDE: usize = 8;

/// Most pixel values a dataset may hold in memory (640 MB as f32; CIFAR-10's 50,000
/// training images are 154M). Every loader checks it from what a file declares,
/// before decoding or inflating, so a small file cannot ask for many gigabytes.
pub const MAX_DATASET_VALUES: u64 = 160_000_000;

/// Refuses a dataset of `images` images of `per_image` values each when it would
/// hold more than [`MAX_DATASET_VALUES`] values.
pub fn check_dataset_size(images: u64, per_image: u64, what: &str) -> Result<()> {
    match images.checked_mul(per_image) {
        Some(v) if v <= MAX_DATASET_VALUES => Ok(()),
        _ => bail!(
            "{what}: {images} images of {per_image} values each are more than the \
             {MAX_DATASET_VALUES} pixel values a dataset may hold; use fewer or smaller images"
        ),
    }
}

/// Value used for padding: black in the `[-1, 1]` pixel range.
pub const PAD_VALUE: f32 = -1.0;

/// Luminance weights (ITU-R BT.601) used to convert RGB to grayscale.
pub const LUMA_WEIGHTS: [f32; 3] = [0.299, 0.587, 0.114];

/// Converts a pixel byte to the `[-1, 1]` range used throughout the engine.
#[inline]
pub fn byte_to_unit(v: u8) -> f32 {
    f32::from(v) / 127.5 - 1.0
}

/// `N` images of identical shape `channels x height x width`, stored contiguously in
/// NCHW order with values in `[-1, 1]`.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageSet {
    /// Channels per image (1 for grayscale, 3 for RGB).
    pub channels: usize,
    /// Image height in pixels.
    pub height: usize,
    /// Image width in pixels.
    pub width: usize,
    /// All pixels, image after image, each image channel-major (NCHW).
    pub pixels: Vec<f32>,
    /// Optional class label per image (same length as the number of images).
    pub labels: Option<Vec<u32>>,
}

impl ImageSet {
    /// Builds a set, checking that the shape is non-empty, that `pixels` holds a
    /// whole number of images and that `labels` (if any) has one entry per image.
    pub fn new(
        channels: usize,
        height: usize,
        width: usize,
        pixels: Vec<f32>,
        labels: Option<Vec<u32>>,
    ) -> Result<Self> {
        ensure!(
            channels > 0 && height > 0 && width > 0,
            "image shape {channels}x{height}x{width} has a zero dimension"
        );
        let size = channels * height * width;
        ensure!(
            pixels.len().is_multiple_of(size),
            "{} pixel values are not a whole number of {channels}x{height}x{width} images",
            pixels.len()
        );
        if let Some(labels) = &labels {
            ensure!(
                labels.len() == pixels.len() / size,
                "{} labels for {} images",
                labels.len(),
                pixels.len() / size
            );
        }
        Ok(Self {
            channels,
            height,
            width,
            pixels,
            labels,
        })
    }

    /// Number of `f32` values in one image (`channels * height * width`).
    pub fn image_size(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Shape of one image as `(channels, height, width)`.
    pub fn shape(&self) -> (usize, usize, usize) {
        (self.channels, self.height, self.width)
    }

    /// Number of images in the set.
    pub fn len(&self) -> usize {
        match self.image_size() {
            0 => 0,
            size => self.pixels.len() / size,
        }
    }

    /// Whether the set holds no images.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Pixels of image `i` (CHW). Panics if `i >= self.len()`.
    pub fn image(&self, i: usize) -> &[f32] {
        let size = self.image_size();
        &self.pixels[i * size..(i + 1) * size]
    }

    /// A new set holding the images at `indices`, in that order (repeats allowed).
    /// Panics if an index is out of range.
    pub fn subset(&self, indices: &[usize]) -> ImageSet {
        let mut pixels = Vec::new();
        self.batch(indices, &mut pixels);
        let labels = self
            .labels
            .as_ref()
            .map(|l| indices.iter().map(|&i| l[i]).collect());
        ImageSet {
            channels: self.channels,
            height: self.height,
            width: self.width,
            pixels,
            labels,
        }
    }

    /// Replaces the contents of `out` with the images at `indices`, contiguous in
    /// NCHW order (ready to become a `[indices.len(), C, H, W]` tensor). Reuses the
    /// buffer's allocation. Panics if an index is out of range.
    pub fn batch(&self, indices: &[usize], out: &mut Vec<f32>) {
        out.clear();
        out.reserve(indices.len() * self.image_size());
        for &i in indices {
            out.extend_from_slice(self.image(i));
        }
    }

    /// Adapts the set to a model input of shape `channels x height x width`.
    ///
    /// * Spatial: if the target is larger by an even margin of at most
    ///   [`MAX_PAD_PER_SIDE`] pixels per side in both directions, the image is
    ///   centred and padded with [`PAD_VALUE`] (MNIST 28x28 -> 32x32 pads 2 per
    ///   side); otherwise it is resized bilinearly (half-pixel centres, no
    ///   antialiasing).
    /// * Channels: 1 -> 3 replicates the plane, 3 -> 1 takes the luminance with
    ///   [`LUMA_WEIGHTS`]. Any other mismatch is an error naming both shapes.
    ///
    /// Labels are kept. A set already of the target shape is returned unchanged.
    pub fn fit_to(&self, channels: usize, height: usize, width: usize) -> Result<ImageSet> {
        self.clone().into_fitted(channels, height, width)
    }

    /// [`Self::fit_to`], consuming the set: a set that already has the shape is
    /// returned as it is, with no copy of its pixels.
    pub fn into_fitted(self, channels: usize, height: usize, width: usize) -> Result<ImageSet> {
        let (c, h, w) = self.shape();
        let describe =
            || format!("cannot adapt images of shape {c}x{h}x{w} to {channels}x{height}x{width}");
        if channels == 0 || height == 0 || width == 0 {
            bail!("{}: the target has a zero dimension", describe());
        }
        if !(c == channels || (c == 1 && channels == 3) || (c == 3 && channels == 1)) {
            bail!(
                "{}: only 1 -> 3 and 3 -> 1 channel conversions are supported",
                describe()
            );
        }
        // Reduce channels first, expand last: spatial work is done on as few planes
        // as possible. Both operations are linear and per-pixel, so the order does
        // not change the result beyond rounding.
        let mut set = if channels < c {
            self.convert_channels(channels)
        } else {
            self
        };
        if (set.height, set.width) != (height, width) {
            set = match (pad_margin(h, height), pad_margin(w, width)) {
                (Some(top), Some(left)) => set.pad(height, width, top, left),
                _ => set.resize_bilinear(height, width),
            };
        }
        if set.channels != channels {
            set = set.convert_channels(channels);
        }
        Ok(set)
    }

    /// Centres every image in a `height x width` canvas filled with [`PAD_VALUE`].
    fn pad(&self, height: usize, width: usize, top: usize, left: usize) -> ImageSet {
        let (c, h, w) = self.shape();
        let n = self.len();
        let mut pixels = vec![PAD_VALUE; n * c * height * width];
        for (src, dst) in self
            .pixels
            .chunks_exact(h * w)
            .zip(pixels.chunks_exact_mut(height * width))
        {
            for y in 0..h {
                let d = (y + top) * width + left;
                dst[d..d + w].copy_from_slice(&src[y * w..(y + 1) * w]);
            }
        }
        ImageSet {
            channels: c,
            height,
            width,
            pixels,
            labels: self.labels.clone(),
        }
    }

    /// Bilinear resize of every plane to `height x width`.
    fn resize_bilinear(&self, height: usize, width: usize) -> ImageSet {
        let (c, h, w) = self.shape();
        let n = self.len();
        let ys = sample_positions(h, height);
        let xs = sample_positions(w, width);
        let mut pixels = vec![0.0; n * c * height * width];
        for (src, dst) in self
            .pixels
            .chunks_exact(h * w)
            .zip(pixels.chunks_exact_mut(height * width))
        {
            for (oy, &(y0, y1, fy)) in ys.iter().enumerate() {
                let (r0, r1) = (&src[y0 * w..(y0 + 1) * w], &src[y1 * w..(y1 + 1) * w]);
                let row = &mut dst[oy * width..(oy + 1) * width];
                for (out, &(x0, x1, fx)) in row.iter_mut().zip(&xs) {
                    let top = r0[x0] + (r0[x1] - r0[x0]) * fx;
                    let bottom = r1[x0] + (r1[x1] - r1[x0]) * fx;
                    *out = top + (bottom - top) * fy;
                }
            }
        }
        ImageSet {
            channels: c,
            height,
            width,
            pixels,
            labels: self.labels.clone(),
        }
    }

    /// 1 -> 3 (replicate) or 3 -> 1 (luminance); callers check the pair is valid.
    fn convert_channels(&self, channels: usize) -> ImageSet {
        let plane = self.height * self.width;
        let mut pixels = Vec::with_capacity(self.len() * channels * plane);
        for img in self.pixels.chunks_exact(self.image_size()) {
            if self.channels == 1 {
                for _ in 0..channels {
                    pixels.extend_from_slice(img);
                }
            } else {
                let (r, rest) = img.split_at(plane);
                let (g, b) = rest.split_at(plane);
                pixels.extend(r.iter().zip(g).zip(b).map(|((&r, &g), &b)| {
                    LUMA_WEIGHTS[0] * r + LUMA_WEIGHTS[1] * g + LUMA_WEIGHTS[2] * b
                }));
            }
        }
        ImageSet {
            channels,
            height: self.height,
            width: self.width,
            pixels,
            labels: self.labels.clone(),
        }
    }
}

/// Padding per side if `from -> to` is an even growth of at most
/// [`MAX_PAD_PER_SIDE`] per side (zero growth counts).
fn pad_margin(from: usize, to: usize) -> Option<usize> {
    let grow = to.checked_sub(from)?;
    (grow % 2 == 0 && grow / 2 <= MAX_PAD_PER_SIDE).then_some(grow / 2)
}

/// For each output coordinate: the two source indices and the interpolation
/// weight of the second, using half-pixel centres (`align_corners = false`).
fn sample_positions(src: usize, dst: usize) -> Vec<(usize, usize, f32)> {
    let scale = src as f32 / dst as f32;
    (0..dst)
        .map(|o| {
            let p = ((o as f32 + 0.5) * scale - 0.5).clamp(0.0, (src - 1) as f32);
            let i0 = p.floor() as usize;
            let i1 = (i0 + 1).min(src - 1);
            (i0, i1, p - i0 as f32)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(c: usize, h: usize, w: usize, n: usize) -> ImageSet {
        let size = c * h * w;
        let pixels = (0..n * size)
            .map(|i| (i % size) as f32 / size as f32 * 2.0 - 1.0)
            .collect();
        ImageSet::new(c, h, w, pixels, Some((0..n as u32).collect())).unwrap()
    }

    #[test]
    fn byte_scaling_hits_both_ends() {
        assert_eq!(byte_to_unit(0), -1.0);
        assert_eq!(byte_to_unit(255), 1.0);
        assert!(byte_to_unit(128).abs() < 0.01);
    }

    #[test]
    fn new_validates_shape_and_labels() {
        assert!(ImageSet::new(1, 2, 2, vec![0.0; 7], None).is_err());
        assert!(ImageSet::new(1, 0, 2, vec![], None).is_err());
        assert!(ImageSet::new(1, 2, 2, vec![0.0; 8], Some(vec![1])).is_err());
        let s = ImageSet::new(1, 2, 2, vec![0.0; 8], Some(vec![1, 2])).unwrap();
        assert_eq!(s.len(), 2);
        assert!(!s.is_empty());
    }

    #[test]
    fn image_subset_and_batch() {
        let s = ramp(1, 2, 2, 3);
        let mut s = s.clone();
        for (i, v) in s.pixels.iter_mut().enumerate() {
            *v = i as f32;
        }
        assert_eq!(s.image(1), &[4.0, 5.0, 6.0, 7.0]);
        let sub = s.subset(&[2, 0]);
        assert_eq!(sub.len(), 2);
        assert_eq!(sub.image(0), s.image(2));
        assert_eq!(sub.image(1), s.image(0));
        assert_eq!(sub.labels, Some(vec![2, 0]));
        let mut buf = vec![99.0; 100];
        s.batch(&[1, 1], &mut buf);
        assert_eq!(buf, vec![4.0, 5.0, 6.0, 7.0, 4.0, 5.0, 6.0, 7.0]);
    }

    #[test]
    fn fit_28_to_32_pads_centred_with_black() {
        let s = ramp(1, 28, 28, 2);
        let f = s.fit_to(1, 32, 32).unwrap();
        assert_eq!(f.shape(), (1, 32, 32));
        assert_eq!(f.len(), 2);
        assert_eq!(f.labels, s.labels);
        for n in 0..2 {
            let img = f.image(n);
            let orig = s.image(n);
            for y in 0..32 {
                for x in 0..32 {
                    let v = img[y * 32 + x];
                    if (2..30).contains(&y) && (2..30).contains(&x) {
                        assert_eq!(v, orig[(y - 2) * 28 + (x - 2)]);
                    } else {
                        assert_eq!(v, -1.0, "border at ({y},{x})");
                    }
                }
            }
        }
    }

    #[test]
    fn fit_same_shape_is_identity() {
        let s = ramp(3, 5, 4, 2);
        assert_eq!(s.fit_to(3, 5, 4).unwrap(), s);
    }

    #[test]
    fn fit_one_to_three_channels_replicates() {
        let s = ramp(1, 4, 4, 2);
        let f = s.fit_to(3, 4, 4).unwrap();
        assert_eq!(f.shape(), (3, 4, 4));
        for n in 0..2 {
            for c in 0..3 {
                assert_eq!(&f.image(n)[c * 16..(c + 1) * 16], s.image(n));
            }
        }
    }

    #[test]
    fn fit_one_to_three_channels_with_padding() {
        let s = ramp(1, 28, 28, 1);
        let f = s.fit_to(3, 32, 32).unwrap();
        assert_eq!(f.shape(), (3, 32, 32));
        assert_eq!(f.image(0)[0], -1.0);
        assert_eq!(f.image(0)[2 * 1024 + 2 * 32 + 2], s.image(0)[0]);
    }

    #[test]
    fn fit_three_to_one_uses_luminance() {
        let mut pixels = vec![0.0; 3 * 4];
        pixels[..4].fill(1.0); // R
        pixels[4..8].fill(0.5); // G
        pixels[8..].fill(-1.0); // B
        let s = ImageSet::new(3, 2, 2, pixels, None).unwrap();
        let f = s.fit_to(1, 2, 2).unwrap();
        let expect = 0.299 + 0.587 * 0.5 - 0.114;
        for &v in &f.pixels {
            assert!((v - expect).abs() < 1e-6);
        }
    }

    #[test]
    fn fit_resizes_when_padding_does_not_apply() {
        // Odd margin: resize.
        let s = ramp(1, 4, 4, 1);
        let f = s.fit_to(1, 5, 5).unwrap();
        assert_eq!(f.shape(), (1, 5, 5));
        assert!(f.pixels.iter().all(|&v| v > -1.0 - 1e-6 && v < 1.0));
        // Margin too large: resize (no -1 border around a constant image).
        let c = ImageSet::new(1, 8, 8, vec![0.25; 64], None).unwrap();
        let f = c.fit_to(1, 32, 32).unwrap();
        assert!(f.pixels.iter().all(|&v| (v - 0.25).abs() < 1e-6));
        // Downscale a 4x4 2x2-checker of blocks by 2: block averages preserved.
        let mut p = vec![0.0; 16];
        for y in 0..4 {
            for x in 0..4 {
                p[y * 4 + x] = if (y / 2 + x / 2) % 2 == 0 { 1.0 } else { -1.0 };
            }
        }
        let b = ImageSet::new(1, 4, 4, p, None).unwrap();
        let f = b.fit_to(1, 2, 2).unwrap();
        assert_eq!(f.pixels, vec![1.0, -1.0, -1.0, 1.0]);
    }

    #[test]
    fn fit_upscale_interpolates_linearly() {
        // 2 -> 3 wide is an odd margin, so this resizes. Half-pixel centres put the
        // output samples at source positions -1/6 (clamped to 0), 1/2 and 7/6
        // (clamped to 1).
        let s = ImageSet::new(1, 1, 2, vec![-1.0, 1.0], None).unwrap();
        let f = s.fit_to(1, 1, 3).unwrap();
        let expect = [-1.0, 0.0, 1.0];
        for (v, e) in f.pixels.iter().zip(expect) {
            assert!((v - e).abs() < 1e-6, "{:?}", f.pixels);
        }
    }

    #[test]
    fn fit_rejects_unsupported_channels_naming_shapes() {
        let s = ramp(2, 4, 4, 1);
        let err = s.fit_to(3, 4, 4).unwrap_err().to_string();
        assert!(err.contains("2x4x4") && err.contains("3x4x4"), "{err}");
        let s = ramp(3, 4, 4, 1);
        assert!(s.fit_to(4, 4, 4).is_err());
        assert!(s.fit_to(3, 0, 4).is_err());
    }
}

//! Loads a folder of PNG / JPEG files (searched recursively) into an [`ImageSet`].
//!
//! Files are taken in path order, so the result is deterministic. Every image is
//! converted to RGB, or to grayscale when *all* images are grayscale, and resized
//! (bilinear, [`image::imageops::FilterType::Triangle`]) to a common size. Nothing
//! is skipped silently: a file with an image extension that cannot be decoded is
//! an error naming it. Files with other extensions are not images and are ignored.

use std::fs;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use image::imageops::{self, FilterType};
use image::{GrayImage, ImageFormat, ImageReader, Limits, RgbImage};

use super::image_set::{ImageSet, byte_to_unit};

/// Largest accepted width or height, checked from the header before decoding.
pub const MAX_IMAGE_SIDE: u32 = 8192;
/// Largest accepted image file, in bytes.
pub const MAX_IMAGE_FILE_BYTES: u64 = 256 << 20;
/// File extensions (lower case) treated as images.
pub const IMAGE_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// All image files under `dir` (recursively), sorted by path.
///
/// Symbolic links to files are followed; symbolic links to directories are not
/// descended into (this rules out cycles).
pub fn image_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        let entries = fs::read_dir(&d).with_context(|| format!("cannot list {}", d.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("cannot list {}", d.display()))?;
            let path = entry.path();
            let file_type = entry
                .file_type()
                .with_context(|| format!("cannot stat {}", path.display()))?;
            if file_type.is_dir() {
                pending.push(path);
            } else if is_image_name(&path) && (file_type.is_file() || path.is_file()) {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Whether the file name has one of [`IMAGE_EXTENSIONS`] (case-insensitive).
fn is_image_name(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// One decoded image, already resized to the target size.
enum Decoded {
    Gray(GrayImage),
    Rgb(RgbImage),
}

/// Reads and decodes one file, refusing oversize files and dimensions before decoding.
fn decode(path: &Path) -> Result<image::DynamicImage> {
    let len = fs::metadata(path)?.len();
    ensure!(
        len <= MAX_IMAGE_FILE_BYTES,
        "file is {len} bytes, larger than the {MAX_IMAGE_FILE_BYTES}-byte limit"
    );
    let bytes = crate::input::read_regular(path, MAX_IMAGE_FILE_BYTES)?;
    decode_image_bytes(&bytes, ImageFormat::from_path(path).ok())
}

/// Decodes one image held in memory. `hint` is the format the file name
/// suggests; the content decides when it disagrees. The dimensions are read and
/// checked against [`MAX_IMAGE_SIDE`] before any pixel is decoded, and the
/// decoder runs under the same limits.
pub fn decode_image_bytes(bytes: &[u8], hint: Option<ImageFormat>) -> Result<image::DynamicImage> {
    ensure!(
        bytes.len() as u64 <= MAX_IMAGE_FILE_BYTES,
        "image data is {} bytes, larger than the {MAX_IMAGE_FILE_BYTES}-byte limit",
        bytes.len()
    );
    let reader = || -> Result<ImageReader<Cursor<&[u8]>>> {
        let mut r = ImageReader::new(Cursor::new(bytes));
        if let Some(format) = hint {
            r.set_format(format);
        }
        Ok(r.with_guessed_format()?)
    };
    let (w, h) = reader()?.into_dimensions()?;
    ensure!(
        w <= MAX_IMAGE_SIDE && h <= MAX_IMAGE_SIDE,
        "image is {w}x{h}, larger than the {MAX_IMAGE_SIDE}x{MAX_IMAGE_SIDE} limit"
    );
    ensure!(w > 0 && h > 0, "image is {w}x{h}");
    let mut r = reader()?;
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    r.limits(limits);
    Ok(r.decode()?)
}

/// Loads every image under `dir` into one set with values in `[-1, 1]`, no labels.
///
/// `size` is the target `(height, width)`; `None` uses the first image's size (in
/// path order). Errors if the folder holds no images, if a file cannot be decoded
/// or its dimensions exceed [`MAX_IMAGE_SIDE`] (the message names the file).
pub fn load_image_folder(dir: &Path, size: Option<(usize, usize)>) -> Result<ImageSet> {
    ensure!(dir.is_dir(), "{} is not a directory", dir.display());
    let files = image_files(dir)?;
    if files.is_empty() {
        bail!(
            "no images in {}: looked for files ending in {}",
            dir.display(),
            IMAGE_EXTENSIONS.map(|e| format!(".{e}")).join(", ")
        );
    }
    if let Some((h, w)) = size {
        ensure!(
            (1..=MAX_IMAGE_SIDE as usize).contains(&h)
                && (1..=MAX_IMAGE_SIDE as usize).contains(&w),
            "target size {h}x{w} is outside 1..={MAX_IMAGE_SIDE}"
        );
        super::image_set::check_dataset_size(
            files.len() as u64,
            3 * (h * w) as u64,
            &dir.display().to_string(),
        )?;
    }
    let mut target: Option<(u32, u32)> = size.map(|(h, w)| (w as u32, h as u32));
    let mut decoded = Vec::with_capacity(files.len());
    for file in &files {
        let img = decode(file).with_context(|| format!("cannot load image {}", file.display()))?;
        let (w, h) = match target {
            Some(t) => t,
            None => {
                // every image is resized to this size: the whole set is known now
                super::image_set::check_dataset_size(
                    files.len() as u64,
                    3 * u64::from(img.width()) * u64::from(img.height()),
                    &dir.display().to_string(),
                )?;
                *target.insert((img.width(), img.height()))
            }
        };
        let same = (img.width(), img.height()) == (w, h);
        decoded.push(if img.color().has_color() {
            let rgb = img.to_rgb8();
            Decoded::Rgb(if same {
                rgb
            } else {
                imageops::resize(&rgb, w, h, FilterType::Triangle)
            })
        } else {
            let gray = img.to_luma8();
            Decoded::Gray(if same {
                gray
            } else {
                imageops::resize(&gray, w, h, FilterType::Triangle)
            })
        });
    }
    let (w, h) = target.expect("at least one image");
    let (w, h) = (w as usize, h as usize);
    let plane = w * h;
    let all_gray = decoded.iter().all(|d| matches!(d, Decoded::Gray(_)));
    let channels = if all_gray { 1 } else { 3 };
    let mut pixels = Vec::with_capacity(decoded.len() * channels * plane);
    for d in decoded {
        match d {
            Decoded::Gray(g) => {
                for _ in 0..channels {
                    pixels.extend(g.as_raw().iter().map(|&v| byte_to_unit(v)));
                }
            }
            Decoded::Rgb(rgb) => {
                let raw = rgb.as_raw();
                for c in 0..3 {
                    pixels.extend(raw[c..].iter().step_by(3).map(|&v| byte_to_unit(v)));
                }
            }
        }
    }
    ImageSet::new(channels, h, w, pixels, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Luma, Rgb};

    fn rgb(w: u32, h: u32, px: [u8; 3]) -> RgbImage {
        RgbImage::from_pixel(w, h, Rgb(px))
    }

    #[test]
    fn loads_sorted_recursive_rgb_with_gray_promoted() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir(root.join("sub")).unwrap();
        rgb(4, 4, [255, 0, 0]).save(root.join("b.png")).unwrap();
        rgb(8, 8, [0, 255, 0]).save(root.join("sub/c.PNG")).unwrap();
        GrayImage::from_pixel(4, 4, Luma([0]))
            .save(root.join("a.png"))
            .unwrap();
        fs::write(root.join("notes.txt"), "not an image").unwrap();

        let set = load_image_folder(root, None).unwrap();
        assert_eq!(set.shape(), (3, 4, 4));
        assert_eq!(set.len(), 3);
        assert_eq!(set.labels, None);
        // a.png: black in all planes.
        assert!(set.image(0).iter().all(|&v| v == -1.0));
        // b.png: red plane 1, others -1 (planes, not interleaved).
        let b = set.image(1);
        assert!(b[..16].iter().all(|&v| v == 1.0));
        assert!(b[16..].iter().all(|&v| v == -1.0));
        // sub/c.PNG, resized from 8x8: green plane.
        let c = set.image(2);
        assert!(c[16..32].iter().all(|&v| v == 1.0));
        assert!(c[..16].iter().chain(&c[32..]).all(|&v| v == -1.0));
    }

    #[test]
    fn all_gray_gives_one_channel_and_explicit_size() {
        let dir = tempfile::tempdir().unwrap();
        let mut g = GrayImage::new(6, 2);
        for (x, _, p) in g.enumerate_pixels_mut() {
            *p = Luma([if x < 3 { 0 } else { 255 }]);
        }
        g.save(dir.path().join("g.png")).unwrap();
        GrayImage::from_pixel(3, 3, Luma([255]))
            .save(dir.path().join("h.jpg"))
            .unwrap();
        let set = load_image_folder(dir.path(), Some((4, 5))).unwrap();
        assert_eq!(set.shape(), (1, 4, 5));
        assert_eq!(set.len(), 2);
        let img = set.image(0);
        assert!(img[0] < -0.9 && img[4] > 0.9, "{img:?}");
        assert!(set.image(1).iter().all(|&v| v > 0.9));
    }

    #[test]
    fn corrupt_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        rgb(4, 4, [1, 2, 3])
            .save(dir.path().join("good.png"))
            .unwrap();
        fs::write(dir.path().join("broken.png"), b"\x89PNG\r\n\x1a\nnope").unwrap();
        let err = format!("{:#}", load_image_folder(dir.path(), None).unwrap_err());
        assert!(err.contains("broken.png"), "{err}");

        fs::write(dir.path().join("broken.png"), b"garbage").unwrap();
        let err = format!("{:#}", load_image_folder(dir.path(), None).unwrap_err());
        assert!(err.contains("broken.png"), "{err}");
    }

    #[test]
    fn oversized_dimensions_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        GrayImage::new(MAX_IMAGE_SIDE + 1, 1)
            .save(dir.path().join("wide.png"))
            .unwrap();
        let err = format!("{:#}", load_image_folder(dir.path(), None).unwrap_err());
        assert!(err.contains("wide.png") && err.contains("8193x1"), "{err}");
    }

    #[test]
    fn a_large_first_image_does_not_blow_up_the_set() {
        // every image is resized to the first one's size: 40 images of 4096 x 1024
        // would be 503M values, over the cap, and are refused before the second decode
        let dir = tempfile::tempdir().unwrap();
        GrayImage::new(4096, 1024)
            .save(dir.path().join("a.png"))
            .unwrap();
        for i in 0..39 {
            rgb(2, 2, [0, 0, 0])
                .save(dir.path().join(format!("b{i:02}.png")))
                .unwrap();
        }
        let err = format!("{:#}", load_image_folder(dir.path(), None).unwrap_err());
        assert!(err.contains("40 images of 12582912 values"), "{err}");
        assert!(load_image_folder(dir.path(), Some((2, 2))).is_ok());
        let err = format!(
            "{:#}",
            load_image_folder(dir.path(), Some((4096, 4096))).unwrap_err()
        );
        assert!(err.contains("pixel values a dataset may hold"), "{err}");
    }

    #[test]
    fn empty_or_missing_folder_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("readme.md"), "x").unwrap();
        let err = load_image_folder(dir.path(), None).unwrap_err().to_string();
        assert!(err.contains("no images"), "{err}");
        assert!(load_image_folder(&dir.path().join("nope"), None).is_err());
        rgb(2, 2, [0, 0, 0]).save(dir.path().join("x.png")).unwrap();
        assert!(load_image_folder(dir.path(), Some((0, 4))).is_err());
    }
}

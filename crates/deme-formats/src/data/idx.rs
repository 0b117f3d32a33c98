//! Reader for the IDX format of the MNIST database (and look-alikes such as
//! Fashion-MNIST): unsigned-byte images (magic `0x00000803`, dims `[n, rows, cols]`)
//! and labels (magic `0x00000801`, dims `[n]`), all integers big-endian.
//!
//! Files may be gzipped; that is detected from the `1f 8b` header. Every input is
//! validated (magic, dimensions, exact length) and declared sizes above
//! [`MAX_IDX_BYTES`] are refused before the payload is allocated or inflated, so
//! malformed or hostile files (including gzip bombs) produce an [`IdxError`], never
//! a panic or a huge allocation.

use std::borrow::Cow;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use flate2::read::GzDecoder;

use super::image_set::{ImageSet, byte_to_unit};

/// Magic number of an IDX file of unsigned bytes with three dimensions (images).
pub const IDX_IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of unsigned bytes with one dimension (labels).
pub const IDX_LABELS_MAGIC: u32 = 0x0000_0801;
/// Largest payload accepted, in bytes: one byte per pixel value, so the dataset's
/// own cap ([`super::image_set::MAX_DATASET_VALUES`]); also bounds the size of files read.
pub const MAX_IDX_BYTES: u64 = super::image_set::MAX_DATASET_VALUES;

/// Why an IDX buffer was rejected.
#[derive(Debug, thiserror::Error)]
pub enum IdxError {
    /// The buffer is shorter than the header it must start with.
    #[error("IDX data is {len} bytes long, too short for its {needed}-byte header")]
    TooShort {
        /// Bytes available.
        len: usize,
        /// Header size required.
        needed: usize,
    },
    /// The magic number is not the one expected.
    #[error("bad IDX magic number 0x{found:08x}: expected 0x{expected:08x} ({what})")]
    BadMagic {
        /// Magic number found in the file.
        found: u32,
        /// Magic number required.
        expected: u32,
        /// What the expected magic stands for.
        what: &'static str,
    },
    /// A dimension is zero.
    #[error("IDX dimensions {dims:?} contain a zero")]
    ZeroDimension {
        /// The declared dimensions.
        dims: Vec<u32>,
    },
    /// The declared payload is larger than [`MAX_IDX_BYTES`].
    #[error("IDX dimensions {dims:?} declare more than {max} bytes of data")]
    TooLarge {
        /// The declared dimensions.
        dims: Vec<u32>,
        /// The limit.
        max: u64,
    },
    /// The payload length differs from what the header declares.
    #[error(
        "IDX dimensions {dims:?} declare {declared} bytes of data but {actual} follow the header"
    )]
    SizeMismatch {
        /// The declared dimensions.
        dims: Vec<u32>,
        /// Payload bytes declared by the header.
        declared: u64,
        /// Payload bytes present.
        actual: u64,
    },
    /// The gzip stream is corrupt.
    #[error("cannot decompress gzipped IDX data: {0}")]
    Gzip(#[source] std::io::Error),
}

/// Whether `bytes` start with the gzip magic `1f 8b`.
fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0x1f, 0x8b])
}

/// Decompresses at most `max` bytes from the start of a gzip stream into a buffer
/// of exactly that capacity (`max` is a validated size), so memory use is `max`,
/// not the up to twice as much that growing a buffer by doubling takes.
fn gunzip_prefix(bytes: &[u8], max: u64) -> Result<Vec<u8>, IdxError> {
    let mut out = Vec::with_capacity(max as usize);
    GzDecoder::new(bytes)
        .take(max)
        .read_to_end(&mut out)
        .map_err(IdxError::Gzip)?;
    Ok(out)
}

/// Validates the header at the start of `bytes` (magic, dimensions, size bound)
/// and returns the dimensions and the declared payload size.
fn check_header(
    bytes: &[u8],
    magic: u32,
    what: &'static str,
    ndims: usize,
) -> Result<(Vec<u32>, u64), IdxError> {
    let header = 4 + 4 * ndims;
    let too_short = || IdxError::TooShort {
        len: bytes.len(),
        needed: header,
    };
    if bytes.len() < 4 {
        return Err(too_short());
    }
    let be = |i: usize| u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    // The magic is checked before the header length, so that a labels file given
    // as images (or vice versa) is reported as such.
    let found = be(0);
    if found != magic {
        return Err(IdxError::BadMagic {
            found,
            expected: magic,
            what,
        });
    }
    if bytes.len() < header {
        return Err(too_short());
    }
    let dims: Vec<u32> = (0..ndims).map(|d| be(4 + 4 * d)).collect();
    if dims.contains(&0) {
        return Err(IdxError::ZeroDimension { dims });
    }
    let declared = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(u64::from(d)))
        .filter(|&n| n <= MAX_IDX_BYTES);
    match declared {
        Some(declared) => Ok((dims, declared)),
        None => Err(IdxError::TooLarge {
            dims,
            max: MAX_IDX_BYTES,
        }),
    }
}

/// Parses an unsigned-byte IDX buffer with `ndims` dimensions, plain or gzipped,
/// and returns the dimensions and the payload.
///
/// For gzipped input only the header is inflated first; after it has been
/// validated, at most the declared payload plus one byte is inflated (the extra
/// byte detects trailing data, and reaching the end of the stream verifies its
/// checksum).
fn parse_u8_idx<'a>(
    bytes: &'a [u8],
    magic: u32,
    what: &'static str,
    ndims: usize,
) -> Result<(Vec<u32>, Cow<'a, [u8]>), IdxError> {
    let header = 4 + 4 * ndims;
    let (dims, declared, payload) = if is_gzip(bytes) {
        let head = gunzip_prefix(bytes, header as u64)?;
        let (dims, declared) = check_header(&head, magic, what, ndims)?;
        let mut all = gunzip_prefix(bytes, header as u64 + declared + 1)?;
        all.drain(..header);
        (dims, declared, Cow::Owned(all))
    } else {
        let (dims, declared) = check_header(bytes, magic, what, ndims)?;
        (dims, declared, Cow::Borrowed(&bytes[header..]))
    };
    if payload.len() as u64 != declared {
        return Err(IdxError::SizeMismatch {
            dims,
            declared,
            actual: payload.len() as u64,
        });
    }
    Ok((dims, payload))
}

/// Parses an IDX images buffer (optionally gzipped) into a 1-channel [`ImageSet`]
/// with values in `[-1, 1]` and no labels.
pub fn read_idx_images(bytes: &[u8]) -> Result<ImageSet, IdxError> {
    let (dims, payload) = parse_u8_idx(
        bytes,
        IDX_IMAGES_MAGIC,
        "unsigned-byte images [n, rows, cols]",
        3,
    )?;
    Ok(ImageSet {
        channels: 1,
        height: dims[1] as usize,
        width: dims[2] as usize,
        pixels: payload.iter().map(|&v| byte_to_unit(v)).collect(),
        labels: None,
    })
}

/// Parses an IDX labels buffer (optionally gzipped) into one label per item.
pub fn read_idx_labels(bytes: &[u8]) -> Result<Vec<u32>, IdxError> {
    let (_, payload) = parse_u8_idx(bytes, IDX_LABELS_MAGIC, "unsigned-byte labels [n]", 1)?;
    Ok(payload.iter().map(|&v| u32::from(v)).collect())
}

/// Reads a whole file, refusing (before reading) files larger than
/// [`MAX_IDX_BYTES`] plus a header's worth.
fn read_bounded(path: &Path) -> Result<Vec<u8>> {
    let len = fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();
    if len > MAX_IDX_BYTES + 64 {
        bail!(
            "{} is {len} bytes, larger than the {MAX_IDX_BYTES}-byte limit",
            path.display()
        );
    }
    crate::input::read_regular(path, MAX_IDX_BYTES + 64)
}

/// Image file names tried, in order, when [`load_idx`] is given a directory.
const DIR_CANDIDATES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-images-idx3-ubyte.gz",
    "t10k-images-idx3-ubyte",
    "t10k-images-idx3-ubyte.gz",
];

/// The labels file that accompanies an images file under the MNIST naming
/// convention (`X-images-idx3-ubyte[.gz]` -> `X-labels-idx1-ubyte[.gz]`, also with
/// `.idx3-ubyte` instead of `-idx3-ubyte`), if one exists beside it. Both the
/// gzipped and the plain name are tried, the one matching the images file first.
pub fn labels_path_for(images: &Path) -> Option<PathBuf> {
    let name = images.file_name()?.to_str()?;
    let (stem, gz) = match name.strip_suffix(".gz") {
        Some(stem) => (stem, true),
        None => (name, false),
    };
    let base = [
        ("-images-idx3-ubyte", "-labels-idx1-ubyte"),
        ("-images.idx3-ubyte", "-labels.idx1-ubyte"),
    ]
    .iter()
    .find_map(|(img, lab)| stem.strip_suffix(img).map(|p| format!("{p}{lab}")))?;
    let (first, second) = if gz {
        (format!("{base}.gz"), base)
    } else {
        (base.clone(), format!("{base}.gz"))
    };
    [first, second]
        .into_iter()
        .map(|n| images.with_file_name(n))
        .find(|p| p.is_file())
}

/// Loads an IDX image set from disk.
///
/// `path` is either an images file (labels are attached when a file named by the
/// MNIST convention sits beside it, see [`labels_path_for`]) or a directory
/// holding `train-images-idx3-ubyte[.gz]` (or, failing that,
/// `t10k-images-idx3-ubyte[.gz]`). A labels file whose count differs from the
/// image count is an error.
pub fn load_idx(path: &Path) -> Result<ImageSet> {
    let images_path = if path.is_dir() {
        DIR_CANDIDATES
            .iter()
            .map(|n| path.join(n))
            .find(|p| p.is_file())
            .with_context(|| {
                format!(
                    "no IDX images file in {}: looked for {}",
                    path.display(),
                    DIR_CANDIDATES.join(", ")
                )
            })?
    } else {
        path.to_path_buf()
    };
    let bytes = read_bounded(&images_path)?;
    let mut set = read_idx_images(&bytes)
        .with_context(|| format!("invalid IDX images file {}", images_path.display()))?;
    drop(bytes);
    if let Some(labels_path) = labels_path_for(&images_path) {
        let bytes = read_bounded(&labels_path)?;
        let labels = read_idx_labels(&bytes)
            .with_context(|| format!("invalid IDX labels file {}", labels_path.display()))?;
        if labels.len() != set.len() {
            bail!(
                "{} holds {} labels but {} holds {} images",
                labels_path.display(),
                labels.len(),
                images_path.display(),
                set.len()
            );
        }
        set.labels = Some(labels);
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_gzip_declaring_more_than_a_dataset_may_hold_is_refused_unread() {
        use std::io::Write;
        // 300,000 images of 28 x 28 zeros: 235M values, a few hundred kB gzipped
        let mut header = Vec::new();
        for v in [IDX_IMAGES_MAGIC, 300_000, 28, 28] {
            header.extend_from_slice(&v.to_be_bytes());
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&header).unwrap();
        for _ in 0..300 {
            gz.write_all(&vec![0u8; 784 * 1000]).unwrap();
        }
        let bytes = gz.finish().unwrap();
        assert!(bytes.len() < 1 << 20);
        let err = read_idx_images(&bytes).unwrap_err().to_string();
        assert!(err.contains("300000"), "{err}");
    }
    use flate2::{Compression, write::GzEncoder};
    use std::io::Write;

    fn idx(magic: u32, dims: &[u32], payload: &[u8]) -> Vec<u8> {
        let mut v = magic.to_be_bytes().to_vec();
        for d in dims {
            v.extend_from_slice(&d.to_be_bytes());
        }
        v.extend_from_slice(payload);
        v
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    /// Two 2x3 images with bytes 0..12 and labels [7, 3].
    fn sample() -> (Vec<u8>, Vec<u8>) {
        let pixels: Vec<u8> = (0..12).map(|i| i * 23).collect();
        (
            idx(IDX_IMAGES_MAGIC, &[2, 2, 3], &pixels),
            idx(IDX_LABELS_MAGIC, &[2], &[7, 3]),
        )
    }

    fn check_sample(set: &ImageSet) {
        assert_eq!(set.shape(), (1, 2, 3));
        assert_eq!(set.len(), 2);
        for (i, &v) in set.pixels.iter().enumerate() {
            assert_eq!(v, byte_to_unit(i as u8 * 23));
        }
    }

    #[test]
    fn round_trip_plain_and_gzipped() {
        let (images, labels) = sample();
        check_sample(&read_idx_images(&images).unwrap());
        check_sample(&read_idx_images(&gzip(&images)).unwrap());
        assert_eq!(read_idx_labels(&labels).unwrap(), vec![7, 3]);
        assert_eq!(read_idx_labels(&gzip(&labels)).unwrap(), vec![7, 3]);
    }

    #[test]
    fn bad_magic_is_rejected() {
        let (images, labels) = sample();
        // Labels given to the image reader and vice versa.
        assert!(matches!(
            read_idx_images(&labels),
            Err(IdxError::BadMagic { found: 0x801, .. })
        ));
        assert!(matches!(
            read_idx_labels(&images),
            Err(IdxError::BadMagic { found: 0x803, .. })
        ));
        let mut wrong_type = images.clone();
        wrong_type[2] = 0x0d; // float data
        assert!(matches!(
            read_idx_images(&wrong_type),
            Err(IdxError::BadMagic { .. })
        ));
        let err = read_idx_images(&labels).unwrap_err().to_string();
        assert!(err.contains("0x00000803"), "{err}");
    }

    #[test]
    fn truncated_inputs_are_rejected() {
        let (images, labels) = sample();
        for cut in 0..images.len() {
            assert!(read_idx_images(&images[..cut]).is_err(), "cut at {cut}");
            let gz = gzip(&images);
            assert!(read_idx_images(&gz[..cut.min(gz.len() - 1)]).is_err());
        }
        for cut in 0..labels.len() {
            assert!(read_idx_labels(&labels[..cut]).is_err());
        }
        assert!(matches!(
            read_idx_images(&images[..10]),
            Err(IdxError::TooShort {
                len: 10,
                needed: 16
            })
        ));
    }

    #[test]
    fn size_mismatch_is_rejected() {
        let (mut images, mut labels) = sample();
        images.push(0);
        labels.push(0);
        assert!(matches!(
            read_idx_images(&images),
            Err(IdxError::SizeMismatch {
                declared: 12,
                actual: 13,
                ..
            })
        ));
        assert!(matches!(
            read_idx_labels(&labels),
            Err(IdxError::SizeMismatch { .. })
        ));
        images.truncate(images.len() - 2);
        assert!(matches!(
            read_idx_images(&images),
            Err(IdxError::SizeMismatch { actual: 11, .. })
        ));
    }

    #[test]
    fn absurd_and_zero_dims_are_rejected_without_allocating() {
        let max = u32::MAX;
        for dims in [[max, max, max], [max, 28, 28], [1 << 16, 1 << 16, 2]] {
            let b = idx(IDX_IMAGES_MAGIC, &dims, &[1, 2, 3]);
            assert!(
                matches!(read_idx_images(&b), Err(IdxError::TooLarge { .. })),
                "{dims:?}"
            );
            assert!(read_idx_images(&gzip(&b)).is_err());
        }
        let b = idx(IDX_IMAGES_MAGIC, &[0, 28, 28], &[]);
        assert!(matches!(
            read_idx_images(&b),
            Err(IdxError::ZeroDimension { .. })
        ));
        let b = idx(IDX_IMAGES_MAGIC, &[5, 0, 28], &[]);
        assert!(read_idx_images(&b).is_err());
    }

    #[test]
    fn corrupt_gzip_is_rejected() {
        let (images, _) = sample();
        let mut gz = gzip(&images);
        let mid = gz.len() / 2;
        for b in &mut gz[10..mid] {
            *b ^= 0x5a;
        }
        assert!(read_idx_images(&gz).is_err());
        assert!(read_idx_images(&[0x1f, 0x8b]).is_err());
    }

    #[test]
    fn gzip_bomb_is_inflated_only_as_far_as_declared() {
        // 4 MB of trailing zeros behind a header declaring 784 bytes.
        let bomb = gzip(&idx(IDX_IMAGES_MAGIC, &[1, 28, 28], &vec![0; 4 << 20]));
        assert!(matches!(
            read_idx_images(&bomb),
            Err(IdxError::SizeMismatch {
                declared: 784,
                actual: 785,
                ..
            })
        ));
    }

    #[test]
    fn gzip_checksum_is_verified() {
        let (images, _) = sample();
        let mut gz = gzip(&images);
        let crc = gz.len() - 8;
        gz[crc] ^= 0xff;
        assert!(matches!(read_idx_images(&gz), Err(IdxError::Gzip(_))));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        use rand::{Rng, SeedableRng, rngs::StdRng};
        let mut rng = StdRng::seed_from_u64(7);
        let (images, labels) = sample();
        for _ in 0..2000 {
            let mut b = if rng.random() {
                images.clone()
            } else {
                labels.clone()
            };
            let flips = rng.random_range(1..4);
            for _ in 0..flips {
                let i = rng.random_range(0..b.len());
                b[i] = rng.random();
            }
            b.truncate(rng.random_range(0..=b.len()));
            let _ = read_idx_images(&b);
            let _ = read_idx_labels(&b);
        }
    }

    #[test]
    fn load_from_file_and_directory_finds_labels() {
        let (images, labels) = sample();
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("train-images-idx3-ubyte.gz"), gzip(&images)).unwrap();
        fs::write(dir.path().join("train-labels-idx1-ubyte"), &labels).unwrap();
        let from_dir = load_idx(dir.path()).unwrap();
        check_sample(&from_dir);
        assert_eq!(from_dir.labels, Some(vec![7, 3]));
        let from_file = load_idx(&dir.path().join("train-images-idx3-ubyte.gz")).unwrap();
        assert_eq!(from_file, from_dir);

        // A file not following the convention loads without labels.
        let other = dir.path().join("digits.idx");
        fs::write(&other, &images).unwrap();
        assert_eq!(load_idx(&other).unwrap().labels, None);
    }

    #[test]
    fn load_errors_are_clear() {
        let (images, _) = sample();
        let dir = tempfile::tempdir().unwrap();
        let err = format!("{:#}", load_idx(dir.path()).unwrap_err());
        assert!(err.contains("train-images-idx3-ubyte"), "{err}");

        // Label count mismatch.
        fs::write(dir.path().join("t10k-images-idx3-ubyte"), &images).unwrap();
        fs::write(
            dir.path().join("t10k-labels-idx1-ubyte"),
            idx(IDX_LABELS_MAGIC, &[3], &[1, 2, 3]),
        )
        .unwrap();
        let err = format!("{:#}", load_idx(dir.path()).unwrap_err());
        assert!(
            err.contains("3 labels") && err.contains("2 images"),
            "{err}"
        );

        // A corrupt file is named in the error.
        let bad = dir.path().join("bad-images-idx3-ubyte");
        fs::write(&bad, b"not an idx file").unwrap();
        let err = format!("{:#}", load_idx(&bad).unwrap_err());
        assert!(err.contains("bad-images-idx3-ubyte"), "{err}");
        assert!(load_idx(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn labels_path_follows_convention() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("t10k-images.idx3-ubyte");
        assert_eq!(labels_path_for(&img), None);
        let lab = dir.path().join("t10k-labels.idx1-ubyte.gz");
        fs::write(&lab, b"").unwrap();
        assert_eq!(labels_path_for(&img), Some(lab));
    }
}

//! Reader for the CIFAR-10 binary version (`cifar-10-binary.tar.gz`, extracted).
//!
//! Each batch file is a sequence of 3073-byte records: one label byte (0..=9)
//! followed by a 32x32 image stored as the red plane, then green, then blue, each
//! row-major. That is already CHW order, so records map directly onto an
//! [`ImageSet`].

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};

use super::image_set::{ImageSet, byte_to_unit};

/// Side length of a CIFAR-10 image.
pub const CIFAR_SIDE: usize = 32;
/// Bytes of one image (3 planes of 32x32).
pub const CIFAR_IMAGE_BYTES: usize = 3 * CIFAR_SIDE * CIFAR_SIDE;
/// Bytes of one record: a label byte followed by the image.
pub const CIFAR_RECORD_BYTES: usize = 1 + CIFAR_IMAGE_BYTES;
/// Number of CIFAR-10 classes; larger label bytes are rejected.
pub const CIFAR_CLASSES: u32 = 10;
/// Largest batch file accepted, in bytes (the real ones are about 30 MB).
pub const MAX_CIFAR_FILE_BYTES: u64 = 1 << 30;

/// Names of the CIFAR-10 class labels, indexed by label.
pub const CIFAR10_CLASS_NAMES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

/// Parses the bytes of one CIFAR-10 batch file into a 3x32x32 labelled set.
///
/// Errors if the length is zero or not a multiple of [`CIFAR_RECORD_BYTES`], or if
/// a label byte is not below [`CIFAR_CLASSES`] (which also catches CIFAR-100 files,
/// whose records carry two label bytes).
pub fn read_cifar10(bytes: &[u8]) -> Result<ImageSet> {
    ensure!(!bytes.is_empty(), "CIFAR-10 batch is empty");
    ensure!(
        bytes.len().is_multiple_of(CIFAR_RECORD_BYTES),
        "CIFAR-10 batch is {} bytes long, not a multiple of the {CIFAR_RECORD_BYTES}-byte record size",
        bytes.len()
    );
    let n = bytes.len() / CIFAR_RECORD_BYTES;
    let mut pixels = Vec::with_capacity(n * CIFAR_IMAGE_BYTES);
    let mut labels = Vec::with_capacity(n);
    for (i, record) in bytes.chunks_exact(CIFAR_RECORD_BYTES).enumerate() {
        let label = u32::from(record[0]);
        ensure!(
            label < CIFAR_CLASSES,
            "record {i} has label {label}; CIFAR-10 labels are 0..=9 (is this a CIFAR-100 file?)"
        );
        labels.push(label);
        pixels.extend(record[1..].iter().map(|&v| byte_to_unit(v)));
    }
    Ok(ImageSet {
        channels: 3,
        height: CIFAR_SIDE,
        width: CIFAR_SIDE,
        pixels,
        labels: Some(labels),
    })
}

/// Batch files that [`load_cifar10`] picks in a directory, in load order.
pub fn cifar10_batch_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let dir = match dir.join("cifar-10-batches-bin") {
        nested if nested.is_dir() => nested,
        _ => dir.to_path_buf(),
    };
    let train: Vec<PathBuf> = (1..=5)
        .map(|k| dir.join(format!("data_batch_{k}.bin")))
        .filter(|p| p.is_file())
        .collect();
    if !train.is_empty() {
        return Ok(train);
    }
    let test = dir.join("test_batch.bin");
    if test.is_file() {
        return Ok(vec![test]);
    }
    bail!(
        "no CIFAR-10 batches in {}: expected data_batch_1.bin .. data_batch_5.bin or test_batch.bin",
        dir.display()
    )
}

/// Loads CIFAR-10 from a single `.bin` batch file or from a directory.
///
/// For a directory (or its `cifar-10-batches-bin` subdirectory) all of
/// `data_batch_1.bin` .. `data_batch_5.bin` that exist are loaded and
/// concatenated, in order; only if none exists is `test_batch.bin` used.
pub fn load_cifar10(path: &Path) -> Result<ImageSet> {
    let files = if path.is_dir() {
        cifar10_batch_files(path)?
    } else {
        vec![path.to_path_buf()]
    };
    let mut all: Option<ImageSet> = None;
    let mut values = 0u64;
    for file in files {
        let len = fs::metadata(&file)
            .with_context(|| format!("cannot read {}", file.display()))?
            .len();
        ensure!(
            len <= MAX_CIFAR_FILE_BYTES,
            "{} is {len} bytes, larger than the {MAX_CIFAR_FILE_BYTES}-byte limit",
            file.display()
        );
        // each 3,073-byte record becomes 3,072 values: checked before reading
        values += len / 3073 * 3072;
        super::image_set::check_dataset_size(values / 3072, 3072, &file.display().to_string())?;
        let bytes = crate::input::read_regular(&file, MAX_CIFAR_FILE_BYTES)?;
        let set = read_cifar10(&bytes)
            .with_context(|| format!("invalid CIFAR-10 batch {}", file.display()))?;
        match &mut all {
            None => all = Some(set),
            Some(acc) => {
                acc.pixels.extend_from_slice(&set.pixels);
                if let (Some(a), Some(b)) = (&mut acc.labels, set.labels) {
                    a.extend(b);
                }
            }
        }
    }
    all.context("no CIFAR-10 batch files given")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Record with label `label` whose R plane is `r`, G plane `g`, B plane `b`,
    /// except the first red pixel which is `first`.
    fn record(label: u8, r: u8, g: u8, b: u8, first: u8) -> Vec<u8> {
        let plane = CIFAR_SIDE * CIFAR_SIDE;
        let mut v = vec![label];
        v.extend(std::iter::repeat_n(r, plane));
        v.extend(std::iter::repeat_n(g, plane));
        v.extend(std::iter::repeat_n(b, plane));
        v[1] = first;
        v
    }

    fn two_records() -> Vec<u8> {
        let mut bytes = record(3, 255, 0, 127, 10);
        bytes.extend(record(9, 0, 255, 255, 0));
        bytes
    }

    #[test]
    fn parses_records_in_plane_order() {
        let set = read_cifar10(&two_records()).unwrap();
        assert_eq!(set.shape(), (3, 32, 32));
        assert_eq!(set.len(), 2);
        assert_eq!(set.labels, Some(vec![3, 9]));
        let plane = 1024;
        let a = set.image(0);
        assert_eq!(a[0], byte_to_unit(10));
        assert!(a[1..plane].iter().all(|&v| v == 1.0)); // red
        assert!(a[plane..2 * plane].iter().all(|&v| v == -1.0)); // green
        assert!(a[2 * plane..].iter().all(|&v| v == byte_to_unit(127))); // blue
        let b = set.image(1);
        assert!(b[1..plane].iter().all(|&v| v == -1.0));
        assert!(b[plane..].iter().all(|&v| v == 1.0));
    }

    #[test]
    fn bad_lengths_and_labels_are_rejected() {
        let bytes = two_records();
        assert!(read_cifar10(&[]).is_err());
        let err = read_cifar10(&bytes[..bytes.len() - 1])
            .unwrap_err()
            .to_string();
        assert!(err.contains("3073"), "{err}");
        assert!(read_cifar10(&bytes[..100]).is_err());
        let mut wrong = bytes.clone();
        wrong[CIFAR_RECORD_BYTES] = 10;
        assert!(read_cifar10(&wrong).is_err());
    }

    #[test]
    fn loads_files_and_directories() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load_cifar10(dir.path()).is_err());

        fs::write(dir.path().join("test_batch.bin"), record(1, 0, 0, 0, 0)).unwrap();
        let test = load_cifar10(dir.path()).unwrap();
        assert_eq!(test.labels, Some(vec![1]));

        fs::write(dir.path().join("data_batch_1.bin"), two_records()).unwrap();
        fs::write(dir.path().join("data_batch_2.bin"), record(5, 0, 0, 0, 0)).unwrap();
        let train = load_cifar10(dir.path()).unwrap();
        assert_eq!(train.len(), 3);
        assert_eq!(train.labels, Some(vec![3, 9, 5]));

        let single = load_cifar10(&dir.path().join("data_batch_2.bin")).unwrap();
        assert_eq!(single.labels, Some(vec![5]));

        let bad = dir.path().join("broken.bin");
        fs::write(&bad, [0u8; 10]).unwrap();
        let err = format!("{:#}", load_cifar10(&bad).unwrap_err());
        assert!(err.contains("broken.bin"), "{err}");
    }
}

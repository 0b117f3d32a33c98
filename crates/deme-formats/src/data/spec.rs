//! [`DataSpec`]: which dataset to use, in the one-string syntax shared by the CLI,
//! the GUI and saved run configurations; [`load`] turns it into a [`Dataset`].

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use anyhow::Result;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::cifar::load_cifar10;
use super::embedded::embedded_mnist;
use super::idx::load_idx;
use super::image_folder::load_image_folder;
use super::image_set::ImageSet;
use super::toy::{PointSet, ToyKind, sample_toy};

/// Seed used by [`load`] to sample toy distributions, so that a toy dataset is
/// the same on every run.
pub const TOY_DATA_SEED: u64 = 0x00de_de5e_ed00;

/// A dataset source, written as one of:
///
/// * `mnist`: the embedded 10,000 MNIST digits;
/// * `cifar10:PATH`: CIFAR-10 binary batches (a `.bin` file or a directory);
/// * `images:PATH`: a folder of PNG / JPEG images;
/// * `idx:PATH`: an IDX images file or a directory holding one;
/// * `toy:NAME`: a 2D toy distribution (`moons`, `swissroll`, `8gaussians`,
///   `checkerboard`).
///
/// [`FromStr`] parses this syntax, [`fmt::Display`] writes it back, and serde
/// (de)serialises a spec as that same string.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum DataSpec {
    /// The embedded MNIST digits.
    Mnist,
    /// CIFAR-10 binary batches at a path.
    Cifar10(PathBuf),
    /// A folder of images.
    Images(PathBuf),
    /// IDX files (MNIST format) at a path.
    Idx(PathBuf),
    /// A 2D toy distribution.
    Toy(ToyKind),
}

/// Error for a string that is not a valid [`DataSpec`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid dataset {input:?}: {reason}; expected one of: \
     mnist | cifar10:PATH | images:PATH | idx:PATH | toy:NAME"
)]
pub struct ParseDataSpecError {
    /// The rejected input.
    pub input: String,
    /// What is wrong with it.
    pub reason: String,
}

impl FromStr for DataSpec {
    type Err = ParseDataSpecError;

    /// Parses `mnist`, `cifar10:PATH`, `images:PATH`, `idx:PATH` or `toy:NAME`.
    /// The prefix is case-insensitive; the path is taken verbatim after the first
    /// `:` (so Windows paths such as `images:C:\data` work) and must not be empty.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason: String| ParseDataSpecError {
            input: s.to_string(),
            reason,
        };
        let trimmed = s.trim();
        let (kind, arg) = match trimmed.split_once(':') {
            Some((k, a)) => (k.to_ascii_lowercase(), Some(a)),
            None => (trimmed.to_ascii_lowercase(), None),
        };
        let path = |arg: Option<&str>| match arg {
            Some(a) if !a.is_empty() => Ok(PathBuf::from(a)),
            _ => Err(err(format!("`{kind}` needs a path, as in `{kind}:PATH`"))),
        };
        match kind.as_str() {
            "mnist" => match arg {
                None => Ok(DataSpec::Mnist),
                Some(_) => Err(err(
                    "`mnist` takes no path (use `idx:PATH` for MNIST files on disk)".into(),
                )),
            },
            "cifar10" => path(arg).map(DataSpec::Cifar10),
            "images" => path(arg).map(DataSpec::Images),
            "idx" => path(arg).map(DataSpec::Idx),
            "toy" => match arg {
                Some(name) => name
                    .parse()
                    .map(DataSpec::Toy)
                    .map_err(|e| err(e.to_string())),
                None => Err(err("`toy` needs a name, as in `toy:moons`".into())),
            },
            "" => Err(err("empty".into())),
            other => Err(err(format!("unknown kind `{other}`"))),
        }
    }
}

impl fmt::Display for DataSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataSpec::Mnist => f.write_str("mnist"),
            DataSpec::Cifar10(p) => write!(f, "cifar10:{}", p.display()),
            DataSpec::Images(p) => write!(f, "images:{}", p.display()),
            DataSpec::Idx(p) => write!(f, "idx:{}", p.display()),
            DataSpec::Toy(k) => write!(f, "toy:{k}"),
        }
    }
}

impl Serialize for DataSpec {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DataSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A loaded dataset: images or points.
#[derive(Clone, Debug, PartialEq)]
pub enum Dataset {
    /// Images (MNIST, CIFAR-10, image folders, IDX).
    Images(ImageSet),
    /// Points of a toy distribution.
    Points(PointSet),
}

impl Dataset {
    /// Number of items (images or points).
    pub fn len(&self) -> usize {
        match self {
            Dataset::Images(s) => s.len(),
            Dataset::Points(p) => p.len(),
        }
    }

    /// Whether there are no items.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A dataset of the same kind holding the items at `indices`, in that order.
    /// Panics if an index is out of range.
    pub fn subset(&self, indices: &[usize]) -> Dataset {
        match self {
            Dataset::Images(s) => Dataset::Images(s.subset(indices)),
            Dataset::Points(p) => Dataset::Points(p.subset(indices)),
        }
    }
}

/// Loads the dataset described by `spec`. Toy distributions are sampled with
/// `toy_points` points and the fixed seed [`TOY_DATA_SEED`]; image folders keep
/// the first image's size.
pub fn load(spec: &DataSpec, toy_points: usize) -> Result<Dataset> {
    Ok(match spec {
        DataSpec::Mnist => Dataset::Images(embedded_mnist()),
        DataSpec::Cifar10(p) => Dataset::Images(load_cifar10(p)?),
        DataSpec::Images(p) => Dataset::Images(load_image_folder(p, None)?),
        DataSpec::Idx(p) => Dataset::Images(load_idx(p)?),
        DataSpec::Toy(k) => Dataset::Points(sample_toy(*k, toy_points, TOY_DATA_SEED)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_display_round_trip() {
        for s in [
            "mnist",
            "cifar10:/data/cifar-10-batches-bin",
            "images:./faces",
            "idx:C:\\mnist\\train-images-idx3-ubyte.gz",
            "toy:moons",
            "toy:swissroll",
            "toy:8gaussians",
            "toy:checkerboard",
        ] {
            let spec: DataSpec = s.parse().unwrap();
            assert_eq!(spec.to_string(), s);
            assert_eq!(spec.to_string().parse::<DataSpec>().unwrap(), spec);
        }
        assert_eq!(
            "images:a:b".parse::<DataSpec>().unwrap(),
            DataSpec::Images("a:b".into())
        );
        assert_eq!(
            "toy:two-moons".parse::<DataSpec>().unwrap().to_string(),
            "toy:moons"
        );
        assert_eq!(" MNIST ".parse::<DataSpec>().unwrap(), DataSpec::Mnist);
    }

    #[test]
    fn bad_input_errors_list_forms() {
        for s in [
            "",
            "cifar",
            "cifar10",
            "cifar10:",
            "images",
            "idx:",
            "toy",
            "toy:",
            "toy:spiral",
            "mnist:/x",
            "svhn:/x",
        ] {
            let err = s.parse::<DataSpec>().unwrap_err().to_string();
            assert!(
                err.contains("cifar10:PATH") && err.contains("toy:NAME"),
                "{s}: {err}"
            );
        }
        let err = "toy:spiral".parse::<DataSpec>().unwrap_err().to_string();
        assert!(err.contains("spiral") && err.contains("moons"), "{err}");
    }

    #[test]
    fn serde_uses_the_string_form() {
        let spec = DataSpec::Cifar10("/data/c".into());
        let json = serde_json::to_string(&spec).unwrap();
        assert_eq!(json, "\"cifar10:/data/c\"");
        assert_eq!(serde_json::from_str::<DataSpec>(&json).unwrap(), spec);
        let toy: DataSpec = serde_json::from_str("\"toy:8gaussians\"").unwrap();
        assert_eq!(toy, DataSpec::Toy(ToyKind::EightGaussians));
        assert!(serde_json::from_str::<DataSpec>("\"nope\"").is_err());
        assert!(serde_json::from_str::<DataSpec>("3").is_err());
    }

    #[test]
    fn load_toy_and_subset() {
        let spec = DataSpec::Toy(ToyKind::Checkerboard);
        let data = load(&spec, 300).unwrap();
        assert_eq!(data.len(), 300);
        assert_eq!(data, load(&spec, 300).unwrap());
        let sub = data.subset(&[0, 5, 7]);
        assert_eq!(sub.len(), 3);
        match (&data, &sub) {
            (Dataset::Points(a), Dataset::Points(b)) => assert_eq!(b.point(1), a.point(5)),
            _ => panic!("expected points"),
        }
    }

    #[test]
    fn load_images_from_disk_and_report_missing() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = vec![4u8];
        bytes.extend(std::iter::repeat_n(0u8, 3072));
        std::fs::write(dir.path().join("test_batch.bin"), &bytes).unwrap();
        let data = load(&DataSpec::Cifar10(dir.path().into()), 0).unwrap();
        assert_eq!(data.len(), 1);
        assert!(matches!(data.subset(&[0, 0]), Dataset::Images(s) if s.len() == 2));
        assert!(load(&DataSpec::Idx(dir.path().join("none")), 0).is_err());
        assert!(load(&DataSpec::Images(dir.path().join("none")), 0).is_err());
    }
}

//! The offline sample-quality metric: the Frechet distance between feature
//! statistics of generated images and of the held-out real images, in the feature
//! space of a classifier trained on the dataset's training split
//! ([`super::features`]). Lower is better; 0 means the two feature Gaussians match.
//!
//! It plays the role FID plays for CIFAR-10 but needs no download: the feature
//! network is trained here (about a minute on 2 CPU cores for MNIST) and cached
//! by the hash of what it depends on (dataset, image shape, training settings).

use super::features::{
    FEATURE_DIM, FeatureNet, FeatureTrainConfig, LabelledImages, accuracy, classify,
    classify_features, extract_features, train_feature_net,
};
use super::frechet::{FeatureStats, FrechetReference, frechet_distance};
use crate::engine::checkpoint::{HostTensor, TensorMap, read_safetensors, write_safetensors};
use crate::engine::data::{DataSpec, Dataset, SPLIT_SEED, load, split};
use crate::engine::model::export_params;
use crate::engine::store::bind_tensors;
use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Softmax probability above which a sample counts as confidently labelled.
pub const CONFIDENT: f64 = 0.9;

/// A ready metric: the feature network and the held-out real statistics.
pub struct SampleMetric {
    net: FeatureNet,
    real: FrechetReference,
    /// The held-out features, row-major `[n, FEATURE_DIM]`, in a fixed shuffled order.
    real_rows: Vec<f32>,
    shape: [usize; 3],
    /// Held-out classification accuracy of the feature network (a sanity check).
    pub accuracy: f64,
    /// What the classifier says of the held-out real images themselves.
    pub real_labels: LabelSummary,
    /// Where the network was cached (None: not cached).
    pub cache_file: Option<PathBuf>,
    /// SHA-256 of the network's parameters (names, shapes and values): two metrics
    /// with the same fingerprint give the same features bit for bit.
    pub fingerprint: String,
}

/// The default cache folder: `$XDG_CACHE_HOME/deme-studio` or `~/.cache/deme-studio`.
pub fn default_cache_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .map(|p| p.join("deme-studio"))
}

impl SampleMetric {
    /// Builds the metric for `data` at image shape `[c, h, w]`: trains (or loads
    /// from `cache_dir`) the feature network on the training split and takes the
    /// statistics of the held-out split (`val_fraction`, split seed [`SPLIT_SEED`]).
    pub fn for_dataset(
        data: &DataSpec,
        shape: [usize; 3],
        val_fraction: f64,
        config: FeatureTrainConfig,
        cache_dir: Option<&Path>,
        device: &Device,
    ) -> Result<Self> {
        let images = match load(data, 0).with_context(|| format!("loading `{data}`"))? {
            Dataset::Images(i) => i,
            Dataset::Points(_) => bail!("the sample metric is defined for image datasets"),
        };
        let fitted = images.fit_to(shape[0], shape[1], shape[2])?;
        let Some(labels) = fitted.labels.clone() else {
            bail!(
                "the sample metric's feature network needs a labelled dataset; `{data}` has no labels"
            );
        };
        let s = split(fitted.len(), val_fraction, SPLIT_SEED);
        if s.val.len() < 2 {
            bail!("the sample metric needs at least 2 held-out images");
        }
        let train = fitted.subset(&s.train);
        let val = fitted.subset(&s.val);
        let train_labels: Vec<u32> = s.train.iter().map(|&i| labels[i]).collect();
        let val_labels: Vec<u32> = s.val.iter().map(|&i| labels[i]).collect();
        let classes = *labels.iter().max().unwrap_or(&0) as usize + 1;
        let key = cache_key(data, shape, val_fraction, classes, config);
        let cache_file = cache_dir.map(|d| d.join(format!("featnet-{key}.safetensors")));
        let cached = match &cache_file {
            Some(p) if p.exists() => load_net(p, shape, classes, device).ok(),
            _ => None,
        };
        let net = match cached {
            Some(net) => net,
            None => {
                let data = LabelledImages {
                    pixels: &train.pixels,
                    labels: &train_labels,
                    shape,
                };
                let (net, _) = train_feature_net(&data, config, device)?;
                if let Some(p) = &cache_file {
                    // a failed cache write costs a retrain next time, nothing more
                    if let Err(e) = save_net(&net, p) {
                        eprintln!("note: could not cache the feature network: {e:#}");
                    }
                }
                net
            }
        };
        let held_out = LabelledImages {
            pixels: &val.pixels,
            labels: &val_labels,
            shape,
        };
        let accuracy = accuracy(&net, &held_out, device)?;
        let real_labels = LabelSummary::new(&classify(&net, &val.pixels, shape, device)?, classes);
        let feats = extract_features(&net, &val.pixels, shape, device)?;
        let real = FrechetReference::new(FeatureStats::from_rows(&feats, FEATURE_DIM)?)?;
        Ok(Self {
            fingerprint: fingerprint(&net),
            net,
            real,
            real_rows: shuffled_rows(&feats, FEATURE_DIM, FLOOR_SEED),
            shape,
            accuracy,
            real_labels,
            cache_file,
        })
    }

    /// The real-vs-real floor: the Frechet distance between two disjoint halves of
    /// the held-out images (a fixed split), with the size of each half. A generated
    /// set scores this much even if the model were perfect, at that size.
    pub fn floor(&self) -> Result<(f64, usize)> {
        let m = self.real.stats().count / 2;
        let (a, b) = self.real_rows.split_at(m * FEATURE_DIM);
        let b = &b[..m * FEATURE_DIM];
        let fd = frechet_distance(
            &FeatureStats::from_rows(a, FEATURE_DIM)?,
            &FeatureStats::from_rows(b, FEATURE_DIM)?,
        )?;
        Ok((fd, m))
    }

    /// Scores generated NCHW images (values in `[-1, 1]`): the Frechet distance to all
    /// held-out images; the one at the floor's size (mean over disjoint chunks of as
    /// many generated images as a floor half, each against the floor's second half);
    /// and what the classifier labels them.
    pub fn score_in_full(&self, samples: &[f32], device: &Device) -> Result<SampleScore> {
        let feats = self.features(samples, device)?;
        let generated = FeatureStats::from_rows(&feats, FEATURE_DIM)?;
        let full = self.real.distance(&generated)?;
        let frechet_at_floor_size = self.frechet_at_floor_size(&feats)?;
        let classes = self.real_labels.histogram.len();
        let labels = LabelSummary::new(&classify(&self.net, samples, self.shape, device)?, classes);
        Ok(SampleScore {
            frechet_distance: full,
            frechet_at_floor_size,
            labels,
        })
    }

    /// The Frechet distance of feature rows (from [`Self::features`]) at the
    /// floor's size, comparable with [`Self::floor`]: the mean over disjoint chunks
    /// of as many rows as a floor half, each against the floor's second half
    /// (`None` when there is not one whole chunk).
    pub fn frechet_at_floor_size(&self, rows: &[f32]) -> Result<Option<f64>> {
        let m = self.real.stats().count / 2;
        if m < 2 || rows.len() < m * FEATURE_DIM {
            return Ok(None);
        }
        let half_b = FrechetReference::new(FeatureStats::from_rows(
            &self.real_rows[m * FEATURE_DIM..2 * m * FEATURE_DIM],
            FEATURE_DIM,
        )?)?;
        let chunks: Vec<&[f32]> = rows.chunks_exact(m * FEATURE_DIM).collect();
        let mut sum = 0.0;
        for c in &chunks {
            sum += half_b.distance(&FeatureStats::from_rows(c, FEATURE_DIM)?)?;
        }
        Ok(Some(sum / chunks.len() as f64))
    }

    /// Feature vectors of NCHW images (values in `[-1, 1]`), row-major `[n, FEATURE_DIM]`.
    pub fn features(&self, samples: &[f32], device: &Device) -> Result<Vec<f32>> {
        let per: usize = self.shape.iter().product();
        if samples.is_empty() || !samples.len().is_multiple_of(per) {
            bail!(
                "{} values are not whole images of shape {:?}",
                samples.len(),
                self.shape
            );
        }
        extract_features(&self.net, samples, self.shape, device)
    }

    /// Number of held-out real images in the reference statistics.
    pub fn real_count(&self) -> usize {
        self.real.stats().count
    }

    /// The Frechet distance of feature rows (from [`Self::features`]) to the held-out set.
    pub fn frechet_of_features(&self, rows: &[f32]) -> Result<f64> {
        self.real
            .distance(&FeatureStats::from_rows(rows, FEATURE_DIM)?)
    }

    /// What the classifier labels the images whose features are `rows`
    /// (row-major `[n, FEATURE_DIM]`, as [`Self::features`] gives them).
    pub fn labels_of_features(&self, rows: &[f32], device: &Device) -> Result<LabelSummary> {
        let classes = self.real_labels.histogram.len();
        Ok(LabelSummary::new(
            &classify_features(&self.net, rows, device)?,
            classes,
        ))
    }

    /// The Frechet distance of generated NCHW images (values in `[-1, 1]`) to the held-out set.
    pub fn score(&self, samples: &[f32], device: &Device) -> Result<f64> {
        let feats = self.features(samples, device)?;
        let generated = FeatureStats::from_rows(&feats, FEATURE_DIM)?;
        self.real.distance(&generated)
    }
}

/// Seed of the held-out images' order, which fixes the floor's two halves.
const FLOOR_SEED: u64 = 99;

/// Rows of `rows` (each `dim` wide) in a seeded random order.
fn shuffled_rows(rows: &[f32], dim: usize, seed: u64) -> Vec<f32> {
    use rand::SeedableRng;
    use rand::seq::SliceRandom;
    let mut order: Vec<usize> = (0..rows.len() / dim).collect();
    order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
    order
        .iter()
        .flat_map(|&i| rows[i * dim..(i + 1) * dim].iter().copied())
        .collect()
}

/// What the classifier says of a set of images.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LabelSummary {
    /// Number of images.
    pub images: usize,
    /// Share labelled with softmax probability above [`CONFIDENT`].
    pub confident_share: f64,
    /// Images per arg-max class.
    pub histogram: Vec<usize>,
}

impl LabelSummary {
    /// Summarises `(class, probability)` pairs over `classes` classes.
    pub fn new(labels: &[(u32, f64)], classes: usize) -> Self {
        let mut histogram = vec![0usize; classes];
        for &(k, _) in labels {
            if let Some(h) = histogram.get_mut(k as usize) {
                *h += 1;
            }
        }
        let confident = labels.iter().filter(|(_, p)| *p > CONFIDENT).count();
        Self {
            images: labels.len(),
            confident_share: confident as f64 / labels.len().max(1) as f64,
            histogram,
        }
    }

    /// Several summaries as one: images and classes added, the confident share
    /// weighted by images.
    pub fn pooled(parts: &[LabelSummary]) -> Self {
        let images: usize = parts.iter().map(|p| p.images).sum();
        let classes = parts.iter().map(|p| p.histogram.len()).max().unwrap_or(0);
        let mut histogram = vec![0usize; classes];
        for p in parts {
            for (h, v) in histogram.iter_mut().zip(&p.histogram) {
                *h += v;
            }
        }
        let confident: f64 = parts
            .iter()
            .map(|p| p.confident_share * p.images as f64)
            .sum();
        Self {
            images,
            confident_share: confident / images.max(1) as f64,
            histogram,
        }
    }
}

/// A generated set's scores.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SampleScore {
    /// Frechet distance to all held-out images.
    pub frechet_distance: f64,
    /// Mean Frechet distance of disjoint chunks the size of a floor half to the
    /// floor's second half: comparable with [`SampleMetric::floor`] (None when fewer
    /// images than a half).
    pub frechet_at_floor_size: Option<f64>,
    /// What the classifier labels the images.
    pub labels: LabelSummary,
}

fn cache_key(
    data: &DataSpec,
    shape: [usize; 3],
    val_fraction: f64,
    classes: usize,
    config: FeatureTrainConfig,
) -> String {
    let mut h = Sha256::new();
    h.update(format!("featnet-v2|{data}|{shape:?}|{val_fraction}|{classes}|{config:?}").as_bytes());
    hex(&h.finalize()[..8])
}

/// SHA-256 (hex) of a network's parameters: names, shapes and f32 bits, in order.
fn fingerprint(net: &FeatureNet) -> String {
    let mut hasher = Sha256::new();
    for (name, shape, values) in export_params(net) {
        hasher.update(name.as_bytes());
        for d in shape {
            hasher.update((d as u64).to_le_bytes());
        }
        for v in values {
            hasher.update(v.to_le_bytes());
        }
    }
    hex(&hasher.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn save_net(net: &FeatureNet, path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut map = TensorMap::new();
    for (k, shape, v) in export_params(net) {
        map.insert(k, HostTensor::from_f32(shape, &v)?);
    }
    write_safetensors(path, &map, None)
}

fn load_net(path: &Path, shape: [usize; 3], classes: usize, device: &Device) -> Result<FeatureNet> {
    let map = read_safetensors(path)?;
    bind_tensors(FeatureNet::new(shape, classes, 0, device), &map)
        .with_context(|| format!("loading {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_summary_counts_classes_and_confidence_above_the_threshold() {
        let labels = [(0, 0.95), (2, 0.9), (2, 0.99), (1, 0.2)];
        let s = LabelSummary::new(&labels, 3);
        assert_eq!(s.histogram, vec![1, 1, 2]);
        assert_eq!(s.images, 4);
        // 0.9 itself is not above the threshold
        assert_eq!(s.confident_share, 0.5);
        let other = LabelSummary::new(&[(1, 0.99), (1, 0.99)], 3);
        let both = LabelSummary::pooled(&[s, other]);
        assert_eq!(both.images, 6);
        assert_eq!(both.histogram, vec![1, 3, 2]);
        assert!((both.confident_share - 4.0 / 6.0).abs() < 1e-12);
    }

    #[test]
    fn shuffled_rows_keep_each_row_whole() {
        let rows: Vec<f32> = (0..12).map(|v| v as f32).collect();
        let s = shuffled_rows(&rows, 3, 1);
        let mut firsts: Vec<f32> = s.chunks(3).map(|r| r[0]).collect();
        for r in s.chunks(3) {
            assert_eq!([r[1], r[2]], [r[0] + 1.0, r[0] + 2.0]);
        }
        firsts.sort_by(f32::total_cmp);
        assert_eq!(firsts, vec![0.0, 3.0, 6.0, 9.0]);
    }
}

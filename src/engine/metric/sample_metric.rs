//! The offline sample-quality metric: the Frechet distance between feature
//! statistics of generated images and of the held-out real images, in the feature
//! space of a classifier trained on the dataset's training split
//! ([`super::features`]). Lower is better; 0 means the two feature Gaussians match.
//!
//! It plays the role FID plays for CIFAR-10 but needs no download: the feature
//! network is trained here (about a minute on 2 CPU cores for MNIST) and cached
//! by the hash of what it depends on (dataset, image shape, training settings).

use super::features::{
    FEATURE_DIM, FeatureNet, FeatureTrainConfig, LabelledImages, accuracy, extract_features,
    train_feature_net,
};
use super::frechet::{FeatureStats, frechet_distance};
use crate::engine::checkpoint::{HostTensor, TensorMap, read_safetensors, write_safetensors};
use crate::engine::data::{DataSpec, Dataset, SPLIT_SEED, load, split};
use crate::engine::model::export_params;
use crate::engine::store::bind_tensors;
use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// A ready metric: the feature network and the held-out real statistics.
pub struct SampleMetric {
    net: FeatureNet,
    real: FeatureStats,
    shape: [usize; 3],
    /// Held-out classification accuracy of the feature network (a sanity check).
    pub accuracy: f64,
    /// Where the network was cached (None: not cached).
    pub cache_file: Option<PathBuf>,
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
            Some(p) if p.exists() => load_net(p, shape[0], classes, device).ok(),
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
        let feats = extract_features(&net, &val.pixels, shape, device)?;
        let real = FeatureStats::from_rows(&feats, FEATURE_DIM)?;
        Ok(Self {
            net,
            real,
            shape,
            accuracy,
            cache_file,
        })
    }

    /// Number of held-out real images in the reference statistics.
    pub fn real_count(&self) -> usize {
        self.real.count
    }

    /// The Frechet distance of generated NCHW images (values in `[-1, 1]`) to the held-out set.
    pub fn score(&self, samples: &[f32], device: &Device) -> Result<f64> {
        let per: usize = self.shape.iter().product();
        if samples.is_empty() || samples.len() % per != 0 {
            bail!(
                "{} values are not whole images of shape {:?}",
                samples.len(),
                self.shape
            );
        }
        let feats = extract_features(&self.net, samples, self.shape, device)?;
        let generated = FeatureStats::from_rows(&feats, FEATURE_DIM)?;
        frechet_distance(&generated, &self.real)
    }
}

fn cache_key(
    data: &DataSpec,
    shape: [usize; 3],
    val_fraction: f64,
    classes: usize,
    config: FeatureTrainConfig,
) -> String {
    let mut h = Sha256::new();
    h.update(format!("featnet-v1|{data}|{shape:?}|{val_fraction}|{classes}|{config:?}").as_bytes());
    h.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
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

fn load_net(path: &Path, channels: usize, classes: usize, device: &Device) -> Result<FeatureNet> {
    let map = read_safetensors(path)?;
    bind_tensors(FeatureNet::new(channels, classes, 0, device), &map)
        .with_context(|| format!("loading {}", path.display()))
}

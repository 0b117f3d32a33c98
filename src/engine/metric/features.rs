//! The feature network of the offline sample metric: a small convolutional
//! classifier trained on the dataset's own labels, whose penultimate activations
//! (a 64-d vector after SiLU) are the features the Frechet distance compares.
//!
//! # Definition
//! `conv 3x3 (c -> 16) - SiLU - conv 3x3 stride 2 (16 -> 32) - SiLU -
//! conv 3x3 stride 2 (32 -> 64) - SiLU - global mean pool - linear 64 -> 64 - SiLU`
//! = features; `linear 64 -> classes` = logits. Trained with cross-entropy and
//! AdamW (lr 2e-3, no weight decay) for a fixed number of steps on the training
//! split from a fixed seed, so the network (and therefore the metric) is the same
//! on every run for the same data and settings.

use crate::engine::model::layers::{Conv2d, Init, Linear};
use crate::engine::train::adamw::{AdamW, AdamWConfig};
use anyhow::{Context, Result, anyhow, bail};
use burn::module::Module;
use burn::tensor::activation::{log_softmax, silu};
use burn::tensor::{Device, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Width of the feature vector.
pub const FEATURE_DIM: usize = 64;

/// The classifier whose penultimate layer gives the features.
#[derive(Module, Debug)]
pub struct FeatureNet {
    /// `c -> 16`, 3x3.
    pub conv1: Conv2d,
    /// `16 -> 32`, 3x3, stride 2.
    pub conv2: Conv2d,
    /// `32 -> 64`, 3x3, stride 2.
    pub conv3: Conv2d,
    /// `64 -> 64`.
    pub fc: Linear,
    /// `64 -> classes`.
    pub head: Linear,
}

impl FeatureNet {
    /// A randomly initialised network for `channels`-channel images and `classes` labels.
    pub fn new(channels: usize, classes: usize, seed: u64, device: &Device) -> Self {
        let mut init = Init::new(seed);
        Self {
            conv1: Conv2d::new(channels, 16, 3, 1, 1, &mut init, device),
            conv2: Conv2d::new(16, 32, 3, 2, 1, &mut init, device),
            conv3: Conv2d::new(32, 64, 3, 2, 1, &mut init, device),
            fc: Linear::new(64, FEATURE_DIM, &mut init, device),
            head: Linear::new(FEATURE_DIM, classes, &mut init, device),
        }
    }

    /// Feature vectors.
    ///
    /// # Shapes
    /// `[n, c, h, w] -> [n, 64]`
    pub fn features(&self, x: Tensor<4>) -> Tensor<2> {
        let h = silu(self.conv1.forward(x));
        let h = silu(self.conv2.forward(h));
        let h = silu(self.conv3.forward(h));
        let [n, c, hh, ww] = h.dims();
        let pooled = h.reshape([n, c, hh * ww]).mean_dim(2).reshape([n, c]);
        silu(self.fc.forward(pooled))
    }

    /// Class logits.
    ///
    /// # Shapes
    /// `[n, c, h, w] -> [n, classes]`
    pub fn logits(&self, x: Tensor<4>) -> Tensor<2> {
        self.head.forward(self.features(x))
    }
}

/// Labelled images on the host.
pub struct LabelledImages<'a> {
    /// NCHW pixels in `[-1, 1]`.
    pub pixels: &'a [f32],
    /// One label per image.
    pub labels: &'a [u32],
    /// `[c, h, w]`.
    pub shape: [usize; 3],
}

impl LabelledImages<'_> {
    fn len(&self) -> usize {
        self.labels.len()
    }

    fn batch(&self, idx: &[usize], classes: usize, device: &Device) -> (Tensor<4>, Tensor<2>) {
        let per: usize = self.shape.iter().product();
        let mut x = Vec::with_capacity(idx.len() * per);
        let mut y = vec![0f32; idx.len() * classes];
        for (r, &i) in idx.iter().enumerate() {
            x.extend_from_slice(&self.pixels[i * per..(i + 1) * per]);
            y[r * classes + self.labels[i] as usize] = 1.0;
        }
        let [c, h, w] = self.shape;
        (
            Tensor::from_data(TensorData::new(x, [idx.len(), c, h, w]), device),
            Tensor::from_data(TensorData::new(y, [idx.len(), classes]), device),
        )
    }
}

/// Settings of the feature network's training.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FeatureTrainConfig {
    /// Optimizer steps.
    pub steps: usize,
    /// Images per step.
    pub batch_size: usize,
    /// Seed of initialisation and batches.
    pub seed: u64,
}

impl Default for FeatureTrainConfig {
    fn default() -> Self {
        Self {
            steps: 400,
            batch_size: 64,
            seed: 0,
        }
    }
}

/// Trains the classifier; returns it (plain device) and the last batch's loss.
pub fn train_feature_net(
    data: &LabelledImages,
    config: FeatureTrainConfig,
    device: &Device,
) -> Result<(FeatureNet, f64)> {
    if data.len() < 2 {
        bail!(
            "the feature network needs labelled images, got {}",
            data.len()
        );
    }
    let classes = *data.labels.iter().max().expect("non-empty") as usize + 1;
    let ad = device.clone().autodiff();
    let mut net = FeatureNet::new(data.shape[0], classes, config.seed, device)
        .to_device(&ad)
        .train();
    let mut opt = AdamW::new(AdamWConfig {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
        max_grad_norm: Some(1.0),
    });
    let mut rng = StdRng::seed_from_u64(config.seed);
    let mut last = f64::NAN;
    for step in 0..config.steps {
        let idx: Vec<usize> = (0..config.batch_size)
            .map(|_| rng.random_range(0..data.len()))
            .collect();
        let (x, y) = data.batch(&idx, classes, &ad);
        let loss = -(log_softmax(net.logits(x), 1) * y).sum_dim(1).mean();
        last = f64::from(loss.clone().into_scalar::<f32>());
        if !last.is_finite() {
            bail!("the feature network's loss became {last} at step {step}");
        }
        let grads = loss.backward();
        net = opt
            .step(net, &grads, 2e-3)
            .with_context(|| format!("feature network step {step}"))?
            .0;
    }
    Ok((net.valid(), last))
}

/// Feature vectors of NCHW images, in batches; row-major `[n, 64]`.
pub fn extract_features(
    net: &FeatureNet,
    pixels: &[f32],
    shape: [usize; 3],
    device: &Device,
) -> Result<Vec<f32>> {
    let per: usize = shape.iter().product();
    let mut out = Vec::with_capacity(pixels.len() / per * FEATURE_DIM);
    for chunk in pixels.chunks(256 * per) {
        let n = chunk.len() / per;
        let x = Tensor::<4>::from_data(
            TensorData::new(chunk.to_vec(), [n, shape[0], shape[1], shape[2]]),
            device,
        );
        let f = net
            .features(x)
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| anyhow!("reading features: {e:?}"))?;
        out.extend(f);
    }
    Ok(out)
}

/// Fraction of images whose arg-max logit is their label.
pub fn accuracy(net: &FeatureNet, data: &LabelledImages, device: &Device) -> Result<f64> {
    let per: usize = data.shape.iter().product();
    let mut right = 0usize;
    for (ci, chunk) in data.pixels.chunks(256 * per).enumerate() {
        let n = chunk.len() / per;
        let [c, h, w] = data.shape;
        let x = Tensor::<4>::from_data(TensorData::new(chunk.to_vec(), [n, c, h, w]), device);
        let pred: Vec<i64> = net
            .logits(x)
            .argmax(1)
            .into_data()
            .convert::<i64>()
            .try_into_vec::<i64>()
            .map_err(|e| anyhow!("reading predictions: {e:?}"))?;
        for (j, p) in pred.iter().enumerate() {
            if *p as u32 == data.labels[ci * 256 + j] {
                right += 1;
            }
        }
    }
    Ok(right as f64 / data.len().max(1) as f64)
}

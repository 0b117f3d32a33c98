//! The feature network of the offline sample metric: a small convolutional
//! classifier trained on the dataset's own labels, whose penultimate activations
//! (a 128-d vector after SiLU) are the features the Frechet distance compares, and
//! whose softmax labels samples for the quality figures a teacher reads.
//!
//! # Definition
//! `conv 3x3 (c -> 32) - SiLU - conv 3x3 stride 2 (32 -> 64) - SiLU -
//! conv 3x3 stride 2 (64 -> 64) - SiLU - flatten - linear (64 h/4 w/4) -> 128 - SiLU`
//! = features; `linear 128 -> classes` = logits. The flatten keeps where strokes are,
//! which a global pool would throw away. Trained with cross-entropy and AdamW (lr
//! 2e-3 falling linearly to 0, no weight decay) on the training split, each image
//! shifted by up to 2 pixels (edges repeated), for a fixed number of steps from a fixed
//! seed, so the network (and therefore the metric) is the same on every run for the
//! same data and settings.

use crate::engine::model::layers::{Conv2d, Init, Linear};
use crate::engine::train::adamw::{AdamW, AdamWConfig};
use anyhow::{Context, Result, anyhow, bail};
use burn::module::Module;
use burn::tensor::activation::{log_softmax, silu};
use burn::tensor::{Device, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Width of the feature vector.
pub const FEATURE_DIM: usize = 128;
/// Largest shift, in pixels, of the training images.
const MAX_SHIFT: i64 = 2;

/// The classifier whose penultimate layer gives the features.
#[derive(Module, Debug)]
pub struct FeatureNet {
    /// `c -> 32`, 3x3.
    pub conv1: Conv2d,
    /// `32 -> 64`, 3x3, stride 2.
    pub conv2: Conv2d,
    /// `64 -> 64`, 3x3, stride 2.
    pub conv3: Conv2d,
    /// `64 h/4 w/4 -> 128`.
    pub fc: Linear,
    /// `128 -> classes`.
    pub head: Linear,
}

/// Side of a stride-2, padding-1, 3x3 convolution's output.
fn halved(side: usize) -> usize {
    side.div_ceil(2)
}

impl FeatureNet {
    /// A randomly initialised network for images of shape `[c, h, w]` and `classes` labels.
    pub fn new(shape: [usize; 3], classes: usize, seed: u64, device: &Device) -> Self {
        let mut init = Init::new(seed);
        let flat = 64 * halved(halved(shape[1])) * halved(halved(shape[2]));
        Self {
            conv1: Conv2d::new(shape[0], 32, 3, 1, 1, &mut init, device),
            conv2: Conv2d::new(32, 64, 3, 2, 1, &mut init, device),
            conv3: Conv2d::new(64, 64, 3, 2, 1, &mut init, device),
            fc: Linear::new(flat, FEATURE_DIM, &mut init, device),
            head: Linear::new(FEATURE_DIM, classes, &mut init, device),
        }
    }

    /// Feature vectors.
    ///
    /// # Shapes
    /// `[n, c, h, w] -> [n, 128]`
    pub fn features(&self, x: Tensor<4>) -> Tensor<2> {
        let h = silu(self.conv1.forward(x));
        let h = silu(self.conv2.forward(h));
        let h = silu(self.conv3.forward(h));
        let [n, c, hh, ww] = h.dims();
        silu(self.fc.forward(h.reshape([n, c * hh * ww])))
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

    /// The images `idx`, each shifted by its `(dy, dx)` (edges repeated), and their
    /// one-hot labels.
    fn batch(
        &self,
        idx: &[usize],
        shifts: &[(i64, i64)],
        classes: usize,
        device: &Device,
    ) -> (Tensor<4>, Tensor<2>) {
        let per: usize = self.shape.iter().product();
        let [c, h, w] = self.shape;
        let mut x = Vec::with_capacity(idx.len() * per);
        let mut y = vec![0f32; idx.len() * classes];
        for (r, (&i, &(dy, dx))) in idx.iter().zip(shifts).enumerate() {
            let img = &self.pixels[i * per..(i + 1) * per];
            for ch in 0..c {
                for row in 0..h as i64 {
                    let sr = (row - dy).clamp(0, h as i64 - 1) as usize;
                    for col in 0..w as i64 {
                        let sc = (col - dx).clamp(0, w as i64 - 1) as usize;
                        x.push(img[(ch * h + sr) * w + sc]);
                    }
                }
            }
            y[r * classes + self.labels[i] as usize] = 1.0;
        }
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
            steps: 3000,
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
    let mut net = FeatureNet::new(data.shape, classes, config.seed, device)
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
        let shifts: Vec<(i64, i64)> = idx
            .iter()
            .map(|_| {
                (
                    rng.random_range(-MAX_SHIFT..=MAX_SHIFT),
                    rng.random_range(-MAX_SHIFT..=MAX_SHIFT),
                )
            })
            .collect();
        let (x, y) = data.batch(&idx, &shifts, classes, &ad);
        let loss = -(log_softmax(net.logits(x), 1) * y).sum_dim(1).mean();
        last = f64::from(loss.clone().into_scalar::<f32>());
        if !last.is_finite() {
            bail!("the feature network's loss became {last} at step {step}");
        }
        let grads = loss.backward();
        net = opt
            .step(
                net,
                &grads,
                2e-3 * (1.0 - step as f64 / config.steps as f64),
            )
            .with_context(|| format!("feature network step {step}"))?
            .0;
    }
    Ok((net.valid(), last))
}

/// Feature vectors of NCHW images, in batches; row-major `[n, FEATURE_DIM]`.
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

/// The arg-max class of each NCHW image and its softmax probability.
pub fn classify(
    net: &FeatureNet,
    pixels: &[f32],
    shape: [usize; 3],
    device: &Device,
) -> Result<Vec<(u32, f64)>> {
    let per: usize = shape.iter().product();
    let mut out = Vec::with_capacity(pixels.len() / per);
    for chunk in pixels.chunks(256 * per) {
        let n = chunk.len() / per;
        let x = Tensor::<4>::from_data(
            TensorData::new(chunk.to_vec(), [n, shape[0], shape[1], shape[2]]),
            device,
        );
        out.extend(arg_max_labels(net.logits(x))?);
    }
    Ok(out)
}

/// The same as [`classify`] from the images' feature rows (row-major
/// `[n, FEATURE_DIM]`, as [`extract_features`] gives them): the classifier head alone.
pub fn classify_features(
    net: &FeatureNet,
    rows: &[f32],
    device: &Device,
) -> Result<Vec<(u32, f64)>> {
    if !rows.len().is_multiple_of(FEATURE_DIM) {
        bail!(
            "{} values are not feature rows of {FEATURE_DIM}",
            rows.len()
        );
    }
    let mut out = Vec::with_capacity(rows.len() / FEATURE_DIM);
    for chunk in rows.chunks(256 * FEATURE_DIM) {
        let x = Tensor::<2>::from_data(
            TensorData::new(chunk.to_vec(), [chunk.len() / FEATURE_DIM, FEATURE_DIM]),
            device,
        );
        out.extend(arg_max_labels(net.head.forward(x))?);
    }
    Ok(out)
}

/// The arg-max class of each row of logits and its softmax probability.
fn arg_max_labels(logits: Tensor<2>) -> Result<Vec<(u32, f64)>> {
    let probs = burn::tensor::activation::softmax(logits, 1);
    let classes = probs.dims()[1];
    let p = probs
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| anyhow!("reading class probabilities: {e:?}"))?;
    Ok(p.chunks(classes)
        .map(|row| {
            let (k, best) = row
                .iter()
                .enumerate()
                .fold(
                    (0, f32::NEG_INFINITY),
                    |a, (k, &v)| if v > a.1 { (k, v) } else { a },
                );
            (k as u32, f64::from(best))
        })
        .collect())
}

/// Fraction of images whose arg-max logit is their label.
pub fn accuracy(net: &FeatureNet, data: &LabelledImages, device: &Device) -> Result<f64> {
    let labels = classify(net, data.pixels, data.shape, device)?;
    let right = labels
        .iter()
        .zip(data.labels)
        .filter(|((k, _), want)| k == *want)
        .count();
    Ok(right as f64 / data.len().max(1) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shifted_batches_move_pixels_and_repeat_edges() {
        // one 1x3x3 image holding 0..9 row by row
        let pixels: Vec<f32> = (0..9).map(|v| v as f32).collect();
        let data = LabelledImages {
            pixels: &pixels,
            labels: &[1],
            shape: [1, 3, 3],
        };
        let dev = Device::flex();
        let (x, y) = data.batch(&[0, 0], &[(1, 0), (0, -1)], 2, &dev);
        let x: Vec<f32> = x.into_data().convert::<f32>().try_into_vec().unwrap();
        // down by one: the top row repeats
        assert_eq!(x[..9], [0., 1., 2., 0., 1., 2., 3., 4., 5.]);
        // left by one: the right column repeats
        assert_eq!(x[9..], [1., 2., 2., 4., 5., 5., 7., 8., 8.]);
        let y: Vec<f32> = y.into_data().convert::<f32>().try_into_vec().unwrap();
        assert_eq!(y, [0., 1., 0., 1.]);
    }

    #[test]
    fn classify_returns_a_class_and_a_probability_per_image() {
        let dev = Device::flex();
        let net = FeatureNet::new([1, 8, 8], 3, 0, &dev);
        let pixels = vec![0.5f32; 5 * 64];
        let out = classify(&net, &pixels, [1, 8, 8], &dev).unwrap();
        assert_eq!(out.len(), 5);
        for (k, p) in out {
            assert!(k < 3);
            // the arg-max of 3 softmax probabilities is at least a third
            assert!((1.0 / 3.0 - 1e-6..=1.0).contains(&p), "{p}");
        }
    }

    #[test]
    fn labels_from_features_equal_labels_from_images() {
        let dev = Device::flex();
        let net = FeatureNet::new([1, 8, 8], 3, 4, &dev);
        let pixels: Vec<f32> = (0..7 * 64)
            .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
            .collect();
        let direct = classify(&net, &pixels, [1, 8, 8], &dev).unwrap();
        let rows = extract_features(&net, &pixels, [1, 8, 8], &dev).unwrap();
        let via_rows = classify_features(&net, &rows, &dev).unwrap();
        assert_eq!(via_rows.len(), 7);
        for ((k1, p1), (k2, p2)) in direct.iter().zip(&via_rows) {
            assert_eq!(k1, k2);
            assert!((p1 - p2).abs() < 1e-6, "{p1} vs {p2}");
        }
        assert!(classify_features(&net, &rows[1..], &dev).is_err());
    }
}

//! A dataset adapted to a model's input and cut into training and held-out items.

use super::{DataSpec, Dataset, load, split};
use crate::engine::store::ModelSpec;
use crate::engine::train::BatchSampler;
use anyhow::{Context, Result, bail};

/// The seed of the train / validation split every command uses, so that the
/// held-out items of `train`, `finetune`, `grid-search` and the app are the same.
pub const SPLIT_SEED: u64 = 0;

/// Training and held-out items of one dataset, in the model's item shape.
pub struct SplitItems {
    /// Items the model trains on.
    pub train: BatchSampler,
    /// Items never trained on (may be empty when `val_fraction` is 0).
    pub val: BatchSampler,
}

/// Loads `data`, fits it to `spec`'s input (padding/resizing images, checking the
/// point dimension) and splits it with [`SPLIT_SEED`].
pub fn split_items(
    data: &DataSpec,
    spec: &ModelSpec,
    val_fraction: f64,
    toy_points: usize,
) -> Result<SplitItems> {
    let dataset = load(data, toy_points).with_context(|| format!("loading dataset `{data}`"))?;
    let item_shape = spec.item_shape();
    let per: usize = item_shape.iter().product();
    let (all, n): (Vec<f32>, usize) = match (dataset, spec) {
        (Dataset::Images(images), ModelSpec::UNet(_)) => {
            let fitted = images
                .fit_to(item_shape[0], item_shape[1], item_shape[2])
                .with_context(|| format!("dataset `{data}` does not fit the model"))?;
            let n = fitted.len();
            (fitted.pixels, n)
        }
        (Dataset::Points(points), ModelSpec::Mlp(c)) => {
            if points.dim != c.dim {
                bail!(
                    "dataset `{data}` has {}-D points, the model expects {}",
                    points.dim,
                    c.dim
                );
            }
            let n = points.points.len() / points.dim;
            (points.points, n)
        }
        (Dataset::Images(_), ModelSpec::Mlp(_)) => {
            bail!("dataset `{data}` holds images; toy-mlp trains on toy:NAME points")
        }
        (Dataset::Points(_), ModelSpec::UNet(_)) => {
            bail!("dataset `{data}` holds 2D points; use --model toy-mlp")
        }
    };
    let s = split(n, val_fraction, SPLIT_SEED);
    let gather = |idx: &[usize]| -> Vec<f32> {
        let mut out = Vec::with_capacity(idx.len() * per);
        for &i in idx {
            out.extend_from_slice(&all[i * per..(i + 1) * per]);
        }
        out
    };
    if s.train.is_empty() {
        bail!("dataset `{data}` has no training items after the validation split");
    }
    Ok(SplitItems {
        train: BatchSampler::new(gather(&s.train), item_shape, data.to_string()),
        val: BatchSampler::new(gather(&s.val), item_shape, format!("{data} (held out)")),
    })
}

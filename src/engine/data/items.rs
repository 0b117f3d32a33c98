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
                .into_fitted(item_shape[0], item_shape[1], item_shape[2])
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
    if s.train.is_empty() {
        bail!("dataset `{data}` has no training items after the validation split");
    }
    // the items in split order (train, then held out), rearranged in place: the
    // dataset is never held twice
    let order: Vec<usize> = s.train.iter().chain(&s.val).copied().collect();
    let mut all = all;
    permute_blocks(&mut all, per, &order);
    // (no shrink: reallocating the training part would hold it twice)
    let val = all.split_off(s.train.len() * per);
    Ok(SplitItems {
        train: BatchSampler::new(all, item_shape, data.to_string()),
        val: BatchSampler::new(val, item_shape, format!("{data} (held out)")),
    })
}

/// Rearranges `data`, blocks of `per` values, so that block `k` becomes the old
/// block `order[k]` (`order` a permutation), following each cycle with one spare block.
fn permute_blocks(data: &mut [f32], per: usize, order: &[usize]) {
    let mut placed = vec![false; order.len()];
    let mut spare = vec![0.0f32; per];
    for start in 0..order.len() {
        if placed[start] || order[start] == start {
            continue;
        }
        spare.copy_from_slice(&data[start * per..(start + 1) * per]);
        let mut k = start;
        loop {
            placed[k] = true;
            let from = order[k];
            if from == start {
                data[k * per..(k + 1) * per].copy_from_slice(&spare);
                break;
            }
            data.copy_within(from * per..(from + 1) * per, k * per);
            k = from;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_permuted_in_place_as_a_gather_would() {
        let per = 3;
        for order in [
            vec![0, 1, 2, 3],
            vec![3, 2, 1, 0],
            vec![2, 0, 3, 1],
            vec![1, 0, 2, 4, 3],
        ] {
            let n = order.len();
            let original: Vec<f32> = (0..n * per).map(|v| v as f32).collect();
            let gathered: Vec<f32> = order
                .iter()
                .flat_map(|&i| original[i * per..(i + 1) * per].iter().copied())
                .collect();
            let mut data = original.clone();
            permute_blocks(&mut data, per, &order);
            assert_eq!(data, gathered, "{order:?}");
        }
    }
}

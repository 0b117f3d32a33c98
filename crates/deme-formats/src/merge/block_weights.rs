//! Per-block merge weights: a block is a key prefix (`down_blocks.1`,
//! `mid_block`, `up_blocks.0`, `conv_in`, `time_embedding`, `conv_out`,
//! `conv_norm_out`, `adapter_list`, or finer, such as `down_blocks.1.attentions`).
//!
//! Inside a block, its weights replace the per-model weights: a list gives one
//! weight per expert, a single number gives every expert that weight (so
//! `"mid_block": 0` keeps the base's bottleneck). When several blocks match a
//! key, the longest (most specific) wins.
//!
//! As JSON: `{"mid_block": 0.0, "down_blocks.1": [0.5, 0.2, 0.1, 0.3]}`.

use crate::groups::{Granularity, group_of};
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// Largest magnitude of a merge weight: far beyond any useful extrapolation, and
/// small enough that a merged model stays finite.
pub const MAX_MERGE_WEIGHT: f32 = 1000.0;

/// The weights of one block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum BlockWeight {
    /// The same weight for every expert.
    All(f32),
    /// One weight per expert.
    PerExpert(Vec<f32>),
}

/// Block prefix -> weights.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BlockWeights(pub BTreeMap<String, BlockWeight>);

/// Whether `key` lies in block `block` (equal, or `block` followed by a dot).
fn in_block(key: &str, block: &str) -> bool {
    key.strip_prefix(block)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
}

impl BlockWeights {
    /// Parses the JSON form.
    pub fn from_json_str(text: &str) -> Result<Self> {
        serde_json::from_str(text).context(
            "block weights must be a JSON object of block -> number or list of numbers, \
             e.g. {\"mid_block\": 0.0, \"down_blocks.1\": [0.5, 0.2]}",
        )
    }

    /// Reads a JSON file.
    pub fn read(path: &Path) -> Result<Self> {
        let text = crate::input::read_text(path).context("reading the block weights")?;
        Self::from_json_str(&text).with_context(|| format!("in {}", path.display()))
    }

    /// Whether no block has weights of its own.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Checks list lengths against `num_experts` and that every weight is finite.
    pub fn validate(&self, num_experts: usize) -> Result<()> {
        for (block, w) in &self.0 {
            let values: &[f32] = match w {
                BlockWeight::All(v) => std::slice::from_ref(v),
                BlockWeight::PerExpert(v) => {
                    if v.len() != num_experts {
                        bail!(
                            "block `{block}` has {} weights for {num_experts} experts",
                            v.len()
                        );
                    }
                    v
                }
            };
            if let Some(x) = values.iter().find(|x| !x.is_finite()) {
                bail!("block `{block}`: weight {x} is not a finite number");
            }
            if let Some(x) = values.iter().find(|x| x.abs() > MAX_MERGE_WEIGHT) {
                bail!(
                    "block `{block}`: weight {x} is outside [-{m}, {m}]",
                    m = MAX_MERGE_WEIGHT
                );
            }
        }
        Ok(())
    }

    /// The weights for every key: the most specific matching block's, else `weights`.
    ///
    /// Fails when a block matches no key (a typo would otherwise be ignored);
    /// the message lists the model's blocks.
    pub fn resolve(&self, keys: &[(String, Vec<usize>)], weights: &[f32]) -> Result<Vec<Vec<f32>>> {
        self.validate(weights.len())?;
        for block in self.0.keys() {
            if !keys.iter().any(|(k, _)| in_block(k, block)) {
                let mut blocks: Vec<String> = Vec::new();
                for (k, _) in keys {
                    let g = group_of(k, Granularity::Block);
                    if !blocks.contains(&g) {
                        blocks.push(g);
                    }
                }
                bail!(
                    "block `{block}` matches no parameter of this model; its blocks are: {}",
                    blocks.join(", ")
                );
            }
        }
        Ok(keys
            .iter()
            .map(|(k, _)| {
                let best = self
                    .0
                    .iter()
                    .filter(|(b, _)| in_block(k, b))
                    .max_by_key(|(b, _)| b.len());
                match best {
                    None => weights.to_vec(),
                    Some((_, BlockWeight::All(v))) => vec![*v; weights.len()],
                    Some((_, BlockWeight::PerExpert(v))) => v.clone(),
                }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(v: &[&str]) -> Vec<(String, Vec<usize>)> {
        v.iter().map(|k| (k.to_string(), vec![1])).collect()
    }

    #[test]
    fn the_most_specific_block_wins() {
        let bw = BlockWeights::from_json_str(
            r#"{"mid_block": 0, "down_blocks.1": [0.5, 0.25], "down_blocks.1.attentions": 1.0, "adapter_list": [2, 3]}"#,
        )
        .unwrap();
        let k = keys(&[
            "conv_in.weight",
            "down_blocks.1.resnets.0.conv1.weight",
            "down_blocks.1.attentions.0.to_q.weight",
            "down_blocks.10.x",
            "mid_block.resnets.0.conv1.bias",
            "adapter_list.3.weight",
        ]);
        let w = bw.resolve(&k, &[0.1, 0.2]).unwrap();
        assert_eq!(w[0], vec![0.1, 0.2]);
        assert_eq!(w[1], vec![0.5, 0.25]);
        assert_eq!(w[2], vec![1.0, 1.0]);
        assert_eq!(
            w[3],
            vec![0.1, 0.2],
            "down_blocks.10 is not in down_blocks.1"
        );
        assert_eq!(w[4], vec![0.0, 0.0]);
        assert_eq!(w[5], vec![2.0, 3.0]);
    }

    #[test]
    fn bad_blocks_are_refused() {
        let k = keys(&["conv_in.weight", "mid_block.x"]);
        let bw = BlockWeights::from_json_str(r#"{"mid_blok": 0}"#).unwrap();
        let msg = format!("{:#}", bw.resolve(&k, &[1.0]).unwrap_err());
        assert!(
            msg.contains("mid_blok") && msg.contains("conv_in, mid_block"),
            "{msg}"
        );
        let bw = BlockWeights::from_json_str(r#"{"mid_block": [1, 2]}"#).unwrap();
        assert!(bw.resolve(&k, &[1.0]).is_err());
        assert!(BlockWeights::from_json_str(r#"{"mid_block": "x"}"#).is_err());
    }
}

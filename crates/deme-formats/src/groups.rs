//! Parameter groups: which block or layer a state-dict key belongs to.

use serde::{Deserialize, Serialize};

/// How finely parameters are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Granularity {
    /// Top-level blocks: `conv_in`, `time_embedding`, `down_blocks.1`, `mid_block`, ...
    #[default]
    Block,
    /// Layers: the module owning the tensor, e.g. `down_blocks.1.resnets.0.conv1`.
    Layer,
}

impl std::str::FromStr for Granularity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "block" => Ok(Self::Block),
            "layer" => Ok(Self::Layer),
            other => Err(format!("unknown grouping `{other}`: use block or layer")),
        }
    }
}

/// The group of a parameter key.
///
/// Block: the first path component, plus the index for indexed lists
/// (`down_blocks.1.resnets.0.conv1.weight` -> `down_blocks.1`,
/// `adapter_list.3.weight` -> `adapter_list.3`). Layer: the key without its last
/// component (`...conv1.weight` -> `...conv1`).
pub fn group_of(key: &str, granularity: Granularity) -> String {
    let parts: Vec<&str> = key.split('.').collect();
    match granularity {
        Granularity::Layer => {
            if parts.len() > 1 {
                parts[..parts.len() - 1].join(".")
            } else {
                key.to_string()
            }
        }
        Granularity::Block => {
            if parts.len() > 1 && parts[1].chars().all(|c| c.is_ascii_digit()) {
                format!("{}.{}", parts[0], parts[1])
            } else {
                parts[0].to_string()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_follow_the_key_paths() {
        let k = "down_blocks.1.resnets.0.conv1.weight";
        assert_eq!(group_of(k, Granularity::Block), "down_blocks.1");
        assert_eq!(
            group_of(k, Granularity::Layer),
            "down_blocks.1.resnets.0.conv1"
        );
        assert_eq!(group_of("conv_in.bias", Granularity::Block), "conv_in");
        assert_eq!(
            group_of("time_embedding.linear_1.weight", Granularity::Block),
            "time_embedding"
        );
        assert_eq!(
            group_of("adapter_list.3.weight", Granularity::Block),
            "adapter_list.3"
        );
        assert_eq!(group_of("w", Granularity::Layer), "w");
    }
}

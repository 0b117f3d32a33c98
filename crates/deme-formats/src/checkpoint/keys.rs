//! Attention parameter names: legacy diffusers vs modern.
//!
//! Old diffusers checkpoints (the original `AttentionBlock`, e.g.
//! `google/ddpm-cifar10-32`) name the attention projections `query`, `key`,
//! `value` and `proj_attn`; current diffusers names them `to_q`, `to_k`,
//! `to_v` and `to_out.0`. Both are `Linear` weights of the same shapes, so
//! only the names change. The engine works with modern names; the style a
//! file used is remembered so that a save can write it back the same way.
//!
//! Only the module directly inside an attention block is renamed: in
//! `mid_block.attentions.0.query.weight` the segment after
//! `attentions.<i>`. Other keys are never touched.

use super::host_tensor::TensorMap;
use anyhow::{Result, bail};
use std::fmt;

/// Which attention naming a checkpoint uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum KeyStyle {
    /// `to_q`, `to_k`, `to_v`, `to_out.0` (current diffusers; also used for
    /// files without attention).
    #[default]
    Modern,
    /// `query`, `key`, `value`, `proj_attn` (old diffusers).
    Legacy,
}

impl fmt::Display for KeyStyle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyStyle::Modern => "modern (to_q/to_k/to_v/to_out.0)",
            KeyStyle::Legacy => "legacy (query/key/value/proj_attn)",
        })
    }
}

/// (legacy, modern) module names.
const PAIRS: [(&str, &str); 4] = [
    ("query", "to_q"),
    ("key", "to_k"),
    ("value", "to_v"),
    ("proj_attn", "to_out.0"),
];

/// Which style a single key is in, if it is an attention projection.
fn key_style(key: &str) -> Option<KeyStyle> {
    let segs: Vec<&str> = key.split('.').collect();
    let pos = segs.iter().position(|s| *s == "attentions")?;
    let module = *segs.get(pos + 2)?;
    if PAIRS.iter().any(|(legacy, _)| *legacy == module) {
        Some(KeyStyle::Legacy)
    } else if matches!(module, "to_q" | "to_k" | "to_v")
        || (module == "to_out" && segs.get(pos + 3) == Some(&"0"))
    {
        Some(KeyStyle::Modern)
    } else {
        None
    }
}

/// Rewrites the attention module name of `key` into `style`; other keys
/// come back unchanged.
pub fn style_key(key: &str, style: KeyStyle) -> String {
    let segs: Vec<&str> = key.split('.').collect();
    let Some(pos) = segs.iter().position(|s| *s == "attentions") else {
        return key.to_string();
    };
    let m = pos + 2;
    let Some(&module) = segs.get(m) else {
        return key.to_string();
    };
    // Number of segments the module name spans, and its replacement.
    let replacement = match style {
        KeyStyle::Modern => PAIRS
            .iter()
            .find(|(legacy, _)| *legacy == module)
            .map(|(_, modern)| (1, *modern)),
        KeyStyle::Legacy => {
            let two = segs.get(m + 1).map(|next| format!("{module}.{next}"));
            PAIRS.iter().find_map(|(legacy, modern)| {
                if *modern == module {
                    Some((1, *legacy))
                } else if two.as_deref() == Some(*modern) {
                    Some((2, *legacy))
                } else {
                    None
                }
            })
        }
    };
    match replacement {
        None => key.to_string(),
        Some((span, name)) => {
            let mut out: Vec<&str> = segs[..m].to_vec();
            out.push(name);
            out.extend_from_slice(&segs[m + span..]);
            out.join(".")
        }
    }
}

/// Maps a legacy attention key to its modern name (others unchanged), e.g.
/// `down_blocks.1.attentions.0.proj_attn.weight` ->
/// `down_blocks.1.attentions.0.to_out.0.weight`.
pub fn normalize_key(key: &str) -> String {
    style_key(key, KeyStyle::Modern)
}

/// Renames a loaded checkpoint's keys to the modern style and reports the
/// style the file used. A file mixing both styles is refused, naming one
/// key of each.
pub fn normalize_keys(tensors: TensorMap) -> Result<(TensorMap, KeyStyle)> {
    let mut legacy = None;
    let mut modern = None;
    for key in tensors.keys() {
        match key_style(key) {
            Some(KeyStyle::Legacy) if legacy.is_none() => legacy = Some(key.clone()),
            Some(KeyStyle::Modern) if modern.is_none() => modern = Some(key.clone()),
            _ => {}
        }
    }
    match (legacy, modern) {
        (Some(l), Some(m)) => bail!(
            "the checkpoint mixes legacy attention names (e.g. `{l}`) with modern ones (e.g. `{m}`); it was probably edited by hand, and cannot be loaded unambiguously"
        ),
        (Some(_), None) => Ok((to_style(tensors, KeyStyle::Modern), KeyStyle::Legacy)),
        _ => Ok((tensors, KeyStyle::Modern)),
    }
}

/// Renames modern-style keys into `style` (for saving in a file's original
/// naming). Keys outside attention blocks are unchanged.
pub fn to_style(tensors: TensorMap, style: KeyStyle) -> TensorMap {
    tensors
        .into_iter()
        .map(|(k, v)| (style_key(&k, style), v))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::host_tensor::HostTensor;

    fn map(keys: &[&str]) -> TensorMap {
        keys.iter()
            .enumerate()
            .map(|(i, k)| {
                (
                    k.to_string(),
                    HostTensor::from_f32(vec![1], &[i as f32]).unwrap(),
                )
            })
            .collect()
    }

    const LEGACY: [&str; 10] = [
        "down_blocks.1.attentions.0.query.weight",
        "down_blocks.1.attentions.0.query.bias",
        "down_blocks.1.attentions.0.key.weight",
        "down_blocks.1.attentions.0.value.bias",
        "down_blocks.1.attentions.0.proj_attn.weight",
        "mid_block.attentions.0.proj_attn.bias",
        "mid_block.attentions.0.group_norm.weight",
        "down_blocks.0.resnets.0.conv1.weight",
        "time_embedding.linear_1.weight",
        "conv_in.weight",
    ];
    const MODERN: [&str; 10] = [
        "down_blocks.1.attentions.0.to_q.weight",
        "down_blocks.1.attentions.0.to_q.bias",
        "down_blocks.1.attentions.0.to_k.weight",
        "down_blocks.1.attentions.0.to_v.bias",
        "down_blocks.1.attentions.0.to_out.0.weight",
        "mid_block.attentions.0.to_out.0.bias",
        "mid_block.attentions.0.group_norm.weight",
        "down_blocks.0.resnets.0.conv1.weight",
        "time_embedding.linear_1.weight",
        "conv_in.weight",
    ];

    #[test]
    fn single_keys_both_ways() {
        for (l, m) in LEGACY.iter().zip(MODERN) {
            assert_eq!(normalize_key(l), m);
            assert_eq!(normalize_key(m), m);
            assert_eq!(style_key(m, KeyStyle::Legacy), *l);
        }
        // Outside attention blocks nothing is renamed.
        assert_eq!(normalize_key("encoder.key.weight"), "encoder.key.weight");
        assert_eq!(normalize_key("a.value.query.b"), "a.value.query.b");
        assert_eq!(
            style_key("x.to_out.0.weight", KeyStyle::Legacy),
            "x.to_out.0.weight"
        );
        // `to_out.1` (dropout, no weights) is not `proj_attn`.
        assert_eq!(
            style_key("mid_block.attentions.0.to_out.1.x", KeyStyle::Legacy),
            "mid_block.attentions.0.to_out.1.x"
        );
    }

    #[test]
    fn maps_both_ways() {
        let (m, style) = normalize_keys(map(&LEGACY)).unwrap();
        assert_eq!(style, KeyStyle::Legacy);
        assert_eq!(m, map(&MODERN));
        // Values travel with their keys.
        assert_eq!(
            m["down_blocks.1.attentions.0.to_out.0.weight"]
                .to_f32()
                .unwrap(),
            [4.0]
        );
        assert_eq!(to_style(m, KeyStyle::Legacy), map(&LEGACY));

        let (m2, style) = normalize_keys(map(&MODERN)).unwrap();
        assert_eq!(style, KeyStyle::Modern);
        assert_eq!(m2, map(&MODERN));
        assert_eq!(to_style(m2.clone(), KeyStyle::Modern), m2);

        let (_, style) = normalize_keys(map(&["conv_in.weight"])).unwrap();
        assert_eq!(style, KeyStyle::Modern);
    }

    #[test]
    fn mixed_styles_are_refused() {
        let e = normalize_keys(map(&[
            "down_blocks.1.attentions.0.query.weight",
            "mid_block.attentions.0.to_k.weight",
        ]))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("query") && e.contains("to_k") && e.contains("mixes"),
            "{e}"
        );
    }
}

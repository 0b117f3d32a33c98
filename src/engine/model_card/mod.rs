//! What a model folder with DeMe's channel-wise projections carries for people
//! outside this tool: `deme_unet.py`, which loads the folder into diffusers'
//! `UNet2DModel` with the projections applied, and a `README.md` model card
//! that says what the model is and how to load it.
//!
//! diffusers has no place for the projections (`adapter_list.{k}.weight`):
//! `UNet2DModel.from_pretrained` drops them with only a log line and computes
//! a different function. They cannot be folded into the stock model exactly
//! (each feeds a GroupNorm, and the skip copies are unprojected), so the
//! folder says so where a user looks and ships the loader that gets it right.

use crate::engine::checkpoint::{CheckpointMeta, TensorMap};
use crate::engine::merge::structure::is_projection_key;
use crate::engine::model::params::NamedParam;
use crate::engine::model_spec::ModelSpec;
use anyhow::Result;
use std::fmt::Write;

/// File name of the loader module.
pub const LOADER_FILE: &str = "deme_unet.py";
/// File name of the model card.
pub const CARD_FILE: &str = "README.md";
/// The loader module's text (`src/engine/model_card/deme_unet.py`).
pub const LOADER_PY: &str = include_str!("deme_unet.py");
/// First line of every card this tool writes: a card without it is the user's
/// own, never replaced or removed.
pub const CARD_MARKER: &str = "<!-- model card written by deme-studio; rewritten on every save -->";

/// The channel-wise projections of a model's tensors.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Projections {
    /// How many (one per projection site).
    pub count: usize,
    /// Largest `|W - I|` entry over all of them: 0 for identities, which
    /// change nothing.
    pub max_from_identity: f64,
}

impl Projections {
    /// The projections among `tensors`, or `None` when there are none.
    pub fn of(tensors: &TensorMap) -> Result<Option<Self>> {
        let mut found = Self::none();
        for (_, t) in tensors.iter().filter(|(k, _)| is_projection_key(k)) {
            found.add(t.shape.first().copied().unwrap_or(0), &t.to_f32()?);
        }
        Ok(found.some())
    }

    /// The projections among a model's exported parameters.
    pub fn of_params(params: &[NamedParam]) -> Option<Self> {
        let mut found = Self::none();
        for (_, shape, values) in params.iter().filter(|(k, _, _)| is_projection_key(k)) {
            found.add(shape.first().copied().unwrap_or(0), values);
        }
        found.some()
    }

    fn none() -> Self {
        Self {
            count: 0,
            max_from_identity: 0.0,
        }
    }

    fn some(self) -> Option<Self> {
        (self.count > 0).then_some(self)
    }

    /// Counts one `[c, c, 1, 1]` projection and its distance from the identity.
    fn add(&mut self, c: usize, values: &[f32]) {
        self.count += 1;
        for (i, v) in values.iter().enumerate() {
            let eye = if c > 0 && i / c == i % c { 1.0 } else { 0.0 };
            self.max_from_identity = self.max_from_identity.max((*v as f64 - eye).abs());
        }
    }

    /// One paragraph for users: what the projections mean for diffusers.
    pub fn in_words(&self) -> String {
        let effect = if self.max_from_identity == 0.0 {
            "they are all identities, so stock diffusers computes the same function".to_string()
        } else {
            format!(
                "they differ from the identity by up to {:.3} per entry, so stock diffusers \
                 (`UNet2DModel.from_pretrained`, which drops them with only a log line) computes \
                 a different function",
                self.max_from_identity
            )
        };
        format!(
            "{} DeMe channel-wise projections (adapter_list.*): {effect}; load the folder with \
             its {LOADER_FILE} to apply them (see its {CARD_FILE})",
            self.count
        )
    }
}

/// The model card of a folder with `projections`.
pub fn model_card(
    spec: &ModelSpec,
    meta: Option<&CheckpointMeta>,
    projections: &Projections,
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{CARD_MARKER}\n");
    let what = match meta {
        Some(m) => match (m.kind.as_str(), m.timestep_range) {
            ("finetune", Some([lo, hi])) => format!(
                "A DeMe expert: a pretrained UNet finetuned on timesteps [{lo}, {hi}) only, \
                 with channel-wise projections."
            ),
            ("finetune", None) => "A finetuned UNet with channel-wise projections.".to_string(),
            ("merge", _) => "A DeMe merge: the pretrained UNet plus a weighted sum of the \
                             experts' task vectors (the recipe is below)."
                .to_string(),
            (kind, _) => format!("A `{kind}` UNet with channel-wise projections."),
        },
        None => "A UNet with channel-wise projections.".to_string(),
    };
    let _ = writeln!(s, "# DeMe UNet\n\n{what}\n");
    if let ModelSpec::UNet(c) = spec {
        let size = c
            .sample_size
            .map(|v| format!("{v} x {v} px, "))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "- Architecture: diffusers `UNet2DModel`, {size}{} -> {} channels, \
             block_out_channels {:?}, {} layers per block.",
            c.in_channels, c.out_channels, c.block_out_channels, c.layers_per_block
        );
    }
    if let Some(m) = meta {
        match m.kind.as_str() {
            "merge" => {
                let _ = writeln!(s, "- Made by: `merge` (no training).");
            }
            kind => {
                let _ = writeln!(s, "- Made by: `{kind}`, {} optimiser steps.", m.step);
            }
        }
        if let Some(d) = &m.data {
            let _ = writeln!(s, "- Data: {d}.");
        }
        if let Some(p) = &m.parent {
            let _ = writeln!(s, "- Started from: {p}.");
        }
    }
    let _ = writeln!(
        s,
        "- Projections: {} channel-wise 1x1 projections (`adapter_list.*`), up to {:.3} per \
         entry from the identity.\n",
        projections.count, projections.max_from_identity
    );
    let _ = writeln!(
        s,
        "## Loading it in diffusers\n\n\
         The projections are not part of diffusers' `UNet2DModel`. `{LOADER_FILE}` in this \
         folder builds the stock model and applies them where deme-studio does (after each \
         down block on the hidden state it passes on, after the mid block, after each up \
         block), with forward hooks. It needs only torch, diffusers and safetensors:\n\n\
         ```python\nimport sys\nsys.path.insert(0, \"path/to/this/folder\")\nimport deme_unet\n\n\
         unet = deme_unet.load(\"path/to/this/folder\")\neps = unet(x, t).sample\n```\n\n\
         ## Without the loader\n\n\
         `UNet2DModel.from_pretrained(folder)` also loads this folder, but it drops the \
         `adapter_list.*` tensors with only a log line and computes the UNet without them: \
         {}. To get a plain diffusers model on purpose, export it with \
         `deme-studio merge --drop-projections`, which prints the eps difference this makes.\n",
        if projections.max_from_identity == 0.0 {
            "here they are identities, so the result is the same".to_string()
        } else {
            "a different function from the one this card describes".to_string()
        }
    );
    if let Some(m) = meta.filter(|m| !m.train_config.is_null()) {
        let settings = serde_json::to_string_pretty(&m.train_config).unwrap_or_default();
        let _ = writeln!(s, "## Settings (`deme.json`)\n\n```json\n{settings}\n```");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::checkpoint::HostTensor;

    fn eye(c: usize, bump: f32) -> HostTensor {
        let mut v = vec![0.0f32; c * c];
        for i in 0..c {
            v[i * c + i] = 1.0;
        }
        v[1] += bump;
        HostTensor::from_f32(vec![c, c, 1, 1], &v).unwrap()
    }

    #[test]
    fn projections_are_counted_and_measured_from_the_identity() {
        let mut t = TensorMap::new();
        t.insert(
            "conv_in.weight".into(),
            HostTensor::from_f32(vec![2], &[5.0, 5.0]).unwrap(),
        );
        assert_eq!(Projections::of(&t).unwrap(), None);
        t.insert("adapter_list.0.weight".into(), eye(3, 0.0));
        let p = Projections::of(&t).unwrap().unwrap();
        assert_eq!((p.count, p.max_from_identity), (1, 0.0));
        assert!(p.in_words().contains("same function"), "{}", p.in_words());
        t.insert("adapter_list.1.weight".into(), eye(4, -0.25));
        let p = Projections::of(&t).unwrap().unwrap();
        assert_eq!((p.count, p.max_from_identity), (2, 0.25));
        assert!(
            p.in_words().contains("different function"),
            "{}",
            p.in_words()
        );
    }

    #[test]
    fn the_card_names_the_expert_range_and_the_loader() {
        let spec = ModelSpec::from_arg("mnist-tiny").unwrap();
        let mut meta = CheckpointMeta::new("finetune", 150);
        meta.timestep_range = Some([250, 500]);
        let p = Projections {
            count: 7,
            max_from_identity: 0.01,
        };
        let card = model_card(&spec, Some(&meta), &p);
        assert!(card.starts_with(CARD_MARKER));
        for needle in [
            "[250, 500)",
            "deme_unet.load",
            "drops the",
            "7 channel-wise",
        ] {
            assert!(card.contains(needle), "missing {needle:?} in\n{card}");
        }
    }
}

//! `recipe.json`: the description of one merge (inputs with their hashes,
//! method, weights), parsed and checked without loading any model.
//!
//! A recipe may name an `output` sub-folder; it is always taken inside the
//! folder the user chose, and `..` or absolute paths are refused.

use super::block_weights::BlockWeights;
use super::method::{MergeMethod, MergeSpec};
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::path::{Component, Path, PathBuf};

/// File name of the recipe inside an exported merge.
pub const RECIPE_FILE: &str = "recipe.json";
/// The recipe `format_version` this build writes (and the newest it reads).
pub const RECIPE_FORMAT_VERSION: u32 = 1;

/// One input model of a recipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecipeInput {
    /// Model folder or weights file, relative to the recipe file (or absolute).
    pub path: String,
    /// SHA-256 (lowercase hex) of its weights file.
    pub sha256: String,
}

/// `recipe.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recipe {
    /// Layout version ([`RECIPE_FORMAT_VERSION`]).
    pub format_version: u32,
    /// The pretrained model theta.
    pub base: RecipeInput,
    /// The experts theta_i, in weight order.
    pub experts: Vec<RecipeInput>,
    /// Method and settings.
    pub method: MergeMethod,
    /// `w_i`.
    pub weights: Vec<f32>,
    /// Per-block weights (may be empty).
    #[serde(default)]
    pub block_weights: BlockWeights,
    /// Seed of the method's randomness.
    #[serde(default)]
    pub seed: u64,
    /// Sub-folder of the chosen output folder to write into (relative, no `..`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// Whether the channel-wise projections were removed from the result (a
    /// plain diffusers UNet).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub drop_projections: bool,
    /// SHA-256 of the merged weights file this recipe produced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_sha256: Option<String>,
    /// The program that wrote the recipe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_with: Option<String>,
}

impl Recipe {
    /// Parses and checks a recipe.
    pub fn from_json_str(text: &str) -> Result<Self> {
        let r: Self = serde_json::from_str(text).context("not a valid merge recipe")?;
        if r.format_version == 0 || r.format_version > RECIPE_FORMAT_VERSION {
            bail!(
                "recipe format_version {} is not supported (this build reads 1..={RECIPE_FORMAT_VERSION}); a newer deme-studio wrote it?",
                r.format_version
            );
        }
        r.spec().validate(r.experts.len())?;
        if let Some(out) = &r.output {
            safe_relative(out)?;
        }
        Ok(r)
    }

    /// Reads `path`.
    pub fn read(path: &Path) -> Result<Self> {
        let text = crate::input::read_text(path).context("reading the recipe")?;
        Self::from_json_str(&text).with_context(|| format!("in {}", path.display()))
    }

    /// Pretty JSON.
    pub fn to_json_string_pretty(&self) -> Result<String> {
        Ok(serde_json::to_string_pretty(self)?)
    }

    /// The merge setting.
    pub fn spec(&self) -> MergeSpec {
        MergeSpec {
            method: self.method,
            weights: self.weights.clone(),
            block_weights: self.block_weights.clone(),
            seed: self.seed,
        }
    }

    /// Where the merge goes: `chosen`, or `chosen/output` when the recipe names
    /// a sub-folder. Never outside `chosen`.
    pub fn output_dir(&self, chosen: &Path) -> Result<PathBuf> {
        match &self.output {
            None => Ok(chosen.to_path_buf()),
            Some(out) => Ok(chosen.join(safe_relative(out)?)),
        }
    }
}

/// Checks that a recipe's `output` stays inside the chosen folder: relative,
/// with no `..`, root or drive component.
pub fn safe_relative(path: &str) -> Result<PathBuf> {
    let p = Path::new(path);
    let mut clean = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(part) => clean.push(part),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => bail!(
                "the recipe's output path {path:?} leaves the chosen output folder: \
                 only a relative path without `..` is allowed"
            ),
        }
    }
    if path.contains('\\') && path.split('\\').any(|s| s == "..") {
        bail!("the recipe's output path {path:?} leaves the chosen output folder");
    }
    Ok(clean)
}

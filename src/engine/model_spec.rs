//! What a model is: its architecture as `config.json` describes it
//! ([`ModelSpec`]) and a built model of either architecture ([`AnyModel`]).

use crate::engine::checkpoint::UNet2DConfig;
use crate::engine::model::params::NamedParam;
use crate::engine::model::{EpsModel, ToyMlp, ToyMlpConfig, UNet2DModel, export_params};
use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::tensor::{Device, Tensor};
use std::path::Path;

/// The architecture of a model: what `config.json` describes.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelSpec {
    /// diffusers `UNet2DModel`.
    UNet(UNet2DConfig),
    /// The 2D point MLP.
    Mlp(ToyMlpConfig),
}

impl ModelSpec {
    /// A preset name (`mnist-tiny`, `mnist-small`, `ddpm-cifar10-32`, `toy-mlp`) or a path to a `config.json`.
    pub fn from_arg(arg: &str) -> Result<Self> {
        if arg == "toy-mlp" {
            return Ok(Self::Mlp(ToyMlpConfig::default()));
        }
        if let Some(c) = crate::engine::checkpoint::preset(arg) {
            return Ok(Self::UNet(c));
        }
        let path = Path::new(arg);
        if path.exists() {
            let text = deme_formats::input::read_text(path)?;
            return Self::from_config_json(&text).with_context(|| format!("in {}", path.display()));
        }
        bail!(
            "`{arg}` is neither a model preset ({}, toy-mlp) nor an existing config.json",
            crate::engine::checkpoint::PRESET_NAMES.join(", ")
        )
    }

    /// Parses a `config.json`, dispatching on `_class_name` (UNet2DModel when absent).
    pub fn from_config_json(text: &str) -> Result<Self> {
        let value: serde_json::Value =
            serde_json::from_str(text).context("config.json is not valid JSON")?;
        match value.get("_class_name").and_then(|v| v.as_str()) {
            Some("ToyMlp") => Ok(Self::Mlp(
                serde_json::from_value(value).context("bad ToyMlp config")?,
            )),
            Some("UNet2DModel") | None => {
                let c = UNet2DConfig::from_json_str(text)?;
                c.validate()?;
                Ok(Self::UNet(c))
            }
            Some(other) => bail!("model class `{other}` is not supported (expected UNet2DModel)"),
        }
    }

    /// The `config.json` text.
    pub fn to_config_json(&self) -> Result<String> {
        Ok(match self {
            Self::UNet(c) => c.to_json_string_pretty()?,
            Self::Mlp(c) => serde_json::to_string_pretty(c)?,
        })
    }

    /// Shape of one data item `[c, h, w]` (points: `[dim, 1, 1]`).
    pub fn item_shape(&self) -> [usize; 3] {
        match self {
            // a config without sample_size runs at the DDPM family's 32 px
            Self::UNet(c) => {
                let s = c.sample_size.unwrap_or(32);
                [c.in_channels, s, s]
            }
            Self::Mlp(c) => [c.dim, 1, 1],
        }
    }

    /// A randomly initialised model of this architecture.
    pub fn build(&self, seed: u64, device: &Device) -> Result<AnyModel> {
        Ok(match self {
            Self::UNet(c) => AnyModel::UNet(UNet2DModel::new(c, seed, device)?),
            Self::Mlp(c) => AnyModel::Mlp(ToyMlp::new(c, seed, device)),
        })
    }
}

/// A model of either architecture.
#[derive(Debug, Clone)]
pub enum AnyModel {
    /// An image UNet.
    UNet(UNet2DModel),
    /// A point MLP.
    Mlp(ToyMlp),
}

impl AnyModel {
    /// Noise prediction.
    pub fn eps(&self, x: Tensor<4>, t: &[f32]) -> Tensor<4> {
        match self {
            Self::UNet(m) => m.eps(x, t),
            Self::Mlp(m) => m.eps(x, t),
        }
    }

    /// Every float parameter on the host.
    pub fn export(&self) -> Vec<NamedParam> {
        match self {
            Self::UNet(m) => export_params(m),
            Self::Mlp(m) => export_params(m),
        }
    }

    /// Number of parameter values.
    pub fn num_params(&self) -> usize {
        match self {
            Self::UNet(m) => m.num_params(),
            Self::Mlp(m) => m.num_params(),
        }
    }
}

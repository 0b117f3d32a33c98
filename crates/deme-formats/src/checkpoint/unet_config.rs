//! `config.json` of a diffusers `UNet2DModel`, with diffusers' defaults.
//!
//! Missing keys take the defaults of `UNet2DModel.__init__`, unknown keys
//! and the `_diffusers_version` bookkeeping key are ignored, and a config
//! for a different model class (`_class_name` other than `UNet2DModel`) is
//! refused. Written configs carry `_class_name: "UNet2DModel"` and sorted
//! keys, like diffusers' own. [`UNet2DConfig::validate`] says what the
//! engine cannot build.

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The diffusers class this config describes.
pub const CLASS_NAME: &str = "UNet2DModel";

/// Down block types the engine builds.
pub const SUPPORTED_DOWN_BLOCKS: [&str; 2] = ["DownBlock2D", "AttnDownBlock2D"];
/// Up block types the engine builds.
pub const SUPPORTED_UP_BLOCKS: [&str; 2] = ["UpBlock2D", "AttnUpBlock2D"];
/// The only mid block type the engine builds.
pub const SUPPORTED_MID_BLOCK: &str = "UNetMidBlock2D";

/// Built-in presets, by name (see [`preset`]).
/// The preset used for image data when none is given.
pub const DEFAULT_IMAGE_PRESET: &str = "mnist-tiny";

/// Names accepted by [`preset`].
pub const PRESET_NAMES: [&str; 3] = ["ddpm-cifar10-32", "mnist-small", "mnist-tiny"];

/// A diffusers `UNet2DModel` config (`config.json`). Field names and
/// meanings are diffusers'; `Default` is `UNet2DModel.__init__`'s defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct UNet2DConfig {
    /// Input height = width in pixels (`None` if unspecified). A square
    /// `[h, w]` pair is accepted on read and written back as one number.
    #[serde(deserialize_with = "de_sample_size")]
    pub sample_size: Option<usize>,
    /// Image channels in.
    pub in_channels: usize,
    /// Image channels out.
    pub out_channels: usize,
    /// Whether the input is mapped with `2x - 1` first.
    pub center_input_sample: bool,
    /// Timestep embedding kind (only `"positional"` is supported).
    pub time_embedding_type: String,
    /// Time embedding width; `None` means `4 * block_out_channels[0]`.
    /// Written only when set: diffusers before 0.31 reports the key as an
    /// unexpected attribute.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_embedding_dim: Option<usize>,
    /// Sinusoidal embedding frequency shift (`downscale_freq_shift`).
    pub freq_shift: i64,
    /// Whether the sinusoidal embedding is ordered cos, sin.
    pub flip_sin_to_cos: bool,
    /// Down block class names, from the highest resolution down.
    pub down_block_types: Vec<String>,
    /// Mid block class name (`None`: no mid block). Written only when it is
    /// not the default `UNetMidBlock2D`: diffusers before 0.31 reports the key
    /// as an unexpected attribute, and later versions default to it.
    #[serde(skip_serializing_if = "is_default_mid_block")]
    pub mid_block_type: Option<String>,
    /// Up block class names, from the lowest resolution up.
    pub up_block_types: Vec<String>,
    /// Channels of each resolution level.
    pub block_out_channels: Vec<usize>,
    /// Resnet layers per down block (up blocks have one more).
    pub layers_per_block: usize,
    /// Output scale of the mid block resnets.
    pub mid_block_scale_factor: f64,
    /// Padding of the stride-2 downsampling conv.
    pub downsample_padding: usize,
    /// Downsampler kind (`"conv"` or diffusers' `"resnet"`).
    pub downsample_type: String,
    /// Upsampler kind (`"conv"` or diffusers' `"resnet"`).
    pub upsample_type: String,
    /// Resnet dropout probability.
    pub dropout: f64,
    /// Activation (only `"silu"` is supported).
    pub act_fn: String,
    /// Attention head width; `None` (JSON null) means one head as wide as
    /// the block's channels.
    pub attention_head_dim: Option<usize>,
    /// GroupNorm groups.
    pub norm_num_groups: usize,
    /// GroupNorm groups of the mid-block attention (`None`: `norm_num_groups`).
    pub attn_norm_num_groups: Option<usize>,
    /// GroupNorm epsilon.
    pub norm_eps: f64,
    /// How the time embedding enters resnets (only `"default"`).
    pub resnet_time_scale_shift: String,
    /// Whether the mid block has attention.
    pub add_attention: bool,
    /// Class embedding kind (unsupported; must be `None`).
    pub class_embed_type: Option<String>,
    /// Number of classes (unsupported; must be `None`).
    pub num_class_embeds: Option<usize>,
    /// Training timesteps (used by learned time embeddings only).
    pub num_train_timesteps: Option<usize>,
}

fn is_default_mid_block(mid: &Option<String>) -> bool {
    mid.as_deref() == Some(SUPPORTED_MID_BLOCK)
}

impl Default for UNet2DConfig {
    fn default() -> Self {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        UNet2DConfig {
            sample_size: None,
            in_channels: 3,
            out_channels: 3,
            center_input_sample: false,
            time_embedding_type: "positional".into(),
            time_embedding_dim: None,
            freq_shift: 0,
            flip_sin_to_cos: true,
            down_block_types: s(&[
                "DownBlock2D",
                "AttnDownBlock2D",
                "AttnDownBlock2D",
                "AttnDownBlock2D",
            ]),
            mid_block_type: Some(SUPPORTED_MID_BLOCK.into()),
            up_block_types: s(&[
                "AttnUpBlock2D",
                "AttnUpBlock2D",
                "AttnUpBlock2D",
                "UpBlock2D",
            ]),
            block_out_channels: vec![224, 448, 672, 896],
            layers_per_block: 2,
            mid_block_scale_factor: 1.0,
            downsample_padding: 1,
            downsample_type: "conv".into(),
            upsample_type: "conv".into(),
            dropout: 0.0,
            act_fn: "silu".into(),
            attention_head_dim: Some(8),
            norm_num_groups: 32,
            attn_norm_num_groups: None,
            norm_eps: 1e-5,
            resnet_time_scale_shift: "default".into(),
            add_attention: true,
            class_embed_type: None,
            num_class_embeds: None,
            num_train_timesteps: None,
        }
    }
}

/// `sample_size` as a number, null, or a square `[h, w]` pair.
fn de_sample_size<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        One(usize),
        Two([usize; 2]),
    }
    match Option::<Size>::deserialize(d)? {
        None => Ok(None),
        Some(Size::One(n)) => Ok(Some(n)),
        Some(Size::Two([h, w])) if h == w => Ok(Some(h)),
        Some(Size::Two([h, w])) => Err(serde::de::Error::custom(format!(
            "non-square sample_size [{h}, {w}] is not supported"
        ))),
    }
}

/// Built-in config by name (one of [`PRESET_NAMES`]).
///
/// - `ddpm-cifar10-32`: exactly `google/ddpm-cifar10-32`'s config.
/// - `mnist-small`: a small 1-channel 32x32 model, three levels
///   `[32, 64, 64]`, attention at the middle level, one layer per block,
///   otherwise like the CIFAR-10 preset.
/// - `mnist-tiny` (the default for MNIST): 1-channel 28x28 (MNIST's own size,
///   no padding), three levels `[16, 32, 64]` with 8 norm groups, attention
///   only at the 7x7 level and in the mid block; 0.69M parameters, about
///   4x cheaper per image than `mnist-small`, so a 2-core CPU trains it to
///   digits in minutes.
pub fn preset(name: &str) -> Option<UNet2DConfig> {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let cifar = UNet2DConfig {
        sample_size: Some(32),
        in_channels: 3,
        out_channels: 3,
        block_out_channels: vec![128, 256, 256, 256],
        down_block_types: s(&[
            "DownBlock2D",
            "AttnDownBlock2D",
            "DownBlock2D",
            "DownBlock2D",
        ]),
        up_block_types: s(&["UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"]),
        layers_per_block: 2,
        attention_head_dim: None,
        norm_eps: 1e-6,
        norm_num_groups: 32,
        flip_sin_to_cos: false,
        freq_shift: 1,
        downsample_padding: 0,
        dropout: 0.0,
        mid_block_scale_factor: 1.0,
        ..UNet2DConfig::default()
    };
    match name {
        "ddpm-cifar10-32" => Some(cifar),
        "mnist-small" => Some(UNet2DConfig {
            sample_size: Some(32),
            in_channels: 1,
            out_channels: 1,
            block_out_channels: vec![32, 64, 64],
            down_block_types: s(&["DownBlock2D", "AttnDownBlock2D", "DownBlock2D"]),
            up_block_types: s(&["UpBlock2D", "AttnUpBlock2D", "UpBlock2D"]),
            layers_per_block: 1,
            ..cifar.clone()
        }),
        "mnist-tiny" => Some(UNet2DConfig {
            sample_size: Some(28),
            in_channels: 1,
            out_channels: 1,
            block_out_channels: vec![16, 32, 64],
            down_block_types: s(&["DownBlock2D", "DownBlock2D", "AttnDownBlock2D"]),
            up_block_types: s(&["AttnUpBlock2D", "UpBlock2D", "UpBlock2D"]),
            layers_per_block: 1,
            norm_num_groups: 8,
            ..cifar
        }),
        _ => None,
    }
}

/// Largest model a config may describe, in parameters (4 GB of f32 weights,
/// 28 times `ddpm-cifar10-32`): a larger one is refused before anything is
/// allocated for it.
pub const MAX_MODEL_PARAMS: u64 = 1_000_000_000;
/// Most resolution levels (entries of `block_out_channels`) a config may declare.
pub const MAX_LEVELS: usize = 8;
/// Most ResNet layers per block a config may declare.
pub const MAX_LAYERS_PER_BLOCK: usize = 32;
/// Largest image side (`sample_size`) a config may declare.
pub const MAX_SAMPLE_SIZE: usize = 1024;

impl UNet2DConfig {
    /// Parses `config.json` text. Errors name the offending field.
    pub fn from_json_str(text: &str) -> Result<Self> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| anyhow!("invalid JSON: {e}"))?;
        let serde_json::Value::Object(map) = &value else {
            bail!("a UNet2DModel config must be a JSON object");
        };
        if let Some(class) = map.get("_class_name")
            && class.as_str() != Some(CLASS_NAME)
        {
            bail!("the config is for a {class} model, but only {CLASS_NAME} is supported");
        }
        match serde_json::from_value::<Self>(value.clone()) {
            Ok(config) => Ok(config),
            Err(err) => {
                // Find the field at fault by parsing each one on its own.
                for (key, v) in map {
                    let single =
                        serde_json::Value::Object([(key.clone(), v.clone())].into_iter().collect());
                    if let Err(e) = serde_json::from_value::<Self>(single) {
                        bail!("bad field `{key}`: {e}");
                    }
                }
                bail!("{err}")
            }
        }
    }

    /// Serialises as diffusers writes it: pretty, sorted keys, with
    /// `_class_name`, and a trailing newline.
    pub fn to_json_string_pretty(&self) -> Result<String> {
        let value = serde_json::to_value(self).context("config serialisation failed")?;
        let serde_json::Value::Object(map) = value else {
            bail!("config serialisation failed: not an object");
        };
        let mut sorted: BTreeMap<String, serde_json::Value> = map.into_iter().collect();
        sorted.insert("_class_name".into(), CLASS_NAME.into());
        let mut text =
            serde_json::to_string_pretty(&sorted).context("config serialisation failed")?;
        text.push('\n');
        Ok(text)
    }

    /// Number of resolution levels (`block_out_channels.len()`).
    pub fn levels(&self) -> usize {
        self.block_out_channels.len()
    }

    /// Width of the time embedding (`time_embedding_dim` or `4 * ch0`).
    pub fn time_embed_dim(&self) -> usize {
        self.time_embedding_dim
            .unwrap_or(4usize.saturating_mul(self.block_out_channels.first().copied().unwrap_or(0)))
    }

    /// Number of parameters of the model this config describes (diffusers'
    /// `UNet2DModel` layout, without channel-wise projections), computed with
    /// checked arithmetic: `None` when it overflows. Meaningful for a config
    /// whose block lists agree ([`validate`](Self::validate) checks that).
    pub fn num_params(&self) -> Option<u64> {
        fn add(acc: Option<u64>, x: Option<u64>) -> Option<u64> {
            acc?.checked_add(x?)
        }
        let mul = |a: usize, b: usize| (a as u64).checked_mul(b as u64);
        let mul3 = |a: usize, b: usize, c: usize| mul(a, b)?.checked_mul(c as u64);
        let conv3 = |cin: usize, cout: usize| add(mul3(cin, cout, 9), Some(cout as u64));
        let linear = |cin: usize, cout: usize| add(mul(cin, cout), Some(cout as u64));
        let norm = |c: usize| mul(c, 2);
        let temb = self.time_embed_dim();
        let resnet = |cin: usize, cout: usize| {
            let mut n = add(norm(cin), conv3(cin, cout));
            n = add(n, linear(temb, cout));
            n = add(n, norm(cout));
            n = add(n, conv3(cout, cout));
            if cin != cout {
                n = add(n, linear(cin, cout));
            }
            n
        };
        let attention = |c: usize| add(norm(c), linear(c, c)?.checked_mul(4));
        let chans = &self.block_out_channels;
        let (&c0, &last) = (chans.first()?, chans.last()?);
        let levels = chans.len();
        let mut n = conv3(self.in_channels, c0);
        n = add(n, linear(c0, temb));
        n = add(n, linear(temb, temb));
        let mut prev = c0;
        for (i, (&c, kind)) in chans.iter().zip(&self.down_block_types).enumerate() {
            for j in 0..self.layers_per_block {
                n = add(n, resnet(if j == 0 { prev } else { c }, c));
                if kind == "AttnDownBlock2D" {
                    n = add(n, attention(c));
                }
            }
            if i + 1 < levels {
                n = add(n, conv3(c, c));
            }
            prev = c;
        }
        n = add(n, resnet(last, last));
        if self.add_attention {
            n = add(n, attention(last));
        }
        n = add(n, resnet(last, last));
        let rev: Vec<usize> = chans.iter().rev().copied().collect();
        let mut prev_out = rev[0];
        for (i, (&c, kind)) in rev.iter().zip(&self.up_block_types).enumerate() {
            let input = rev[(i + 1).min(levels - 1)];
            for j in 0..=self.layers_per_block {
                let skip = if j == self.layers_per_block { input } else { c };
                let rin = if j == 0 { prev_out } else { c };
                n = add(n, resnet(rin.checked_add(skip)?, c));
                if kind == "AttnUpBlock2D" {
                    n = add(n, attention(c));
                }
            }
            if i + 1 < levels {
                n = add(n, conv3(c, c));
            }
            prev_out = c;
        }
        n = add(n, norm(c0));
        add(n, conv3(c0, self.out_channels))
    }

    /// Checks that the engine can build this model. The error lists every
    /// problem found.
    pub fn validate(&self) -> Result<()> {
        // sizes that bound every later walk over the config, checked first
        let lists = [
            self.block_out_channels.len(),
            self.down_block_types.len(),
            self.up_block_types.len(),
        ];
        if lists.iter().any(|&l| l > MAX_LEVELS) {
            bail!(
                "unsupported UNet2DModel config: {} resolution levels (block lists of {lists:?}); \
                 at most {MAX_LEVELS} are supported",
                lists.iter().max().copied().unwrap_or(0)
            );
        }
        if self.layers_per_block > MAX_LAYERS_PER_BLOCK {
            bail!(
                "unsupported UNet2DModel config: layers_per_block {} is more than {MAX_LAYERS_PER_BLOCK}",
                self.layers_per_block
            );
        }
        if let Some(size) = self.sample_size
            && size > MAX_SAMPLE_SIZE
        {
            bail!(
                "unsupported UNet2DModel config: sample_size {size} is more than {MAX_SAMPLE_SIZE} pixels"
            );
        }
        let mut problems: Vec<String> = Vec::new();
        let mut p = |s: String| problems.push(s);
        let n = self.levels();

        if n == 0 {
            p("block_out_channels is empty".into());
        }
        if self.down_block_types.len() != n || self.up_block_types.len() != n {
            p(format!(
                "block lists differ in length: block_out_channels has {n}, down_block_types {}, up_block_types {}",
                self.down_block_types.len(),
                self.up_block_types.len()
            ));
        }
        for t in &self.down_block_types {
            if !SUPPORTED_DOWN_BLOCKS.contains(&t.as_str()) {
                p(format!(
                    "down block type {t:?} is not supported (supported: {SUPPORTED_DOWN_BLOCKS:?})"
                ));
            }
        }
        for t in &self.up_block_types {
            if !SUPPORTED_UP_BLOCKS.contains(&t.as_str()) {
                p(format!(
                    "up block type {t:?} is not supported (supported: {SUPPORTED_UP_BLOCKS:?})"
                ));
            }
        }
        if self.mid_block_type.as_deref() != Some(SUPPORTED_MID_BLOCK) {
            p(format!(
                "mid_block_type {:?} is not supported (only {SUPPORTED_MID_BLOCK:?})",
                self.mid_block_type
            ));
        }
        if self.time_embedding_type != "positional" {
            p(format!(
                "time_embedding_type {:?} is not supported (only \"positional\")",
                self.time_embedding_type
            ));
        }
        if let (Some(d), Some(&c0)) = (self.time_embedding_dim, self.block_out_channels.first())
            && d != 4usize.saturating_mul(c0)
        {
            p(format!(
                "time_embedding_dim {d} is not supported (only the default 4 * block_out_channels[0] = {})",
                4usize.saturating_mul(c0)
            ));
        }
        if self.resnet_time_scale_shift != "default" {
            p(format!(
                "resnet_time_scale_shift {:?} is not supported (only \"default\")",
                self.resnet_time_scale_shift
            ));
        }
        if self.class_embed_type.is_some() || self.num_class_embeds.is_some() {
            p("class embeddings (class_embed_type / num_class_embeds) are not supported".into());
        }
        if self.act_fn != "silu" {
            p(format!(
                "act_fn {:?} is not supported (only \"silu\")",
                self.act_fn
            ));
        }
        if self.downsample_type != "conv" {
            p(format!(
                "downsample_type {:?} is not supported (only \"conv\")",
                self.downsample_type
            ));
        }
        if self.upsample_type != "conv" {
            p(format!(
                "upsample_type {:?} is not supported (only \"conv\")",
                self.upsample_type
            ));
        }
        if self.in_channels == 0 || self.out_channels == 0 {
            p("in_channels and out_channels must be at least 1".into());
        } else if self.in_channels != self.out_channels {
            // the output is the predicted noise, of the input's shape
            p(format!(
                "out_channels {} differs from in_channels {}: a noise-prediction model outputs as many channels as it takes in",
                self.out_channels, self.in_channels
            ));
        }
        if self.layers_per_block == 0 {
            p("layers_per_block must be at least 1".into());
        }
        if self.downsample_padding > 1 {
            p(format!(
                "downsample_padding {} is not supported (0 or 1)",
                self.downsample_padding
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            p(format!("dropout {} must be in [0, 1)", self.dropout));
        }
        if !(self.norm_eps > 0.0 && self.norm_eps.is_finite()) {
            p(format!("norm_eps {} must be positive", self.norm_eps));
        }
        if !self.mid_block_scale_factor.is_finite() || self.mid_block_scale_factor <= 0.0 {
            p(format!(
                "mid_block_scale_factor {} must be positive",
                self.mid_block_scale_factor
            ));
        }

        for (what, groups) in [
            ("norm_num_groups", Some(self.norm_num_groups)),
            ("attn_norm_num_groups", self.attn_norm_num_groups),
        ] {
            let Some(g) = groups else { continue };
            if g == 0 {
                p(format!("{what} must be at least 1"));
                continue;
            }
            for &c in &self.block_out_channels {
                if c == 0 || c % g != 0 {
                    p(format!(
                        "block channels {c} are not divisible by {what} {g}"
                    ));
                }
            }
        }

        // Channels that go through attention: attention down blocks, the
        // attention up blocks (which run at reversed channel order), the mid block.
        if let Some(d) = self.attention_head_dim {
            let rev: Vec<usize> = self.block_out_channels.iter().rev().copied().collect();
            let mut attn: Vec<usize> = Vec::new();
            for (t, &c) in self.down_block_types.iter().zip(&self.block_out_channels) {
                if t == "AttnDownBlock2D" {
                    attn.push(c);
                }
            }
            for (t, &c) in self.up_block_types.iter().zip(&rev) {
                if t == "AttnUpBlock2D" {
                    attn.push(c);
                }
            }
            if self.add_attention
                && let Some(&c) = self.block_out_channels.last()
            {
                attn.push(c);
            }
            for c in attn {
                if d == 0 || c % d != 0 {
                    p(format!(
                        "attention channels {c} are not divisible by attention_head_dim {d}"
                    ));
                }
            }
        }

        if let (Some(size), true) = (self.sample_size, n > 0) {
            match u32::try_from(n - 1)
                .ok()
                .and_then(|k| 1usize.checked_shl(k))
            {
                Some(f) if size > 0 && size % f == 0 => {}
                Some(f) => p(format!(
                    "sample_size {size} is not divisible by 2^{} = {f} ({n} levels halve it {} times)",
                    n - 1,
                    n - 1
                )),
                None => p(format!("{n} resolution levels are too many")),
            }
        }

        if problems.is_empty() {
            match self.num_params() {
                Some(n) if n <= MAX_MODEL_PARAMS => {}
                Some(n) => problems.push(format!(
                    "the model would have {n} parameters, more than the {MAX_MODEL_PARAMS} this build accepts"
                )),
                None => problems.push("the model's parameter count overflows".into()),
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            bail!("unsupported UNet2DModel config: {}", problems.join("; "))
        }
    }
}

/// Reads and parses a `config.json`; errors name the file and the field.
pub fn load_config(path: impl AsRef<Path>) -> Result<UNet2DConfig> {
    let path = path.as_ref();
    let text = crate::input::read_text(path)?;
    UNet2DConfig::from_json_str(&text).map_err(|e| anyhow!("{}: {e:#}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CIFAR_JSON: &str = r#"{"_class_name":"UNet2DModel","_diffusers_version":"0.0.4","act_fn":"silu","attention_head_dim":null,"block_out_channels":[128,256,256,256],"center_input_sample":false,"down_block_types":["DownBlock2D","AttnDownBlock2D","DownBlock2D","DownBlock2D"],"downsample_padding":0,"flip_sin_to_cos":false,"freq_shift":1,"in_channels":3,"layers_per_block":2,"mid_block_scale_factor":1,"norm_eps":1e-06,"norm_num_groups":32,"out_channels":3,"sample_size":32,"time_embedding_type":"positional","up_block_types":["UpBlock2D","UpBlock2D","AttnUpBlock2D","UpBlock2D"]}"#;

    #[test]
    fn real_cifar_config_equals_preset() {
        let c = UNet2DConfig::from_json_str(CIFAR_JSON).unwrap();
        assert_eq!(c, preset("ddpm-cifar10-32").unwrap());
        assert_eq!(c.attention_head_dim, None);
        assert_eq!(c.norm_eps, 1e-6);
        assert_eq!(c.time_embed_dim(), 512);
        c.validate().unwrap();
    }

    #[test]
    fn presets_exist_and_validate() {
        for name in PRESET_NAMES {
            preset(name).unwrap().validate().unwrap();
        }
        let m = preset("mnist-small").unwrap();
        assert_eq!(
            (m.in_channels, m.out_channels, m.layers_per_block),
            (1, 1, 1)
        );
        assert_eq!(m.block_out_channels, [32, 64, 64]);
        assert_eq!(m.freq_shift, 1);
        assert!(!m.flip_sin_to_cos);
        assert!(preset("nope").is_none());
    }

    #[test]
    fn defaults_are_diffusers_defaults() {
        let c = UNet2DConfig::from_json_str("{}").unwrap();
        assert_eq!(c, UNet2DConfig::default());
        assert_eq!(c.block_out_channels, [224, 448, 672, 896]);
        assert_eq!(c.attention_head_dim, Some(8));
        assert_eq!(c.norm_eps, 1e-5);
        assert!(c.flip_sin_to_cos);
        assert_eq!(c.freq_shift, 0);
        assert_eq!(c.downsample_padding, 1);
        assert_eq!(c.sample_size, None);
        assert_eq!(c.mid_block_type.as_deref(), Some("UNetMidBlock2D"));
        c.validate().unwrap();
    }

    #[test]
    fn json_round_trip_keeps_nulls_and_class_name() {
        for name in PRESET_NAMES {
            let c = preset(name).unwrap();
            let text = c.to_json_string_pretty().unwrap();
            assert!(text.contains("\"_class_name\": \"UNet2DModel\""), "{text}");
            assert!(text.contains("\"attention_head_dim\": null"), "{text}");
            assert_eq!(UNet2DConfig::from_json_str(&text).unwrap(), c);
        }
    }

    /// What we write loads in diffusers 0.30 without "unexpected attribute"
    /// notes: every key is one of its `UNet2DModel.__init__` arguments (or
    /// bookkeeping), and the two later keys appear only when not default.
    #[test]
    fn written_keys_are_ones_diffusers_0_30_knows() {
        const DIFFUSERS_0_30: [&str; 26] = [
            "sample_size",
            "in_channels",
            "out_channels",
            "center_input_sample",
            "time_embedding_type",
            "freq_shift",
            "flip_sin_to_cos",
            "down_block_types",
            "up_block_types",
            "block_out_channels",
            "layers_per_block",
            "mid_block_scale_factor",
            "downsample_padding",
            "downsample_type",
            "upsample_type",
            "dropout",
            "act_fn",
            "attention_head_dim",
            "norm_num_groups",
            "attn_norm_num_groups",
            "norm_eps",
            "resnet_time_scale_shift",
            "add_attention",
            "class_embed_type",
            "num_class_embeds",
            "num_train_timesteps",
        ];
        for name in PRESET_NAMES {
            let text = preset(name).unwrap().to_json_string_pretty().unwrap();
            let value: serde_json::Value = serde_json::from_str(&text).unwrap();
            for key in value.as_object().unwrap().keys() {
                assert!(
                    key == "_class_name" || DIFFUSERS_0_30.contains(&key.as_str()),
                    "{name}: `{key}` is not a diffusers 0.30 argument"
                );
            }
        }
        let mut c = preset("mnist-tiny").unwrap();
        c.time_embedding_dim = Some(128);
        c.mid_block_type = None;
        let text = c.to_json_string_pretty().unwrap();
        assert!(text.contains("\"time_embedding_dim\": 128"), "{text}");
        assert!(text.contains("\"mid_block_type\": null"), "{text}");
        assert_eq!(UNet2DConfig::from_json_str(&text).unwrap(), c);
    }

    #[test]
    fn unknown_keys_ignored_other_classes_refused() {
        let c = UNet2DConfig::from_json_str(
            r#"{"in_channels":1,"some_future_key":[1,2],"_name_or_path":"x"}"#,
        )
        .unwrap();
        assert_eq!(c.in_channels, 1);
        let e =
            UNet2DConfig::from_json_str(r#"{"_class_name":"UNet2DConditionModel"}"#).unwrap_err();
        assert!(e.to_string().contains("UNet2DConditionModel"), "{e}");
        assert!(UNet2DConfig::from_json_str("[1]").is_err());
        assert!(UNet2DConfig::from_json_str("{").is_err());
    }

    #[test]
    fn sample_size_forms() {
        let c = UNet2DConfig::from_json_str(r#"{"sample_size":[64,64]}"#).unwrap();
        assert_eq!(c.sample_size, Some(64));
        let c = UNet2DConfig::from_json_str(r#"{"sample_size":null}"#).unwrap();
        assert_eq!(c.sample_size, None);
        let e = UNet2DConfig::from_json_str(r#"{"sample_size":[32,64]}"#).unwrap_err();
        assert!(e.to_string().contains("sample_size"), "{e}");
    }

    #[test]
    fn bad_field_is_named_with_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.json");
        std::fs::write(
            &p,
            r#"{"in_channels":3,"layers_per_block":"two","norm_eps":1e-6}"#,
        )
        .unwrap();
        let msg = format!("{:#}", load_config(&p).unwrap_err());
        assert!(
            msg.contains("config.json") && msg.contains("layers_per_block"),
            "{msg}"
        );
        std::fs::write(&p, "{ oops").unwrap();
        let msg = format!("{:#}", load_config(&p).unwrap_err());
        assert!(msg.contains("config.json") && msg.contains("JSON"), "{msg}");
        let msg = format!(
            "{:#}",
            load_config(dir.path().join("none.json")).unwrap_err()
        );
        assert!(msg.contains("none.json"), "{msg}");
        std::fs::write(&p, CIFAR_JSON).unwrap();
        assert_eq!(load_config(&p).unwrap(), preset("ddpm-cifar10-32").unwrap());
    }

    #[test]
    fn a_config_declaring_a_huge_model_is_refused_before_building() {
        let mut c = preset("mnist-tiny").unwrap();
        c.block_out_channels = vec![1 << 16, 1 << 16, 1 << 16];
        c.norm_num_groups = 8;
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("parameters, more than"), "{err}");
        c.block_out_channels = vec![usize::MAX / 64 * 64; 3];
        let err = c.validate().unwrap_err().to_string();
        assert!(
            err.contains("overflows") || err.contains("more than"),
            "{err}"
        );
        assert_eq!(
            preset("ddpm-cifar10-32").unwrap().num_params(),
            Some(35_746_307)
        );
    }

    fn invalid(edit: impl FnOnce(&mut UNet2DConfig), needle: &str) {
        let mut c = preset("ddpm-cifar10-32").unwrap();
        edit(&mut c);
        let msg = c.validate().unwrap_err().to_string();
        assert!(msg.contains(needle), "expected {needle:?} in {msg:?}");
    }

    #[test]
    fn validate_rejects_unsupported() {
        invalid(
            |c| c.down_block_types[0] = "CrossAttnDownBlock2D".into(),
            "CrossAttnDownBlock2D",
        );
        invalid(
            |c| c.up_block_types[3] = "SkipUpBlock2D".into(),
            "SkipUpBlock2D",
        );
        invalid(|c| c.time_embedding_type = "fourier".into(), "fourier");
        invalid(
            |c| c.resnet_time_scale_shift = "scale_shift".into(),
            "scale_shift",
        );
        invalid(
            |c| c.class_embed_type = Some("timestep".into()),
            "class embeddings",
        );
        invalid(|c| c.num_class_embeds = Some(10), "class embeddings");
        invalid(|c| c.act_fn = "gelu".into(), "gelu");
        invalid(
            |c| c.block_out_channels[1] = 250,
            "not divisible by norm_num_groups",
        );
        invalid(
            |c| c.attn_norm_num_groups = Some(48),
            "attn_norm_num_groups",
        );
        invalid(
            |c| {
                c.up_block_types.pop();
            },
            "differ in length",
        );
        invalid(|c| c.block_out_channels.push(256), "differ in length");
        invalid(|c| c.sample_size = Some(36), "not divisible by 2^3");
        invalid(
            |c| c.sample_size = Some(4096),
            "sample_size 4096 is more than 1024",
        );
        invalid(|c| c.layers_per_block = 1 << 40, "layers_per_block");
        invalid(
            |c| c.block_out_channels = vec![32; 1_000_000],
            "1000000 resolution levels",
        );
        invalid(|c| c.attention_head_dim = Some(48), "attention_head_dim");
        invalid(|c| c.mid_block_type = None, "mid_block_type");
        invalid(|c| c.downsample_type = "resnet".into(), "downsample_type");
        invalid(|c| c.time_embedding_dim = Some(100), "time_embedding_dim");
        invalid(|c| c.norm_num_groups = 0, "norm_num_groups must be");
        invalid(
            |c| c.out_channels = 6,
            "out_channels 6 differs from in_channels 3",
        );
        invalid(
            |c| {
                c.block_out_channels.clear();
                c.down_block_types.clear();
                c.up_block_types.clear();
            },
            "empty",
        );
        // Several problems are all reported.
        invalid(
            |c| {
                c.act_fn = "relu".into();
                c.sample_size = Some(30);
            },
            "relu",
        );
        let mut ok = preset("ddpm-cifar10-32").unwrap();
        ok.attention_head_dim = Some(64);
        ok.sample_size = Some(64);
        ok.validate().unwrap();
    }
}

//! diffusers `UNet2DModel` (DDPM family), built from its `config.json`.

use super::blocks::{BlockCommon, BlockSpec, DownBlock, MidBlock, UpBlock};
use super::embedding::{TimestepEmbedding, timestep_features};
use super::layers::{Conv2d, GroupNorm, Init};
use super::projection::Projection;
use crate::engine::checkpoint::UNet2DConfig;
use anyhow::Result;
use burn::module::Module;
use burn::tensor::{Device, Tensor};

/// The noise predictor `eps_theta(x_t, t)`. Field names are the diffusers keys.
#[derive(Module, Debug)]
pub struct UNet2DModel {
    /// 3x3, in_channels -> block_out_channels[0].
    pub conv_in: Conv2d,
    /// Sinusoid features -> time embedding.
    pub time_embedding: TimestepEmbedding,
    /// Encoder blocks.
    pub down_blocks: Vec<DownBlock>,
    /// Bottleneck (absent when `mid_block_type` is null).
    pub mid_block: Option<MidBlock>,
    /// Decoder blocks.
    pub up_blocks: Vec<UpBlock>,
    /// Final GroupNorm.
    pub conv_norm_out: GroupNorm,
    /// 3x3, block_out_channels[0] -> out_channels.
    pub conv_out: Conv2d,
    /// DeMe channel-wise projections (empty unless enabled): one after each down
    /// block, the mid block and each up block, on the main path.
    pub adapter_list: Vec<Projection>,
    time_dim: usize,
    flip_sin_to_cos: bool,
    freq_shift: f32,
    center_input_sample: bool,
}

impl UNet2DModel {
    /// Builds a randomly initialised model (PyTorch default init, seeded on the host).
    pub fn new(config: &UNet2DConfig, seed: u64, device: &Device) -> Result<Self> {
        config.validate()?;
        let mut init = Init::new(seed);
        let init = &mut init;
        let ch = &config.block_out_channels;
        let levels = ch.len();
        let temb = config.time_embedding_dim.unwrap_or(ch[0] * 4);
        let common = BlockCommon {
            temb,
            groups: config.norm_num_groups,
            eps: config.norm_eps,
        };
        let conv_in = Conv2d::new(config.in_channels, ch[0], 3, 1, 1, init, device);
        let time_embedding = TimestepEmbedding::new(ch[0], temb, init, device);

        let mut down_blocks = Vec::with_capacity(levels);
        let mut out = ch[0];
        for (i, kind) in config.down_block_types.iter().enumerate() {
            let cin = out;
            out = ch[i];
            let spec = BlockSpec {
                layers: config.layers_per_block,
                cin,
                cout: out,
                prev_out: 0,
                attention_head_dim: kind
                    .starts_with("Attn")
                    .then(|| config.attention_head_dim.unwrap_or(out)),
                resample: i + 1 < levels,
                downsample_padding: config.downsample_padding,
            };
            down_blocks.push(DownBlock::new(spec, common, init, device));
        }

        let last = ch[levels - 1];
        let attn_groups = config
            .attn_norm_num_groups
            .unwrap_or(config.norm_num_groups);
        let has_mid = config.mid_block_type.is_some();
        let mid_block = has_mid.then(|| {
            MidBlock::new(
                last,
                config.attention_head_dim.unwrap_or(last),
                attn_groups,
                config.add_attention,
                config.mid_block_scale_factor,
                common,
                init,
                device,
            )
        });

        let rev: Vec<usize> = ch.iter().rev().copied().collect();
        let mut up_blocks = Vec::with_capacity(levels);
        let mut out = rev[0];
        for (i, kind) in config.up_block_types.iter().enumerate() {
            let prev_out = out;
            out = rev[i];
            let spec = BlockSpec {
                layers: config.layers_per_block + 1,
                cin: rev[(i + 1).min(levels - 1)],
                cout: out,
                prev_out,
                attention_head_dim: kind
                    .starts_with("Attn")
                    .then(|| config.attention_head_dim.unwrap_or(out)),
                resample: i + 1 < levels,
                downsample_padding: 0,
            };
            up_blocks.push(UpBlock::new(spec, common, init, device));
        }

        Ok(Self {
            conv_in,
            time_embedding,
            down_blocks,
            mid_block,
            up_blocks,
            conv_norm_out: GroupNorm::new(config.norm_num_groups, ch[0], config.norm_eps, device),
            conv_out: Conv2d::new(ch[0], config.out_channels, 3, 1, 1, init, device),
            adapter_list: Vec::new(),
            time_dim: ch[0],
            flip_sin_to_cos: config.flip_sin_to_cos,
            freq_shift: config.freq_shift as f32,
            center_input_sample: config.center_input_sample,
        })
    }

    /// Channel widths at each projection site: after each down block, the mid block, each up block.
    pub fn projection_channels(config: &UNet2DConfig) -> Vec<usize> {
        let ch = &config.block_out_channels;
        let mut sites: Vec<usize> = ch.clone();
        if config.mid_block_type.is_some() {
            sites.push(ch[ch.len() - 1]);
        }
        sites.extend(ch.iter().rev());
        sites
    }

    /// Adds identity-initialised channel-wise projections (DeMe), replacing any present.
    pub fn with_projections(mut self, config: &UNet2DConfig, device: &Device) -> Self {
        self.adapter_list = Self::projection_channels(config)
            .into_iter()
            .map(|c| Projection::identity(c, device))
            .collect();
        self
    }

    /// Predicts the noise.
    ///
    /// # Shapes
    /// `x: [n, in_channels, h, w]`, `t: n timesteps -> [n, out_channels, h, w]`
    pub fn forward(&self, x: Tensor<4>, t: &[f32]) -> Tensor<4> {
        let device = x.device();
        let x = if self.center_input_sample {
            x * 2.0 - 1.0
        } else {
            x
        };
        let features = timestep_features(
            t,
            self.time_dim,
            self.flip_sin_to_cos,
            self.freq_shift,
            &device,
        );
        let temb = self.time_embedding.forward(features);
        let mut adapters = self.adapter_list.iter();
        let mut project = |h: Tensor<4>| match adapters.next() {
            Some(p) => p.forward(h),
            None => h,
        };

        let mut h = self.conv_in.forward(x);
        let mut skips = vec![h.clone()];
        for block in &self.down_blocks {
            h = project(block.forward(h, &temb, &mut skips));
        }
        if let Some(mid) = &self.mid_block {
            h = project(mid.forward(h, &temb));
        }
        for block in &self.up_blocks {
            h = project(block.forward(h, &temb, &mut skips));
        }
        self.conv_out.forward(self.conv_norm_out.forward_silu(h))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::checkpoint::preset;
    use crate::engine::model::param_shapes;

    #[test]
    fn cifar_preset_has_the_reference_size_and_keys() {
        let config = preset("ddpm-cifar10-32").unwrap();
        let model = UNet2DModel::new(&config, 0, &Device::flex()).unwrap();
        let shapes = param_shapes(&model);
        let total: usize = shapes
            .iter()
            .map(|(_, s)| s.iter().product::<usize>())
            .sum();
        // google/ddpm-cifar10-32 as counted by diffusers
        assert_eq!(total, 35_746_307);
        let keys: Vec<&str> = shapes.iter().map(|(k, _)| k.as_str()).collect();
        for k in [
            "conv_in.weight",
            "time_embedding.linear_1.weight",
            "down_blocks.0.resnets.0.conv1.weight",
            "down_blocks.0.downsamplers.0.conv.weight",
            "down_blocks.1.attentions.0.to_q.weight",
            "down_blocks.1.attentions.1.to_out.0.bias",
            "down_blocks.1.resnets.0.conv_shortcut.weight",
            "mid_block.attentions.0.group_norm.weight",
            "mid_block.resnets.1.time_emb_proj.weight",
            "up_blocks.2.attentions.2.to_v.weight",
            "up_blocks.0.upsamplers.0.conv.weight",
            "conv_norm_out.bias",
            "conv_out.weight",
        ] {
            assert!(keys.contains(&k), "missing {k}");
        }
        assert!(!keys.iter().any(|k| k.starts_with("up_blocks.3.upsamplers")));
    }

    #[test]
    fn config_parameter_count_matches_the_built_model() {
        for name in crate::engine::checkpoint::PRESET_NAMES {
            let config = preset(name).unwrap();
            let model = UNet2DModel::new(&config, 0, &Device::flex()).unwrap();
            assert_eq!(
                config.num_params(),
                Some(model.num_params() as u64),
                "{name}"
            );
        }
        // a legacy-style variant: attention everywhere, 3 layers per block
        let mut config = preset("mnist-tiny").unwrap();
        config.layers_per_block = 3;
        config.down_block_types = vec!["AttnDownBlock2D".into(); 3];
        config.up_block_types = vec!["AttnUpBlock2D".into(); 3];
        config.in_channels = 3;
        config.out_channels = 3;
        let model = UNet2DModel::new(&config, 0, &Device::flex()).unwrap();
        assert_eq!(config.num_params(), Some(model.num_params() as u64));
    }

    #[test]
    fn mnist_tiny_runs_at_28_pixels() {
        let config = preset("mnist-tiny").unwrap();
        let d = Device::flex();
        let model = UNet2DModel::new(&config, 0, &d).unwrap();
        assert_eq!(model.num_params(), 686_769);
        let x = Tensor::<4>::random(
            [2, 1, 28, 28],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &d,
        );
        let y = model.forward(x, &[0.0, 999.0]);
        assert_eq!(y.dims(), [2, 1, 28, 28]);
        let v = y.into_data().try_into_vec::<f32>().unwrap();
        assert!(v.iter().all(|x| x.is_finite()));
    }

    #[test]
    fn identity_projections_leave_the_output_unchanged() {
        let mut config = preset("mnist-small").unwrap();
        config.block_out_channels = vec![32, 32, 32];
        let d = Device::flex();
        let plain = UNet2DModel::new(&config, 3, &d).unwrap();
        let projected = plain.clone().with_projections(&config, &d);
        assert_eq!(projected.adapter_list.len(), 2 * 3 + 1);
        let x = Tensor::<4>::random(
            [2, 1, 32, 32],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &d,
        );
        let a = plain
            .forward(x.clone(), &[3.0, 700.0])
            .into_data()
            .try_into_vec::<f32>()
            .unwrap();
        let b = projected
            .forward(x, &[3.0, 700.0])
            .into_data()
            .try_into_vec::<f32>()
            .unwrap();
        let diff = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(
            diff < 1e-5,
            "identity projection changed the output by {diff}"
        );
    }
}

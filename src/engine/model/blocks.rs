//! The UNet's down, mid and up blocks (diffusers `DownBlock2D`/`AttnDownBlock2D`,
//! `UNetMidBlock2D`, `UpBlock2D`/`AttnUpBlock2D`) and their resamplers.
//!
//! A plain block is an attention block with no attentions: the parameter keys are
//! the same, so one struct serves both.

use super::attention::Attention;
use super::layers::{Conv2d, Init};
use super::resnet::{ResnetBlock2D, ResnetSpec};
use crate::engine::kernels;
use burn::module::Module;
use burn::tensor::{Device, Tensor};

/// Settings shared by every block of one UNet.
#[derive(Debug, Clone, Copy)]
pub struct BlockCommon {
    /// Time embedding width.
    pub temb: usize,
    /// GroupNorm groups for resnets and block attentions.
    pub groups: usize,
    /// GroupNorm epsilon.
    pub eps: f64,
}

impl BlockCommon {
    fn resnet(&self, cin: usize, cout: usize, output_scale_factor: f64) -> ResnetSpec {
        ResnetSpec {
            cin,
            cout,
            temb: self.temb,
            groups: self.groups,
            eps: self.eps,
            output_scale_factor,
        }
    }
}

/// diffusers `Downsample2D(use_conv=True)`: a stride-2 3x3 conv; with `padding = 0`
/// the input is first padded by one pixel on the right and bottom.
#[derive(Module, Debug)]
pub struct Downsample2D {
    /// The stride-2 conv.
    pub conv: Conv2d,
}

impl Downsample2D {
    fn new(channels: usize, padding: usize, init: &mut Init, device: &Device) -> Self {
        let conv = Conv2d::new(channels, channels, 3, 2, padding, init, device);
        // padding 0: F.pad(x, (0, 1, 0, 1)) then conv with no padding
        let conv = if padding == 0 {
            conv.with_padding([0, 1, 0, 1])
        } else {
            conv
        };
        Self { conv }
    }
}

/// diffusers `Upsample2D(use_conv=True)`: nearest x2 then a 3x3 conv.
#[derive(Module, Debug)]
pub struct Upsample2D {
    /// The 3x3 conv after upsampling.
    pub conv: Conv2d,
}

/// Nearest-neighbour upsampling by two.
///
/// # Shapes
/// `[n, c, h, w] -> [n, c, 2h, 2w]`
pub fn upsample_nearest2x(x: Tensor<4>) -> Tensor<4> {
    if kernels::takes(&x) {
        return kernels::upsample_nearest2x(x);
    }
    let [n, c, h, w] = x.dims();
    x.reshape([n, c, h, 1, w, 1])
        .expand([n, c, h, 2, w, 2])
        .reshape([n, c, 2 * h, 2 * w])
}

/// A down block: resnets (each optionally followed by attention) then an optional downsampler.
#[derive(Module, Debug)]
pub struct DownBlock {
    /// `layers_per_block` resnets.
    pub resnets: Vec<ResnetBlock2D>,
    /// Empty for `DownBlock2D`, one per resnet for `AttnDownBlock2D`.
    pub attentions: Vec<Attention>,
    /// One downsampler unless this is the last block.
    pub downsamplers: Vec<Downsample2D>,
}

/// Shape-level settings of one down or up block.
#[derive(Debug, Clone, Copy)]
pub struct BlockSpec {
    /// Number of resnets.
    pub layers: usize,
    /// Input channels (for up blocks: the skip width of the last resnet).
    pub cin: usize,
    /// Output channels.
    pub cout: usize,
    /// Channels coming from the previous up block (up blocks only).
    pub prev_out: usize,
    /// Attention head dim when the block has attention.
    pub attention_head_dim: Option<usize>,
    /// Whether to resample at the end.
    pub resample: bool,
    /// `downsample_padding` (down blocks only).
    pub downsample_padding: usize,
}

impl DownBlock {
    /// Builds the block.
    pub fn new(s: BlockSpec, common: BlockCommon, init: &mut Init, device: &Device) -> Self {
        let mut resnets = Vec::new();
        let mut attentions = Vec::new();
        for i in 0..s.layers {
            let cin = if i == 0 { s.cin } else { s.cout };
            resnets.push(ResnetBlock2D::new(
                common.resnet(cin, s.cout, 1.0),
                init,
                device,
            ));
            if let Some(hd) = s.attention_head_dim {
                attentions.push(Attention::new(
                    s.cout,
                    hd,
                    common.groups,
                    common.eps,
                    1.0,
                    init,
                    device,
                ));
            }
        }
        let downsamplers = if s.resample {
            vec![Downsample2D::new(
                s.cout,
                s.downsample_padding,
                init,
                device,
            )]
        } else {
            vec![]
        };
        Self {
            resnets,
            attentions,
            downsamplers,
        }
    }

    /// Returns the output and the skip tensors it produced, in order.
    pub fn forward(
        &self,
        mut x: Tensor<4>,
        temb: &Tensor<2>,
        skips: &mut Vec<Tensor<4>>,
    ) -> Tensor<4> {
        for (i, resnet) in self.resnets.iter().enumerate() {
            x = resnet.forward(x, temb.clone());
            if let Some(attn) = self.attentions.get(i) {
                x = attn.forward(x);
            }
            skips.push(x.clone());
        }
        for down in &self.downsamplers {
            x = down.conv.forward(x);
            skips.push(x.clone());
        }
        x
    }
}

/// An up block: resnets over the concatenation with skips, optional attention, optional upsampler.
#[derive(Module, Debug)]
pub struct UpBlock {
    /// `layers_per_block + 1` resnets.
    pub resnets: Vec<ResnetBlock2D>,
    /// Empty for `UpBlock2D`, one per resnet for `AttnUpBlock2D`.
    pub attentions: Vec<Attention>,
    /// One upsampler unless this is the last block.
    pub upsamplers: Vec<Upsample2D>,
}

impl UpBlock {
    /// Builds the block (channel bookkeeping as in diffusers `UpBlock2D`).
    pub fn new(s: BlockSpec, common: BlockCommon, init: &mut Init, device: &Device) -> Self {
        let mut resnets = Vec::new();
        let mut attentions = Vec::new();
        for i in 0..s.layers {
            let skip = if i == s.layers - 1 { s.cin } else { s.cout };
            let cin = if i == 0 { s.prev_out } else { s.cout };
            resnets.push(ResnetBlock2D::new(
                common.resnet(cin + skip, s.cout, 1.0),
                init,
                device,
            ));
            if let Some(hd) = s.attention_head_dim {
                attentions.push(Attention::new(
                    s.cout,
                    hd,
                    common.groups,
                    common.eps,
                    1.0,
                    init,
                    device,
                ));
            }
        }
        let upsamplers = if s.resample {
            vec![Upsample2D {
                conv: Conv2d::new(s.cout, s.cout, 3, 1, 1, init, device),
            }]
        } else {
            vec![]
        };
        Self {
            resnets,
            attentions,
            upsamplers,
        }
    }

    /// Consumes skips from the end of `skips` (last in, first out).
    pub fn forward(
        &self,
        mut x: Tensor<4>,
        temb: &Tensor<2>,
        skips: &mut Vec<Tensor<4>>,
    ) -> Tensor<4> {
        for (i, resnet) in self.resnets.iter().enumerate() {
            let skip = skips.pop().expect("skip count is fixed by construction");
            let joined = if kernels::takes(&x) && kernels::takes(&skip) {
                kernels::cat_channels(x, skip)
            } else {
                Tensor::cat(vec![x, skip], 1)
            };
            x = resnet.forward(joined, temb.clone());
            if let Some(attn) = self.attentions.get(i) {
                x = attn.forward(x);
            }
        }
        for up in &self.upsamplers {
            x = up.conv.forward(upsample_nearest2x(x));
        }
        x
    }
}

/// diffusers `UNetMidBlock2D`: resnet, (attention, resnet) once.
#[derive(Module, Debug)]
pub struct MidBlock {
    /// Two resnets.
    pub resnets: Vec<ResnetBlock2D>,
    /// One attention between them (none when `add_attention` is false).
    pub attentions: Vec<Attention>,
}

impl MidBlock {
    /// Builds the block.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        channels: usize,
        head_dim: usize,
        attn_groups: usize,
        add_attention: bool,
        scale: f64,
        common: BlockCommon,
        init: &mut Init,
        device: &Device,
    ) -> Self {
        let first = ResnetBlock2D::new(common.resnet(channels, channels, scale), init, device);
        let attentions = if add_attention {
            vec![Attention::new(
                channels,
                head_dim,
                attn_groups,
                common.eps,
                scale,
                init,
                device,
            )]
        } else {
            vec![]
        };
        let second = ResnetBlock2D::new(common.resnet(channels, channels, scale), init, device);
        Self {
            resnets: vec![first, second],
            attentions,
        }
    }

    /// # Shapes
    /// `[n, c, h, w] -> [n, c, h, w]`
    pub fn forward(&self, x: Tensor<4>, temb: &Tensor<2>) -> Tensor<4> {
        let mut x = self.resnets[0].forward(x, temb.clone());
        if let Some(attn) = self.attentions.first() {
            x = attn.forward(x);
        }
        self.resnets[1].forward(x, temb.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    #[test]
    fn nearest_upsampling_repeats_each_pixel() {
        let x = Tensor::<4>::from_data(
            TensorData::new(vec![1f32, 2., 3., 4.], [1, 1, 2, 2]),
            &Device::flex(),
        );
        let y = upsample_nearest2x(x)
            .into_data()
            .try_into_vec::<f32>()
            .unwrap();
        assert_eq!(
            y,
            vec![
                1., 1., 2., 2., 1., 1., 2., 2., 3., 3., 4., 4., 3., 3., 4., 4.
            ]
        );
    }
}

//! Analytic cost of one `UNet2DModel` forward pass per image, from its config.
//!
//! Counted: convolutions (`2 * cin * cout * k * k` per output pixel), linear
//! layers (`2 * din * dout` per row: the time embedding, each resnet's
//! `time_emb_proj`, and the attention q/k/v/out projections over the `h * w`
//! pixels) and the two attention matmuls (`q k^T` and `softmax(.) v`, each
//! `2 * (h w)^2 * c` summed over heads). Not counted: bias adds, GroupNorm,
//! SiLU, softmax, residual adds, upsampling copies and the sinusoidal
//! features, all linear in the activations and a few percent at most.
//! Forward + backward is taken as 3x the forward (the backward pass computes
//! one product for the input gradient and one for the weight gradient per
//! product of the forward), the usual convention. On the three presets the
//! forward count equals what PyTorch's `torch.utils.flop_counter.FlopCounterMode`
//! reports for diffusers' `UNet2DModel` (146,884,608 for `mnist-tiny`,
//! 563,412,992 for `mnist-small`, 12,443,713,536 for `ddpm-cifar10-32`).
//!
//! The walk mirrors `UNet2DModel::new` and the blocks' `forward` (the same
//! channel and skip bookkeeping), and counts parameters on the way, which the
//! tests compare with the built models.

use crate::engine::checkpoint::UNet2DConfig;

/// Cost of one forward pass of one image.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ForwardCost {
    /// Floating-point operations (a multiply-add counts 2).
    pub flops: u64,
    /// Parameter values of the layers walked (norms included).
    pub params: u64,
}

impl ForwardCost {
    /// Forward + backward FLOPs per image (3x the forward).
    pub fn fwd_bwd_flops(&self) -> u64 {
        3 * self.flops
    }
}

/// Running totals of the walk.
#[derive(Default)]
struct Counter {
    flops: u64,
    params: u64,
}

impl Counter {
    /// A `k x k` conv producing `out_pixels` pixels, with bias.
    fn conv(&mut self, cin: usize, cout: usize, k: usize, out_pixels: usize) {
        self.flops += 2 * (cin * cout * k * k * out_pixels) as u64;
        self.params += (cin * cout * k * k + cout) as u64;
    }

    /// A linear layer applied to `rows` rows, with bias.
    fn linear(&mut self, din: usize, dout: usize, rows: usize) {
        self.flops += 2 * (din * dout * rows) as u64;
        self.params += (din * dout + dout) as u64;
    }

    /// A GroupNorm over `c` channels (weight and bias; FLOPs not counted).
    fn norm(&mut self, c: usize) {
        self.params += 2 * c as u64;
    }

    /// `ResnetBlock2D` at `pixels` pixels.
    fn resnet(&mut self, cin: usize, cout: usize, temb: usize, pixels: usize) {
        self.norm(cin);
        self.conv(cin, cout, 3, pixels);
        self.linear(temb, cout, 1);
        self.norm(cout);
        self.conv(cout, cout, 3, pixels);
        if cin != cout {
            self.conv(cin, cout, 1, pixels);
        }
    }

    /// Spatial self-attention over `pixels` positions of width `c` (any head split).
    fn attention(&mut self, c: usize, pixels: usize) {
        self.norm(c);
        for _ in 0..4 {
            self.linear(c, c, pixels); // to_q, to_k, to_v, to_out.0
        }
        // q k^T: [hw, hd] x [hd, hw] per head; softmax(.) v: [hw, hw] x [hw, hd] per head
        self.flops += 2 * 2 * (pixels * pixels * c) as u64;
    }
}

/// Side of the output of the stride-2 3x3 downsampling conv: diffusers pads
/// (0, 1, 0, 1) when `downsample_padding` is 0, else `padding` on each side.
fn downsampled(side: usize, padding: usize) -> usize {
    let pad_total = if padding == 0 { 1 } else { 2 * padding };
    (side + pad_total - 3) / 2 + 1
}

/// Forward cost per image of the model `config` describes, at its
/// `sample_size` (32 when unset, as the engine runs it).
pub fn unet_forward_cost(config: &UNet2DConfig) -> ForwardCost {
    let mut n = Counter::default();
    let ch = &config.block_out_channels;
    let levels = ch.len();
    if levels == 0 {
        return ForwardCost::default();
    }
    let temb = config.time_embedding_dim.unwrap_or(4 * ch[0]);
    let attn = |kind: &String| kind.starts_with("Attn");

    // side of the feature maps at each level, from the input down
    let mut sides = vec![config.sample_size.unwrap_or(32)];
    for _ in 1..levels {
        let last = sides[sides.len() - 1];
        sides.push(downsampled(last, config.downsample_padding));
    }
    let px = |level: usize| sides[level] * sides[level];

    n.linear(ch[0], temb, 1); // time_embedding.linear_1
    n.linear(temb, temb, 1); // time_embedding.linear_2
    n.conv(config.in_channels, ch[0], 3, px(0)); // conv_in

    let mut out = ch[0];
    for (i, kind) in config.down_block_types.iter().enumerate().take(levels) {
        let cin = out;
        out = ch[i];
        for l in 0..config.layers_per_block {
            n.resnet(if l == 0 { cin } else { out }, out, temb, px(i));
            if attn(kind) {
                n.attention(out, px(i));
            }
        }
        if i + 1 < levels {
            n.conv(out, out, 3, px(i + 1)); // downsamplers.0.conv
        }
    }

    let last = ch[levels - 1];
    if config.mid_block_type.is_some() {
        n.resnet(last, last, temb, px(levels - 1));
        if config.add_attention {
            n.attention(last, px(levels - 1));
        }
        n.resnet(last, last, temb, px(levels - 1));
    }

    let rev: Vec<usize> = ch.iter().rev().copied().collect();
    let mut out = rev[0];
    let layers = config.layers_per_block + 1;
    for (i, kind) in config.up_block_types.iter().enumerate().take(levels) {
        let prev_out = out;
        out = rev[i];
        let skip_last = rev[(i + 1).min(levels - 1)];
        let level = levels - 1 - i;
        for l in 0..layers {
            let skip = if l == layers - 1 { skip_last } else { out };
            let cin = if l == 0 { prev_out } else { out };
            n.resnet(cin + skip, out, temb, px(level));
            if attn(kind) {
                n.attention(out, px(level));
            }
        }
        if i + 1 < levels {
            let up_side = 2 * sides[level];
            n.conv(out, out, 3, up_side * up_side); // upsamplers.0.conv after nearest x2
        }
    }

    n.norm(ch[0]); // conv_norm_out
    n.conv(ch[0], config.out_channels, 3, px(0)); // conv_out
    ForwardCost {
        flops: n.flops,
        params: n.params,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::checkpoint::preset;
    use crate::engine::model::{UNet2DModel, param_count};
    use burn::tensor::Device;

    /// Two levels `[4, 8]` at 8x8, attention in the second down block, the
    /// first up block and the mid block; time embedding 16 wide.
    fn tiny() -> UNet2DConfig {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        UNet2DConfig {
            sample_size: Some(8),
            in_channels: 1,
            out_channels: 1,
            block_out_channels: vec![4, 8],
            down_block_types: s(&["DownBlock2D", "AttnDownBlock2D"]),
            up_block_types: s(&["AttnUpBlock2D", "UpBlock2D"]),
            layers_per_block: 1,
            norm_num_groups: 4,
            ..preset("ddpm-cifar10-32").unwrap()
        }
    }

    #[test]
    fn hand_counted_tiny_config() {
        // conv: 2 cin cout k^2 pixels; linear: 2 din dout rows;
        // attention at c channels, p pixels: 4 * 2 p c^2 + 2 * 2 p^2 c
        let attn8 = 4 * 2 * 16 * 8 * 8 + 2 * 2 * 16 * 16 * 8; // 8 ch at 4x4 = 16384
        let time = 2 * 4 * 16 + 2 * 16 * 16; // 640
        let conv_in = 2 * 4 * 9 * 64; // 1 -> 4 channels: 4608
        // down 0 (8x8): resnet 4->4, then the stride-2 conv to 4x4
        let down0 = (2 * 4 * 4 * 9 * 64 + 2 * 16 * 4 + 2 * 4 * 4 * 9 * 64) + 2 * 4 * 4 * 9 * 16;
        // down 1 (4x4): resnet 4->8 with a 1x1 shortcut, attention
        let down1 = (2 * 4 * 8 * 9 * 16 + 2 * 16 * 8 + 2 * 8 * 8 * 9 * 16 + 2 * 4 * 8 * 16) + attn8;
        // mid (4x4): resnet 8->8, attention, resnet 8->8
        let res88 = 2 * 8 * 8 * 9 * 16 + 2 * 16 * 8 + 2 * 8 * 8 * 9 * 16;
        let mid = 2 * res88 + attn8;
        // up 0 (4x4): resnets (8 + skip 8)->8 and (8 + skip 4)->8, each with
        // attention, then nearest x2 and a 3x3 conv at 8x8
        let up0 = (2 * 16 * 8 * 9 * 16 + 2 * 16 * 8 + 2 * 8 * 8 * 9 * 16 + 2 * 16 * 8 * 16)
            + attn8
            + (2 * 12 * 8 * 9 * 16 + 2 * 16 * 8 + 2 * 8 * 8 * 9 * 16 + 2 * 12 * 8 * 16)
            + attn8
            + 2 * 8 * 8 * 9 * 64;
        // up 1 (8x8): resnets (8 + skip 4)->4 and (4 + skip 4)->4
        let up1 = (2 * 12 * 4 * 9 * 64 + 2 * 16 * 4 + 2 * 4 * 4 * 9 * 64 + 2 * 12 * 4 * 64)
            + (2 * 8 * 4 * 9 * 64 + 2 * 16 * 4 + 2 * 4 * 4 * 9 * 64 + 2 * 8 * 4 * 64);
        let conv_out = 2 * 4 * 9 * 64; // 4 -> 1 channel
        let want = time + conv_in + down0 + down1 + mid + up0 + up1 + conv_out;
        assert_eq!(want, 542_464);
        let cost = unet_forward_cost(&tiny());
        assert_eq!(cost.flops, want as u64);
        assert_eq!(cost.fwd_bwd_flops(), 3 * want as u64);
    }

    #[test]
    fn walk_covers_every_parameter_of_the_built_models() {
        let device = Device::flex();
        for config in [
            tiny(),
            preset("mnist-tiny").unwrap(),
            preset("mnist-small").unwrap(),
        ] {
            let model = UNet2DModel::new(&config, 0, &device).unwrap();
            assert_eq!(
                unet_forward_cost(&config).params,
                param_count(&model) as u64,
                "{:?}",
                config.block_out_channels
            );
        }
        // google/ddpm-cifar10-32 as counted by diffusers
        let cifar = unet_forward_cost(&preset("ddpm-cifar10-32").unwrap());
        assert_eq!(cifar.params, 35_746_307);
        // torch.utils.flop_counter.FlopCounterMode on diffusers' UNet2DModel, batch 1
        assert_eq!(cifar.flops, 12_443_713_536);
        let tiny = unet_forward_cost(&preset("mnist-tiny").unwrap());
        assert_eq!(tiny.flops, 146_884_608);
        let small = unet_forward_cost(&preset("mnist-small").unwrap());
        assert_eq!(small.flops, 563_412_992);
    }

    #[test]
    fn downsampling_follows_diffusers_padding() {
        assert_eq!(downsampled(28, 0), 14);
        assert_eq!(downsampled(7, 0), 3);
        assert_eq!(downsampled(32, 0), 16);
        assert_eq!(downsampled(32, 1), 16);
        assert_eq!(downsampled(7, 1), 4);
    }
}

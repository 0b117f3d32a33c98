//! diffusers `ResnetBlock2D` (time_embedding_norm "default", no up/down sampling).

use super::layers::{Conv2d, GroupNorm, Init, Linear};
use burn::module::Module;
use burn::tensor::activation::silu;
use burn::tensor::{Device, Tensor};

/// Two 3x3 convs with a time-embedding bias between them and a residual path.
#[derive(Module, Debug)]
pub struct ResnetBlock2D {
    /// GroupNorm on the input.
    pub norm1: GroupNorm,
    /// 3x3, in -> out.
    pub conv1: Conv2d,
    /// temb -> out channels.
    pub time_emb_proj: Linear,
    /// GroupNorm after the time bias.
    pub norm2: GroupNorm,
    /// 3x3, out -> out.
    pub conv2: Conv2d,
    /// 1x1 conv on the residual when in != out.
    pub conv_shortcut: Option<Conv2d>,
    output_scale_factor: f64,
}

/// Shape-level settings of one resnet block.
#[derive(Debug, Clone, Copy)]
pub struct ResnetSpec {
    /// Input channels.
    pub cin: usize,
    /// Output channels.
    pub cout: usize,
    /// Time embedding width.
    pub temb: usize,
    /// GroupNorm groups.
    pub groups: usize,
    /// GroupNorm epsilon.
    pub eps: f64,
    /// The sum is divided by this (diffusers `output_scale_factor`).
    pub output_scale_factor: f64,
}

impl ResnetBlock2D {
    /// Builds the block with PyTorch default initialisation.
    pub fn new(s: ResnetSpec, init: &mut Init, device: &Device) -> Self {
        Self {
            norm1: GroupNorm::new(s.groups, s.cin, s.eps, device),
            conv1: Conv2d::new(s.cin, s.cout, 3, 1, 1, init, device),
            time_emb_proj: Linear::new(s.temb, s.cout, init, device),
            norm2: GroupNorm::new(s.groups, s.cout, s.eps, device),
            conv2: Conv2d::new(s.cout, s.cout, 3, 1, 1, init, device),
            conv_shortcut: (s.cin != s.cout)
                .then(|| Conv2d::new(s.cin, s.cout, 1, 1, 0, init, device)),
            output_scale_factor: s.output_scale_factor,
        }
    }

    /// # Shapes
    /// `x: [n, cin, h, w]`, `temb: [n, temb] -> [n, cout, h, w]`
    pub fn forward(&self, x: Tensor<4>, temb: Tensor<2>) -> Tensor<4> {
        let t = self.time_emb_proj.forward(silu(temb));
        let h = self
            .conv1
            .forward_shifted(self.norm1.forward_silu(x.clone()), t);
        let skip = match &self.conv_shortcut {
            Some(conv) => conv.forward(x),
            None => x,
        };
        let out = self.conv2.forward_plus(self.norm2.forward_silu(h), skip);
        if self.output_scale_factor == 1.0 {
            out
        } else {
            out / self.output_scale_factor
        }
    }
}

//! DeMe's channel-wise projection: a bias-free C x C 1x1 conv, identity-initialised,
//! stored as `adapter_list.{k}.weight` with shape `[C, C, 1, 1]`.

use burn::module::{Module, Param};
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Tensor, TensorData};

/// A 1x1 channel mixing with no bias.
#[derive(Module, Debug)]
pub struct Projection {
    /// `[C, C, 1, 1]`
    pub weight: Param<Tensor<4>>,
}

impl Projection {
    /// The identity map on `channels` channels.
    pub fn identity(channels: usize, device: &Device) -> Self {
        let mut eye = vec![0f32; channels * channels];
        for i in 0..channels {
            eye[i * channels + i] = 1.0;
        }
        Self {
            weight: Param::from_tensor(Tensor::from_data(
                TensorData::new(eye, [channels, channels, 1, 1]),
                device,
            )),
        }
    }

    /// # Shapes
    /// `[n, c, h, w] -> [n, c, h, w]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        conv2d(
            x,
            self.weight.val(),
            None,
            ConvOptions::new([1, 1], [0, 0], [1, 1], 1),
        )
    }
}

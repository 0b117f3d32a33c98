//! DeMe's channel-wise projection: a bias-free C x C 1x1 conv, identity-initialised,
//! stored as `adapter_list.{k}.weight` with shape `[C, C, 1, 1]`.

use crate::engine::kernels;
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
        if kernels::takes(&x) {
            // the engine's convolution with a constant zero bias (no parameter, so
            // nothing is trained or stored for it)
            let bias = Tensor::<1>::zeros([self.weight.dims()[0]], &x.device());
            return kernels::conv2d(x, self.weight.val(), bias, 1, [0; 4]);
        }
        self.composite(x)
    }

    /// The same map through burn's own `conv2d` (every backend).
    pub fn composite(&self, x: Tensor<4>) -> Tensor<4> {
        conv2d(
            x,
            self.weight.val(),
            None,
            ConvOptions::new([1, 1], [0, 0], [1, 1], 1),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    /// The engine's convolution gives burn's output and gradients for the projection.
    #[test]
    fn the_engine_path_matches_burns_conv2d() {
        let d = Device::flex().autodiff();
        let mut p = Projection::identity(6, &d);
        let near_identity = (p.weight.val()
            + Tensor::random([6, 6, 1, 1], Distribution::Normal(0.0, 0.2), &d))
        .into_data();
        p.weight = Param::from_tensor(Tensor::from_data(near_identity, &d));
        let x =
            Tensor::<4>::random([3, 6, 5, 4], Distribution::Normal(0.0, 1.0), &d).require_grad();
        let probe = Tensor::<4>::random([3, 6, 5, 4], Distribution::Normal(0.0, 1.0), &d);
        let ours = p.forward(x.clone());
        let reference = p.composite(x.clone());
        let diff = |a: Tensor<4>, b: Tensor<4>| (a - b).abs().max().into_scalar::<f32>();
        assert!(diff(ours.clone(), reference.clone()) < 1e-5);
        let g_ours = (ours * probe.clone()).sum().backward();
        let g_ref = (reference * probe).sum().backward();
        assert!(diff(x.grad(&g_ours).unwrap(), x.grad(&g_ref).unwrap()) < 1e-5);
        let w = p.weight.val();
        assert!(diff(w.grad(&g_ours).unwrap(), w.grad(&g_ref).unwrap()) < 1e-4);
    }
}

//! Models: diffusers' `UNet2DModel` for images and a small MLP for 2D points.
//! Struct field names mirror diffusers' module tree, so parameter paths are state-dict keys.

pub mod attention;
pub mod blocks;
pub mod embedding;
pub mod layers;
pub mod mlp;
pub mod params;
pub mod projection;
pub mod resnet;
pub mod unet;

pub use mlp::{ToyMlp, ToyMlpConfig};
pub use params::{export_params, import_params, param_count, param_shapes};
pub use unet::UNet2DModel;

use burn::module::Module;
use burn::tensor::Tensor;

/// A noise predictor `eps_theta(x_t, t)`: what training, sampling and merging need.
pub trait EpsModel: Module + Clone + Send + 'static {
    /// # Shapes
    /// `x: [n, c, h, w]`, `t: n timesteps -> [n, c, h, w]`
    fn eps(&self, x: Tensor<4>, t: &[f32]) -> Tensor<4>;
}

impl EpsModel for UNet2DModel {
    fn eps(&self, x: Tensor<4>, t: &[f32]) -> Tensor<4> {
        // an empty batch predicts an empty batch (the matmul kernels take no 0-row input)
        if x.dims()[0] == 0 {
            return x;
        }
        self.forward(x, t)
    }
}

impl EpsModel for ToyMlp {
    fn eps(&self, x: Tensor<4>, t: &[f32]) -> Tensor<4> {
        if x.dims()[0] == 0 {
            return x;
        }
        self.forward(x, t)
    }
}

//! Helpers shared by the integration tests: a tiny UNet and saving it as a model folder.

use deme_studio::engine::checkpoint::{KeyStyle, UNet2DConfig, preset};
use deme_studio::engine::model::UNet2DModel;
use deme_studio::engine::store::{AnyModel, ModelSpec, save_model_folder};
use std::collections::BTreeMap;
use std::path::Path;

/// `mnist-small`'s structure at widths 8/16/16, 8 px.
pub fn tiny_config() -> UNet2DConfig {
    let mut c = preset("mnist-small").expect("preset exists");
    c.block_out_channels = vec![8, 16, 16];
    c.norm_num_groups = 4;
    c.sample_size = Some(8);
    c
}

/// Writes `model` (of architecture `config`) as a diffusers model folder in `dir`.
pub fn save_unet(dir: &Path, config: UNet2DConfig, model: UNet2DModel) {
    save_model_folder(
        dir,
        &ModelSpec::UNet(config),
        AnyModel::UNet(model).export(),
        &BTreeMap::new(),
        KeyStyle::Modern,
        None,
    )
    .unwrap();
}

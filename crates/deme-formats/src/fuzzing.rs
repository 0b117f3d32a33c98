//! Entry points of the fuzz targets (`fuzz/fuzz_targets/*.rs`), one per
//! parser of outside input, shared with the test that replays the committed
//! seeds and every crash found (`tests/fuzz_corpus.rs`).
//!
//! Each entry point feeds arbitrary bytes to the parser exactly as a file
//! would reach it, and returns whether the parser accepted them. Any input
//! may be refused with an error; none may panic, abort, hang or allocate
//! beyond the parser's stated bounds. Where a parse succeeds, the entry point
//! also checks a property of the result (round trips, recipe output paths
//! staying inside the chosen folder), and panics if it fails, so the fuzzer
//! reports it.

use crate::checkpoint::{
    CheckpointMeta, UNet2DConfig, normalize_keys, read_safetensors_bytes, serialize_safetensors,
};
use crate::data::cifar::read_cifar10;
use crate::data::image_folder::decode_image_bytes;
use crate::data::{DataSpec, read_idx_images, read_idx_labels};
use crate::merge::Recipe;
use image::ImageFormat;
use serde::Serialize;
use serde_json::Value;
use std::path::Path;

/// A fuzz target: its name (the `fuzz/fuzz_targets/{name}.rs` file and the
/// `fuzz/corpus/{name}` folder) and its entry point.
pub struct Target {
    /// Target name.
    pub name: &'static str,
    /// Entry point: whether the parser accepted the input.
    pub run: fn(&[u8]) -> bool,
}

/// Every fuzz target.
pub const TARGETS: &[Target] = &[
    Target {
        name: "safetensors",
        run: safetensors,
    },
    Target {
        name: "unet_config",
        run: unet_config,
    },
    Target {
        name: "checkpoint_meta",
        run: checkpoint_meta,
    },
    Target {
        name: "recipe",
        run: recipe,
    },
    Target {
        name: "idx",
        run: idx,
    },
    Target {
        name: "cifar10",
        run: cifar10,
    },
    Target {
        name: "image",
        run: image,
    },
    Target {
        name: "data_spec",
        run: data_spec,
    },
];

/// Safetensors bytes through the checkpoint loader: header, tensor table,
/// dtype/shape/offset checks, key normalisation and f32 conversion. A file
/// that loads must serialise and load back to the same tensors.
pub fn safetensors(data: &[u8]) -> bool {
    let Ok(map) = read_safetensors_bytes(data) else {
        return false;
    };
    let again = serialize_safetensors(&map, None).expect("a loaded map serialises");
    let back = read_safetensors_bytes(&again).expect("a serialised map loads");
    assert_eq!(back, map, "safetensors round trip changed the tensors");
    if let Ok((normalized, _style)) = normalize_keys(map) {
        for t in normalized.values() {
            if t.is_float() {
                let v = t.to_f32().expect("a validated float tensor converts");
                assert_eq!(v.len(), t.numel());
            }
        }
    }
    true
}

/// `config.json` text. A config that parses and validates must serialise and
/// parse back to the same config, and its parameter count must be bounded.
pub fn unet_config(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    let Ok(config) = UNet2DConfig::from_json_str(text) else {
        return false;
    };
    if config.validate().is_err() {
        return false;
    }
    let written = config
        .to_json_string_pretty()
        .expect("a valid config serialises");
    let back = UNet2DConfig::from_json_str(&written).expect("a written config parses");
    assert!(same_json(&back, &config), "config round trip changed it");
    let params = config
        .num_params()
        .expect("a valid config has a bounded size");
    assert!(params <= crate::checkpoint::unet_config::MAX_MODEL_PARAMS);
    true
}

/// deme-studio's `deme.json`.
pub fn checkpoint_meta(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    let Ok(meta) = CheckpointMeta::from_json_str(text) else {
        return false;
    };
    let written = meta
        .to_json_string_pretty()
        .expect("valid metadata serialises");
    let back = CheckpointMeta::from_json_str(&written).expect("written metadata parses");
    assert!(same_json(&back, &meta), "metadata round trip changed it");
    true
}

/// A merge recipe. Whatever a recipe that parses names as its output, the
/// folder it writes to stays inside the one the user chose.
pub fn recipe(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    let Ok(recipe) = Recipe::from_json_str(text) else {
        return false;
    };
    let chosen = Path::new("/chosen/out");
    let dir = recipe
        .output_dir(chosen)
        .expect("a parsed recipe has a usable output");
    assert!(
        dir.starts_with(chosen) && !dir.components().any(|c| c.as_os_str() == ".."),
        "recipe output {dir:?} leaves the chosen folder"
    );
    true
}

/// MNIST IDX images and labels, plain or gzipped.
pub fn idx(data: &[u8]) -> bool {
    let images = read_idx_images(data);
    if let Ok(set) = &images {
        assert_eq!(set.pixels.len(), set.len() * set.height * set.width);
    }
    images.is_ok() | read_idx_labels(data).is_ok()
}

/// One CIFAR-10 binary batch.
pub fn cifar10(data: &[u8]) -> bool {
    let Ok(set) = read_cifar10(data) else {
        return false;
    };
    assert_eq!(set.pixels.len(), set.len() * 3 * 32 * 32);
    true
}

/// An image file (PNG or JPEG, or whatever its content says), as the image
/// folder loader decodes it: with no hint, and with each extension's hint.
pub fn image(data: &[u8]) -> bool {
    let mut accepted = false;
    for hint in [None, Some(ImageFormat::Png), Some(ImageFormat::Jpeg)] {
        if let Ok(img) = decode_image_bytes(data, hint) {
            let gray = img.to_luma8();
            assert_eq!(
                gray.len() as u64,
                u64::from(img.width()) * u64::from(img.height())
            );
            accepted = true;
        }
    }
    accepted
}

/// A dataset spec string (`--data` on the command line, saved settings). A
/// spec that parses prints and parses back to itself.
pub fn data_spec(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    let Ok(spec) = text.parse::<DataSpec>() else {
        return false;
    };
    let back: DataSpec = spec
        .to_string()
        .parse()
        .expect("a printed data spec parses");
    assert_eq!(back, spec, "data spec round trip changed it");
    true
}

/// Whether two values serialise to the same JSON, numbers compared to within
/// a few units in the last place: serde_json's default float parser is not
/// always correctly rounded, so a printed float may read back one ulp off.
fn same_json(a: &impl Serialize, b: &impl Serialize) -> bool {
    fn same(a: &Value, b: &Value) -> bool {
        match (a, b) {
            (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
                _ if x == y => true,
                (Some(x), Some(y)) => (x - y).abs() <= 4.0 * f64::EPSILON * x.abs().max(y.abs()),
                _ => false,
            },
            (Value::Array(x), Value::Array(y)) => {
                x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
            }
            (Value::Object(x), Value::Object(y)) => {
                x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
            }
            _ => a == b,
        }
    }
    match (serde_json::to_value(a), serde_json::to_value(b)) {
        (Ok(a), Ok(b)) => same(&a, &b),
        _ => false,
    }
}

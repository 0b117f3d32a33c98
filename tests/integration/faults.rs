//! Inputs that do not fit together give one clear error: weights that do not fit
//! their config.json (on `inspect`, `sample` and the load path the app uses), and
//! data or configs a noise-prediction model cannot take.

use crate::common;
use common::{stderr, studio};

use burn::tensor::Device;
use deme_studio::engine::checkpoint::preset;
use deme_studio::engine::data::{DataSpec, split_items};
use deme_studio::engine::store::{ModelSpec, load_model};
use std::path::Path;
use std::process::Output;

const FIXTURE: &str = "tests/fixtures/unet_mnist_tiny";

/// The single `error` line of a failed run.
fn the_error(o: &Output) -> String {
    assert!(!o.status.success(), "expected a failure:\n{}", stderr(o));
    let msg = stderr(o);
    let errors: Vec<&str> = msg.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(errors.len(), 1, "{msg}");
    errors[0].to_string()
}

/// The fixture's weights beside its config.json edited by `edit`.
fn misfit(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    std::fs::create_dir_all(dir).unwrap();
    let weights = "diffusion_pytorch_model.safetensors";
    std::fs::copy(Path::new(FIXTURE).join(weights), dir.join(weights)).unwrap();
    let text = std::fs::read_to_string(Path::new(FIXTURE).join("config.json")).unwrap();
    let mut config: serde_json::Value = serde_json::from_str(&text).unwrap();
    edit(&mut config);
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
}

#[test]
fn weights_that_do_not_fit_their_config_are_one_clear_error() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    // the fixture itself inspects cleanly
    let o = studio(&["inspect", FIXTURE]);
    assert!(o.status.success(), "{}", stderr(&o));
    // a narrower first level (32 -> 16 channels), and 3 image channels for 1
    let narrow = r.join("narrow");
    misfit(&narrow, |c| {
        c["block_out_channels"] = serde_json::json!([16, 64, 64]);
        c["norm_num_groups"] = serde_json::json!(16);
    });
    let rgb = r.join("rgb");
    misfit(&rgb, |c| {
        c["in_channels"] = serde_json::json!(3);
        c["out_channels"] = serde_json::json!(3);
    });
    for (dir, want) in [
        (&narrow, "[32, 1, 3, 3], the model expects [16, 1, 3, 3]"),
        (&rgb, "[32, 1, 3, 3], the model expects [32, 3, 3, 3]"),
    ] {
        let d = dir.to_str().unwrap();
        let names = |e: &str| {
            e.contains("do not fit")
                && e.contains(&dir.join("config.json").display().to_string())
                && e.contains("conv_in.weight")
                && e.contains(want)
        };
        // inspect still shows the table, then says the checkpoint does not load
        let o = studio(&["inspect", d]);
        let e = the_error(&o);
        assert!(names(&e), "inspect: {e}");
        assert!(String::from_utf8_lossy(&o.stdout).contains("parameters"));
        let png = r.join("s.png");
        let o = studio(&[
            "--device",
            "cpu",
            "sample",
            "--model",
            d,
            "--out",
            png.to_str().unwrap(),
        ]);
        let e = the_error(&o);
        assert!(names(&e), "sample: {e}");
        assert!(!png.exists());
        // the load path of the app
        let Err(e) = load_model(dir, &Device::flex()) else {
            panic!("{} loaded", dir.display())
        };
        let e = format!("{e:#}");
        assert!(names(&e), "load_model: {e}");
    }
}

/// A tiny UNet config with the given channels in and out.
fn tiny_config(dir: &Path, name: &str, cin: usize, cout: usize) -> String {
    let path = dir.join(format!("{name}.json"));
    let text = format!(
        r#"{{"_class_name":"UNet2DModel","sample_size":16,"in_channels":{cin},"out_channels":{cout},
        "block_out_channels":[8,16],"down_block_types":["DownBlock2D","AttnDownBlock2D"],
        "up_block_types":["AttnUpBlock2D","UpBlock2D"],"layers_per_block":1,"norm_num_groups":4,
        "attention_head_dim":null,"norm_eps":1e-6,"flip_sin_to_cos":false,"freq_shift":1,"downsample_padding":0}}"#
    );
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn data_or_configs_a_model_cannot_take_are_one_clear_error() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let train = |config: &str| {
        let out = r.join("out");
        let o = studio(&[
            "--device",
            "cpu",
            "train",
            "--data",
            "mnist",
            "--model",
            config,
            "--steps",
            "1",
            "--batch-size",
            "2",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(!out.exists(), "nothing written: {}", stderr(&o));
        the_error(&o)
    };
    // MNIST has 1 channel; a 2-channel model cannot take it
    let e = train(&tiny_config(r, "two", 2, 2));
    assert!(
        e.contains("mnist") && e.contains("1x28x28") && e.contains("2x16x16"),
        "{e}"
    );
    // the predicted noise must have the input's channels (3 -> 1 panicked in
    // the loss, 1 -> 3 trained against broadcast noise)
    let e = train(&tiny_config(r, "three_to_one", 3, 1));
    assert!(
        e.contains("out_channels 1 differs from in_channels 3"),
        "{e}"
    );
    let e = train(&tiny_config(r, "one_to_three", 1, 3));
    assert!(
        e.contains("out_channels 3 differs from in_channels 1"),
        "{e}"
    );
    // 1 -> 3 channels and 28 -> 32 pixels is a documented fit: the grey plane
    // replicated, padded by 2 on each side
    let spec = ModelSpec::UNet(preset("ddpm-cifar10-32").unwrap());
    let mnist: DataSpec = "mnist".parse().unwrap();
    let items = split_items(&mnist, &spec, 0.1, 0).unwrap();
    assert_eq!(items.train.item_shape, [3, 32, 32]);
    let x = items.train.gather(&[0], &Device::flex());
    let v: Vec<f32> = x.into_data().convert::<f32>().try_into_vec().unwrap();
    let plane = 32 * 32;
    assert_eq!(v[..plane], v[plane..2 * plane]);
    assert_eq!(v[..plane], v[2 * plane..]);
    assert!(v[..2 * 32].iter().all(|&p| p == v[0]), "padded top rows");
}

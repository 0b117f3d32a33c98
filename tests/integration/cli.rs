//! The command line end to end: help texts, clear errors, and a tiny
//! train -> resume -> sample -> inspect run.

use crate::common;
use common::{stderr, studio};

use std::path::Path;

#[test]
fn every_subcommand_has_help() {
    for sub in ["train", "sample", "eval-eps", "inspect"] {
        let o = studio(&[sub, "--help"]);
        assert!(o.status.success(), "{sub} --help failed: {}", stderr(&o));
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("Usage"),
            "{sub} --help"
        );
    }
}

#[test]
fn bad_input_gives_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let pickle = dir.path().join("model.ckpt");
    std::fs::write(&pickle, b"not really a pickle").unwrap();
    let o = studio(&["inspect", pickle.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("safetensors"),
        "pickle refusal should say how to convert: {}",
        stderr(&o)
    );

    let o = studio(&[
        "train",
        "--data",
        "toy:spiral",
        "--out",
        dir.path().to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).to_lowercase().contains("spiral"),
        "{}",
        stderr(&o)
    );

    // a batch of zero is a usage error naming the limit, for pretraining and finetuning
    for cmd in [
        vec!["train", "--data", "toy:moons", "--steps", "1"],
        vec![
            "finetune",
            "--base",
            "assets/mnist-tiny/base",
            "--steps-per-expert",
            "1",
        ],
    ] {
        let out = dir.path().join("zero");
        let mut args = cmd.clone();
        args.extend(["--batch-size", "0", "--out", out.to_str().unwrap()]);
        let o = studio(&args);
        assert_eq!(o.status.code(), Some(2), "{cmd:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("a batch size must be between 1 and 4096"),
            "{cmd:?}: {}",
            stderr(&o)
        );
    }

    let o = studio(&[
        "sample",
        "--model",
        dir.path().join("nothing").to_str().unwrap(),
        "--out",
        "x.png",
    ]);
    assert!(!o.status.success());
    assert_eq!(
        stderr(&o)
            .lines()
            .filter(|l| l.starts_with("error"))
            .count(),
        1,
        "{}",
        stderr(&o)
    );
}

fn run_ok(args: &[&str]) -> String {
    let o = studio(args);
    assert!(o.status.success(), "{args:?} failed:\n{}", stderr(&o));
    stderr(&o)
}

#[test]
fn toy_train_resume_sample_inspect() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let out_s = out.to_str().unwrap();
    let common = [
        "--device",
        "cpu",
        "--data",
        "toy:moons",
        "--batch-size",
        "64",
        "--checkpoint-every",
        "20",
    ];
    run_ok(&[&["train"][..], &common, &["--steps", "20", "--out", out_s]].concat());
    assert!(
        out.join("config.json").exists()
            && out.join("diffusion_pytorch_model.safetensors").exists()
    );
    // a second run into the same folder without --resume is refused, with --resume it continues
    let o = studio(&[&["train"][..], &common, &["--steps", "40", "--out", out_s]].concat());
    assert!(!o.status.success() && stderr(&o).contains("--resume"));
    let log = run_ok(
        &[
            &["train"][..],
            &common,
            &["--steps", "40", "--out", out_s, "--resume"],
        ]
        .concat(),
    );
    assert!(log.contains("resuming at step 20"), "{log}");
    let meta = std::fs::read_to_string(out.join("deme.json")).unwrap();
    assert!(meta.contains("\"step\": 40"), "{meta}");

    let samples = dir.path().join("x0.safetensors");
    run_ok(&[
        "--device",
        "cpu",
        "sample",
        "--model",
        out_s,
        "--sampler",
        "ddim",
        "--steps",
        "5",
        "--n",
        "8",
        "--out",
        samples.to_str().unwrap(),
    ]);
    let map = deme_studio::engine::checkpoint::read_safetensors(&samples).unwrap();
    assert_eq!(map["x_0"].shape, vec![8, 2, 1, 1]);
    let values = map["x_0"].to_f32().unwrap();
    assert!(
        values
            .iter()
            .all(|v| v.is_finite() && v.abs() <= 1.0 + 1e-6),
        "clip_sample keeps x0 in [-1, 1]"
    );

    let o = studio(&["inspect", out_s]);
    assert!(o.status.success());
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(
        table.contains("input.weight") && table.contains("parameters"),
        "{table}"
    );
    assert!(Path::new(&out).join("train_state.safetensors").exists());
}

#[test]
fn device_probe_without_a_runtime_folder_prints_only_the_choice() {
    // ssh, sudo, containers: no XDG_RUNTIME_DIR. Mesa's Vulkan device-select
    // layer then had libwayland print an "error:" line per adapter listing.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.png");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_deme-studio"))
        .args([
            "--device",
            "auto",
            "sample",
            "--model",
            "assets/mnist-tiny/base",
        ])
        .args(["--sampler", "ddim", "--steps", "2", "--n", "1", "--out"])
        .arg(&out)
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("WAYLAND_DISPLAY")
        .env_remove("NODEVICE_SELECT")
        .env_remove("MESA_VK_DEVICE_SELECT")
        .env_remove("DRI_PRIME")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(!err.contains("error"), "stray error lines:\n{err}");
    assert!(err.contains("device: "), "{err}");
}

#[test]
fn mnist_train_and_sample_png() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let cfg = dir.path().join("config.json");
    // a very small UNet of the default structure keeps this test quick
    std::fs::write(
        &cfg,
        r#"{"_class_name":"UNet2DModel","sample_size":32,"in_channels":1,"out_channels":1,
            "block_out_channels":[16,32],"down_block_types":["DownBlock2D","AttnDownBlock2D"],
            "up_block_types":["AttnUpBlock2D","UpBlock2D"],"layers_per_block":1,"norm_num_groups":8,
            "attention_head_dim":null,"norm_eps":1e-6,"flip_sin_to_cos":false,"freq_shift":1,"downsample_padding":0}"#,
    )
    .unwrap();
    run_ok(&[
        "--device",
        "cpu",
        "train",
        "--data",
        "mnist",
        "--model",
        cfg.to_str().unwrap(),
        "--steps",
        "3",
        "--batch-size",
        "4",
        "--out",
        out.to_str().unwrap(),
    ]);
    let png = dir.path().join("grid.png");
    run_ok(&[
        "--device",
        "cpu",
        "sample",
        "--model",
        out.to_str().unwrap(),
        "--sampler",
        "ddpm",
        "--steps",
        "4",
        "--n",
        "4",
        "--out",
        png.to_str().unwrap(),
    ]);
    let img = image::open(&png).unwrap();
    assert_eq!((img.width(), img.height()), (2 * 34 + 2, 2 * 34 + 2));
}

//! Helpers shared by the integration tests: a tiny UNet, saving it as a model folder,
//! running the program and reading its errors, Ctrl-C of a child run, and driving the app.

#![allow(dead_code)]

use deme_studio::engine::checkpoint::{KeyStyle, UNet2DConfig, preset};
use deme_studio::engine::model::UNet2DModel;
use deme_studio::engine::store::{AnyModel, ModelSpec, save_model_folder};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

pub mod app;
pub mod npy;

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

/// Checks the diffusers interop files of a model folder: with channel-wise
/// projections in its weights it holds the loader module (the shipped text) and
/// a model card of ours; without, neither. Returns whether it has projections.
pub fn check_interop_files(dir: &Path) -> bool {
    use deme_studio::engine::model_card::{
        CARD_FILE, CARD_MARKER, LOADER_FILE, LOADER_PY, Projections,
    };
    let weights = deme_studio::engine::checkpoint::read_safetensors(
        dir.join(deme_studio::engine::store::WEIGHTS_FILE),
    )
    .unwrap();
    let has = Projections::of(&weights).unwrap().is_some();
    let loader = std::fs::read_to_string(dir.join(LOADER_FILE));
    let card = std::fs::read_to_string(dir.join(CARD_FILE));
    if has {
        assert_eq!(
            loader.as_deref().ok(),
            Some(LOADER_PY),
            "{}: loader module",
            dir.display()
        );
        let card = card.unwrap_or_else(|e| panic!("{}: no model card: {e}", dir.display()));
        assert!(
            card.starts_with(CARD_MARKER) && card.contains("deme_unet.load"),
            "{card}"
        );
    } else {
        assert!(
            loader.is_err(),
            "{}: a loader without projections",
            dir.display()
        );
        assert!(
            !card.is_ok_and(|c| c.starts_with(CARD_MARKER)),
            "{}: our card",
            dir.display()
        );
    }
    has
}

/// Saves a freshly initialised `toy-mlp` (seed 0) as a model folder at `dir`.
pub fn save_toy_base(dir: &Path) {
    let spec = ModelSpec::Mlp(deme_studio::engine::model::ToyMlpConfig::default());
    let model = spec.build(0, &burn::tensor::Device::flex()).unwrap();
    save_model_folder(
        dir,
        &spec,
        model.export(),
        &BTreeMap::new(),
        KeyStyle::Modern,
        None,
    )
    .unwrap();
}

/// Runs the program with `args`, sends it SIGINT (Ctrl-C) once a stderr line
/// starts with `ready`, and returns its exit status and whole stderr.
pub fn interrupt_when(args: &[&str], ready: &str) -> (std::process::ExitStatus, String) {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_deme-studio"))
        .args(args)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut log = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        log.push_str(&line);
        log.push('\n');
        if line.starts_with(ready) {
            break;
        }
    }
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    for line in lines {
        log.push_str(&line.unwrap());
        log.push('\n');
    }
    (child.wait().unwrap(), log)
}

/// Runs the program with `args` and waits for it.
pub fn studio(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_deme-studio"))
        .args(args)
        .output()
        .expect("the binary runs")
}

/// A finished run's stderr.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

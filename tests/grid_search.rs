//! `grid-search` end to end: every lattice point scored once, the table written,
//! and the all-zero point scoring exactly the base model's held-out loss.

mod common;

use burn::tensor::Device;
use deme_studio::engine::model::UNet2DModel;
use std::path::Path;
use std::process::Command;

fn save_random(dir: &Path, seed: u64) {
    let config = common::tiny_config();
    let m = UNet2DModel::new(&config, seed, &Device::flex()).unwrap();
    common::save_unet(dir, config, m);
}

#[test]
fn grid_search_scores_the_lattice_and_the_origin_is_the_base() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    for (name, seed) in [("base", 0), ("e1", 1), ("e2", 2)] {
        save_random(&r.join(name), seed);
    }
    let p = |n: &str| r.join(n).to_str().unwrap().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_deme-studio"))
        .args([
            "--device",
            "cpu",
            "grid-search",
            "--base",
            &p("base"),
            "--experts",
            &format!("{},{}", p("e1"), p("e2")),
            "--step",
            "0.5",
            "--samples",
            "16",
            "--strategy",
            "exhaustive",
            "--out",
            &p("grid"),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let csv = std::fs::read_to_string(r.join("grid/grid.csv")).unwrap();
    let rows: Vec<Vec<f64>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(|v| v.parse().unwrap()).collect())
        .collect();
    assert_eq!(rows.len(), 9, "{csv}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(r.join("grid/grid.json")).unwrap()).unwrap();
    let best = json["best"].as_u64().unwrap() as usize;
    let min = rows.iter().map(|r| r[2]).fold(f64::INFINITY, f64::min);
    assert_eq!(rows[best][2], min);
    // w = (0, 0) is the base: its loss is the base loss the command printed
    let origin = rows.iter().find(|r| r[0] == 0.0 && r[1] == 0.0).unwrap();
    let base_line = err
        .lines()
        .find(|l| l.starts_with("base: held-out loss"))
        .unwrap();
    assert!(
        base_line.contains(&format!("{:.5}", origin[2])),
        "{base_line} vs {}",
        origin[2]
    );
    // a bad expert list is one clear error
    let bad = Command::new(env!("CARGO_BIN_EXE_deme-studio"))
        .args([
            "--device",
            "cpu",
            "grid-search",
            "--base",
            &p("base"),
            "--experts",
            &p("nope"),
            "--out",
            &p("g2"),
        ])
        .output()
        .unwrap();
    assert!(!bad.status.success());
}

//! Task-vector statistics against hand-built task vectors with known answers,
//! and the `tv-stats` command end to end.

use crate::common;

use burn::tensor::Device;
use deme_studio::engine::analysis::Granularity;
use deme_studio::engine::analysis::tv_stats::{BoxStats, tv_stats};
use deme_studio::engine::merge::{HostTaskVectors, LabeledParams};
use deme_studio::engine::model::UNet2DModel;
use deme_studio::engine::model::params::map_flat_params;
use std::process::Command;

fn model(down: [f32; 4], mid: [f32; 2]) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    vec![
        (
            "down_blocks.0.conv.weight".into(),
            vec![2, 2],
            down.iter().map(|v| 0.5 + v).collect(),
        ),
        (
            "mid_block.norm.bias".into(),
            vec![2],
            mid.iter().map(|v| 1.0 + v).collect(),
        ),
    ]
}

fn hand_built() -> HostTaskVectors {
    let base = LabeledParams::new("base", model([0.0; 4], [0.0; 2]));
    let experts = vec![
        LabeledParams::new("e1", model([1.0, -2.0, 3.0, -4.0], [0.0, 0.0])),
        LabeledParams::new("e2", model([2.0, -4.0, 6.0, -8.0], [3.0, 4.0])),
        LabeledParams::new("e3", model([-1.0, 2.0, -3.0, 4.0], [0.0, 0.0])),
    ];
    HostTaskVectors::new(base, experts).unwrap()
}

fn near(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

#[test]
fn statistics_of_hand_built_task_vectors() {
    let s = tv_stats(&hand_built(), Granularity::Block);
    assert_eq!(s.params, 6);
    assert_eq!(s.labels, ["e1", "e2", "e3"]);
    // |tau_1| entries: 1 2 3 4 0 0 -> sorted 0 0 1 2 3 4
    let b = s.overall[0].abs;
    let want = BoxStats {
        count: 6,
        min: 0.0,
        q1: 0.25,
        median: 1.5,
        q3: 2.75,
        max: 4.0,
        mean: 10.0 / 6.0,
    };
    assert!(
        near(b.min, want.min)
            && near(b.q1, want.q1)
            && near(b.median, want.median)
            && near(b.q3, want.q3)
            && near(b.max, want.max)
            && near(b.mean, want.mean)
            && b.count == 6,
        "{b:?}"
    );
    assert!(near(s.overall[0].norm, 30f64.sqrt()));
    assert!(near(s.overall[1].norm, 145f64.sqrt()));
    let c = &s.cosine;
    assert!(near(c[0], 1.0) && near(c[4], 1.0) && near(c[8], 1.0));
    assert!(near(c[1], 60.0 / (30f64 * 145.0).sqrt()));
    assert!(near(c[3], c[1]));
    assert!(near(c[2], -1.0), "tau_3 = -tau_1");
    // groups in model order, with their own norms and cosines
    let names: Vec<&str> = s.groups.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names, ["down_blocks.0", "mid_block"]);
    let down = &s.groups[0];
    assert_eq!(down.params, 4);
    assert!(near(down.experts[1].norm, 120f64.sqrt()));
    assert!(
        near(down.cosine[1], 1.0),
        "tau_2 = 2 tau_1 inside down_blocks.0"
    );
    assert!(near(down.experts[1].abs.median, 5.0));
    let mid = &s.groups[1];
    assert!(near(mid.experts[1].norm, 5.0));
    assert_eq!(mid.experts[0].norm, 0.0);
    assert_eq!(mid.cosine[1], 0.0, "a zero task vector has cosine 0");
    assert!(near(mid.experts[1].abs.mean, 3.5));
    // per-group squared norms add up to the whole
    for i in 0..3 {
        let sum: f64 = s.groups.iter().map(|g| g.experts[i].norm.powi(2)).sum();
        assert!(near(sum, s.overall[i].norm.powi(2)));
    }
    let layers = tv_stats(&hand_built(), Granularity::Layer);
    let names: Vec<&str> = layers.groups.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names, ["down_blocks.0.conv", "mid_block.norm"]);
}

#[test]
fn tv_stats_command_writes_its_files() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let config = common::tiny_config();
    let d = Device::flex();
    let base = UNet2DModel::new(&config, 0, &d).unwrap();
    let shifted = |delta: f32| {
        map_flat_params(base.clone(), &mut |k, v| {
            if k == "conv_in.bias" {
                v.add_scalar(delta)
            } else {
                v
            }
        })
    };
    common::save_unet(&r.join("e1"), config.clone(), shifted(1.0));
    common::save_unet(&r.join("e2"), config.clone(), shifted(-2.0));
    common::save_unet(&r.join("base"), config.clone(), base.clone());
    let p = |n: &str| r.join(n).to_str().unwrap().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_deme-studio"))
        .args([
            "tv-stats",
            "--base",
            &p("base"),
            "--experts",
            &p("e1"),
            &p("e2"),
            "--out",
            &p("tv"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(r.join("tv/tv_stats.json")).unwrap())
            .unwrap();
    let channels = config.block_out_channels[0] as f64;
    let norm = |i: usize| json["overall"][i]["norm"].as_f64().unwrap();
    assert!((norm(0) - channels.sqrt()).abs() < 1e-5, "{}", norm(0));
    assert!((norm(1) - 2.0 * channels.sqrt()).abs() < 1e-5);
    let cos: Vec<f64> = json["cosine"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert!(
        (cos[1] + 1.0).abs() < 1e-9 && (cos[2] + 1.0).abs() < 1e-9,
        "{cos:?}"
    );
    let groups = json["groups"].as_array().unwrap();
    let conv_in = groups.iter().find(|g| g["name"] == "conv_in").unwrap();
    assert!((conv_in["experts"][1]["norm"].as_f64().unwrap() - norm(1)).abs() < 1e-9);
    // conv_in = weight (unchanged) + bias (all moved by 1)
    let abs = &conv_in["experts"][0]["abs"];
    let params = conv_in["params"].as_f64().unwrap();
    assert!((abs["max"].as_f64().unwrap() - 1.0).abs() < 1e-6);
    assert_eq!(abs["median"].as_f64().unwrap(), 0.0);
    assert!((abs["mean"].as_f64().unwrap() - channels / params).abs() < 1e-6);
    let csv = std::fs::read_to_string(r.join("tv/tv_stats.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 2 * (1 + groups.len()));
    assert!(csv.lines().nth(1).unwrap().starts_with("(all),"));
    let cos_csv = std::fs::read_to_string(r.join("tv/cosine.csv")).unwrap();
    assert_eq!(cos_csv.lines().count(), 5);
    let cos_npy = common::npy::read_npy(&r.join("tv/cosine.npy"));
    assert_eq!(cos_npy.shape, [2, 2]);
    assert_eq!(cos_npy.values, cos);
    let png = image::open(r.join("tv/cosine.png")).unwrap();
    assert!(png.width() > 50);
}

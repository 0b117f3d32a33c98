//! `metric` end to end at a tiny size: held-out real digits score far better
//! (lower) than pure noise, the feature network is trained once and cached, and
//! sampling a model writes its report.

use crate::common;

use burn::tensor::Device;
use deme_studio::engine::checkpoint::{HostTensor, TensorMap, write_safetensors};
use deme_studio::engine::data::{DataSpec, Dataset, SPLIT_SEED, load, split};
use deme_studio::engine::model::UNet2DModel;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::Path;
use std::process::Command;

const FEATURE_STEPS: &str = "40";

fn write_images(path: &Path, pixels: &[f32], n: usize) {
    let mut map = TensorMap::new();
    map.insert(
        "x_0".into(),
        HostTensor::from_f32(vec![n, 1, 8, 8], pixels).unwrap(),
    );
    write_safetensors(path, &map, None).unwrap();
}

/// The first `n` held-out MNIST digits at 8 x 8 (the split the metric compares against).
fn held_out_digits(n: usize) -> Vec<f32> {
    let Dataset::Images(images) = load(&DataSpec::Mnist, 0).unwrap() else {
        panic!("mnist is images");
    };
    let fitted = images.fit_to(1, 8, 8).unwrap();
    let s = split(fitted.len(), 0.1, SPLIT_SEED);
    fitted.subset(&s.val[..n]).pixels
}

fn metric(args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_deme-studio"))
        .args(["--device", "cpu", "metric"])
        .args(args)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("Frechet distance"), "{stdout}");
    let out_path = args
        .iter()
        .position(|a| *a == "--out")
        .map(|i| args[i + 1])
        .unwrap();
    serde_json::from_str(&std::fs::read_to_string(out_path).unwrap()).unwrap()
}

#[test]
fn real_digits_score_far_below_noise_and_samples_are_scored() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let p = |n: &str| r.join(n).to_str().unwrap().to_string();
    let n = 64;
    write_images(&r.join("real.safetensors"), &held_out_digits(n), n);
    let mut rng = StdRng::seed_from_u64(5);
    let noise: Vec<f32> = (0..n * 64).map(|_| rng.random_range(-1.0..1.0)).collect();
    write_images(&r.join("noise.safetensors"), &noise, n);
    let cache = p("cache");
    let common_args = ["--feature-steps", FEATURE_STEPS, "--cache-dir", &cache];

    let real_json = p("real.json");
    let real_file = p("real.safetensors");
    let mut args = vec!["--images", &real_file];
    args.extend(common_args);
    args.extend(["--out", &real_json]);
    let real = metric(&args);
    let cached = real["feature_net_cache"].as_str().unwrap().to_string();
    assert!(Path::new(&cached).exists(), "{cached}");
    assert!(cached.starts_with(&cache));

    let noise_json = p("noise.json");
    let noise_file = p("noise.safetensors");
    let mut args = vec!["--images", &noise_file];
    args.extend(common_args);
    args.extend(["--out", &noise_json]);
    let noisy = metric(&args);
    assert_eq!(noisy["feature_net_cache"].as_str().unwrap(), cached);

    let fd_real = real["frechet_distance"].as_f64().unwrap();
    let fd_noise = noisy["frechet_distance"].as_f64().unwrap();
    eprintln!("Frechet distance: held-out digits {fd_real}, noise {fd_noise}");
    assert!(fd_real >= 0.0 && fd_real.is_finite());
    assert!(
        fd_noise > 5.0 * fd_real,
        "real {fd_real} should be far below noise {fd_noise}"
    );
    assert_eq!(real["samples"], 64);
    assert_eq!(real["source"]["kind"], "images");
    let acc = real["feature_accuracy"].as_f64().unwrap();
    assert!(acc > 0.1 && acc <= 1.0, "{acc}");
    // both runs used one cached network: the held-out reference is the same
    assert_eq!(real["feature_accuracy"], noisy["feature_accuracy"]);
    // the floor: two disjoint halves of the 1,000 held-out digits; 64 images are
    // fewer than a half, so there is no figure at the floor's size
    assert_eq!(real["floor_half_size"], 500);
    let floor = real["real_vs_real_floor"].as_f64().unwrap();
    assert!(floor.is_finite() && floor >= 0.0, "{floor}");
    assert_eq!(noisy["real_vs_real_floor"], real["real_vs_real_floor"]);
    assert!(real["frechet_at_floor_size"].is_null());
    // the labels: every image counted once, real digits labelled confidently more often than noise
    for (report, images) in [(&real, 64), (&noisy, 64)] {
        let hist: Vec<u64> = serde_json::from_value(report["labels"]["histogram"].clone()).unwrap();
        assert_eq!(hist.len(), 10);
        assert_eq!(hist.iter().sum::<u64>(), images);
        assert_eq!(report["real_labels"]["images"], 1000);
    }

    // a (random, untrained) model's samples, with DDIM in two steps
    let config = common::tiny_config();
    common::save_unet(
        &r.join("model"),
        config.clone(),
        UNet2DModel::new(&config, 0, &Device::flex()).unwrap(),
    );
    let model_json = p("model.json");
    let model_dir = p("model");
    let saved = p("samples.safetensors");
    let mut args = vec![
        "--model",
        &model_dir,
        "--samples",
        "6",
        "--batch-size",
        "4",
        "--steps",
        "2",
        "--save-samples",
        &saved,
    ];
    args.extend(common_args);
    args.extend(["--out", &model_json]);
    let sampled = metric(&args);
    assert_eq!(sampled["samples"], 6);
    assert_eq!(sampled["sampling"]["sampler"], "ddim");
    assert_eq!(sampled["sampling"]["steps"], 2);
    assert!(sampled["frechet_distance"].as_f64().unwrap().is_finite());
    assert!(Path::new(&saved).exists());
    // scoring the saved samples gives the same number
    let again_json = p("again.json");
    let mut args = vec!["--images", &saved];
    args.extend(common_args);
    args.extend(["--out", &again_json]);
    let again = metric(&args);
    assert_eq!(again["frechet_distance"], sampled["frechet_distance"]);
}

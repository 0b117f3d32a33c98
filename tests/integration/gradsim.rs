//! The gradient cosine-similarity heatmap against a direct float64 computation.

use burn::module::Module;
use burn::tensor::Device;
use deme_studio::engine::analysis::{GradSimConfig, GradSimResult, Granularity, grad_similarity};
use deme_studio::engine::checkpoint::UNet2DConfig;
use deme_studio::engine::diffusion::NoiseSchedule;
use deme_studio::engine::model::UNet2DModel;
use deme_studio::engine::model::params::flat_grads;
use deme_studio::engine::train::loss::eps_loss_per_sample;
use deme_studio::engine::train::{BatchSampler, CancelToken};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn tiny_config() -> UNet2DConfig {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    UNet2DConfig {
        sample_size: Some(8),
        in_channels: 1,
        out_channels: 1,
        block_out_channels: vec![8, 16],
        down_block_types: s(&["DownBlock2D", "AttnDownBlock2D"]),
        up_block_types: s(&["AttnUpBlock2D", "UpBlock2D"]),
        layers_per_block: 1,
        norm_num_groups: 4,
        ..UNet2DConfig::default()
    }
}

fn data() -> BatchSampler {
    let mut rng = StdRng::seed_from_u64(7);
    let items: Vec<f32> = (0..64 * 64).map(|_| rng.random_range(-1.0..1.0)).collect();
    BatchSampler::new(items, [1, 8, 8], "random")
}

/// g_k averaged over the batches, in float64 on the host.
fn reference(model: &UNet2DModel, cfg: &GradSimConfig, schedule: &NoiseSchedule) -> Vec<Vec<f64>> {
    let [even, odd] = reference_halves(model, cfg, schedule);
    even.into_iter()
        .zip(odd)
        .map(|(a, b)| {
            if b.is_empty() {
                a
            } else {
                a.iter().zip(&b).map(|(x, y)| x + y).collect()
            }
        })
        .collect()
}

/// g_k summed over the even and over the odd batches, each weighted 1/M, in
/// float64 on the host (the odd half is empty with one batch).
fn reference_halves(
    model: &UNet2DModel,
    cfg: &GradSimConfig,
    schedule: &NoiseSchedule,
) -> [Vec<Vec<f64>>; 2] {
    let device = Device::flex();
    let tracked = model.clone().to_device(&device.clone().autodiff()).train();
    let data = data();
    let mut halves: [Vec<Vec<f64>>; 2] = [
        vec![Vec::new(); cfg.timesteps.len()],
        vec![Vec::new(); cfg.timesteps.len()],
    ];
    for m in 0..cfg.batches {
        let sums = &mut halves[m % 2];
        let mut rng = data.rng_for_step(cfg.seed, m as u64);
        let batch = data.batch(&mut rng, cfg.batch_size, 1000, &device);
        for (k, &t) in cfg.timesteps.iter().enumerate() {
            let loss = eps_loss_per_sample(
                &tracked,
                schedule,
                batch.x0.clone(),
                batch.noise.clone(),
                &vec![t; cfg.batch_size],
            )
            .mean();
            let grads = loss.backward();
            let flat: Vec<f64> = flat_grads(&tracked, &grads)
                .into_iter()
                .flat_map(|(_, g)| g.into_data().try_to_vec::<f32>().unwrap())
                .map(f64::from)
                .collect();
            if sums[k].is_empty() {
                sums[k] = vec![0.0; flat.len()];
            }
            for (s, v) in sums[k].iter_mut().zip(flat) {
                *s += v / cfg.batches as f64;
            }
        }
    }
    halves
}

fn cos(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f64 = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| x * x).sum::<f64>().sqrt();
    dot / (na * nb)
}

/// The computation on [`data`], run to the end.
fn run(model: &UNet2DModel, cfg: &GradSimConfig, schedule: &NoiseSchedule) -> GradSimResult {
    grad_similarity(
        model,
        schedule,
        &data(),
        cfg,
        &CancelToken::new(),
        &mut |_| {},
    )
    .unwrap()
}

fn setup() -> (UNet2DModel, GradSimConfig, NoiseSchedule) {
    let model = UNet2DModel::new(&tiny_config(), 3, &Device::flex()).unwrap();
    let cfg = GradSimConfig {
        timesteps: vec![10, 200, 500, 900],
        batches: 2,
        batch_size: 4,
        sketch_dim: None,
        granularity: Granularity::Block,
        seed: 1,
    };
    (model, cfg, NoiseSchedule::ddpm(1000))
}

#[test]
fn exact_matrix_matches_float64_reference() {
    let (model, cfg, schedule) = setup();
    let r = run(&model, &cfg, &schedule);
    assert!(r.exact);
    let g = reference(&model, &cfg, &schedule);
    let k = cfg.timesteps.len();
    for i in 0..k {
        assert_eq!(r.cosine[i * k + i], 1.0);
        for j in 0..k {
            assert_eq!(r.cosine[i * k + j], r.cosine[j * k + i], "not symmetric");
            let want = cos(&g[i], &g[j]);
            let got = r.cosine[i * k + j];
            assert!(
                (got - want).abs() < 1e-4,
                "S[{i},{j}] = {got}, float64 says {want}"
            );
        }
        let norm: f64 = g[i].iter().map(|x| x * x).sum::<f64>().sqrt();
        assert!((r.norms[i] - norm).abs() / norm < 1e-4);
    }
    // the groups partition the parameters
    let total: usize = r.groups.iter().map(|g| g.params).sum();
    assert_eq!(total, g[0].len());
    assert!(r.groups.iter().any(|g| g.name == "down_blocks.1"));
}

#[test]
fn noise_ceiling_matches_float64_reference() {
    let (model, cfg, schedule) = setup();
    let r = run(&model, &cfg, &schedule);
    let [even, odd] = reference_halves(&model, &cfg, &schedule);
    let ceiling = r.ceiling.as_ref().expect("two batches give a ceiling");
    for (k, c) in ceiling.iter().enumerate() {
        let want = cos(&even[k], &odd[k]);
        assert!((c - want).abs() < 1e-4, "c[{k}] = {c}, float64 says {want}");
    }
    // relative to the ceiling: S_kl / sqrt(c_k c_l)
    let rel = r.relative_to_ceiling().unwrap();
    let k = cfg.timesteps.len();
    let (i, j) = (0, 2);
    let want = r.cosine[i * k + j] / (ceiling[i] * ceiling[j]).sqrt();
    assert!((rel[i * k + j] - want).abs() < 1e-12 || (rel[i * k + j].is_nan() && want.is_nan()));
    // one batch has no halves to compare
    let one = GradSimConfig { batches: 1, ..cfg };
    let r = run(&model, &one, &schedule);
    assert!(r.ceiling.is_none() && r.relative_to_ceiling().is_none());
}

#[test]
fn sketch_is_close_to_exact() {
    let (model, mut cfg, schedule) = setup();
    let exact = run(&model, &cfg, &schedule);
    cfg.sketch_dim = Some(2048);
    let sketched = run(&model, &cfg, &schedule);
    assert!(!sketched.exact);
    let worst = exact
        .cosine
        .iter()
        .zip(&sketched.cosine)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(worst < 0.1, "sketch error {worst}");
    assert!(
        worst > 0.0,
        "a 2048-wide sketch of larger groups cannot be exact"
    );
}

#[test]
fn cancel_and_bad_settings_are_errors() {
    let (model, mut cfg, schedule) = setup();
    let cancel = CancelToken::new();
    cancel.cancel();
    assert!(grad_similarity(&model, &schedule, &data(), &cfg, &cancel, &mut |_| {}).is_err());
    cfg.timesteps = vec![5, 1000];
    let err = grad_similarity(
        &model,
        &schedule,
        &data(),
        &cfg,
        &CancelToken::new(),
        &mut |_| {},
    )
    .unwrap_err();
    assert!(err.to_string().contains("1000"), "{err}");
}

/// `gradsim --suggest-ranges` writes the suggested and the uniform split, and
/// refuses more ranges than timesteps before any gradient is taken.
#[test]
fn the_command_suggests_ranges_from_the_conflicts() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    let config = crate::common::tiny_config();
    let m = UNet2DModel::new(&config, 0, &Device::flex()).unwrap();
    crate::common::save_unet(&model, config, m);
    let out = dir.path().join("gs");
    let (model, out) = (model.display().to_string(), out.display().to_string());
    let base = [
        "--device",
        "cpu",
        "gradsim",
        "--model",
        &model,
        "--k",
        "6",
        "--batches",
        "1",
        "--batch-size",
        "4",
        "--exact",
        "--out",
        &out,
    ];
    let run = crate::common::studio(&[&base[..], &["--suggest-ranges", "3"]].concat());
    let err = crate::common::stderr(&run);
    assert!(run.status.success(), "{err}");
    assert!(err.contains("suggested ranges (N = 3): 0,"), "{err}");
    let json: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("gs/suggested_ranges.json")).unwrap(),
    )
    .unwrap();
    let b: Vec<u64> = json["suggested"]["boundaries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!((b.len(), b[0], b[3]), (4, 0, 1000));
    assert!(b.windows(2).all(|w| w[0] < w[1]), "{b:?}");
    assert_eq!(
        json["uniform"]["boundaries"],
        serde_json::json!([0, 333, 666, 1000])
    );
    let s = json["suggested"]["score"].as_f64().unwrap();
    let u = json["uniform"]["score"].as_f64().unwrap();
    assert!(
        s >= u - 1e-12,
        "the best split scores at least the uniform one: {s} vs {u}"
    );
    let too_many = crate::common::studio(&[&base[..], &["--suggest-ranges", "7"]].concat());
    let err = crate::common::stderr(&too_many);
    assert!(!too_many.status.success());
    assert!(
        err.contains("needs at least 7 timesteps; there are 6"),
        "{err}"
    );
}

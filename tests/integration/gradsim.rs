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
    sum_batches(&reference_batches(model, cfg, schedule), &|_| true)
}

/// g_k summed over the even and over the odd batches, each weighted 1/M, in
/// float64 on the host (the odd half is empty with one batch).
fn reference_halves(
    model: &UNet2DModel,
    cfg: &GradSimConfig,
    schedule: &NoiseSchedule,
) -> [Vec<Vec<f64>>; 2] {
    let batches = reference_batches(model, cfg, schedule);
    [
        sum_batches(&batches, &|m| m % 2 == 0),
        sum_batches(&batches, &|m| m % 2 == 1),
    ]
}

/// The sum over the batches `m` that `keep` keeps, per timestep (empty when
/// it keeps none).
fn sum_batches(batches: &[Vec<Vec<f64>>], keep: &dyn Fn(usize) -> bool) -> Vec<Vec<f64>> {
    let k = batches[0].len();
    (0..k)
        .map(|ki| {
            let mut sum: Vec<f64> = Vec::new();
            for (_, b) in batches.iter().enumerate().filter(|(m, _)| keep(*m)) {
                if sum.is_empty() {
                    sum = vec![0.0; b[ki].len()];
                }
                for (s, v) in sum.iter_mut().zip(&b[ki]) {
                    *s += v;
                }
            }
            sum
        })
        .collect()
}

/// Each batch's g_k (`[m][k][params]`), weighted 1/M, in float64 on the host.
fn reference_batches(
    model: &UNet2DModel,
    cfg: &GradSimConfig,
    schedule: &NoiseSchedule,
) -> Vec<Vec<Vec<f64>>> {
    let device = Device::flex();
    let tracked = model.clone().to_device(&device.clone().autodiff()).train();
    let data = data();
    (0..cfg.batches)
        .map(|m| {
            let mut rng = data.rng_for_step(cfg.seed, m as u64);
            let batch = data.batch(&mut rng, cfg.batch_size, 1000, &device);
            cfg.timesteps
                .iter()
                .map(|&t| {
                    let loss = eps_loss_per_sample(
                        &tracked,
                        schedule,
                        batch.x0.clone(),
                        batch.noise.clone(),
                        &vec![t; cfg.batch_size],
                    )
                    .mean();
                    let grads = loss.backward();
                    flat_grads(&tracked, &grads)
                        .into_iter()
                        .flat_map(|(_, g)| g.into_data().try_to_vec::<f32>().unwrap())
                        .map(|v| f64::from(v) / cfg.batches as f64)
                        .collect()
                })
                .collect()
        })
        .collect()
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
fn jackknife_standard_errors_match_float64_reference() {
    let (model, cfg, schedule) = setup();
    let cfg = GradSimConfig { batches: 3, ..cfg };
    let r = run(&model, &cfg, &schedule);
    let se = r
        .stderr
        .as_ref()
        .expect("three batches give standard errors");
    let batches = reference_batches(&model, &cfg, &schedule);
    let k = cfg.timesteps.len();
    // S^(-m): the cosines of the sums over every batch but m
    let leave_out: Vec<Vec<Vec<f64>>> =
        (0..3).map(|m| sum_batches(&batches, &|b| b != m)).collect();
    for i in 0..k {
        for j in 0..k {
            let s: Vec<f64> = leave_out.iter().map(|g| cos(&g[i], &g[j])).collect();
            let mean = s.iter().sum::<f64>() / 3.0;
            let want = (2.0 / 3.0 * s.iter().map(|v| (v - mean).powi(2)).sum::<f64>()).sqrt();
            let got = se[i * k + j];
            assert!(
                (got - want).abs() < 1e-4,
                "SE[{i},{j}] = {got}, float64 says {want}"
            );
        }
        assert!(
            se[i * k + i].abs() < 1e-6,
            "a cosine with itself is exactly 1"
        );
    }
    // the CSV carries them beside the cosines
    let dir = tempfile::tempdir().unwrap();
    deme_studio::engine::analysis::gradsim_files::write_gradsim_files(&r, dir.path()).unwrap();
    let csv = std::fs::read_to_string(dir.path().join("cosine.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("t_i,t_j,cosine,stderr"));
    let second: Vec<f64> = lines
        .nth(1)
        .unwrap()
        .split(',')
        .map(|v| v.parse().unwrap())
        .collect();
    assert_eq!(second[3], se[1]);
    // one batch: no standard errors
    let one = GradSimConfig { batches: 1, ..cfg };
    assert!(run(&model, &one, &schedule).stderr.is_none());
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

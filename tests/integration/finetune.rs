//! DeMe decoupled finetuning: the loss, the projection start, the N expert
//! folders, resume, cancel, schedules, the baseline, NaN stops, and the
//! `finetune` command end to end.

use crate::common;
use common::{stderr, studio};

use burn::module::Module;
use burn::tensor::{Device, Distribution, Tensor};
use deme_studio::engine::data::{ToyKind, sample_toy};
use deme_studio::engine::diffusion::NoiseSchedule;
use deme_studio::engine::model::{EpsModel, ToyMlp, ToyMlpConfig, UNet2DModel, export_params};
use deme_studio::engine::store::{AnyModel, ModelSpec, load_model};
use deme_studio::engine::train::loss::{LossWeighting, eps_loss_per_sample};
use deme_studio::engine::train::{
    BatchSampler, CancelToken, FinetuneConfig, FinetuneEvent, FinetuneJob, FinetuneOutcome, RunId,
    Schedule, StopReason, TrainEvent, finetune, finetune_loss, start_model,
};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::LazyLock;

// ---------------------------------------------------------------- helpers

fn dev() -> Device {
    Device::flex()
}

fn toy_data() -> BatchSampler {
    let points = sample_toy(ToyKind::EightGaussians, 4096, 1);
    BatchSampler::new(points.points, [2, 1, 1], "toy:8gaussians")
}

fn mlp_spec() -> ModelSpec {
    ModelSpec::Mlp(ToyMlpConfig::default())
}

fn mlp(seed: u64) -> ToyMlp {
    ToyMlp::new(&ToyMlpConfig::default(), seed, &dev())
}

const TINY_UNET: &str = r#"{"_class_name":"UNet2DModel","sample_size":16,"in_channels":1,"out_channels":1,
    "block_out_channels":[8,16],"down_block_types":["DownBlock2D","AttnDownBlock2D"],
    "up_block_types":["AttnUpBlock2D","UpBlock2D"],"layers_per_block":1,"norm_num_groups":4,
    "attention_head_dim":null,"norm_eps":1e-6,"flip_sin_to_cos":false,"freq_shift":1,"downsample_padding":0}"#;

fn unet_spec() -> ModelSpec {
    ModelSpec::from_config_json(TINY_UNET).unwrap()
}

fn unet(seed: u64) -> UNet2DModel {
    match unet_spec().build(seed, &dev()).unwrap() {
        AnyModel::UNet(m) => m,
        AnyModel::Mlp(_) => unreachable!(),
    }
}

fn image_data() -> BatchSampler {
    let n = 32;
    let v: Vec<f32> = (0..n * 16 * 16)
        .map(|i| ((i * 7919 % 200) as f32 / 100.0) - 1.0)
        .collect();
    BatchSampler::new(v, [1, 16, 16], "synthetic")
}

fn config(experts: usize, steps: u64) -> FinetuneConfig {
    FinetuneConfig {
        experts,
        steps_per_expert: steps,
        batch_size: 32,
        lr: 1e-3,
        projection: false,
        checkpoint_every: 1000,
        ..FinetuneConfig::default()
    }
}

struct Job<'a> {
    spec: &'a ModelSpec,
    data: &'a BatchSampler,
    config: &'a FinetuneConfig,
    out: &'a Path,
    baseline: bool,
    schedule: Schedule,
    resume: bool,
}

impl Job<'_> {
    fn get(&self) -> FinetuneJob<'_> {
        FinetuneJob {
            spec: self.spec,
            base_path: Path::new("base-model"),
            data: self.data,
            config: self.config,
            out_dir: self.out,
            experts: true,
            baseline: self.baseline,
            schedule: self.schedule,
            resume: self.resume,
        }
    }
}

static MLP_SPEC: LazyLock<ModelSpec> = LazyLock::new(mlp_spec);

fn mlp_job<'a>(config: &'a FinetuneConfig, out: &'a Path, data: &'a BatchSampler) -> Job<'a> {
    Job {
        spec: &MLP_SPEC,
        data,
        config,
        out,
        baseline: false,
        schedule: Schedule::Interleaved,
        resume: false,
    }
}

fn run_mlp(
    job: &Job,
    cancel: &CancelToken,
    events: &mut Vec<FinetuneEvent>,
) -> anyhow::Result<FinetuneOutcome<ToyMlp>> {
    finetune(mlp(0), &job.get(), &dev(), cancel, &mut |e| events.push(e))
}

fn max_diff<M: Module>(a: &M, b: &M) -> f32 {
    export_params(a)
        .iter()
        .zip(export_params(b).iter())
        .map(|((ka, _, va), (kb, _, vb))| {
            assert_eq!(ka, kb);
            va.iter()
                .zip(vb)
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max)
        })
        .fold(0f32, f32::max)
}

fn host(t: Tensor<4>) -> Vec<f32> {
    t.into_data().try_into_vec::<f32>().unwrap()
}

fn meta(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("deme.json")).unwrap()).unwrap()
}

// ---------------------------------------------------------------- loss

fn loss_inputs() -> (Tensor<4>, Tensor<4>, Vec<usize>) {
    let d = dev();
    let x0 = Tensor::<4>::random([8, 2, 1, 1], Distribution::Normal(0.0, 1.0), &d);
    let noise = Tensor::<4>::random([8, 2, 1, 1], Distribution::Normal(0.0, 1.0), &d);
    (x0, noise, vec![0, 5, 100, 250, 499, 500, 750, 999])
}

#[test]
fn lambda_zero_is_exactly_the_plain_loss() {
    let schedule = NoiseSchedule::ddpm(1000);
    let (x0, noise, t) = loss_inputs();
    let (model, frozen) = (mlp(1), mlp(2));
    let plain = eps_loss_per_sample(&model, &schedule, x0.clone(), noise.clone(), &t)
        .mean()
        .into_scalar::<f32>();
    let l = finetune_loss(
        &model,
        &frozen,
        0.0,
        LossWeighting::Uniform,
        &schedule,
        x0,
        noise,
        &t,
    );
    assert!(l.consistency.is_none(), "the frozen model is skipped");
    assert_eq!(l.total.into_scalar::<f32>().to_bits(), plain.to_bits());
}

#[test]
fn lambda_adds_exactly_lambda_times_the_consistency_term() {
    let schedule = NoiseSchedule::ddpm(1000);
    let (x0, noise, t) = loss_inputs();
    let (model, frozen) = (mlp(1), mlp(2));
    // the direct computation, on the host
    let xt = schedule.q_sample(x0.clone(), noise.clone(), &t);
    let tf: Vec<f32> = t.iter().map(|&v| v as f32).collect();
    let pred = host(model.eps(xt.clone(), &tf));
    let target = host(frozen.eps(xt, &tf));
    let eps = host(noise.clone());
    let mse = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| ((x - y) as f64).powi(2))
            .sum::<f64>()
            / a.len() as f64
    };
    let (want_eps, want_cons) = (mse(&eps, &pred), mse(&target, &pred));
    assert!(want_cons > 1e-3, "two random models disagree");
    for lambda in [0.5, 1.0, 3.0] {
        let l = finetune_loss(
            &model,
            &frozen,
            lambda,
            LossWeighting::Uniform,
            &schedule,
            x0.clone(),
            noise.clone(),
            &t,
        );
        let parts = l.parts().unwrap();
        let cons = parts.consistency.unwrap();
        let total = l.total.into_scalar::<f32>() as f64;
        assert!((parts.eps - want_eps).abs() < 1e-5 * want_eps, "eps term");
        assert!(
            (cons - want_cons).abs() < 1e-5 * want_cons,
            "consistency term"
        );
        assert!(
            (total - (want_eps + lambda * want_cons)).abs() < 1e-5 * total,
            "total {total} vs {}",
            want_eps + lambda * want_cons
        );
        // and the total is built from exactly these two terms
        assert!((total - (parts.eps + lambda * cons)).abs() < 1e-6 * total);
    }
}

#[test]
fn consistency_is_zero_at_the_start_and_projections_change_nothing() {
    let schedule = NoiseSchedule::ddpm(1000);
    let d = dev();
    let base = unet(3);
    let spec = unet_spec();
    let expert = start_model(&base, true, &spec, &d).unwrap();
    assert!(!expert.adapter_list.is_empty(), "projections were added");
    let x = Tensor::<4>::random([3, 1, 16, 16], Distribution::Normal(0.0, 1.0), &d);
    let t = [1.0, 400.0, 999.0];
    let a = host(base.eps(x.clone(), &t));
    let b = host(expert.eps(x, &t));
    let diff = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(
        diff < 1e-6,
        "identity projections changed the output by {diff}"
    );

    let x0 = Tensor::<4>::random([3, 1, 16, 16], Distribution::Normal(0.0, 1.0), &d);
    let noise = Tensor::<4>::random([3, 1, 16, 16], Distribution::Normal(0.0, 1.0), &d);
    // on the training (autodiff) device, exactly as the finetune loop runs it
    let trained = expert.to_device(&d.clone().autodiff()).train();
    let l = finetune_loss(
        &trained,
        &base,
        1.0,
        LossWeighting::Uniform,
        &schedule,
        x0,
        noise,
        &[10, 500, 990],
    );
    let cons = l.parts().unwrap().consistency.unwrap();
    assert!(cons < 1e-10, "consistency at step 0 is {cons}");
    assert!(l.total.is_tracked());

    // the toy MLP has no feature channels: projection is refused, clearly
    let err = start_model(&mlp(0), true, &mlp_spec(), &d).unwrap_err();
    assert!(format!("{err:#}").contains("does not apply"), "{err:#}");
}

// ---------------------------------------------------------------- the job

#[test]
fn experts_get_their_own_folders_ranges_and_new_weights() {
    let dir = tempfile::tempdir().unwrap();
    let data = toy_data();
    let c = config(3, 4);
    let mut job = mlp_job(&c, dir.path(), &data);
    job.baseline = true;
    let mut events = Vec::new();
    let out = run_mlp(&job, &CancelToken::new(), &mut events).unwrap();
    assert!(!out.cancelled);
    assert_eq!(out.models.len(), 4);
    let ranges = [[0, 333], [333, 666], [666, 1000]];
    let base = mlp(0);
    for (k, range) in ranges.iter().enumerate() {
        let folder = dir.path().join(format!("expert_{}", k + 1));
        let m = meta(&folder);
        assert_eq!(m["kind"], "finetune");
        assert_eq!(m["timestep_range"], serde_json::json!(range));
        assert_eq!(m["step"], 4);
        assert_eq!(m["train_config"]["experts"], 3);
        assert_eq!(m["train_config"]["p"], 0.3);
        assert_eq!(m["parent"], "base-model");
        assert!(folder.join("train_state.safetensors").exists());
        let loaded = load_model(&folder, &dev()).unwrap();
        let AnyModel::Mlp(loaded) = loaded.model else {
            panic!("expected the toy MLP");
        };
        let d = max_diff(&loaded, &base);
        assert!(d > 1e-5, "expert {} did not move ({d})", k + 1);
        assert_eq!(out.models[k].0, RunId::Expert(k));
        assert!(
            max_diff(&loaded, &out.models[k].1) < 1e-7,
            "returned = saved"
        );
    }
    let m = meta(&dir.path().join("baseline"));
    assert_eq!(m["step"], 12, "the baseline gets N x steps per expert");
    assert!(m["timestep_range"].is_null());

    // every run announced itself, stepped with its loss split and finished
    for run in [RunId::Expert(0), RunId::Expert(2), RunId::Baseline] {
        let mine: Vec<&FinetuneEvent> = events.iter().filter(|e| e.run == run).collect();
        assert!(matches!(
            mine[0].event,
            TrainEvent::Started { first_step: 0, .. }
        ));
        let steps = mine
            .iter()
            .filter(|e| matches!(e.event, TrainEvent::Step { .. }))
            .count();
        assert_eq!(steps as u64, c.steps_of(run));
        assert!(matches!(
            mine.last().unwrap().event,
            TrainEvent::Finished { .. }
        ));
    }
    let expert_step = events
        .iter()
        .find(|e| e.run == RunId::Expert(1) && matches!(e.event, TrainEvent::Step { .. }))
        .unwrap();
    assert!(expert_step.parts.unwrap().consistency.is_some());
    let baseline_step = events
        .iter()
        .find(|e| e.run == RunId::Baseline && matches!(e.event, TrainEvent::Step { .. }))
        .unwrap();
    assert!(
        baseline_step.parts.unwrap().consistency.is_none(),
        "no consistency unless asked"
    );
    // interleaved: expert 2 steps before expert 1 is done
    let first_e2 = events
        .iter()
        .position(|e| e.run == RunId::Expert(1) && matches!(e.event, TrainEvent::Step { .. }))
        .unwrap();
    let e1_done = events
        .iter()
        .position(|e| e.run == RunId::Expert(0) && matches!(e.event, TrainEvent::Finished { .. }))
        .unwrap();
    assert!(first_e2 < e1_done);
}

#[test]
fn sequential_and_interleaved_give_the_same_experts() {
    let data = toy_data();
    let c = config(2, 5);
    let mut outs = Vec::new();
    for schedule in [Schedule::Sequential, Schedule::Interleaved] {
        let dir = tempfile::tempdir().unwrap();
        let mut job = mlp_job(&c, dir.path(), &data);
        job.schedule = schedule;
        job.baseline = true;
        let mut events = Vec::new();
        outs.push(run_mlp(&job, &CancelToken::new(), &mut events).unwrap());
        if schedule == Schedule::Sequential {
            // one run at a time: all of expert 1's events come before expert 2's
            let last_e1 = events
                .iter()
                .rposition(|e| e.run == RunId::Expert(0))
                .unwrap();
            let first_e2 = events
                .iter()
                .position(|e| e.run == RunId::Expert(1))
                .unwrap();
            assert!(last_e1 < first_e2);
        }
    }
    assert_eq!(outs[0].models.len(), 3);
    for ((ra, a), (rb, b)) in outs[0].models.iter().zip(&outs[1].models) {
        assert_eq!(ra, rb);
        let d = max_diff(a, b);
        assert!(d <= 1e-6, "{ra} differs by {d} between schedules");
    }
    // and the experts differ from each other (their own ranges and streams)
    assert!(max_diff(&outs[0].models[0].1, &outs[0].models[1].1) > 1e-5);
}

#[test]
fn listed_boundaries_train_their_ranges_and_uniform_ones_match_the_uniform_path() {
    let data = toy_data();
    let run = |c: &FinetuneConfig| {
        let dir = tempfile::tempdir().unwrap();
        let job = mlp_job(c, dir.path(), &data);
        let out = run_mlp(&job, &CancelToken::new(), &mut Vec::new()).unwrap();
        let ranges: Vec<serde_json::Value> = (1..=c.experts)
            .map(|i| meta(&dir.path().join(format!("expert_{i}")))["timestep_range"].clone())
            .collect();
        (out, ranges)
    };
    // the uniform boundaries as a list: the same experts, bit for bit
    let uniform = config(2, 4);
    let listed = FinetuneConfig {
        boundaries: Some(vec![0, 500, 1000]),
        ..uniform.clone()
    };
    let (a, ranges_a) = run(&uniform);
    let (b, ranges_b) = run(&listed);
    assert_eq!(ranges_a, ranges_b);
    for ((ra, x), (_, y)) in a.models.iter().zip(&b.models) {
        assert_eq!(max_diff(x, y), 0.0, "{ra}");
    }
    // other boundaries: each expert stores and trains its own range
    let skewed = FinetuneConfig {
        boundaries: Some(vec![0, 120, 1000]),
        ..uniform.clone()
    };
    let (c, ranges_c) = run(&skewed);
    assert_eq!(
        ranges_c,
        [serde_json::json!([0, 120]), serde_json::json!([120, 1000])]
    );
    assert!(max_diff(&c.models[0].1, &a.models[0].1) > 0.0);
    // boundaries that do not fit the job are refused
    let bad = FinetuneConfig {
        boundaries: Some(vec![0, 600, 500, 1000]),
        experts: 3,
        ..uniform
    };
    let e = bad.validate().unwrap_err();
    assert!(e.to_string().contains("increase"), "{e}");
}

fn cancel_at(run: RunId, step: u64, cancel: &CancelToken) -> impl FnMut(&FinetuneEvent) + '_ {
    move |e| {
        if e.run == run && matches!(e.event, TrainEvent::Step { step: s, .. } if s == step) {
            cancel.cancel();
        }
    }
}

#[test]
fn cancel_leaves_loadable_partial_checkpoints_and_resume_finishes_identically() {
    let data = toy_data();
    let c = config(3, 6);
    let straight = tempfile::tempdir().unwrap();
    let a = run_mlp(
        &mlp_job(&c, straight.path(), &data),
        &CancelToken::new(),
        &mut Vec::new(),
    )
    .unwrap();

    for schedule in [Schedule::Interleaved, Schedule::Sequential] {
        let dir = tempfile::tempdir().unwrap();
        let mut job = mlp_job(&c, dir.path(), &data);
        job.schedule = schedule;
        let cancel = CancelToken::new();
        let mut events = Vec::new();
        let mut trip = cancel_at(RunId::Expert(1), 3, &cancel);
        let partial = finetune(mlp(0), &job.get(), &dev(), &cancel, &mut |e| {
            trip(&e);
            events.push(e)
        })
        .unwrap();
        assert!(partial.cancelled);
        let stopped: Vec<RunId> = events
            .iter()
            .filter(|e| {
                matches!(
                    e.event,
                    TrainEvent::Stopped {
                        reason: StopReason::Cancelled,
                        ..
                    }
                )
            })
            .map(|e| e.run)
            .collect();
        // interleaved: expert 1 and 2 have 3 steps, expert 3 has 2; sequential: expert 1
        // finished, expert 2 stopped at 3, expert 3 never started
        let want: Vec<(usize, Option<u64>)> = match schedule {
            Schedule::Interleaved => vec![(1, Some(3)), (2, Some(3)), (3, Some(2))],
            Schedule::Sequential => vec![(1, Some(6)), (2, Some(3)), (3, None)],
        };
        for (i, step) in want {
            let folder = dir.path().join(format!("expert_{i}"));
            match step {
                Some(s) => {
                    assert_eq!(meta(&folder)["step"], s, "{schedule} expert_{i}");
                    load_model(&folder, &dev()).unwrap();
                }
                None => assert!(!folder.exists(), "{schedule}: expert_{i} never started"),
            }
        }
        assert!(stopped.contains(&RunId::Expert(1)), "{stopped:?}");

        // a fresh start over it is refused; resume finishes to the same weights
        let err = run_mlp(&job, &CancelToken::new(), &mut Vec::new()).unwrap_err();
        assert!(format!("{err:#}").contains("--resume"), "{err:#}");
        job.resume = true;
        let b = run_mlp(&job, &CancelToken::new(), &mut Vec::new()).unwrap();
        assert!(!b.cancelled);
        for ((ra, ma), (rb, mb)) in a.models.iter().zip(&b.models) {
            assert_eq!(ra, rb);
            let d = max_diff(ma, mb);
            assert!(
                d <= 1e-6,
                "{schedule}: {ra} differs by {d} after cancel + resume"
            );
            assert_eq!(meta(&dir.path().join(ra.folder_name()))["step"], 6);
        }
    }
}

#[test]
fn resume_refuses_other_settings() {
    let dir = tempfile::tempdir().unwrap();
    let data = toy_data();
    let c = config(2, 2);
    run_mlp(
        &mlp_job(&c, dir.path(), &data),
        &CancelToken::new(),
        &mut Vec::new(),
    )
    .unwrap();
    let other = FinetuneConfig {
        p: 0.5,
        ..c.clone()
    };
    let mut job = mlp_job(&other, dir.path(), &data);
    job.resume = true;
    let err = format!(
        "{:#}",
        run_mlp(&job, &CancelToken::new(), &mut Vec::new()).unwrap_err()
    );
    assert!(err.contains("p: 0.3 vs 0.5"), "{err}");
    // more steps per expert is fine
    let longer = FinetuneConfig {
        steps_per_expert: 3,
        ..c.clone()
    };
    let mut job = mlp_job(&longer, dir.path(), &data);
    job.resume = true;
    let mut events = Vec::new();
    run_mlp(&job, &CancelToken::new(), &mut events).unwrap();
    assert!(events.iter().any(|e| matches!(
        e.event,
        TrainEvent::Started {
            first_step: 2,
            total_steps: 3
        }
    )));
    // toy MLP with projection: one clear message before anything runs
    let proj = FinetuneConfig {
        projection: true,
        ..c
    };
    let fresh = tempfile::tempdir().unwrap();
    let err = run_mlp(
        &mlp_job(&proj, fresh.path(), &data),
        &CancelToken::new(),
        &mut Vec::new(),
    )
    .unwrap_err();
    assert!(format!("{err:#}").contains("--no-projection"), "{err:#}");
    assert!(std::fs::read_dir(fresh.path()).unwrap().next().is_none());
}

#[test]
fn a_baseline_is_reused_beside_other_ranges_but_not_other_optimizer_settings() {
    let dir = tempfile::tempdir().unwrap();
    let data = toy_data();
    let c = config(2, 2);
    let baseline_job = |config: &FinetuneConfig, resume: bool| {
        let job = Job {
            baseline: true,
            resume,
            ..mlp_job(config, dir.path(), &data)
        };
        let mut events = Vec::new();
        let job = FinetuneJob {
            experts: false,
            ..job.get()
        };
        finetune(mlp(0), &job, &dev(), &CancelToken::new(), &mut |e| {
            events.push(e)
        })
        .map(|o| (o, events))
    };
    let (first, _) = baseline_job(&c, false).unwrap();
    // other ranges, p and expert projection: the finished baseline is taken as it is
    let ranges = FinetuneConfig {
        boundaries: Some(vec![0, 300, 1000]),
        p: 0.0,
        projection: true,
        ..c.clone()
    };
    let (again, events) = baseline_job(&ranges, true).unwrap();
    assert!(events.iter().any(|e| matches!(
        e.event,
        TrainEvent::Started {
            first_step: 4,
            total_steps: 4
        }
    )));
    assert_eq!(max_diff(&first.models[0].1, &again.models[0].1), 0.0);
    // another learning rate is another baseline
    let lr = FinetuneConfig { lr: 5e-4, ..c };
    let err = format!("{:#}", baseline_job(&lr, true).unwrap_err());
    assert!(err.contains("lr: 0.001 vs 0.0005"), "{err}");
}

#[test]
fn nan_loss_stops_and_keeps_the_last_good_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let data = toy_data();
    let c = config(2, 2);
    run_mlp(
        &mlp_job(&c, dir.path(), &data),
        &CancelToken::new(),
        &mut Vec::new(),
    )
    .unwrap();
    let files = [
        "diffusion_pytorch_model.safetensors",
        "train_state.safetensors",
        "deme.json",
        "config.json",
    ];
    let root = dir.path();
    let snapshot = || -> Vec<Vec<u8>> {
        let mut all = Vec::new();
        for e in ["expert_1", "expert_2"] {
            for f in files {
                all.push(std::fs::read(root.join(e).join(f)).unwrap());
            }
        }
        all
    };
    let before = snapshot();
    let poisoned = BatchSampler::new(vec![f32::NAN; 2 * 64], [2, 1, 1], "nan");
    let longer = FinetuneConfig {
        steps_per_expert: 5,
        ..c
    };
    let mut job = mlp_job(&longer, dir.path(), &poisoned);
    job.resume = true;
    let mut events = Vec::new();
    let err = format!(
        "{:#}",
        run_mlp(&job, &CancelToken::new(), &mut events).unwrap_err()
    );
    assert!(err.contains("expert 1") && err.contains("NaN"), "{err}");
    assert!(err.contains("intact"), "{err}");
    assert!(events.iter().any(|e| matches!(
        e.event,
        TrainEvent::Stopped {
            reason: StopReason::NonFinite,
            ..
        }
    )));
    assert!(
        before == snapshot(),
        "a checkpoint changed after the NaN stop"
    );
}

#[test]
fn unet_experts_carry_projections_that_load_back() {
    let dir = tempfile::tempdir().unwrap();
    let spec = unet_spec();
    let data = image_data();
    let c = FinetuneConfig {
        experts: 2,
        steps_per_expert: 2,
        batch_size: 4,
        lr: 1e-3,
        projection: true,
        ..FinetuneConfig::default()
    };
    let job = FinetuneJob {
        spec: &spec,
        base_path: Path::new("base-model"),
        data: &data,
        config: &c,
        out_dir: dir.path(),
        experts: true,
        baseline: false,
        schedule: Schedule::Interleaved,
        resume: false,
    };
    let out = finetune(unet(0), &job, &dev(), &CancelToken::new(), &mut |_| {}).unwrap();
    assert_eq!(out.models.len(), 2);
    for i in 1..=2 {
        let folder = dir.path().join(format!("expert_{i}"));
        let loaded = load_model(&folder, &dev()).unwrap();
        let AnyModel::UNet(m) = loaded.model else {
            panic!("expected a UNet");
        };
        assert_eq!(
            m.adapter_list.len(),
            UNet2DModel::projection_channels(match &spec {
                ModelSpec::UNet(c) => c,
                ModelSpec::Mlp(_) => unreachable!(),
            })
            .len()
        );
        let moved = export_params(&m)
            .into_iter()
            .filter(|(k, _, _)| k.starts_with("adapter_list."))
            .any(|(_, shape, v)| {
                let c = shape[0];
                v.iter()
                    .enumerate()
                    .any(|(j, &x)| (x - if j / c == j % c { 1.0 } else { 0.0 }).abs() > 1e-7)
            });
        assert!(moved, "expert_{i}: the projections were trained");
        assert!(
            common::check_interop_files(&folder),
            "expert_{i} has projections"
        );
    }
}

// ---------------------------------------------------------------- the command line

fn run_ok(args: &[&str]) -> String {
    let o = studio(args);
    assert!(o.status.success(), "{args:?} failed:\n{}", stderr(&o));
    stderr(&o)
}

fn error_lines(o: &Output) -> usize {
    stderr(o).lines().filter(|l| l.starts_with("error")).count()
}

#[test]
fn cli_finetunes_a_toy_model_with_baseline_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base");
    let out = dir.path().join("deme");
    let (base_s, out_s) = (base.to_str().unwrap(), out.to_str().unwrap());
    run_ok(&[
        "--device",
        "cpu",
        "train",
        "--data",
        "toy:moons",
        "--steps",
        "10",
        "--batch-size",
        "32",
        "--out",
        base_s,
    ]);
    let ft = [
        "--device",
        "cpu",
        "finetune",
        "--base",
        base_s,
        "--data",
        "toy:moons",
        "--out",
        out_s,
        "--batch-size",
        "16",
    ];
    let log = run_ok(&[&ft[..], &["--steps-per-expert", "3", "--baseline"]].concat());
    assert!(log.contains("expert 4"), "{log}");
    assert!(log.contains("images/s"), "{log}");
    for (i, range) in [[0, 250], [250, 500], [500, 750], [750, 1000]]
        .iter()
        .enumerate()
    {
        let m = meta(&out.join(format!("expert_{}", i + 1)));
        assert_eq!(m["timestep_range"], serde_json::json!(range));
        assert_eq!(m["step"], 3);
        assert_eq!(
            m["train_config"]["projection"], false,
            "not applicable to the MLP"
        );
    }
    assert_eq!(meta(&out.join("baseline"))["step"], 12);
    assert!(
        meta(&out.join("expert_1"))["parent"]
            .as_str()
            .unwrap()
            .ends_with("base")
    );

    // again without --resume: refused; with it and more steps: continues
    let o = studio(&[&ft[..], &["--steps-per-expert", "3"]].concat());
    assert!(
        !o.status.success() && stderr(&o).contains("--resume"),
        "{}",
        stderr(&o)
    );
    let o = studio(&[&ft[..], &["--resume", "--p", "0.9"]].concat());
    assert!(
        !o.status.success() && stderr(&o).contains("p: 0.3 vs 0.9"),
        "{}",
        stderr(&o)
    );
    assert_eq!(error_lines(&o), 1, "{}", stderr(&o));
    run_ok(&[&ft[..], &["--resume", "--steps-per-expert", "4"]].concat());
    assert_eq!(meta(&out.join("expert_2"))["step"], 4);
    assert_eq!(
        meta(&out.join("baseline"))["step"],
        12,
        "the baseline was not asked for"
    );

    let o = studio(&["inspect", out.join("expert_3").to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn cli_finetunes_a_tiny_unet_on_mnist_with_projections() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.json");
    std::fs::write(
        &cfg,
        TINY_UNET.replace("\"sample_size\":16", "\"sample_size\":32"),
    )
    .unwrap();
    let base = dir.path().join("base");
    let out = dir.path().join("deme");
    run_ok(&[
        "--device",
        "cpu",
        "train",
        "--data",
        "mnist",
        "--model",
        cfg.to_str().unwrap(),
        "--steps",
        "2",
        "--batch-size",
        "4",
        "--out",
        base.to_str().unwrap(),
    ]);
    run_ok(&[
        "--device",
        "cpu",
        "finetune",
        "--base",
        base.to_str().unwrap(),
        "--data",
        "mnist",
        "--out",
        out.to_str().unwrap(),
        "--experts",
        "2",
        "--steps-per-expert",
        "2",
        "--batch-size",
        "4",
        "--schedule",
        "sequential",
        "--per-sample",
        "--no-antithetic",
        "--lambda",
        "0.5",
    ]);
    let m = meta(&out.join("expert_2"));
    assert_eq!(m["timestep_range"], serde_json::json!([500, 1000]));
    assert_eq!(m["train_config"]["mix"], "per-sample");
    assert_eq!(m["train_config"]["antithetic"], false);
    assert_eq!(m["train_config"]["consistency_weight"], 0.5);
    let weights = deme_studio::engine::checkpoint::read_safetensors(
        out.join("expert_1")
            .join("diffusion_pytorch_model.safetensors"),
    )
    .unwrap();
    assert!(weights.contains_key("adapter_list.0.weight"));
    assert!(!out.join("baseline").exists());
}

#[test]
fn cli_bad_input_gives_one_clear_error() {
    let o = studio(&["finetune", "--help"]);
    assert!(o.status.success());
    let help = String::from_utf8_lossy(&o.stdout);
    for flag in [
        "--base",
        "--experts",
        "--p ",
        "--per-sample",
        "--no-antithetic",
        "--lambda",
        "--no-projection",
        "--steps-per-expert",
        "--schedule",
        "--baseline-only",
        "--resume",
    ] {
        assert!(help.contains(flag), "finetune --help lacks {flag}:\n{help}");
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let out_s = out.to_str().unwrap();
    let missing = dir.path().join("no-such-base");
    let o = studio(&[
        "--device",
        "cpu",
        "finetune",
        "--base",
        missing.to_str().unwrap(),
        "--out",
        out_s,
    ]);
    assert!(!o.status.success());
    assert_eq!(error_lines(&o), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains("no-such-base"), "{}", stderr(&o));

    // a UNet whose input has 2 channels cannot take MNIST
    let base = dir.path().join("base");
    std::fs::create_dir_all(&base).unwrap();
    let two = TINY_UNET
        .replace("\"in_channels\":1", "\"in_channels\":2")
        .replace("\"out_channels\":1", "\"out_channels\":2");
    std::fs::write(base.join("config.json"), &two).unwrap();
    let spec = ModelSpec::from_config_json(&two).unwrap();
    let AnyModel::UNet(m) = spec.build(0, &dev()).unwrap() else {
        unreachable!()
    };
    deme_studio::engine::store::save_model_folder(
        &base,
        &spec,
        export_params(&m),
        &Default::default(),
        deme_studio::engine::checkpoint::KeyStyle::Modern,
        None,
    )
    .unwrap();
    let base_s = base.to_str().unwrap();
    let o = studio(&[
        "--device", "cpu", "finetune", "--base", base_s, "--data", "mnist", "--out", out_s,
    ]);
    assert!(!o.status.success());
    assert_eq!(error_lines(&o), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains("2x16x16"), "{}", stderr(&o));
    // points for an image model
    let o = studio(&[
        "--device",
        "cpu",
        "finetune",
        "--base",
        base_s,
        "--data",
        "toy:moons",
        "--out",
        out_s,
    ]);
    assert!(
        !o.status.success() && stderr(&o).contains("2D points"),
        "{}",
        stderr(&o)
    );
    // settings out of range
    let o = studio(&[
        "--device", "cpu", "finetune", "--base", base_s, "--out", out_s, "--p", "2",
    ]);
    assert!(
        !o.status.success() && stderr(&o).contains("p must be in [0, 1]"),
        "{}",
        stderr(&o)
    );
    assert!(!out.exists(), "nothing was written");
}

#[cfg(unix)]
#[test]
fn cli_ctrl_c_saves_every_run_and_resume_continues() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base");
    let out = dir.path().join("deme");
    let (base_s, out_s) = (base.to_str().unwrap(), out.to_str().unwrap());
    run_ok(&[
        "--device",
        "cpu",
        "train",
        "--data",
        "toy:moons",
        "--steps",
        "5",
        "--batch-size",
        "32",
        "--out",
        base_s,
    ]);
    let ft = [
        "--device",
        "cpu",
        "finetune",
        "--base",
        base_s,
        "--data",
        "toy:moons",
        "--out",
        out_s,
        "--batch-size",
        "16",
        "--experts",
        "2",
        "--steps-per-expert",
        "1000000",
    ];
    let mut child = Command::new(env!("CARGO_BIN_EXE_deme-studio"))
        .args(ft)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut log = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        log.push_str(&line);
        log.push('\n');
        if line.starts_with("finetuning") {
            break;
        }
    }
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    for line in lines {
        log.push_str(&line.unwrap());
        log.push('\n');
    }
    let status = child.wait().unwrap();
    assert!(!status.success(), "a cancelled job exits non-zero:\n{log}");
    assert!(
        log.contains("cancelled") && log.contains("--resume"),
        "{log}"
    );
    let mut steps = Vec::new();
    for i in 1..=2 {
        let folder = out.join(format!("expert_{i}"));
        load_model(&folder, &dev()).unwrap();
        let s = meta(&folder)["step"].as_u64().unwrap();
        assert!(s > 0 && s < 1_000_000, "expert_{i} saved at step {s}");
        steps.push(s);
    }
    assert!(
        steps[0].abs_diff(steps[1]) <= 1,
        "interleaved runs stop together: {steps:?}"
    );
    // resume with a reachable end
    let target = (steps[0] + 2).to_string();
    run_ok(
        &[
            &ft[..11],
            &["--experts", "2", "--steps-per-expert", &target, "--resume"],
        ]
        .concat(),
    );
    assert_eq!(
        meta(&out.join("expert_1"))["step"].as_u64().unwrap(),
        steps[0] + 2
    );
}

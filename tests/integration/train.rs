//! The pretraining loop: it learns, it resumes, it cancels cleanly, and a
//! non-finite loss stops it without touching the last good checkpoint.

use burn::tensor::Device;
use deme_studio::engine::data::{ToyKind, sample_toy};
use deme_studio::engine::model::{ToyMlp, ToyMlpConfig};
use deme_studio::engine::store::ModelSpec;
use deme_studio::engine::train::{
    BatchSampler, CancelToken, RunStart, TrainConfig, TrainEvent, fresh_run, pretrain,
};

fn toy_data() -> BatchSampler {
    let points = sample_toy(ToyKind::EightGaussians, 4096, 1);
    BatchSampler::new(points.points, [2, 1, 1], "toy:8gaussians")
}

fn start(seed: u64) -> RunStart<ToyMlp> {
    let model = ToyMlp::new(&ToyMlpConfig::default(), seed, &Device::flex());
    fresh_run(model, &TrainConfig::default(), &Device::flex())
}

fn config(steps: u64) -> TrainConfig {
    TrainConfig {
        steps,
        batch_size: 256,
        lr: 2e-3,
        warmup_steps: 10,
        checkpoint_every: 1000,
        ..TrainConfig::default()
    }
}

fn losses(events: &[TrainEvent]) -> Vec<f64> {
    events
        .iter()
        .filter_map(|e| match e {
            TrainEvent::Step { loss, .. } => Some(*loss),
            _ => None,
        })
        .collect()
}

#[test]
fn loss_goes_down_on_toy_data() {
    let dir = tempfile::tempdir().unwrap();
    // the original toy MLP: the preset's Gaussian skip starts near the loss
    // of the Gaussian fit already, leaving less of a fall to see
    let original = ToyMlpConfig {
        x_frequencies: 0,
        time_every_layer: false,
        gaussian_skip: false,
        ..ToyMlpConfig::default()
    };
    let spec = ModelSpec::Mlp(original.clone());
    let model = ToyMlp::new(&original, 0, &Device::flex());
    let mut events = Vec::new();
    pretrain(
        fresh_run(model, &TrainConfig::default(), &Device::flex()),
        &spec,
        &toy_data(),
        &config(300),
        dir.path(),
        &CancelToken::new(),
        &mut |e| events.push(e),
    )
    .unwrap();
    let l = losses(&events);
    assert_eq!(l.len(), 300);
    let head: f64 = l[..30].iter().sum::<f64>() / 30.0;
    let tail: f64 = l[l.len() - 30..].iter().sum::<f64>() / 30.0;
    assert!(
        tail < 0.8 * head,
        "loss did not fall: first 30 steps {head:.4}, last 30 {tail:.4}"
    );
    assert!(matches!(
        events.last(),
        Some(TrainEvent::Finished { step: 300 })
    ));
}

#[test]
fn cancel_saves_and_stops_at_a_step_boundary() {
    let dir = tempfile::tempdir().unwrap();
    let spec = ModelSpec::Mlp(ToyMlpConfig::default());
    let cancel = CancelToken::new();
    let mut events = Vec::new();
    let c = cancel.clone();
    pretrain(
        start(0),
        &spec,
        &toy_data(),
        &config(1000),
        dir.path(),
        &cancel,
        &mut |e| {
            if matches!(e, TrainEvent::Step { step: 5, .. }) {
                c.cancel();
            }
            events.push(e)
        },
    )
    .unwrap();
    assert_eq!(losses(&events).len(), 5);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, TrainEvent::Checkpoint { step: 5, .. }))
    );
    let meta = std::fs::read_to_string(dir.path().join("deme.json")).unwrap();
    assert!(meta.contains("\"step\": 5"), "{meta}");
}

#[test]
fn nan_loss_stops_and_keeps_the_last_good_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let spec = ModelSpec::Mlp(ToyMlpConfig::default());
    let mut cfg = config(4);
    cfg.checkpoint_every = 2;
    pretrain(
        start(0),
        &spec,
        &toy_data(),
        &cfg,
        dir.path(),
        &CancelToken::new(),
        &mut |_| {},
    )
    .unwrap();
    let files = [
        "diffusion_pytorch_model.safetensors",
        "train_state.safetensors",
        "deme.json",
        "config.json",
    ];
    let before: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(dir.path().join(f)).unwrap())
        .collect();

    let poisoned = BatchSampler::new(vec![f32::NAN; 2 * 64], [2, 1, 1], "nan");
    let mut events = Vec::new();
    let err = pretrain(
        start(1),
        &spec,
        &poisoned,
        &config(10),
        dir.path(),
        &CancelToken::new(),
        &mut |e| events.push(e),
    )
    .unwrap_err();
    assert!(
        format!("{err:#}").contains("NaN") || format!("{err:#}").contains("nan"),
        "{err:#}"
    );
    assert!(events.iter().any(|e| matches!(
        e,
        TrainEvent::Stopped {
            reason: deme_studio::engine::train::StopReason::NonFinite,
            ..
        }
    )));
    for (f, b) in files.iter().zip(&before) {
        assert_eq!(
            &std::fs::read(dir.path().join(f)).unwrap(),
            b,
            "{f} changed"
        );
    }
}

#[test]
fn resume_continues_exactly_where_the_run_left_off() {
    use deme_studio::engine::model::export_params;
    use deme_studio::engine::train::resume_run;
    let spec = ModelSpec::Mlp(ToyMlpConfig::default());
    let straight = tempfile::tempdir().unwrap();
    let a = pretrain(
        start(0),
        &spec,
        &toy_data(),
        &config(8),
        straight.path(),
        &CancelToken::new(),
        &mut |_| {},
    )
    .unwrap();

    let split = tempfile::tempdir().unwrap();
    pretrain(
        start(0),
        &spec,
        &toy_data(),
        &config(4),
        split.path(),
        &CancelToken::new(),
        &mut |_| {},
    )
    .unwrap();
    let template = ToyMlp::new(&ToyMlpConfig::default(), 99, &Device::flex());
    let resumed = resume_run(template, split.path(), &config(8), &Device::flex()).unwrap();
    assert_eq!(resumed.step, 4);
    let b = pretrain(
        resumed,
        &spec,
        &toy_data(),
        &config(8),
        split.path(),
        &CancelToken::new(),
        &mut |_| {},
    )
    .unwrap();
    for ((ka, _, va), (kb, _, vb)) in export_params(&a).iter().zip(export_params(&b).iter()) {
        assert_eq!(ka, kb);
        let d = va
            .iter()
            .zip(vb)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(d < 1e-6, "`{ka}` differs by {d} after resume");
    }
}

#[test]
fn non_finite_weights_are_never_saved_over_a_good_checkpoint() {
    use deme_studio::engine::model::params::import_params;
    use deme_studio::engine::store::RunCheckpoint;
    let dir = tempfile::tempdir().unwrap();
    let spec = ModelSpec::Mlp(ToyMlpConfig::default());
    let good = ToyMlp::new(&ToyMlpConfig::default(), 0, &Device::flex());
    fn checkpoint<'a>(spec: &'a ModelSpec, m: &'a ToyMlp, step: u64) -> RunCheckpoint<'a, ToyMlp> {
        RunCheckpoint {
            spec,
            weights: m,
            kind: "pretrain",
            step,
            timestep_range: None,
            data: None,
            train_config: serde_json::Value::Null,
            parent: None,
            state: None,
        }
    }
    checkpoint(&spec, &good, 1).save(dir.path()).unwrap();
    let weights = dir.path().join("diffusion_pytorch_model.safetensors");
    let before = std::fs::read(&weights).unwrap();
    let mut first = true;
    let poisoned = import_params(good.clone(), &mut |_, shape| {
        let n = shape.iter().product();
        let v = if std::mem::take(&mut first) {
            f32::INFINITY
        } else {
            0.5
        };
        Ok(vec![v; n])
    })
    .unwrap();
    let err = format!(
        "{:#}",
        checkpoint(&spec, &poisoned, 2)
            .save(dir.path())
            .unwrap_err()
    );
    assert!(
        err.contains("inf") && err.contains("previous checkpoint") && err.contains("intact"),
        "{err}"
    );
    assert_eq!(std::fs::read(&weights).unwrap(), before);
    let meta = deme_studio::engine::checkpoint::read_meta(dir.path().join("deme.json")).unwrap();
    assert_eq!(meta.step, 1);
}

#[test]
fn heldout_curve_is_measured_kept_on_resume_and_the_lr_decays_at_the_end() {
    use deme_studio::engine::train::heldout_curve::{LOSS_CURVE_FILE, LOSS_CURVE_PNG, read_curve};
    use deme_studio::engine::train::{pretrain_watched, resume_run};
    let spec = ModelSpec::Mlp(ToyMlpConfig::default());
    let heldout = BatchSampler::new(
        sample_toy(ToyKind::EightGaussians, 300, 9).points,
        [2, 1, 1],
        "held out",
    );
    let cfg = |steps| TrainConfig {
        eval_every: 4,
        eval_samples: 64,
        lr_decay_steps: 6,
        ..config(steps)
    };
    let dir = tempfile::tempdir().unwrap();
    let mut events = Vec::new();
    pretrain_watched(
        start(0),
        &spec,
        &toy_data(),
        Some(&heldout),
        &cfg(10),
        dir.path(),
        &CancelToken::new(),
        &mut |e| events.push(e),
    )
    .unwrap();
    // measured every 4 steps and at the end: 4, 8, 10
    let measured: Vec<(u64, f64)> = events
        .iter()
        .filter_map(|e| match e {
            TrainEvent::HeldOut { step, loss } => Some((*step, *loss)),
            _ => None,
        })
        .collect();
    assert_eq!(measured.iter().map(|m| m.0).collect::<Vec<_>>(), [4, 8, 10]);
    let curve = read_curve(&dir.path().join(LOSS_CURVE_FILE)).unwrap();
    assert_eq!(curve.len(), 3);
    for (row, (step, loss)) in curve.iter().zip(&measured) {
        assert_eq!((row.step, row.heldout_loss), (*step, *loss));
        assert!(row.train_loss.is_finite() && row.train_loss > 0.0);
    }
    assert!(dir.path().join(LOSS_CURVE_PNG).exists());
    // the learning rate: warm-up over 10 steps ends at step 9, and the last 6 steps
    // (4..10) fall linearly: at step 9 (the last) it is lr / 6
    let lrs: Vec<f64> = events
        .iter()
        .filter_map(|e| match e {
            TrainEvent::Step { lr, .. } => Some(*lr),
            _ => None,
        })
        .collect();
    let c = cfg(10);
    assert!((lrs[9] - c.lr / 6.0).abs() < 1e-12, "{lrs:?}");
    // step 5: warm-up 6/10 of the way, decay 5/6 left
    assert!((lrs[5] - c.lr * 0.6 * 5.0 / 6.0).abs() < 1e-12, "{lrs:?}");

    // interrupted at 6 and resumed to 10: the rows after the checkpoint are dropped,
    // and the curve ends like the straight run's
    let split = tempfile::tempdir().unwrap();
    let mut c6 = cfg(10);
    c6.steps = 6;
    c6.lr_decay_steps = 2;
    pretrain_watched(
        start(0),
        &spec,
        &toy_data(),
        Some(&heldout),
        &c6,
        split.path(),
        &CancelToken::new(),
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(
        read_curve(&split.path().join(LOSS_CURVE_FILE))
            .unwrap()
            .iter()
            .map(|p| p.step)
            .collect::<Vec<_>>(),
        [4, 6]
    );
    let template = ToyMlp::new(&ToyMlpConfig::default(), 99, &Device::flex());
    let resumed = resume_run(template, split.path(), &cfg(10), &Device::flex()).unwrap();
    pretrain_watched(
        resumed,
        &spec,
        &toy_data(),
        Some(&heldout),
        &cfg(10),
        split.path(),
        &CancelToken::new(),
        &mut |_| {},
    )
    .unwrap();
    let steps: Vec<u64> = read_curve(&split.path().join(LOSS_CURVE_FILE))
        .unwrap()
        .iter()
        .map(|p| p.step)
        .collect();
    assert_eq!(steps, [4, 6, 8, 10]);
}

#[test]
fn ctrl_c_on_the_train_command_saves_a_checkpoint_at_a_step_boundary() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let out_s = out.to_str().unwrap();
    // no periodic checkpoint can fall inside the run: only Ctrl-C saves
    let (status, log) = crate::common::interrupt_when(
        &[
            "--device",
            "cpu",
            "train",
            "--data",
            "toy:moons",
            "--steps",
            "100000000",
            "--batch-size",
            "32",
            "--checkpoint-every",
            "100000000",
            "--out",
            out_s,
        ],
        "training ",
    );
    assert!(status.success(), "{log}");
    let meta = std::fs::read_to_string(out.join("deme.json")).expect("a checkpoint was saved");
    assert!(meta.contains("\"step\""), "{meta}");
    assert!(out.join("train_state.safetensors").exists(), "{log}");
    assert!(log.contains("saved "), "{log}");
}

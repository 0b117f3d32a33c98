//! Counts and sizes a careless or hostile user types, empty inputs, and model
//! folders that must not be replaced: each ends in exit code 1 or 2 with a message
//! naming the limit, never in a signal, a panic or lost work.

use crate::common;
use common::{save_toy_base, save_unet, stderr, studio, tiny_config};

use burn::tensor::Device;
use deme_studio::engine::checkpoint::{
    DType, HostTensor, TensorMap, UNet2DConfig, read_meta, write_safetensors,
};
use deme_studio::engine::model::UNet2DModel;

#[test]
fn counts_out_of_range_are_usage_errors_naming_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let out = out.to_str().unwrap();
    let model = "assets/mnist-tiny/base";
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["sample", "--model", model, "--n", "0", "--out", "x.png"],
            "between 1 and 100000",
        ),
        (
            vec![
                "sample", "--model", model, "--n", "1000000", "--out", "x.png",
            ],
            "between 1 and 100000",
        ),
        (
            vec![
                "sample",
                "--model",
                model,
                "--n",
                "18446744073709551616",
                "--out",
                "x.png",
            ],
            "1 to 100000",
        ),
        (
            vec![
                "sample", "--model", model, "--steps", "5000", "--out", "x.png",
            ],
            "between 1 and 1000",
        ),
        (
            vec!["train", "--batch-size", "100000000", "--out", out],
            "between 1 and 4096",
        ),
        (
            vec![
                "train",
                "--data",
                "toy:moons",
                "--toy-points",
                "18446744073709551615",
                "--out",
                out,
            ],
            "between 2 and 10000000",
        ),
        (
            vec!["metric", "--model", model, "--samples", "1000000000"],
            "between 1 and 100000",
        ),
        (
            vec![
                "landscape",
                "--base",
                model,
                "--experts",
                "a,b",
                "--ranges",
                "1000000000",
                "--out",
                out,
            ],
            "between 1 and 100",
        ),
        (
            vec!["gradsim", "--model", model, "--k", "1000000", "--out", out],
            "between 2 and 1000",
        ),
        (
            vec!["finetune", "--base", model, "--experts", "0", "--out", out],
            "between 1 and 100",
        ),
        (
            vec!["replicate", "--out", out, "--metric-samples", "1000001"],
            "between 0 and 100000",
        ),
    ];
    for (args, limit) in cases {
        let o = studio(&args);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {e}");
        assert!(
            e.contains(limit),
            "{args:?} should name the limit `{limit}`: {e}"
        );
    }
}

#[test]
fn empty_inputs_give_an_error_or_an_empty_answer_never_a_signal() {
    let dir = tempfile::tempdir().unwrap();
    let config = tiny_config();
    let model = save_tiny_model(dir.path(), &config);
    let s = config.sample_size.unwrap();
    let [c, h, w] = [config.in_channels, s, s];

    // initial noise holding no images is refused, naming the count
    let noise = dir.path().join("noise.safetensors");
    let mut map = TensorMap::new();
    map.insert(
        "x_T".into(),
        HostTensor::from_f32(vec![0, c, h, w], &[]).unwrap(),
    );
    write_safetensors(&noise, &map, None).unwrap();
    let png = dir.path().join("s.png");
    let o = studio(&[
        "--device",
        "cpu",
        "sample",
        "--model",
        model.to_str().unwrap(),
        "--noise",
        noise.to_str().unwrap(),
        "--steps",
        "2",
        "--out",
        png.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("holds 0 images"), "{}", stderr(&o));
    assert!(!png.exists());

    // the noise prediction of no inputs is no outputs
    let input = dir.path().join("in.safetensors");
    let mut map = TensorMap::new();
    map.insert(
        "x".into(),
        HostTensor::from_f32(vec![0, c, h, w], &[]).unwrap(),
    );
    map.insert(
        "t".into(),
        HostTensor::new(DType::I64, vec![0], Vec::new()).unwrap(),
    );
    write_safetensors(&input, &map, None).unwrap();
    let eps = dir.path().join("eps.safetensors");
    let o = studio(&[
        "--device",
        "cpu",
        "eval-eps",
        "--model",
        model.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--out",
        eps.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let got = deme_studio::engine::checkpoint::read_safetensors(&eps).unwrap();
    assert_eq!(got["eps"].shape, vec![0, c, h, w]);
}

#[test]
fn train_never_replaces_a_model_folder_unless_told_to() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("finished");
    save_toy_base(&model);
    let weights = model.join("diffusion_pytorch_model.safetensors");
    let before = std::fs::read(&weights).unwrap();
    let args = |extra: &[&'static str]| {
        let mut a = vec![
            "--device",
            "cpu",
            "train",
            "--data",
            "toy:moons",
            "--toy-points",
            "256",
            "--steps",
            "2",
            "--batch-size",
            "8",
            "--checkpoint-every",
            "2",
            "--out",
            model.to_str().unwrap(),
        ];
        a.extend_from_slice(extra);
        a
    };
    let o = studio(&args(&[]));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("already holds a model") && stderr(&o).contains("--overwrite"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        std::fs::read(&weights).unwrap(),
        before,
        "the model was touched"
    );

    let o = studio(&args(&["--overwrite"]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(read_meta(model.join("deme.json")).unwrap().step, 2);

    // an --out that is a file is refused before any training
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let o = studio(&[
        "--device",
        "cpu",
        "train",
        "--data",
        "toy:moons",
        "--steps",
        "2",
        "--out",
        file.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("is a file, not a folder"),
        "{}",
        stderr(&o)
    );
}

/// Runs the program, failing the test (and killing the child) if it has not
/// finished within 60 s: a blocked open must not hang the suite.
fn studio_within_a_minute(args: &[&str]) -> std::process::Output {
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_deme-studio"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed().as_secs() > 60 {
            child.kill().unwrap();
            panic!("{args:?} hung");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// Makes a FIFO at `p` (a reader of it would block until a writer came).
fn mkfifo(p: &std::path::Path) {
    let ok = std::process::Command::new("mkfifo")
        .arg(p)
        .status()
        .unwrap();
    assert!(ok.success(), "mkfifo {}", p.display());
}

#[cfg(unix)]
#[test]
fn special_files_are_refused_at_once_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    // a checkpoint
    mkfifo(&dir.path().join("w.safetensors"));
    // a config.json in an otherwise whole model folder
    let model = dir.path().join("model");
    std::fs::create_dir_all(&model).unwrap();
    std::fs::copy(
        "assets/mnist-tiny/base/diffusion_pytorch_model.safetensors",
        model.join("diffusion_pytorch_model.safetensors"),
    )
    .unwrap();
    mkfifo(&model.join("config.json"));
    // a data file
    mkfifo(&dir.path().join("images.idx3-ubyte"));
    // a device behind a checkpoint's name
    std::os::unix::fs::symlink("/dev/zero", dir.path().join("z.safetensors")).unwrap();
    let cases: Vec<Vec<String>> = vec![
        vec!["inspect".into(), path("w.safetensors")],
        [
            "--device",
            "cpu",
            "sample",
            "--model",
            &path("model"),
            "--n",
            "1",
            "--out",
            &path("x.png"),
        ]
        .map(String::from)
        .to_vec(),
        [
            "--device",
            "cpu",
            "train",
            "--data",
            &format!("idx:{}", path("images.idx3-ubyte")),
            "--steps",
            "1",
            "--out",
            &path("out"),
        ]
        .map(String::from)
        .to_vec(),
        vec!["inspect".into(), path("z.safetensors")],
    ];
    for args in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = studio_within_a_minute(&args);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {e}");
        assert!(e.contains("is not a regular file"), "{args:?}: {e}");
    }
}

#[test]
fn a_resume_from_a_state_older_than_the_folder_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let train = |extra: &[&str]| {
        let mut a = vec![
            "--device",
            "cpu",
            "train",
            "--data",
            "toy:moons",
            "--toy-points",
            "256",
            "--batch-size",
            "8",
            "--checkpoint-every",
            "2",
            "--out",
            out.to_str().unwrap(),
        ];
        a.extend_from_slice(extra);
        studio(&a)
    };
    let o = train(&["--steps", "4"]);
    assert!(o.status.success(), "{}", stderr(&o));
    // deme.json now claims a later step than the train state holds
    let meta_path = out.join("deme.json");
    let text = std::fs::read_to_string(&meta_path).unwrap();
    let mut meta: serde_json::Value = serde_json::from_str(&text).unwrap();
    meta["step"] = serde_json::json!(40);
    std::fs::write(&meta_path, serde_json::to_string(&meta).unwrap()).unwrap();
    let o = train(&["--steps", "6", "--resume"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("train state is at step 4 but deme.json says step 40"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn weights_holding_nan_are_named_and_never_written_as_a_result() {
    let dir = tempfile::tempdir().unwrap();
    let config = tiny_config();
    let base = dir.path().join("base");
    save_unet(
        &base,
        config.clone(),
        UNet2DModel::new(&config, 1, &Device::flex()).unwrap(),
    );
    let expert = dir.path().join("expert");
    save_unet(
        &expert,
        config.clone(),
        UNet2DModel::new(&config, 2, &Device::flex()).unwrap(),
    );
    // a copy of the expert with one NaN in one tensor
    let bad = dir.path().join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::copy(expert.join("config.json"), bad.join("config.json")).unwrap();
    let weights = "diffusion_pytorch_model.safetensors";
    let mut key = String::new();
    edit_weights(&expert.join(weights), &bad.join(weights), |k, v| {
        if key.is_empty() {
            key = k.to_string();
            v[0] = f32::NAN;
        }
    });

    let (b, e, x) = (
        base.to_str().unwrap(),
        expert.to_str().unwrap(),
        bad.to_str().unwrap(),
    );
    let out = dir.path().join("out");
    let o_ = out.to_str().unwrap();
    let png = dir.path().join("s.png");
    for args in [
        vec![
            "--device",
            "cpu",
            "sample",
            "--model",
            x,
            "--n",
            "1",
            "--steps",
            "2",
            "--out",
            png.to_str().unwrap(),
        ],
        vec![
            "--device",
            "cpu",
            "merge",
            "--base",
            b,
            "--experts",
            x,
            "--weights",
            "1",
            "--out",
            o_,
        ],
        vec![
            "--device",
            "cpu",
            "tv-stats",
            "--base",
            b,
            "--experts",
            x,
            "--out",
            o_,
        ],
        vec![
            "--device",
            "cpu",
            "grid-search",
            "--base",
            b,
            "--experts",
            &format!("{e},{x}"),
            "--out",
            o_,
        ],
    ] {
        let o = studio(&args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains("NaN") && err.contains(&key),
            "{args:?} should name `{key}`: {err}"
        );
    }
    assert!(!png.exists() && !out.join("diffusion_pytorch_model.safetensors").exists());

    // absurd merge weights are refused, naming the range
    let o = studio(&[
        "--device",
        "cpu",
        "merge",
        "--base",
        b,
        "--experts",
        e,
        "--weights",
        "1e30",
        "--out",
        o_,
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("outside [-1000, 1000]"),
        "{}",
        stderr(&o)
    );
    assert!(!out.join("diffusion_pytorch_model.safetensors").exists());
}

#[test]
fn a_diverging_run_names_the_step_it_failed_at_and_what_it_kept() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let o = studio(&[
        "--device",
        "cpu",
        "train",
        "--data",
        "toy:moons",
        "--toy-points",
        "256",
        "--steps",
        "5",
        "--batch-size",
        "8",
        "--lr",
        "1e30",
        "--out",
        out.to_str().unwrap(),
    ]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    // the progress lines count from 1 and so does the error; no checkpoint existed yet
    assert!(e.contains("step 1/5") && e.contains("at step 2;"), "{e}");
    assert!(
        e.contains("nothing was written") && !e.contains("intact"),
        "{e}"
    );
    assert!(!out.join("deme.json").exists());
}

#[test]
fn an_output_that_cannot_be_written_is_refused_before_the_work() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let (f, m) = (file.to_str().unwrap(), "assets/mnist-tiny/base");
    let e1 = "assets/mnist-tiny/deme/expert_1";
    let below = file.join("x.json");
    for args in [
        vec!["grid-search", "--base", m, "--experts", e1, "--out", f],
        vec!["landscape", "--base", m, "--a", e1, "--b", e1, "--out", f],
        vec!["gradsim", "--model", m, "--out", f],
        vec!["tv-stats", "--base", m, "--experts", e1, "--out", f],
        vec!["metric", "--model", m, "--out", below.to_str().unwrap()],
        vec![
            "sample",
            "--model",
            m,
            "--out",
            file.join("s.png").to_str().unwrap(),
        ],
    ] {
        let o = studio_within_a_minute(&args);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {e}");
        assert!(e.contains("is a file, not a folder"), "{args:?}: {e}");
    }
}

#[test]
fn samples_holding_nan_are_never_written() {
    // finite weights scaled so far that the predictions overflow
    let dir = tempfile::tempdir().unwrap();
    let config = tiny_config();
    let model = save_tiny_model(dir.path(), &config);
    let weights = model.join("diffusion_pytorch_model.safetensors");
    edit_weights(&weights, &weights, |_, v| {
        v.iter_mut().for_each(|x| *x *= 1e30)
    });
    let png = dir.path().join("s.png");
    let o = studio(&[
        "--device",
        "cpu",
        "sample",
        "--model",
        model.to_str().unwrap(),
        "--n",
        "2",
        "--steps",
        "2",
        "--out",
        png.to_str().unwrap(),
    ]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(
        e.contains("the samples hold") && e.contains("nothing was written"),
        "{e}"
    );
    assert!(!png.exists());
}

/// Writes the weights file `from` to `to` with `edit` applied to each tensor's
/// values, in key order.
fn edit_weights(
    from: &std::path::Path,
    to: &std::path::Path,
    mut edit: impl FnMut(&str, &mut Vec<f32>),
) {
    let mut map = deme_studio::engine::checkpoint::read_safetensors(from).unwrap();
    for (k, t) in map.iter_mut() {
        let mut v = t.to_f32().unwrap();
        edit(k, &mut v);
        *t = HostTensor::from_f32(t.shape.clone(), &v).unwrap();
    }
    write_safetensors(to, &map, None).unwrap();
}

/// A tiny UNet (seed 1) of `config` saved as `dir/model`.
fn save_tiny_model(dir: &std::path::Path, config: &UNet2DConfig) -> std::path::PathBuf {
    let model = dir.join("model");
    save_unet(
        &model,
        config.clone(),
        UNet2DModel::new(config, 1, &Device::flex()).unwrap(),
    );
    model
}

//! Merging end to end: exports with recipes, exact reproduction, refused
//! recipes, and the `merge` / `sample --ensemble` command lines.

use crate::common;
use common::{stderr, studio};

use burn::tensor::Device;
use deme_studio::engine::checkpoint::{KeyStyle, read_safetensors, write_safetensors};
use deme_studio::engine::merge::{
    MergeJob, MergeMethod, MergeSpec, RECIPE_FILE, Recipe, export_merge, reproduce,
};
use deme_studio::engine::model::UNet2DModel;
use deme_studio::engine::model::params::map_flat_params;
use deme_studio::engine::store::{AnyModel, ModelSpec, WEIGHTS_FILE, save_model_folder};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Saves a random tiny UNet (optionally with projections nudged off the identity).
fn save_random(dir: &Path, seed: u64, projections: bool) -> PathBuf {
    let d = Device::flex();
    let config = common::tiny_config();
    let mut m = UNet2DModel::new(&config, seed, &d).unwrap();
    if projections {
        m = m.with_projections(&config, &d);
        m = map_flat_params(m, &mut |k, v| {
            if k.starts_with("adapter_list.") {
                v.add_scalar(0.01 * seed as f32)
            } else {
                v
            }
        });
    }
    common::save_unet(dir, config, m);
    dir.to_path_buf()
}

fn weights(dir: &Path) -> Vec<u8> {
    std::fs::read(dir.join(WEIGHTS_FILE)).unwrap()
}

fn quiet(_: &str) {}

struct Setup {
    _root: tempfile::TempDir,
    root: PathBuf,
    base: PathBuf,
    experts: Vec<PathBuf>,
}

fn setup() -> Setup {
    let root = tempfile::tempdir().unwrap();
    let r = root.path().to_path_buf();
    let base = save_random(&r.join("base"), 0, false);
    let experts = (1..=3)
        .map(|i| save_random(&r.join(format!("expert{i}")), i, true))
        .collect();
    Setup {
        _root: root,
        root: r,
        base,
        experts,
    }
}

#[test]
fn recipe_round_trip_is_bit_identical_and_tampering_is_refused() {
    let s = setup();
    let out = s.root.join("merges").join("m1");
    let job = MergeJob {
        base: s.base.clone(),
        experts: s.experts.clone(),
        spec: MergeSpec {
            method: MergeMethod::Dare { p: 0.3 },
            weights: vec![0.3, 0.2, 0.5],
            seed: 11,
            ..MergeSpec::default()
        },
        output: None,
        drop_projections: false,
    };
    let first = export_merge(&job, &out, &mut quiet).unwrap();
    let recipe = Recipe::read(&out.join(RECIPE_FILE)).unwrap();
    assert_eq!(recipe.base.path, "../../base");
    assert_eq!(recipe.experts[2].path, "../../expert3");
    assert_eq!(recipe.weights, vec![0.3, 0.2, 0.5]);
    assert_eq!(recipe.seed, 11);
    let merged = read_safetensors(out.join(WEIGHTS_FILE)).unwrap();
    assert!(
        merged.contains_key("adapter_list.0.weight"),
        "projections exported"
    );

    // reproduce somewhere else: same bits
    let again = s.root.join("again");
    let second = reproduce(&out.join(RECIPE_FILE), &again, &mut quiet).unwrap();
    assert_eq!(second.matches_recorded, Some(true));
    assert_eq!(first.result_sha256, second.result_sha256);
    assert_eq!(weights(&out), weights(&again));

    // a changed input is refused before anything is written
    save_random(&s.experts[1], 99, true);
    let third = s.root.join("third");
    let msg = format!(
        "{:#}",
        reproduce(&out.join(RECIPE_FILE), &third, &mut quiet).unwrap_err()
    );
    assert!(
        msg.contains("expert 2") && msg.contains("does not match the recipe"),
        "{msg}"
    );
    assert!(!third.join(WEIGHTS_FILE).exists());
}

#[test]
fn recipe_outputs_cannot_escape_the_chosen_folder() {
    let s = setup();
    let out = s.root.join("m");
    let job = MergeJob {
        base: s.base.clone(),
        experts: s.experts[..1].to_vec(),
        spec: MergeSpec::task_arithmetic(vec![0.5]),
        output: None,
        drop_projections: false,
    };
    export_merge(&job, &out, &mut quiet).unwrap();
    let path = out.join(RECIPE_FILE);
    let mut recipe = Recipe::read(&path).unwrap();
    for bad in ["../escaped", "/tmp/escaped", "sub/../../escaped"] {
        recipe.output = Some(bad.into());
        std::fs::write(&path, recipe.to_json_string_pretty().unwrap()).unwrap();
        let chosen = s.root.join("chosen");
        let msg = format!("{:#}", reproduce(&path, &chosen, &mut quiet).unwrap_err());
        assert!(
            msg.contains("leaves the chosen output folder"),
            "{bad}: {msg}"
        );
        assert!(!s.root.join("escaped").exists());
    }
    // an input folder is never overwritten
    let msg = format!("{:#}", export_merge(&job, &s.base, &mut quiet).unwrap_err());
    assert!(msg.contains("is the input model"), "{msg}");

    // a plain sub-folder is fine, and lands inside
    recipe.output = Some("runs/r1".into());
    std::fs::write(&path, recipe.to_json_string_pretty().unwrap()).unwrap();
    let chosen = s.root.join("chosen");
    let report = reproduce(&path, &chosen, &mut quiet).unwrap();
    assert_eq!(report.dir, chosen.join("runs/r1"));
    assert_eq!(weights(&out), weights(&chosen.join("runs/r1")));
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn merge_command_end_to_end() {
    let st = setup();
    let experts = st
        .experts
        .iter()
        .map(|p| s(p).to_string())
        .collect::<Vec<_>>()
        .join(",");
    let o = studio(&["merge", "--help"]);
    assert!(o.status.success() && String::from_utf8_lossy(&o.stdout).contains("--recipe"));

    // all weights 0: the base, bit for bit (plus identity projections)
    let zero = st.root.join("zero");
    let o = studio(&[
        "merge",
        "--base",
        s(&st.base),
        "--experts",
        &experts,
        "--weights",
        "0,0,0",
        "--out",
        s(&zero),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("merge: "),
        "progress on stderr: {}",
        stderr(&o)
    );
    let base = read_safetensors(st.base.join(WEIGHTS_FILE)).unwrap();
    let merged = read_safetensors(zero.join(WEIGHTS_FILE)).unwrap();
    for (k, t) in &base {
        assert_eq!(merged[k].bytes, t.bytes, "{k}");
    }
    let eye = merged["adapter_list.0.weight"].to_f32().unwrap();
    assert_eq!(&eye[..2], &[1.0, 0.0]);
    assert!(common::check_interop_files(&zero));
    assert!(stderr(&o).contains("projections: "), "{}", stderr(&o));
    assert!(!common::check_interop_files(&st.base));

    // TIES with a block-weights file, then reproduce from its recipe
    let bw = st.root.join("blocks.json");
    std::fs::write(&bw, r#"{"mid_block": 0, "up_blocks.0": [1, 0, 0]}"#).unwrap();
    let ties = st.root.join("ties");
    let o = studio(&[
        "merge",
        "--base",
        s(&st.base),
        "--experts",
        &experts,
        "--weights",
        "1,-0.5,1",
        "--method",
        "ties",
        "--ties-k",
        "0.3",
        "--block-weights",
        s(&bw),
        "--out",
        s(&ties),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let again = st.root.join("again");
    let o = studio(&[
        "merge",
        "--recipe",
        s(&ties.join(RECIPE_FILE)),
        "--out",
        s(&again),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("identical"), "{}", stderr(&o));
    assert_eq!(weights(&ties), weights(&again));

    // bad input: one clear message, non-zero exit
    let bad = st.root.join("bad");
    for (args, needle) in [
        (vec!["--weights", "0.5"], "one weight per expert"),
        (
            vec!["--weights", "1,1,1", "--dare-p", "0.5"],
            "only applies to --method dare",
        ),
        (
            vec!["--weights", "1,1,1", "--method", "dare", "--dare-p", "1.5"],
            "0 <= p < 1",
        ),
    ] {
        let mut full = vec![
            "merge",
            "--base",
            s(&st.base),
            "--experts",
            &experts,
            "--out",
            s(&bad),
        ];
        full.extend(args);
        let o = studio(&full);
        assert!(!o.status.success());
        assert!(stderr(&o).contains(needle), "{needle}: {}", stderr(&o));
        assert_eq!(stderr(&o).matches("error:").count(), 1, "{}", stderr(&o));
    }

    // another architecture: the message names the tensor and both models
    let wide = st.root.join("wide");
    {
        let mut c = common::tiny_config();
        c.block_out_channels = vec![8, 16, 32];
        let m = UNet2DModel::new(&c, 5, &Device::flex()).unwrap();
        common::save_unet(&wide, c, m);
    }
    let o = studio(&[
        "merge",
        "--base",
        s(&st.base),
        "--experts",
        s(&wide),
        "--weights",
        "1",
        "--out",
        s(&bad),
    ]);
    assert!(!o.status.success());
    let msg = stderr(&o);
    assert!(msg.contains("config.json") && msg.contains("wide"), "{msg}");
}

#[test]
fn mismatched_weights_files_name_the_tensor() {
    let st = setup();
    // same config.json, but a tensor with another shape in the weights: refused on load
    let mut c = common::tiny_config();
    c.block_out_channels = vec![8, 16, 32];
    let m = UNet2DModel::new(&c, 5, &Device::flex()).unwrap();
    let odd = st.root.join("odd");
    save_model_folder(
        &odd,
        &ModelSpec::UNet(common::tiny_config()),
        AnyModel::UNet(m).export(),
        &BTreeMap::new(),
        KeyStyle::Modern,
        None,
    )
    .unwrap();
    let job = MergeJob {
        base: st.base.clone(),
        experts: vec![odd.clone()],
        spec: MergeSpec::task_arithmetic(vec![1.0]),
        output: None,
        drop_projections: false,
    };
    let msg = format!(
        "{:#}",
        export_merge(&job, &st.root.join("x"), &mut quiet).unwrap_err()
    );
    assert!(msg.contains("odd") && msg.contains("tensor `"), "{msg}");
}

#[test]
fn merging_models_of_different_structures_is_one_clear_error() {
    let st = setup();
    // another config.json (a wider last level)
    let wide = st.root.join("wide");
    let mut c = common::tiny_config();
    c.block_out_channels = vec![8, 16, 32];
    common::save_unet(
        &wide,
        c.clone(),
        UNet2DModel::new(&c, 5, &Device::flex()).unwrap(),
    );
    // the same config.json, one tensor left out of the weights
    let missing = st.root.join("missing");
    common::save_unet(
        &missing,
        common::tiny_config(),
        UNet2DModel::new(&common::tiny_config(), 6, &Device::flex()).unwrap(),
    );
    let mut t = read_safetensors(missing.join(WEIGHTS_FILE)).unwrap();
    assert!(t.remove("mid_block.resnets.0.conv1.weight").is_some());
    write_safetensors(missing.join(WEIGHTS_FILE), &t, None).unwrap();
    // the same config.json, weights of another shape
    let odd = st.root.join("odd");
    save_model_folder(
        &odd,
        &ModelSpec::UNet(common::tiny_config()),
        AnyModel::UNet(UNet2DModel::new(&c, 7, &Device::flex()).unwrap()).export(),
        &BTreeMap::new(),
        KeyStyle::Modern,
        None,
    )
    .unwrap();
    for (expert, needles) in [
        (&wide, vec!["wide", "config.json"]),
        (
            &missing,
            vec!["missing", "no tensor `mid_block.resnets.0.conv1.weight`"],
        ),
        (&odd, vec!["odd", "do not fit", "has shape"]),
    ] {
        let experts = format!("{},{}", s(&st.experts[0]), s(expert));
        let out = st.root.join("out");
        let o = studio(&[
            "merge",
            "--base",
            s(&st.base),
            "--experts",
            &experts,
            "--weights",
            "0.5,0.5",
            "--out",
            s(&out),
        ]);
        assert!(!o.status.success(), "{}", stderr(&o));
        let msg = stderr(&o);
        let errors: Vec<&str> = msg.lines().filter(|l| l.starts_with("error")).collect();
        assert_eq!(errors.len(), 1, "{msg}");
        for needle in needles {
            assert!(errors[0].contains(needle), "{needle}: {msg}");
        }
        assert!(!out.exists(), "nothing written: {msg}");
    }
}

#[test]
fn sampling_with_an_ensemble_of_one_model_equals_the_model() {
    let st = setup();
    let a = s(&st.experts[0]);
    let both = format!("{a},{a}");
    let one = st.root.join("one.safetensors");
    let ens = st.root.join("ens.safetensors");
    let common = ["--steps", "3", "--n", "2", "--seed", "4", "--device", "cpu"];
    let mut args = vec!["sample", "--model", a, "--out", s(&one)];
    args.extend(common);
    let o = studio(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut args = vec!["sample", "--ensemble", &both, "--out", s(&ens)];
    args.extend(common);
    let o = studio(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let x1 = read_safetensors(&one).unwrap();
    let x2 = read_safetensors(&ens).unwrap();
    assert_eq!(x1["x_0"].bytes, x2["x_0"].bytes);

    // two different experts: not the same as either alone
    let b = s(&st.experts[1]);
    let mixed = format!("{a},{b}");
    let mix = st.root.join("mix.safetensors");
    let mut args = vec!["sample", "--ensemble", &mixed, "--out", s(&mix)];
    args.extend(common);
    let o = studio(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_ne!(
        read_safetensors(&mix).unwrap()["x_0"].bytes,
        x1["x_0"].bytes
    );

    let o = studio(&["sample", "--model", a, "--ensemble", a, "--out", s(&mix)]);
    assert!(!o.status.success());
}

/// A folder re-saved without projections loses our loader and card, but keeps a
/// README the user wrote; one with projections never replaces the user's README.
#[test]
fn interop_files_follow_the_projections_and_spare_the_users_readme() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("m");
    save_random(&dir, 1, true);
    assert!(common::check_interop_files(&dir));
    save_random(&dir, 1, false);
    assert!(!common::check_interop_files(&dir));
    assert!(!dir.join("README.md").exists());
    std::fs::write(dir.join("README.md"), "my notes").unwrap();
    save_random(&dir, 2, true);
    assert_eq!(
        std::fs::read_to_string(dir.join("README.md")).unwrap(),
        "my notes"
    );
    assert!(dir.join("deme_unet.py").is_file());
    save_random(&dir, 2, false);
    assert_eq!(
        std::fs::read_to_string(dir.join("README.md")).unwrap(),
        "my notes"
    );
    assert!(!dir.join("deme_unet.py").exists());
}

/// `--drop-projections`: a plain diffusers folder (no adapter tensors, no loader),
/// the change measured and recorded, every other tensor the merge's own; a merge
/// with nothing to drop is one clear error.
#[test]
fn dropping_the_projections_gives_a_plain_unet_and_measures_the_change() {
    let s = setup();
    let job = |drop_projections| MergeJob {
        base: s.base.clone(),
        experts: s.experts.clone(),
        spec: MergeSpec::task_arithmetic(vec![0.5, 0.5, 0.5]),
        output: None,
        drop_projections,
    };
    let (kept, plain) = (s.root.join("kept"), s.root.join("plain"));
    export_merge(&job(false), &kept, &mut quiet).unwrap();
    let report = export_merge(&job(true), &plain, &mut quiet).unwrap();
    let dropped = report.dropped.expect("measured");
    assert_eq!(dropped.count, 7);
    assert!(dropped.max_eps_diff >= dropped.mean_eps_diff && dropped.mean_eps_diff > 0.0);
    assert!(report.projections.is_none());
    assert!(!common::check_interop_files(&plain));
    let (a, b) = (
        read_safetensors(kept.join(WEIGHTS_FILE)).unwrap(),
        read_safetensors(plain.join(WEIGHTS_FILE)).unwrap(),
    );
    assert!(b.keys().all(|k| !k.starts_with("adapter_list.")));
    for (k, t) in &b {
        assert_eq!(a[k].bytes, t.bytes, "{k}");
    }
    assert!(
        Recipe::read(&plain.join(RECIPE_FILE))
            .unwrap()
            .drop_projections
    );
    let none = MergeJob {
        experts: vec![s.base.clone()],
        spec: MergeSpec::task_arithmetic(vec![1.0]),
        ..job(true)
    };
    let msg = format!(
        "{:#}",
        export_merge(&none, &s.root.join("none"), &mut quiet).unwrap_err()
    );
    assert!(msg.contains("no channel-wise projections"), "{msg}");
}

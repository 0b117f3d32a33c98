//! Every `deme-studio bench` case once at a tiny size, through the built
//! binary: the JSON line it prints has the fields `bench/run_suite.py` reads,
//! and they are finite. CI runs this, not the suite itself.

use serde_json::Value;
use std::process::Command;

/// Runs `deme-studio --device cpu bench ARGS` and parses its JSON lines.
fn bench(args: &[&str]) -> Vec<Value> {
    bench_on("cpu", args)
}

/// Runs `deme-studio --device DEVICE bench ARGS` and parses its JSON lines.
fn bench_on(device: &str, args: &[&str]) -> Vec<Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_deme-studio"))
        .args(["--device", device, "bench"])
        .args(args)
        .env("RAYON_NUM_THREADS", "2")
        .output()
        .expect("the binary runs");
    assert!(
        out.status.success(),
        "bench {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert!(!lines.is_empty(), "bench {args:?} printed no JSON line");
    lines
}

/// The number at `path` (`a.b` for nested objects), checked finite.
fn num(v: &Value, path: &str) -> f64 {
    let mut cur = v;
    for key in path.split('.') {
        cur = cur
            .get(key)
            .unwrap_or_else(|| panic!("no field `{path}` in {v}"));
    }
    let x = cur
        .as_f64()
        .unwrap_or_else(|| panic!("`{path}` is not a number in {v}"));
    assert!(x.is_finite(), "`{path}` = {x} in {v}");
    x
}

/// The fields every line of a model case carries.
fn common(v: &Value) {
    common_without_params(v);
    assert!(num(v, "params") > 0.0);
}

/// The fields every line carries.
fn common_without_params(v: &Value) {
    assert_eq!(v["impl"], "deme-studio");
    assert!(
        v["device"].as_str().is_some_and(|d| d.contains("cpu")),
        "{v}"
    );
    assert!(matches!(v["profile"].as_str(), Some("debug" | "release")));
    assert_eq!(num(v, "threads"), 2.0);
    assert!(num(v, "peak_rss_mb") > 0.0);
    assert!(
        v.get("device_reserved_mb").is_none(),
        "flex has no device pools: {v}"
    );
    let kernels = &v["cpu_kernels"];
    assert!(
        matches!(
            kernels["gemm"].as_str(),
            Some("avx512f" | "fma" | "scalar" | "native")
        ) && matches!(
            kernels["ours"].as_str(),
            Some("avx512" | "avx2" | "baseline")
        ),
        "the CPU kernels that ran: {v}"
    );
}

/// `median`, `min`, `max` of a timing object, ordered.
fn spread(v: &Value, key: &str) {
    let (lo, med, hi) = (
        num(v, &format!("{key}.min")),
        num(v, &format!("{key}.median")),
        num(v, &format!("{key}.max")),
    );
    assert!(0.0 < lo && lo <= med && med <= hi, "{key}: {v}");
}

#[test]
fn train_case() {
    let v = &bench(&[
        "train",
        "--model",
        "mnist-tiny",
        "--batch-size",
        "2",
        "--steps",
        "1",
        "--warmup",
        "0",
    ])[0];
    common(v);
    assert_eq!(v["case"], "train");
    assert_eq!(num(v, "params"), 686_769.0);
    for key in [
        "step_ms_median",
        "step_ms_min",
        "step_ms_max",
        "images_per_sec",
        "gflops_per_sec",
    ] {
        assert!(num(v, key) > 0.0, "{key}");
    }
    // 3 x the forward count of diffusers' UNet2DModel (FlopCounterMode)
    assert_eq!(num(v, "fwd_bwd_flops_per_image"), 3.0 * 146_884_608.0);
}

/// On wgpu (lavapipe in CI) a line also reports the device memory in the
/// pools at the end of the case, and the flex lines report none.
#[test]
fn peak_case_on_wgpu_reports_device_memory() {
    let v = &bench_on("wgpu", &["peak", "--n", "64", "--repeats", "2"])[0];
    assert!(
        v["device"].as_str().is_some_and(|d| d.contains("wgpu")),
        "no wgpu adapter (install mesa-vulkan-drivers): {v}"
    );
    let mb = |key: &str| num(v, key) * 1024.0 * 1024.0;
    let (reserved, in_use) = (mb("device_reserved_mb"), mb("device_in_use_mb"));
    // the two 64 x 64 f32 inputs are still alive when the line is written
    assert!(in_use >= (2 * 64 * 64 * 4) as f64, "{v}");
    assert!(reserved >= in_use, "{v}");
    assert!(num(v, "gflops_per_sec") > 0.0);
}

#[test]
fn peak_case() {
    let v = &bench(&["peak", "--n", "64", "--repeats", "2"])[0];
    common_without_params(v);
    assert_eq!(v["case"], "peak");
    assert_eq!(num(v, "n"), 64.0);
    spread(v, "matmul_ms");
    // 2 n^3 FLOPs over the median time
    let want = 2.0 * 64f64.powi(3) / (num(v, "matmul_ms.median") / 1e3) / 1e9;
    assert!((num(v, "gflops_per_sec") / want - 1.0).abs() < 1e-9, "{v}");
    assert!(num(v, "gflops_per_sec_best") >= num(v, "gflops_per_sec"));
}

#[test]
fn sample_cases() {
    for (sampler, steps) in [("ddim", "2"), ("ddpm", "3")] {
        let v = &bench(&[
            "sample",
            "--model",
            "mnist-tiny",
            "--sampler",
            sampler,
            "--steps",
            steps,
            "--n",
            "2",
            "--repeats",
            "2",
            "--warmup",
            "1",
        ])[0];
        common(v);
        assert_eq!(v["case"], "sample");
        assert_eq!(v["sampler"], sampler);
        assert_eq!(v["weights"], "random-init");
        assert_eq!(num(v, "repeats"), 2.0);
        spread(v, "run_ms");
        assert!(num(v, "images_per_sec") > 0.0);
        assert!(num(v, "gflops_per_sec") > 0.0);
        assert_eq!(num(v, "fwd_flops_per_image"), 146_884_608.0);
    }
}

#[test]
fn merge_case() {
    let v = &bench(&[
        "merge",
        "--models",
        "mnist-tiny",
        "--experts",
        "2",
        "--repeats",
        "1",
    ])[0];
    common(v);
    assert_eq!(v["case"], "merge");
    for key in ["remerge_ms", "copy_model_ms", "copy_inputs_ms"] {
        spread(v, key);
    }
    assert!(num(v, "remerge_over_copy_model") > 0.0);
    assert!(num(v, "model_mb") > 0.0);
}

#[test]
fn load_case_measures_in_a_fresh_process() {
    let v = &bench(&["load", "--model", "mnist-tiny", "--experts", "2"])[0];
    common(v);
    assert_eq!(v["case"], "load");
    assert_eq!(v["params"], 686_769);
    assert_eq!(v["experts"], 2);
    // the peak counts at least the three models' weights
    assert!(num(v, "peak_rss_mb") > 3.0 * num(v, "model_mb"));
    assert!(num(v, "rss_after_mb") >= num(v, "rss_before_mb"));
}

#[test]
fn coldstart_case_times_fresh_processes_to_the_first_preview() {
    let v = &bench(&["coldstart", "--repeats", "2"])[0];
    assert_eq!(v["case"], "coldstart");
    assert_eq!(v["impl"], "deme-studio");
    let runs = v["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 2);
    for r in runs {
        let (load, first, done, wall) = (
            num(r, "load_ms"),
            num(r, "first_picture_ms"),
            num(r, "fast_pass_ms"),
            num(r, "process_to_fast_pass_ms"),
        );
        // each later moment is measured after the one before, in the same clock
        // (the child's) or around it (the parent's)
        assert!(
            0.0 < load && load < first && first <= done && done < wall,
            "{r}"
        );
        assert_eq!(r["fast_steps"], 5);
        assert!(num(r, "peak_rss_mb") > 0.0);
    }
    assert_eq!(
        num(v, "cold_process_to_fast_pass_ms"),
        num(&runs[0], "process_to_fast_pass_ms")
    );
    assert_eq!(
        num(v, "warm_process_to_fast_pass_ms"),
        num(&runs[1], "process_to_fast_pass_ms")
    );
}

#[test]
fn latency_case_times_drags_and_releases() {
    let v = &bench(&["latency", "--repeats", "2"])[0];
    assert_eq!(v["case"], "latency");
    assert_eq!(v["impl"], "deme-studio");
    for pass in ["drag", "release"] {
        spread(v, &format!("{pass}_first_ms"));
        spread(v, &format!("{pass}_done_ms"));
        // a pass ends no earlier than its first picture
        assert!(num(v, &format!("{pass}_done_ms.min")) >= num(v, &format!("{pass}_first_ms.min")));
    }
    assert!(num(v, "fine_steps") > num(v, "fast_steps"));
    assert_eq!(v["repeats"], 2);
}

#[test]
fn gradsim_case() {
    let v = &bench(&[
        "gradsim",
        "--model",
        "mnist-tiny",
        "--k",
        "2",
        "--batches",
        "1",
        "--batch-size",
        "2",
    ])[0];
    common(v);
    assert_eq!(v["case"], "gradsim");
    assert_eq!(num(v, "backward_passes"), 2.0);
    spread(v, "gradsim_ms");
    spread(v, "floor_ms");
    assert!(num(v, "overhead_ratio") > 0.0);
    num(v, "overhead_pct");
    assert!(num(v, "floor_gflops_per_sec") > 0.0);
}

#[test]
fn search_case_compares_learned_weights_and_cma_es_with_the_coordinate_search() {
    // the shipped set, searched on a handful of samples
    let v = &bench(&[
        "search",
        "--samples",
        "8",
        "--report-samples",
        "8",
        "--hi",
        "1",
        "--step",
        "0.5",
    ])[0];
    common_without_params(v);
    assert_eq!(v["case"], "search");
    let methods = v["methods"].as_array().unwrap();
    let names: Vec<&str> = methods
        .iter()
        .map(|m| m["method"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "coordinate",
            "learned per model",
            "learned per block",
            "cma-es"
        ]
    );
    let target = num(&methods[0], "report_objective");
    assert!(num(&methods[0], "points") >= 3.0);
    // CMA-ES scores no more merges than the coordinate search did
    assert!(num(&methods[3], "points") <= num(&methods[0], "points"));
    for m in &methods[1..] {
        let work = if m["method"] == "cma-es" {
            "points"
        } else {
            "steps"
        };
        assert!(num(m, work) >= 1.0);
        assert!(num(m, "seconds") > 0.0);
        num(m, "time_ratio_whole_run");
        // reaching the coordinate search's objective is timed, or said not to happen
        match m["seconds_to_reach_coordinate"].as_f64() {
            Some(t) => assert!(t > 0.0 && num(m, "time_ratio_to_reach") > 0.0),
            None => assert!(num(m, "report_objective") > target),
        }
    }
    // per block learns N weights for each block
    assert!(num(&methods[2], "weights_learned") > num(&methods[1], "weights_learned"));
}

#[test]
fn sample_case_loads_a_model_folder() {
    // a checkpoint folder written by `train` is sampled with its own weights
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let out = Command::new(env!("CARGO_BIN_EXE_deme-studio"))
        .args(["--device", "cpu", "train", "--data", "mnist", "--model"])
        .args(["mnist-tiny", "--steps", "1", "--batch-size", "2", "--out"])
        .arg(&run)
        .output()
        .expect("the binary runs");
    assert!(
        out.status.success(),
        "train: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = &bench(&[
        "sample",
        "--model",
        run.to_str().unwrap(),
        "--steps",
        "1",
        "--n",
        "1",
        "--warmup",
        "0",
    ])[0];
    common(v);
    assert_eq!(v["weights"], "loaded");
    spread(v, "run_ms");
}

#[test]
fn empty_batch_is_refused_with_a_message() {
    let out = Command::new(env!("CARGO_BIN_EXE_deme-studio"))
        .args(["--device", "cpu", "bench", "train", "--batch-size", "0"])
        .output()
        .expect("the binary runs");
    assert_eq!(
        out.status.code(),
        Some(1),
        "a clean error exit, not a crash"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("--batch-size"));
}

/// The preview hand-off on wgpu (lavapipe in CI): both paths timed for each
/// shape; on the CPU there is nothing to hand off, and the case says so.
#[test]
fn handoff_case_times_both_paths_and_needs_wgpu() {
    let lines = bench_on(
        "wgpu",
        &["handoff", "--shapes", "2x1x4x4,3x3x2x2", "--repeats", "2"],
    );
    assert_eq!(lines.len(), 2, "one line per shape");
    for (v, shape) in lines.iter().zip([[2, 1, 4, 4], [3, 3, 2, 2]]) {
        assert_eq!(v["case"], "handoff");
        assert_eq!(v["shape"], serde_json::json!(shape));
        assert!(
            v["device"].as_str().is_some_and(|d| d.contains("wgpu")),
            "{v}"
        );
        spread(v, "host_ms");
        spread(v, "device_ms");
        let ratio = num(v, "device_over_host");
        let medians = num(v, "device_ms.median") / num(v, "host_ms.median");
        assert!((ratio - medians).abs() < 1e-9, "{v}");
        assert!(
            v.get("cpu_kernels").is_none(),
            "no CPU kernels on wgpu: {v}"
        );
    }
    let out = Command::new(env!("CARGO_BIN_EXE_deme-studio"))
        .args(["--device", "cpu", "bench", "handoff"])
        .output()
        .expect("the binary runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--device wgpu"), "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_deme-studio"))
        .args([
            "--device", "wgpu", "bench", "handoff", "--shapes", "4x2x3x3",
        ])
        .output()
        .expect("the binary runs");
    assert!(!out.status.success(), "two channels are not a picture");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("c = 1 or 3"), "{err}");
}

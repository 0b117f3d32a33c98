#!/usr/bin/env python3
"""The benchmark suite: our figure and the PyTorch/diffusers figure of every case,
measured alternately in one run on one machine, written to docs/BENCHMARKS.md.

    python3 bench/run_suite.py                 # the full suite (tens of minutes on 2 cores)
    python3 bench/run_suite.py --quick         # tiny sizes: checks the suite end to end
    python3 bench/run_suite.py --only train,merge-mnist-tiny --repeats 5

Our side is `deme-studio bench CASE` (built with `cargo build --release` unless
--binary is given); the reference side is bench/torch_*.py run by the Python of a
virtual environment holding torch and diffusers (created with pip when missing).
Each repeat runs both sides as fresh processes, alternating which goes first
(ours, reference, reference, ours, ...), so slow drifts of the machine hit both.
Every process prints one JSON line; the table reports median, min and max over
the repeats and the largest peak RSS. Stdlib only.
"""
import argparse
import datetime
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench")
DEFAULT_VENV = os.path.expanduser("~/.cache/deme-venv")
VENV_PACKAGES = ["torch", "diffusers", "safetensors", "numpy"]


# ---------------------------------------------------------------- cases

def case_list(quick, repeats, ddpm_repeats):
    """Every case: name, group, title, our `bench` arguments, the reference
    script and its arguments (None: measured against a floor in our process),
    and the number of repeats."""
    cases = []

    def add(name, group, title, ours, ref, reps=None):
        cases.append(dict(name=name, group=group, title=title, ours=ours, ref=ref,
                          repeats=reps or repeats))

    # the device's measured f32 matmul peak, the yardstick of the GFLOP/s figures
    pk = ["--n", "512" if quick else "2048", "--repeats", "5"]
    add("peak", "peak", f"Device peak: f32 matmul {pk[1]} x {pk[1]}", ["peak"] + pk,
        ("torch_peak.py", pk))

    # training throughput
    for model, short in [("mnist-tiny", "mnist-tiny"), ("ddpm-cifar10-32", "cifar")]:
        for batch in (16, 64):
            if quick:  # two distinct tiny batches
                b = batch // 8 if model == "mnist-tiny" else max(batch // 32, 1)
                steps, warm = (2, 1) if model == "mnist-tiny" else (1, 0)
            elif model == "mnist-tiny":
                b, steps, warm = batch, 10, 2
            elif batch == 16:  # 37 GFLOP per image forward+backward: ~3 s a step on 2 cores;
                # 2 steps spread too widely to read (the first ones still fault pages in)
                b, steps, warm = batch, 6, 2
            else:  # ~10 s a step on 2 cores: a few steps only
                b, steps, warm = batch, 2, 1
            args = ["--model", model, "--batch-size", str(b), "--steps", str(steps),
                    "--warmup", str(warm)]
            add(f"train-{short}-b{batch}", "train",
                f"Training throughput: {model}, batch {b}",
                ["train"] + args, ("torch_train.py", args))

    # sampling 16 images on the default model
    n = 2 if quick else 16
    for sampler, steps, quick_steps in [("ddim", 10, 2), ("ddim", 50, 5), ("ddpm", 1000, 10)]:
        k = quick_steps if quick else steps
        args = ["--model", "mnist-tiny", "--sampler", sampler, "--steps", str(k), "--n", str(n),
                "--repeats", "1"]
        add(f"sample-{sampler}{steps}", "sample",
            f"Sampling: mnist-tiny, {sampler.upper()} {k} steps, {n} images",
            ["sample"] + args, ("torch_sample.py", args),
            ddpm_repeats if sampler == "ddpm" else None)

    # merge in place (N = 4) against PyTorch and against the copy floor
    for model, short in [("mnist-tiny", "mnist-tiny"), ("ddpm-cifar10-32", "cifar")]:
        if quick and model != "mnist-tiny":
            continue
        reps = "3" if quick else "10"
        add(f"merge-{short}", "merge", f"Merge in place: {model}, N = 4 experts",
            ["merge", "--models", model, "--experts", "4", "--repeats", reps],
            ("torch_merge.py", ["--model", model, "--experts", "4", "--repeats", reps]))

    # gradient-similarity heatmap against K x M plain backward passes
    if quick:
        g = ["--k", "3", "--batches", "1", "--batch-size", "2"]
    else:
        g = ["--k", "20", "--batches", "2", "--batch-size", "32"]
    add("gradsim", "gradsim", "Gradient-similarity heatmap against its backward floor: mnist-tiny",
        ["gradsim", "--model", "mnist-tiny"] + g + ["--repeats", "1"], None)

    # loss landscape against G^2 plain evaluations of the base
    if quick:
        l = ["--grid", "3", "--samples", "2", "--batch-size", "2"]
    else:
        l = ["--grid", "21", "--samples", "16", "--batch-size", "16"]
    add("landscape", "landscape", "Loss landscape against its forward floor: mnist-tiny",
        ["landscape", "--model", "mnist-tiny"] + l + ["--repeats", "1"], None)

    # program start to the first merged preview of the shipped set, in fresh processes
    add("coldstart", "coldstart", "Cold start to the first merged preview: the shipped set",
        ["coldstart", "--repeats", "2" if quick else "3"], None, 1)

    # slider-to-preview latency in the merge worker (a drag's fast pass, a release's fine pass)
    add("latency", "latency", "Slider-to-preview latency: the shipped set",
        ["latency", "--repeats", "2" if quick else "5"], None, 1)
    return cases


def select(cases, only):
    if not only:
        return cases
    wanted = [w.strip() for w in only.split(",") if w.strip()]
    picked = [c for c in cases if any(c["name"] == w or c["group"] == w or c["name"].startswith(w)
                                      for w in wanted)]
    if not picked:
        names = ", ".join(sorted({c["group"] for c in cases} | {c["name"] for c in cases}))
        sys.exit(f"--only {only}: no such case (cases and groups: {names})")
    return picked


# ---------------------------------------------------------------- setup

def log(msg):
    print(msg, file=sys.stderr, flush=True)


def build_binary(debug):
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.expanduser("~/.cache/deme-target")
    env = dict(os.environ, CARGO_TARGET_DIR=target)
    cmd = ["cargo", "build", "--bin", "deme-studio"] + ([] if debug else ["--release"])
    log(f"building: CARGO_TARGET_DIR={target} {shlex.join(cmd)}")
    subprocess.run(cmd, cwd=ROOT, env=env, check=True)
    return os.path.join(target, "debug" if debug else "release", "deme-studio")


def venv_python(args):
    """The Python that runs the reference side; creates the venv when needed."""
    if args.python:
        return args.python
    py = os.path.join(args.venv, "bin", "python")
    probe = [py, "-c", "import torch, diffusers, safetensors, numpy"]
    if os.path.exists(py) and subprocess.run(probe, capture_output=True).returncode == 0:
        return py
    if not os.path.exists(py):
        log(f"creating the virtual environment {args.venv}")
        subprocess.run([sys.executable, "-m", "venv", args.venv], check=True)
    log(f"installing {' '.join(VENV_PACKAGES)} into {args.venv}")
    subprocess.run([os.path.join(args.venv, "bin", "pip"), "install"] + VENV_PACKAGES, check=True)
    return py


def machine_info(py):
    info = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    info["memory_gib"] = int(line.split()[1]) / 1024 ** 2
                    break
    except OSError:
        pass
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((l.split(":", 1)[1].split() for l in f if l.startswith("flags")), [])
        wanted = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16", "amx_tile")
        info["cpu_flags"] = " ".join(x for x in wanted if x in flags) or "none of " + " ".join(wanted)
    except OSError:
        pass
    out = subprocess.run(
        [py, "-c", "import torch, diffusers; print(torch.__version__, diffusers.__version__, "
                   "torch.get_num_threads(), torch.backends.cpu.get_cpu_capability())"],
        capture_output=True, text=True)
    if out.returncode == 0:
        (info["torch"], info["diffusers"], info["torch_default_threads"],
         info["torch_cpu_capability"]) = out.stdout.split()
    info["kernel"] = platform.release()
    info["python"] = platform.python_version()
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        info["commit"] = commit + (" (with uncommitted changes)" if dirty else "")
    except OSError:
        pass
    return info


# ---------------------------------------------------------------- running

def run_json(cmd, env, timeout):
    """Runs one benchmark process; returns its last JSON line (or an error dict)."""
    start = time.time()
    try:
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not lines:
        tail = (p.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"exit {p.returncode}: {tail}"}
    out = json.loads(lines[-1])
    out["wall_s"] = time.time() - start
    return out


def headline(case, res):
    """The figure a repeat contributes, in the case's unit (see UNITS)."""
    if "error" in res:
        return None
    g = case["group"]
    if g == "peak":
        return res["gflops_per_sec"]
    if g in ("train", "sample"):
        return res["images_per_sec"]
    if g == "merge":
        return res["remerge_ms"]["median"]
    if g == "gradsim":
        return res["gradsim_ms"]["median"]
    if g == "landscape":
        return res["landscape_ms"]["median"]
    if g == "coldstart":
        return res["cold_process_to_fast_pass_ms"]
    if g == "latency":
        return res["drag_first_ms"]["median"]
    return None


UNITS = {"peak": "GFLOP/s", "train": "images/s", "sample": "images/s", "merge": "ms per re-merge",
         "gradsim": "ms per heatmap", "landscape": "ms per landscape",
         "coldstart": "ms to the first preview (cold)",
         "latency": "ms from a drag to its first picture"}
HIGHER_IS_BETTER = {"peak": True, "train": True, "sample": True, "merge": False, "gradsim": False,
                    "landscape": False, "coldstart": False,
                    "latency": False}


def ref_device(args):
    """The reference's torch device: the CPU beside our CPU side, otherwise
    CUDA when torch sees a GPU (`--ref-device` overrides)."""
    if args.ref_device:
        return args.ref_device
    return "cpu" if args.device == "cpu" else "auto"


def run_case(case, args, binary, py):
    threads = str(args.threads)
    ours_env = dict(os.environ, RAYON_NUM_THREADS=threads)
    ours_cmd = [binary, "--device", args.device, "bench"] + case["ours"]
    ref_cmd = None
    if case["ref"]:
        script, ref_args = case["ref"]
        ref_cmd = ([py, os.path.join(BENCH, script)] + ref_args
                   + ["--threads", threads, "--device", ref_device(args)])
    results = {"ours": [], "ref": []}
    for r in range(case["repeats"]):
        order = ["ours", "ref"] if r % 2 == 0 else ["ref", "ours"]
        for side in order:
            if side == "ref" and ref_cmd is None:
                continue
            cmd, env = (ours_cmd, ours_env) if side == "ours" else (ref_cmd, dict(os.environ))
            res = run_json(cmd, env, args.timeout)
            results[side].append(res)
            fig = headline(case, res)
            shown = res["error"] if fig is None else f"{fig:.4g} {UNITS[case['group']]}"
            log(f"[{case['name']}] repeat {r + 1}/{case['repeats']} "
                f"{'ours' if side == 'ours' else 'reference'}: {shown}")
    return dict(case=case, results=results,
                ours_cmd=f"RAYON_NUM_THREADS={threads} " + shlex.join(ours_cmd),
                ref_cmd=shlex.join(ref_cmd) if ref_cmd else None)


# ---------------------------------------------------------------- report

def spread(values):
    v = sorted(values)
    return v[len(v) // 2], v[0], v[-1]


def fmt(x, digits=4):
    if x is None:
        return "n/a"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def ok(results):
    return [r for r in results if "error" not in r]


def peak(results):
    v = [r["peak_rss_mb"] for r in ok(results) if r.get("peak_rss_mb") is not None]
    return max(v) if v else None


def device_peak(results):
    v = [r["device_reserved_mb"] for r in ok(results) if r.get("device_reserved_mb") is not None]
    return max(v) if v else None


def mem_cell(rows):
    """Peak RSS in MB; on a device with its own memory (wgpu), also the device
    memory the case left reserved, in parentheses."""
    cell = fmt(peak(rows), 4)
    dev = device_peak(rows)
    return cell if dev is None else f"{cell} (device {fmt(dev, 4)})"


def ref_label(name, rows):
    """The reference's row label, naming its torch device when not the CPU."""
    dev = next((r.get("torch_device") for r in rows if r.get("torch_device")), "cpu")
    return name if dev == "cpu" else f"{name} ({dev})"


def errors(results):
    return sorted({r["error"] for r in results if "error" in r})


def table_throughput(out, run):
    """train and sample: images/s, GFLOP/s, peak RSS; ratio ours/reference."""
    case, res = run["case"], run["results"]
    ours, ref = ok(res["ours"]), ok(res["ref"])
    flops_key = "fwd_bwd_flops_per_image" if case["group"] == "train" else "fwd_flops_per_image"
    flops = next((r.get(flops_key) for r in ours if r.get(flops_key)), None)
    steps = ours[0].get("steps", 1) if (ours and case["group"] == "sample") else 1
    out.append("| | images/s median | min | max | GFLOP/s (median) | peak RSS (MB) | params |")
    out.append("|---|---:|---:|---:|---:|---:|---:|")
    meds = {}
    for label, side, rows in [("deme-studio", "ours", ours),
                               (ref_label("PyTorch + diffusers", ref), "ref", ref)]:
        if not rows:
            out.append(f"| {label} | failed: {'; '.join(errors(res[side])) or 'no result'} | | | | | |")
            continue
        med, lo, hi = spread([r["images_per_sec"] for r in rows])
        meds[side] = med
        gflops = med * flops * steps / 1e9 if flops else None
        out.append(f"| {label} | {fmt(med)} | {fmt(lo)} | {fmt(hi)} | {fmt(gflops, 3)} | "
                   f"{mem_cell(rows)} | {rows[0].get('params', 'n/a'):,} |")
    if "ours" in meds and "ref" in meds:
        out.append(f"| **ratio ours/reference** | **{meds['ours'] / meds['ref']:.3g}** | | | | | |")
    params = {r.get("params") for r in ours + ref}
    if len(params) > 1:
        out.append("")
        out.append(f"**Warning:** the two sides report different parameter counts {sorted(params)}:"
                   " the configs differ.")
    if flops:
        what = "forward + backward" if case["group"] == "train" else "forward"
        out.append("")
        out.append(f"{what} FLOPs per image: {flops / 1e9:.4g} G"
                   + (f" (x {steps} steps per image)" if case["group"] == "sample" else ""))
        top = run.get("peak_gflops")
        if top and meds:
            parts = [f"{who} {meds[side] * flops * steps / 1e9 / top:.0%}"
                     for who, side in (("ours", "ours"), ("reference", "ref")) if side in meds]
            out.append("")
            out.append(f"Fraction of the device's measured matmul peak ({fmt(top, 3)} GFLOP/s,"
                       f" case `peak`): {', '.join(parts)}.")


def measured_peak(runs):
    """The device's measured matmul peak in GFLOP/s: the faster side's median
    of the peak case, or None when the case did not run."""
    for run in runs:
        if run["case"]["group"] == "peak":
            meds = [spread([r["gflops_per_sec"] for r in ok(run["results"][side])])[0]
                    for side in ("ours", "ref") if ok(run["results"][side])]
            return max(meds) if meds else None
    return None


def table_peak(out, run):
    res = run["results"]
    ours, ref = ok(res["ours"]), ok(res["ref"])
    out.append("| | GFLOP/s median | min | max | ms per product (median) |")
    out.append("|---|---:|---:|---:|---:|")
    meds = {}
    for label, side, rows in [("deme-studio (burn matmul)", "ours", ours),
                              (ref_label("PyTorch torch.mm", ref), "ref", ref)]:
        if not rows:
            out.append(f"| {label} | failed: {'; '.join(errors(res[side])) or 'no result'} | | | |")
            continue
        med, lo, hi = spread([r["gflops_per_sec"] for r in rows])
        ms, _, _ = spread([r["matmul_ms"]["median"] for r in rows])
        meds[side] = med
        out.append(f"| {label} | {fmt(med)} | {fmt(lo)} | {fmt(hi)} | {fmt(ms)} |")
    if "ours" in meds and "ref" in meds:
        out.append(f"| **ratio ours/reference** | **{meds['ours'] / meds['ref']:.3g}** | | | |")
    out.append("")
    out.append("Square f32 matrices, each process's median over its repeats; the faster side's"
               " median is the device's measured peak that the training and sampling GFLOP/s"
               " are read against.")


def table_merge(out, run):
    res = run["results"]
    ours, ref = ok(res["ours"]), ok(res["ref"])
    out.append("| | re-merge ms median | min | max | copy floor ms (median) | re-merge / copy |"
               " peak RSS (MB) |")
    out.append("|---|---:|---:|---:|---:|---:|---:|")
    meds = {}
    for label, side, rows in [("deme-studio", "ours", ours), (ref_label("PyTorch", ref), "ref", ref)]:
        if not rows:
            out.append(f"| {label} | failed: {'; '.join(errors(res[side])) or 'no result'} | | | | | |")
            continue
        med, lo, hi = spread([r["remerge_ms"]["median"] for r in rows])
        copy, _, _ = spread([r["copy_model_ms"]["median"] for r in rows])
        meds[side] = med
        out.append(f"| {label} | {fmt(med)} | {fmt(lo)} | {fmt(hi)} | {fmt(copy)} | "
                   f"{med / copy:.3g} | {mem_cell(rows)} |")
    if "ours" in meds and "ref" in meds:
        out.append(f"| **ratio ours/reference** (throughput) | **{meds['ref'] / meds['ours']:.3g}** |"
                   " | | | | |")
    if ours:
        r = ours[0]
        out.append("")
        out.append(f"{r['params']:,} parameters ({r['model_mb']:.4g} MB), {r['experts']} experts;"
                   " each side's copy floor copies the model's bytes once in its own process,"
                   " over its worker threads (target: re-merge within 2x of the copy floor)."
                   f" A re-merge reads the base and {r['experts']} task vectors and writes"
                   f" the model: {(r['experts'] + 2) / 2:.3g}x the bytes the copy moves.")


def ours_or_failure(out, run):
    """Our successful results of a case without a reference; when there are
    none, writes the failure into the report and returns an empty list."""
    res = run["results"]
    ours = ok(res["ours"])
    if not ours:
        out.append(f"failed: {'; '.join(errors(res['ours'])) or 'no result'}")
    return ours


def table_gradsim(out, run):
    ours = ours_or_failure(out, run)
    if not ours:
        return
    r0 = ours[0]
    heat = spread([r["gradsim_ms"]["median"] for r in ours])
    floor = spread([r["floor_ms"]["median"] for r in ours])
    out.append("| | ms median | min | max | peak RSS (MB) |")
    out.append("|---|---:|---:|---:|---:|")
    out.append(f"| heatmap (grad_similarity, K = {r0['k']}, M = {r0['batches']}) | {fmt(heat[0])} |"
               f" {fmt(heat[1])} | {fmt(heat[2])} | {mem_cell(ours)} |")
    out.append(f"| floor: {r0['backward_passes']} plain backward passes | {fmt(floor[0])} |"
               f" {fmt(floor[1])} | {fmt(floor[2])} | |")
    overhead = (heat[0] / floor[0] - 1) * 100
    out.append(f"| **overhead over the floor** | **{overhead:+.1f}%** | | | |")
    out.append("")
    out.append(f"Batch {r0['batch_size']}, sketch dimension {r0['sketch_dim']}; both in one process,"
               " alternately (target: under 10% above the floor).")


def table_landscape(out, run):
    ours = ours_or_failure(out, run)
    if not ours:
        return
    r0 = ours[0]
    land = spread([r["landscape_ms"]["median"] for r in ours])
    first = spread([r["first_level_ms"]["median"] for r in ours])
    floor = spread([r["floor_ms"]["median"] for r in ours])
    out.append("| | ms median | min | max | peak RSS (MB) |")
    out.append("|---|---:|---:|---:|---:|")
    out.append(f"| landscape ({r0['grid']} x {r0['grid']}, {r0['samples']} samples per point) |"
               f" {fmt(land[0])} | {fmt(land[1])} | {fmt(land[2])} | {mem_cell(ours)} |")
    out.append(f"| first coarse level ({r0['first_level_points']} points) | {fmt(first[0])} |"
               f" {fmt(first[1])} | {fmt(first[2])} | |")
    out.append(f"| floor: {r0['points']} plain evaluations of the base | {fmt(floor[0])} |"
               f" {fmt(floor[1])} | {fmt(floor[2])} | |")
    overhead = (land[0] / floor[0] - 1) * 100
    out.append(f"| **overhead over the floor** | **{overhead:+.1f}%** | | | |")
    out.append("")
    out.append("Two experts of small random task vectors on the model; both in one process,"
               " alternately.")


def table_coldstart(out, run):
    ours = ours_or_failure(out, run)
    if not ours:
        return
    runs = ours[0]["runs"]
    out.append("| process | load base + experts (ms) | first picture (ms) | fast pass done (ms) |"
               " spawn to done (ms) | peak RSS (MB) |")
    out.append("|---|---:|---:|---:|---:|---:|")
    for i, r in enumerate(runs):
        name = "1 (cold)" if i == 0 else f"{i + 1} (warm)"
        out.append(f"| {name} | {fmt(r['load_ms'])} | {fmt(r['first_picture_ms'])} |"
                   f" {fmt(r['fast_pass_ms'])} | {fmt(r['process_to_fast_pass_ms'])} |"
                   f" {fmt(r['peak_rss_mb'], 4)} |")
    r0 = runs[0]
    out.append("")
    out.append(f"Each row is a fresh process: it picks the device, loads the base and"
               f" {r0['experts']} experts, merges them with equal weights and samples"
               f" {r0['samples']} images with DDIM {r0['fast_steps']} steps, as the merge view does"
               " on opening. The times in the first three columns are from the process's own"
               " start; the last is from spawning it. The CPU backend compiles nothing, so cold"
               " and warm differ only by what the OS had cached.")


def table_latency(out, run):
    ours = ours_or_failure(out, run)
    if not ours:
        return
    r = ours[0]
    out.append("| request | first picture ms median | min | max | pass done ms median | min | max |")
    out.append("|---|---:|---:|---:|---:|---:|---:|")
    for key, name in [("drag", f"slider drag (DDIM {r['fast_steps']} steps)"),
                      ("release", f"slider release (DDIM {r['fine_steps']} steps)")]:
        first, done = r[f"{key}_first_ms"], r[f"{key}_done_ms"]
        out.append(f"| {name} | {fmt(first['median'])} | {fmt(first['min'])} | {fmt(first['max'])} |"
                   f" {fmt(done['median'])} | {fmt(done['min'])} | {fmt(done['max'])} |")
    out.append("")
    out.append(f"{r['repeats']} weight changes, each a drag then a release; {r['samples']} samples,"
               f" base + {r['experts']} experts, in the app's merge worker after the base and ensemble"
               " panels are done. Times from the request (target: first picture under 1 s on a"
               " 2-core CPU, under 100 ms on a GPU).")


def write_report(path, runs, info, args, profile):
    out = ["# Benchmarks", ""]
    if args.quick:
        out += ["> **Smoke run, not a measurement.** Made with `--quick` (tiny sizes) to check that the",
                "> suite runs end to end, on a machine busy with other work. The figures below say",
                "> nothing about performance. The real table is made on a quiet machine with",
                "> `python3 bench/run_suite.py` (see bench/README.md). Case names give the full",
                "> run's sizes; each title gives the size this run used.", ""]
    out += ["Made by `bench/run_suite.py`: each case runs our side (`deme-studio bench ...`) and the",
            "PyTorch/diffusers reference (`bench/torch_*.py`) as fresh processes, alternately, "
            f"{args.repeats} repeats",
            "each unless noted; median, min and max are over the repeats, peak RSS is the largest of",
            "the repeats. Ratios are ours/reference throughput: above 1 we are faster.",
            "On wgpu the memory column adds, in parentheses, the device memory our side's pools",
            "held reserved at the end of the case (the largest over the repeats).", ""]
    load_start, load_end = info.get("load_start"), info.get("load_end")
    out += ["## Machine", "",
            f"- CPU: {info.get('cpu')}, {info.get('cores')} cores visible,"
            f" {info.get('memory_gib', 0):.1f} GiB memory (kernel {info.get('kernel')})",
            f"- threads: {args.threads} (ours: `RAYON_NUM_THREADS`, reference: `torch.set_num_threads`)",
            f"- load average (1 min) at start / end: {load_start:.2f} / {load_end:.2f}",
            f"- reference: torch {info.get('torch')}, diffusers {info.get('diffusers')},"
            f" Python {info.get('python')}, torch device `{ref_device(args)}`",
            f"- instruction sets: the CPU has {info.get('cpu_flags')}; PyTorch's CPU capability"
            f" {info.get('torch_cpu_capability')}; ours ran with {info.get('ours_kernels') or 'no CPU kernels'}",
            f"- ours: deme-studio `{profile}` build, device `{args.device}`, commit {info.get('commit')}",
            f"- date: {info['date']}, suite time {info['elapsed_min']:.1f} min",
            f"- command: `{info['command']}`", ""]
    if load_start > 0.5 * (info.get("cores") or 1):
        out += [f"**The machine was busy** (load {load_start:.2f} on {info.get('cores')} cores):"
                " processes compete for the cores and PyTorch's OpenMP threads, which spin while"
                " waiting, suffer most. Treat these figures as noise.", ""]
    if profile != "release":
        out += [f"**Our side is a `{profile}` build** (dependencies at opt-level 3, the crate at"
                " opt-level 1): build with `--release` (the default) for real figures.", ""]
    top = measured_peak(runs)
    for run in runs:
        run["peak_gflops"] = top
        case = run["case"]
        out += [f"## {case['name']}: {case['title']}", ""]
        out.append(f"- ours: `{run['ours_cmd']}`")
        if run["ref_cmd"]:
            out.append(f"- reference: `{run['ref_cmd']}`")
        if case["repeats"] != args.repeats:
            out.append(f"- {case['repeats']} repeats")
        out.append("")
        {"peak": table_peak, "train": table_throughput, "sample": table_throughput, "merge": table_merge,
         "gradsim": table_gradsim, "landscape": table_landscape,
         "coldstart": table_coldstart, "latency": table_latency}[case["group"]](out, run)
        out.append("")
    not_covered = ["The app's frame time is an ignored test (bench/README.md)."]
    if args.device == "cpu":
        not_covered.insert(0, "GPU figures and device memory: this run's side is the CPU (flex);"
                           " on a machine with a GPU run the suite with `--device wgpu`.")
    out += ["## Not measured here", ""] + ["- " + line for line in not_covered] + [""]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


# ---------------------------------------------------------------- main

def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny sizes: seconds per case, a smoke run")
    p.add_argument("--only", help="comma-separated cases or groups (train, sample, merge, gradsim, landscape,"
                                  " train-cifar-b16, ...)")
    p.add_argument("--out", default=os.path.join(ROOT, "docs", "BENCHMARKS.md"),
                   help="the Markdown report (default docs/BENCHMARKS.md)")
    p.add_argument("--raw", help="also write every process's JSON line to this file (JSON lines)")
    p.add_argument("--binary", help="the deme-studio binary (default: cargo build --release)")
    p.add_argument("--debug", action="store_true",
                   help="build the debug profile instead of release (faster to build, slower code)")
    p.add_argument("--python", help="the reference side's Python (default: the --venv one)")
    p.add_argument("--venv", default=DEFAULT_VENV,
                   help=f"virtual environment with torch + diffusers, created when missing"
                        f" (default {DEFAULT_VENV})")
    p.add_argument("--repeats", type=int, default=3, help="repeats of each case and side")
    p.add_argument("--ddpm-repeats", type=int, help="repeats of the DDPM 1000 case (default:"
                                                    " --repeats, at most 2)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                   help="CPU threads of both sides (default: all cores)")
    p.add_argument("--device", default="cpu", choices=["cpu", "auto", "wgpu"],
                   help="our device (the reference follows: the CPU beside cpu, CUDA when"
                        " torch sees a GPU otherwise)")
    p.add_argument("--ref-device", default=None,
                   help="the reference's torch device (cpu, cuda, auto); default: follows --device")
    p.add_argument("--timeout", type=float, help="seconds allowed per process")
    args = p.parse_args()
    args.repeats = max(args.repeats, 1)
    ddpm_repeats = args.ddpm_repeats or min(args.repeats, 2)

    cases = select(case_list(args.quick, args.repeats, ddpm_repeats), args.only)
    binary = args.binary or build_binary(args.debug)
    if not (os.path.exists(binary) or shutil.which(binary)):
        sys.exit(f"no binary at {binary}")
    py = venv_python(args)
    info = machine_info(py)
    info["load_start"] = os.getloadavg()[0]
    info["command"] = shlex.join(["python3", "bench/run_suite.py"] + sys.argv[1:])
    started = time.time()
    runs = [run_case(c, args, binary, py) for c in cases]
    info["load_end"] = os.getloadavg()[0]
    info["elapsed_min"] = (time.time() - started) / 60
    info["date"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    profiles = {r.get("profile") for run in runs for r in ok(run["results"]["ours"])}
    profile = "/".join(sorted(p for p in profiles if p)) or "unknown"
    kernels = {json.dumps(r["cpu_kernels"], sort_keys=True)
               for run in runs for r in ok(run["results"]["ours"]) if r.get("cpu_kernels")}
    info["ours_kernels"] = "; ".join(
        ", ".join(f"{k} {v}" for k, v in json.loads(k).items()) for k in sorted(kernels)) or None
    if args.raw:
        with open(args.raw, "w") as f:
            for run in runs:
                for side in ("ours", "ref"):
                    for r in run["results"][side]:
                        f.write(json.dumps(dict(r, suite_case=run["case"]["name"], side=side)) + "\n")
    write_report(args.out, runs, info, args, profile)
    log(f"wrote {args.out}")
    failed = [run["case"]["name"] for run in runs
              if any("error" in r for side in ("ours", "ref") for r in run["results"][side])]
    if failed:
        log(f"failures in: {', '.join(failed)}")
        sys.exit(1)


if __name__ == "__main__":
    main()

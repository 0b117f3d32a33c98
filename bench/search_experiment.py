#!/usr/bin/env python3
"""Learned merge weights and CMA-ES against the coordinate search, over several search sets.

Runs `deme-studio --device cpu bench search --seed S` for each seed (the search
set's items and noise change, the report set that judges every result stays the
same), keeps every JSON line, and writes a Markdown table: per method the
report-set objective (mean over seeds), the wall time, the forward-pass
equivalents, and for the learned methods the paired difference to the
coordinate search with a bootstrap interval over the seeds and its verdict
(better / worse / within noise).

    python3 bench/search_experiment.py --binary target/release/deme-studio \
        --seeds 1,2,3,4,5 --out docs/let-the-data-choose/learned-weights.md

Only the standard library.
"""

import argparse
import json
import os
import random
import subprocess
import sys
import time


def run_seed(binary, seed, extra):
    cmd = [binary, "--device", "cpu", "bench", "search", "--seed", str(seed)] + extra
    started = time.time()
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        sys.exit(f"seed {seed}: {' '.join(cmd)} failed:\n{out.stderr}")
    lines = [json.loads(l) for l in out.stdout.splitlines() if l.startswith("{")]
    if len(lines) != 1:
        sys.exit(f"seed {seed}: expected one JSON line, got {len(lines)}")
    line = lines[0]
    line["wall_s"] = time.time() - started
    return line, cmd


def bootstrap_mean(values, resamples=10000, rng=None):
    """Percentile 95% interval of the mean of `values`."""
    rng = rng or random.Random(0)
    n = len(values)
    means = sorted(
        sum(values[rng.randrange(n)] for _ in range(n)) / n for _ in range(resamples)
    )
    return means[int(0.025 * resamples)], means[int(0.975 * resamples) - 1]


def verdict(lo, hi):
    # lower objective is better: a difference (method - coordinate) below 0 is better
    if hi < 0:
        return "better"
    if lo > 0:
        return "worse"
    return "within noise"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--binary", default="target/release/deme-studio")
    ap.add_argument("--seeds", default="1,2,3,4,5")
    ap.add_argument("--out", required=True, help="Markdown report")
    ap.add_argument("--raw", help="JSON lines of every run (default: OUT with .jsonl)")
    ap.add_argument("extra", nargs="*", help="more `bench search` arguments (after --)")
    a = ap.parse_args()
    seeds = [int(s) for s in a.seeds.split(",")]
    runs = []
    for s in seeds:
        line, _ = run_seed(a.binary, s, a.extra)
        print(f"seed {s}: done in {line['wall_s']:.0f} s", file=sys.stderr)
        runs.append(line)
    raw = a.raw or os.path.splitext(a.out)[0] + ".jsonl"
    with open(raw, "w") as f:
        for r in runs:
            f.write(json.dumps(r) + "\n")

    names = [m["method"] for m in runs[0]["methods"]]
    by = {n: [next(m for m in r["methods"] if m["method"] == n) for r in runs] for n in names}
    coord = [m["report_objective"] for m in by["coordinate"]]
    mean = lambda v: sum(v) / len(v)
    rows = []
    for n in names:
        ms = by[n]
        obj = [m["report_objective"] for m in ms]
        secs = [m["seconds"] for m in ms]
        fpe = [m["forward_pass_equivalents"] for m in ms]
        row = {
            "method": n,
            "objective": mean(obj),
            "seconds": mean(secs),
            "fpe": mean(fpe),
        }
        if n != "coordinate":
            diff = [o - c for o, c in zip(obj, coord)]
            lo, hi = bootstrap_mean(diff)
            row["diff"] = (mean(diff), lo, hi, verdict(lo, hi))
            reach = [m["seconds_to_reach_coordinate"] for m in ms]
            row["reached"] = sum(r is not None for r in reach)
            hit = [m["time_ratio_to_reach"] for m in ms if m["time_ratio_to_reach"] is not None]
            row["reach_ratio"] = mean(hit) if hit else None
        rows.append(row)

    first = runs[0]
    with open(a.out, "w") as f:
        f.write("# Learned merge weights and CMA-ES against the coordinate search\n\n")
        f.write(
            f"Set: `{first['base']}` and its {first['experts']} experts; objective: "
            f"{first['objective']} held-out loss; weights in [{first['bounds'][0]}, "
            f"{first['bounds'][1]}]; {first['samples']} search samples (seeds "
            f"{a.seeds}: each seed draws other items and noise), judged on one report set "
            f"of {first['report_samples']} other samples. {first['threads']} threads, "
            f"{first['profile']} build, {first['device']}.\n\n"
        )
        f.write(
            "Command: `python3 bench/search_experiment.py --binary "
            f"{a.binary} --seeds {a.seeds} --out {a.out}`"
            + (f" `-- {' '.join(a.extra)}`" if a.extra else "")
            + f" (each seed runs `{a.binary} --device cpu bench search --seed S"
            + (" " + " ".join(a.extra) if a.extra else "")
            + "`)."
            + f" Raw lines: `{raw}`.\n\n"
        )
        f.write(
            "| method | report objective (mean) | method - coordinate, 95% CI over seeds | verdict "
            "| wall time (s, mean) | forward-pass equivalents | reached the coordinate's objective "
            "| time to reach / coordinate's time |\n|---|---:|---|---|---:|---:|---:|---:|\n"
        )
        for r in rows:
            if "diff" in r:
                d, lo, hi, v = r["diff"]
                diff = f"{d:+.5f} [{lo:+.5f}, {hi:+.5f}]"
                reached = f"{r['reached']} of {len(seeds)}"
                ratio = f"{r['reach_ratio']:.2f}" if r["reach_ratio"] is not None else "n/a"
            else:
                diff, v, reached, ratio = "(reference)", "", "", ""
            f.write(
                f"| {r['method']} | {r['objective']:.5f} | {diff} | {v} | {r['seconds']:.1f} "
                f"| {r['fpe']:.0f} | {reached} | {ratio} |\n"
            )
        f.write(
            "\nA forward-pass equivalent is one forward pass over the search samples: a lattice "
            "point costs one; a learned step costs a forward and backward pass over one half "
            "(about three forward passes' work) and a forward pass over the other, about two; "
            "CMA-ES scores at most as many merges as the coordinate search did. "
            "The verdict compares the report-set objective of each seed's result, paired by "
            "seed (percentile bootstrap of the mean difference, 10,000 resamples).\n"
        )
    print(f"wrote {a.out} and {raw}", file=sys.stderr)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""The gradient heatmap's noise ceiling on a model, by batches M and batch size.

Runs `deme-studio --device cpu gradsim --model MODEL --k K --batches M
--batch-size B --out WORK/kK-mM-bB` for each setting (a setting whose folder
already holds gradsim.json is read back, so the sweep resumes), times each run,
and writes a Markdown table: samples per timestep, the ceiling's min and median
over the K timesteps, the ceiling at every timestep, and the wall time.

    python3 bench/ceiling_sweep.py --binary target/release/deme-studio \
        --model assets/mnist-tiny/base --work runs/ceiling \
        --out docs/let-the-data-choose/heatmap-noise-ceiling.md

Only the standard library.
"""

import argparse
import json
import os
import subprocess
import sys
import time

SETTINGS = [(2, 8), (4, 8), (2, 32), (4, 32), (8, 32), (4, 64), (8, 64), (8, 128), (16, 128)]


def run(binary, model, k, m, b, work):
    out = os.path.join(work, f"k{k}-m{m}-b{b}")
    result = os.path.join(out, "gradsim.json")
    wall_file = os.path.join(out, "wall_s.txt")
    if not os.path.exists(result):
        cmd = [binary, "--device", "cpu", "gradsim", "--model", model, "--k", str(k),
               "--batches", str(m), "--batch-size", str(b), "--out", out]
        started = time.time()
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            sys.exit(f"{' '.join(cmd)} failed:\n{done.stderr}")
        with open(wall_file, "w") as f:
            f.write(f"{time.time() - started:.1f}\n")
    with open(result) as f:
        j = json.load(f)
    wall = None
    if os.path.exists(wall_file):
        with open(wall_file) as f:
            wall = float(f.read())
    return j, wall


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--binary", default="target/release/deme-studio")
    ap.add_argument("--model", default="assets/mnist-tiny/base")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--work", required=True, help="folder of the gradsim runs")
    ap.add_argument("--out", required=True, help="Markdown table")
    a = ap.parse_args()
    rows = []
    for m, b in SETTINGS:
        j, wall = run(a.binary, a.model, a.k, m, b, a.work)
        c = j["ceiling"]
        s = sorted(c)
        rows.append((m, b, s[0], s[len(s) // 2], c, j["timesteps"], wall))
        print(f"M={m} B={b}: median ceiling {s[len(s) // 2]:.3f}", file=sys.stderr)
    ts = rows[0][5]
    with open(a.out, "w") as f:
        f.write(f"| M | batch | samples per t | min | median | " +
                " | ".join(f"t={t}" for t in ts) + " | wall (s) |\n")
        f.write("|---:|---:|---:|---:|---:|" + "---:|" * len(ts) + "---:|\n")
        for m, b, lo, med, c, _, wall in rows:
            w = f"{wall:.0f}" if wall is not None else "-"
            f.write(f"| {m} | {b} | {m * b} | {lo:.2f} | {med:.2f} | " +
                    " | ".join(f"{v:.2f}" for v in c) + f" | {w} |\n")
    print(f"wrote {a.out}", file=sys.stderr)


if __name__ == "__main__":
    main()

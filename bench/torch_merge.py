"""Reference side of the merge benchmark: task arithmetic
theta = base + sum_i w_i tau_i written in place into an existing model's
parameters with PyTorch tensor ops (torch.add(..., out=) then add_ per expert,
per parameter tensor), the task vectors precomputed as `deme-studio bench merge`
does; plus the copy floor of the same bytes. Same model, same N, new weights
every repeat.

    /root/.cache/deme-venv/bin/python bench/torch_merge.py --model mnist-tiny --experts 4 --repeats 10

Prints one JSON line: {"remerge_ms": {...}, "copy_model_ms": {...}, "peak_rss_mb": ..., ...}.
"""
import argparse
import json
import time

import torch
from diffusers import UNet2DModel

from torch_presets import (PRESETS, add_device_arg, device_fields, model_config, peak_rss_mb,
                           pick_device, sync)


def stats_ms(times):
    t = sorted(times)
    return {"median": t[len(t) // 2] * 1e3, "min": t[0] * 1e3, "max": t[-1] * 1e3}


def time_repeats(repeats, f, dev):
    """Times f(r) for r = 1..repeats after one untimed f(0), each to the end
    of its device work."""
    f(0)
    sync(dev)
    out = []
    for r in range(1, repeats + 1):
        t0 = time.perf_counter()
        f(r)
        sync(dev)
        out.append(time.perf_counter() - t0)
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="mnist-tiny",
                   help="a preset (%s) or a diffusers config.json" % ", ".join(sorted(PRESETS)))
    p.add_argument("--experts", type=int, default=4)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    add_device_arg(p)
    a = p.parse_args()
    dev = pick_device(a.device)
    if a.threads:
        torch.set_num_threads(a.threads)
    cfg = model_config(a.model)
    n = max(a.experts, 1)
    with torch.no_grad():
        torch.manual_seed(0)
        merged = UNet2DModel(**cfg).to(dev)
        params = [q for q in merged.parameters()]
        base = [q.detach().clone() for q in params]
        taus = []
        for i in range(1, n + 1):
            torch.manual_seed(i)
            expert = UNet2DModel(**cfg).to(dev)
            taus.append([e.detach() - b for e, b in zip(expert.parameters(), base)])
            del expert

        def remerge(r):
            w = [0.1 + 0.05 * ((r + i) % 7) for i in range(n)]
            for j, q in enumerate(params):
                torch.add(base[j], taus[0][j], alpha=w[0], out=q)
                for i in range(1, n):
                    q.add_(taus[i][j], alpha=w[i])

        merge_times = time_repeats(a.repeats, remerge, dev)
        values = sum(q.numel() for q in params)

        def copy_floor(count):
            src = torch.arange(count, dtype=torch.float32, device=dev)
            dst = torch.zeros(count, dtype=torch.float32, device=dev)
            return time_repeats(a.repeats, lambda _r: dst.copy_(src), dev)

        model_copy = copy_floor(values)
    med = lambda t: sorted(t)[len(t) // 2]
    print(json.dumps({
        "impl": "pytorch", "case": "merge", "torch": torch.__version__,
        "threads": torch.get_num_threads(), "model": a.model, "params": values,
        "experts": n, "repeats": a.repeats, "model_mb": values * 4 / 1e6,
        "remerge_ms": stats_ms(merge_times), "copy_model_ms": stats_ms(model_copy),
        "remerge_over_copy_model": med(merge_times) / med(model_copy),
        "peak_rss_mb": peak_rss_mb(), **device_fields(dev),
    }))


if __name__ == "__main__":
    main()

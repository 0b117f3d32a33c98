"""Reference side of the peak case: `torch.mm` of two square f32 matrices on
the same device, the same size and repeats as `deme-studio bench peak`.

    /root/.cache/deme-venv/bin/python bench/torch_peak.py --n 2048 --repeats 5

Prints one JSON line: {"gflops_per_sec": ..., "matmul_ms": {...}, ...}.
"""
import argparse
import json
import time

import torch

from torch_presets import add_device_arg, device_fields, peak_rss_mb, pick_device, sync


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=2048)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    add_device_arg(p)
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    dev = pick_device(a.device)
    torch.manual_seed(0)
    x = torch.rand(a.n, a.n, device=dev) * 2 - 1
    y = torch.rand(a.n, a.n, device=dev) * 2 - 1
    torch.mm(x, y)
    sync(dev)
    times = []
    for _ in range(max(a.repeats, 1)):
        t0 = time.perf_counter()
        torch.mm(x, y)
        sync(dev)
        times.append(time.perf_counter() - t0)
    t = sorted(times)
    flops = 2.0 * a.n ** 3
    print(json.dumps({
        "impl": "pytorch", "case": "peak", "torch": torch.__version__,
        "threads": torch.get_num_threads(), "n": a.n, "repeats": len(times),
        "matmul_ms": {"median": t[len(t) // 2] * 1e3, "min": t[0] * 1e3, "max": t[-1] * 1e3},
        "gflops_per_sec": flops / t[len(t) // 2] / 1e9, "gflops_per_sec_best": flops / t[0] / 1e9,
        "peak_rss_mb": peak_rss_mb(), **device_fields(dev),
    }))


if __name__ == "__main__":
    main()

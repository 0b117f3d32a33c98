"""Reference side of the sampling benchmark: diffusers' UNet2DModel with its
DDIMScheduler (eta 0) or DDPMScheduler (fixed_small), the loop diffusers'
DDIMPipeline / DDPMPipeline run, under torch.no_grad, on the CPU (or `--device cuda`). The same
config, image count, step count and scheduler settings as
`deme-studio bench sample` (linear betas 1e-4..0.02, T = 1000, clipping on,
"leading" spacing).

    /root/.cache/deme-venv/bin/python bench/torch_sample.py --model mnist-tiny --sampler ddim --steps 50 --n 16

Prints one JSON line: {"images_per_sec": ..., "run_ms": {...}, "peak_rss_mb": ..., ...}.
"""
import argparse
import json
import os
import time

import torch
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel

from torch_presets import (PRESETS, add_device_arg, device_fields, model_config, peak_rss_mb,
                           pick_device, sync)

SCHEDULE = dict(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear",
                clip_sample=True, prediction_type="epsilon", timestep_spacing="leading")


def stats_ms(times):
    t = sorted(times)
    return {"median": t[len(t) // 2] * 1e3, "min": t[0] * 1e3, "max": t[-1] * 1e3}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="mnist-tiny",
                   help="a preset (%s), a diffusers config.json (random init) or a model folder"
                   % ", ".join(sorted(PRESETS)))
    p.add_argument("--sampler", choices=["ddim", "ddpm"], default="ddim")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--n", type=int, default=16)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--warmup", type=int, default=2, help="untimed model evaluations first")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    add_device_arg(p)
    a = p.parse_args()
    dev = pick_device(a.device)
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    if os.path.isdir(a.model):
        model = UNet2DModel.from_pretrained(a.model, use_safetensors=True)
        weights = "loaded"
    else:
        model = UNet2DModel(**model_config(a.model))
        weights = "random-init"
    model.to(dev).eval()
    cfg = model.config
    c, s = cfg.in_channels, cfg.sample_size or 32
    if a.sampler == "ddim":
        sched = DDIMScheduler(**SCHEDULE, set_alpha_to_one=True, steps_offset=0)
    else:
        sched = DDPMScheduler(**SCHEDULE, variance_type="fixed_small")
    sched.set_timesteps(a.steps)
    gen = torch.Generator().manual_seed(a.seed)
    times = []
    finite = True
    with torch.no_grad():
        warm = torch.randn(a.n, c, s, s, generator=gen).to(dev)
        for _ in range(a.warmup):
            model(warm, 999)
        for _ in range(max(a.repeats, 1)):
            x = torch.randn(a.n, c, s, s, generator=gen).to(dev)
            sync(dev)
            t0 = time.perf_counter()
            for t in sched.timesteps:
                eps = model(x, t).sample
                if a.sampler == "ddim":
                    x = sched.step(eps, t, x, eta=0.0, generator=gen).prev_sample
                else:
                    x = sched.step(eps, t, x, generator=gen).prev_sample
            sync(dev)
            times.append(time.perf_counter() - t0)
            finite = finite and bool(torch.isfinite(x).all())
    if not finite:
        raise SystemExit("the samples are not finite")
    med = sorted(times)[len(times) // 2]
    print(json.dumps({
        "impl": "pytorch", "case": "sample", "torch": torch.__version__,
        "threads": torch.get_num_threads(), "model": a.model, "weights": weights,
        "sampler": a.sampler, "steps": a.steps, "n": a.n, "repeats": len(times),
        "warmup": a.warmup, "params": sum(p.numel() for p in model.parameters()),
        "run_ms": stats_ms(times), "images_per_sec": a.n / med,
        "peak_rss_mb": peak_rss_mb(), **device_fields(dev),
    }))


if __name__ == "__main__":
    main()

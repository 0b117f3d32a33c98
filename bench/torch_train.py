"""Reference side of the training-throughput benchmark: diffusers' UNet2DModel and
PyTorch AdamW on the CPU (or `--device cuda`), the same config, batch size and step count as
`deme-studio bench train`.

    /root/.cache/deme-venv/bin/python bench/torch_train.py --model mnist-tiny --batch-size 64 --steps 20

Prints one JSON line: {"images_per_sec": ..., "step_ms_median": ..., "peak_rss_mb": ..., ...}.
"""
import argparse
import json
import time

import torch
from diffusers import UNet2DModel

from torch_presets import (PRESETS, add_device_arg, device_fields, model_config, peak_rss_mb,
                           pick_device, sync)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="mnist-tiny",
                   help="a preset (%s) or a diffusers config.json" % ", ".join(sorted(PRESETS)))
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    add_device_arg(p)
    a = p.parse_args()
    dev = pick_device(a.device)
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    cfg = model_config(a.model)
    model = UNet2DModel(**cfg).to(dev)
    # the same 'sdpa' attention diffusers uses by default on CPU
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.95, 0.999), weight_decay=1e-6)
    alphas = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000), 0).to(dev)
    c, s = cfg.get("in_channels", 3), cfg.get("sample_size") or 32
    x0 = torch.randn(a.batch_size, c, s, s).clamp(-1, 1).to(dev)
    steps = max(a.steps, 1)
    times = []
    for i in range(a.warmup + steps):
        t0 = time.perf_counter()
        t = torch.randint(0, 1000, (a.batch_size,), device=dev)
        noise = torch.randn_like(x0)
        ac = alphas[t].view(-1, 1, 1, 1)
        xt = ac.sqrt() * x0 + (1 - ac).sqrt() * noise
        loss = torch.nn.functional.mse_loss(model(xt, t).sample, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sync(dev)
        if i >= a.warmup:
            times.append(time.perf_counter() - t0)
    times.sort()
    med = times[len(times) // 2]
    print(json.dumps({
        "impl": "pytorch", "case": "train", "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "model": a.model, "batch_size": a.batch_size, "steps": steps, "warmup": a.warmup,
        "params": sum(p.numel() for p in model.parameters()),
        "step_ms_median": med * 1e3, "step_ms_min": times[0] * 1e3, "step_ms_max": times[-1] * 1e3,
        "images_per_sec": a.batch_size / med,
        "peak_rss_mb": peak_rss_mb(), **device_fields(dev),
    }))


if __name__ == "__main__":
    main()

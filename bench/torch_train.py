"""Reference side of the training-throughput benchmark: diffusers' UNet2DModel and
PyTorch AdamW on the CPU, the same config, batch size and step count as
`deme-studio bench train`.

    /root/.cache/deme-venv/bin/python bench/torch_train.py --model mnist-small --batch-size 64 --steps 20

Prints one JSON line: {"images_per_sec": ..., "step_ms": [...], ...}.
"""
import argparse
import json
import time

import torch
from diffusers import UNet2DModel

PRESETS = {
    "mnist-small": dict(
        sample_size=32, in_channels=1, out_channels=1, block_out_channels=[32, 64, 64],
        down_block_types=["DownBlock2D", "AttnDownBlock2D", "DownBlock2D"],
        up_block_types=["UpBlock2D", "AttnUpBlock2D", "UpBlock2D"], layers_per_block=1,
        attention_head_dim=None, norm_eps=1e-6, norm_num_groups=32, flip_sin_to_cos=False,
        freq_shift=1, downsample_padding=0,
    ),
    "ddpm-cifar10-32": dict(
        sample_size=32, in_channels=3, out_channels=3, block_out_channels=[128, 256, 256, 256],
        down_block_types=["DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"],
        up_block_types=["UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"], layers_per_block=2,
        attention_head_dim=None, norm_eps=1e-6, norm_num_groups=32, flip_sin_to_cos=False,
        freq_shift=1, downsample_padding=0,
    ),
}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="mnist-small",
                   help="a preset (%s) or a diffusers config.json" % ", ".join(sorted(PRESETS)))
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    if a.model in PRESETS:
        cfg = PRESETS[a.model]
    else:
        with open(a.model) as f:
            cfg = {k: v for k, v in json.load(f).items() if not k.startswith("_")}
    model = UNet2DModel(**cfg)
    # the same 'sdpa' attention diffusers uses by default on CPU
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.95, 0.999), weight_decay=1e-6)
    alphas = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000), 0)
    c, s = cfg.get("in_channels", 3), cfg["sample_size"]
    x0 = torch.randn(a.batch_size, c, s, s).clamp(-1, 1)
    times = []
    for i in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        t = torch.randint(0, 1000, (a.batch_size,))
        noise = torch.randn_like(x0)
        ac = alphas[t].view(-1, 1, 1, 1)
        xt = ac.sqrt() * x0 + (1 - ac).sqrt() * noise
        loss = torch.nn.functional.mse_loss(model(xt, t).sample, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if i >= a.warmup:
            times.append(time.perf_counter() - t0)
    times.sort()
    med = times[len(times) // 2]
    print(json.dumps({
        "impl": "pytorch", "torch": torch.__version__, "threads": torch.get_num_threads(),
        "model": a.model, "batch_size": a.batch_size, "steps": a.steps,
        "params": sum(p.numel() for p in model.parameters()),
        "step_ms_median": med * 1e3, "step_ms_min": times[0] * 1e3, "step_ms_max": times[-1] * 1e3,
        "images_per_sec": a.batch_size / med,
    }))


if __name__ == "__main__":
    main()

"""PyTorch reference for the teaching mode's toy diffusion model.

Trains the toy MLP of `src/engine/model/mlp.rs` on a 2D toy distribution
with the engine's recipe (linear betas 1e-4..0.02, T = 1000, epsilon
prediction, uniform timesteps, AdamW (0.9, 0.999) without weight decay, global
gradient clip 1.0, linear warm-up, EMA with diffusers' warm-up schedule) and
measures the quality of DDIM and DDPM samples:

* `prec`: fraction of samples within 0.1 of a data point (standardised
  coordinates), `d_s`: mean distance from a sample to its nearest data point;
* `cov`: fraction of data points within 0.1 of a sample, `d_d`: mean
  distance from a data point to its nearest sample.

Architectures (`--arch`):

* `old`: input and time projections summed, then `layers` SiLU layers (the
  engine's original `ToyMlp`);
* `inject`: the same, plus a projection of the time features added to every
  hidden layer;
* `fourier`: like `inject`, with sinusoidal features of x as input.

`--skip` adds `sqrt(1 - abar_t) x_t` to the output (the noise prediction
that is exact for unit-variance Gaussian data). `in90` is the fraction of
samples inside the smallest set of 0.1-wide cells holding 90 % of the data
(0.905 for fresh data), the measure that tracks how crisp a cloud looks.

Examples (the engine's original toy MLP with the old teaching defaults, then
the current `toy-mlp` preset with the current ones)::

    python bench/toy_reference.py --arch old --batch 128 --ema 0.99
    python bench/toy_reference.py --arch fourier --x-freqs 6 --hidden 64 --skip \
        --batch 512 --ema 0.995
"""

import argparse
import math
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

T = 1000

STANDARDISATION = {
    "moons": (0.5, 0.25, 0.8717801, 0.5041724),
    "swissroll": (2.0, 0.2122066, 6.641861, 6.969167),
    "8gaussians": (0.0, 0.0, 1.4282857, 1.4282857),
    "checkerboard": (0.0, 0.0, 1.1547005, 1.1547005),
}


def toy(kind, n, seed):
    """`n` standardised points of `kind` (the definitions of deme-formats' toy.rs)."""
    rng = np.random.default_rng(seed)
    n1, n2 = rng.standard_normal(n), rng.standard_normal(n)
    if kind == "moons":
        t = rng.random(n) * math.pi
        upper = rng.random(n) < 0.5
        x = np.where(upper, np.cos(t), 1 - np.cos(t)) + 0.1 * n1
        y = np.where(upper, np.sin(t), 0.5 - np.sin(t)) + 0.1 * n2
    elif kind == "swissroll":
        t = 1.5 * math.pi * (1 + 2 * rng.random(n))
        x, y = t * np.cos(t) + 0.5 * n1, t * np.sin(t) + 0.5 * n2
    elif kind == "8gaussians":
        a = rng.integers(0, 8, n) * math.pi / 4
        x, y = 2 * np.cos(a) + 0.2 * n1, 2 * np.sin(a) + 0.2 * n2
    elif kind == "checkerboard":
        x = rng.random(n) * 4 - 2
        parity = np.mod(np.floor(x), 2)
        y = rng.random(n) - 2 * rng.integers(0, 2, n) + parity
    else:
        raise ValueError(kind)
    mx, my, sx, sy = STANDARDISATION[kind]
    return np.stack([(x - mx) / sx, (y - my) / sy], 1).astype(np.float32)


def timestep_features(t, dim):
    """diffusers `get_timestep_embedding` with flip_sin_to_cos, shift 0 (embedding.rs)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], 1)


class ToyMlp(nn.Module):
    def __init__(self, arch, hidden, layers, time_dim, x_freqs, t_scale, skip=False):
        super().__init__()
        self.skip = skip
        self.arch, self.time_dim, self.x_freqs, self.t_scale = arch, time_dim, x_freqs, t_scale
        din = 2 if arch != "fourier" else 2 + 4 * x_freqs
        self.input = nn.Linear(din, hidden)
        self.time = nn.Linear(time_dim, hidden)
        self.hidden = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(layers))
        if arch != "old":
            self.time_hidden = nn.ModuleList(nn.Linear(time_dim, hidden) for _ in range(layers))
        self.output = nn.Linear(hidden, 2)

    def forward(self, x, t):
        f = timestep_features(t * self.t_scale, self.time_dim)
        if self.arch == "fourier":
            scales = 2.0 ** torch.arange(self.x_freqs, dtype=torch.float32)
            a = (x[:, :, None] * scales).flatten(1)
            x = torch.cat([x, torch.sin(a), torch.cos(a)], 1)
        h = F.silu(self.input(x) + self.time(f))
        for i, layer in enumerate(self.hidden):
            z = layer(h)
            if self.arch != "old":
                z = z + self.time_hidden[i](f)
            h = F.silu(z)
        out = self.output(h)
        if self.skip:
            # the Gaussian solution E[eps | x_t] = sqrt(1 - abar_t) x_t for unit-variance data
            out = out + (1 - schedule()[0][t]).sqrt()[:, None] * x[:, :2]
        return out


def schedule():
    betas = torch.linspace(1e-4, 0.02, T, dtype=torch.float32)
    return torch.cumprod(1 - betas, 0), betas


def train(model, data, args):
    abar, _ = schedule()
    ema = {k: v.detach().clone() for k, v in model.state_dict().items()}
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.999), weight_decay=0.0)
    g = torch.Generator().manual_seed(args.seed)
    data = torch.from_numpy(data)
    warmup = min(args.steps // 20, 100) if args.warmup < 0 else args.warmup
    losses = []
    for step in range(args.steps):
        lr = args.lr * min((step + 1) / warmup, 1.0) if warmup > 0 else args.lr
        if args.cosine:
            lr *= 0.5 * (1 + math.cos(math.pi * step / args.steps))
        for group in opt.param_groups:
            group["lr"] = lr
        idx = torch.randint(0, len(data), (args.batch,), generator=g)
        x0 = data[idx]
        t = torch.randint(0, T, (args.batch,), generator=g)
        eps = torch.randn(x0.shape, generator=g)
        a = abar[t][:, None]
        xt = a.sqrt() * x0 + (1 - a).sqrt() * eps
        loss = F.mse_loss(model(xt, t), eps)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        if args.ema > 0:
            decay = min(args.ema, (1 + step) / (10 + step))
            with torch.no_grad():
                for k, v in model.state_dict().items():
                    ema[k].mul_(decay).add_(v, alpha=1 - decay)
    if args.ema > 0:
        model.load_state_dict(ema)
    return float(np.mean(losses[-100:]))


@torch.no_grad()
def ddim(model, x, steps):
    """diffusers DDIM, eta 0, leading spacing, set_alpha_to_one, no clipping."""
    abar, _ = schedule()
    ratio = T // steps
    ts = list(range(0, steps * ratio, ratio))[::-1]
    for t in ts:
        eps = model(x, torch.full((len(x),), t))
        a_t = abar[t]
        a_prev = abar[t - ratio] if t - ratio >= 0 else torch.tensor(1.0)
        x0 = (x - (1 - a_t).sqrt() * eps) / a_t.sqrt()
        x = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps
    return x


@torch.no_grad()
def ddpm(model, x, g):
    """DDPM ancestral sampling over all T steps (posterior variance 'fixed_small')."""
    abar, betas = schedule()
    for t in range(T - 1, -1, -1):
        eps = model(x, torch.full((len(x),), t))
        a_t, a_prev = abar[t], (abar[t - 1] if t > 0 else torch.tensor(1.0))
        beta = 1 - a_t / a_prev
        x0 = (x - (1 - a_t).sqrt() * eps) / a_t.sqrt()
        mean = (a_prev.sqrt() * beta / (1 - a_t)) * x0 + ((1 - beta).sqrt() * (1 - a_prev) / (1 - a_t)) * x
        if t > 0:
            var = (1 - a_prev) / (1 - a_t) * beta
            x = mean + var.sqrt() * torch.randn(x.shape, generator=g)
        else:
            x = mean
    return x


class Region:
    """The smallest set of 0.1-wide grid cells over [-4, 4]^2 that holds `mass`
    of the data (from a 200k-point histogram): `inside` is the fraction of
    points falling in it, `mass` for the data itself."""

    def __init__(self, kind, mass=0.9, cell=0.1, n=200_000):
        self.cell, self.bins = cell, int(round(8 / cell))
        counts = self.histogram(toy(kind, n, 4242))
        order = np.argsort(counts)[::-1]
        cum = np.cumsum(counts[order]) / n
        keep = order[: np.searchsorted(cum, mass) + 1]
        self.mask = np.zeros(self.bins * self.bins, bool)
        self.mask[keep] = True

    def cells(self, pts):
        ij = np.floor((np.asarray(pts) + 4) / self.cell).astype(int)
        ok = ((ij >= 0) & (ij < self.bins)).all(1)
        return np.where(ok, ij[:, 0] * self.bins + ij[:, 1], -1)

    def histogram(self, pts):
        c = self.cells(pts)
        return np.bincount(c[c >= 0], minlength=self.bins * self.bins)

    def inside(self, pts):
        c = self.cells(pts)
        return float(np.mean(np.where(c >= 0, self.mask[np.maximum(c, 0)], False)))


def quality(samples, data, radius=0.1):
    """(prec, d_s, cov, d_d) of `samples` against the reference `data`."""
    s, d = torch.as_tensor(samples), torch.as_tensor(data)
    dist = torch.cdist(s, d)
    to_data = dist.min(1).values
    to_samples = dist.min(0).values
    return (
        (to_data < radius).float().mean().item(),
        to_data.mean().item(),
        (to_samples < radius).float().mean().item(),
        to_samples.mean().item(),
    )


def scatter(clouds, path, size=300):
    """Writes the point clouds side by side as a PNG (axes -3..3)."""
    from PIL import Image

    img = np.full((size, size * len(clouds), 3), 16, np.uint8)
    for i, pts in enumerate(clouds):
        pts = np.asarray(pts)
        px = ((pts[:, 0] + 3) / 6 * size).astype(int) + i * size
        py = ((3 - pts[:, 1]) / 6 * size).astype(int)
        ok = (px >= i * size) & (px < (i + 1) * size) & (py >= 0) & (py < size)
        for dx in (0, 1):
            for dy in (0, 1):
                img[np.clip(py[ok] + dy, 0, size - 1), np.clip(px[ok] + dx, 0, size * len(clouds) - 1)] = (240, 160, 60)
    Image.fromarray(img).save(path)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", default="moons")
    p.add_argument("--arch", default="old", choices=["old", "inject", "fourier"])
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--time-dim", type=int, default=32)
    p.add_argument("--x-freqs", type=int, default=4)
    p.add_argument("--skip", action="store_true", help="add sqrt(1 - abar_t) x_t to the output")
    p.add_argument("--t-scale", type=float, default=1.0, help="time features of t * this")
    p.add_argument("--steps", type=int, default=1200)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--warmup", type=int, default=-1, help="-1: min(steps/20, 100) as the app")
    p.add_argument("--cosine", action="store_true", help="cosine decay after warm-up")
    p.add_argument("--ema", type=float, default=0.99, help="EMA decay cap (0: none)")
    p.add_argument("--ddim", type=int, nargs="*", default=[20, 50])
    p.add_argument("--no-ddpm", action="store_true")
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--png", help="write the data and every sample cloud here")
    args = p.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)

    model = ToyMlp(args.arch, args.hidden, args.layers, args.time_dim, args.x_freqs, args.t_scale, args.skip)
    train_data = toy(args.data, 18000, args.seed + 1)
    ref = toy(args.data, 5000, 12345)
    t0 = time.time()
    loss = train(model, train_data, args)
    secs = time.time() - t0
    params = sum(p.numel() for p in model.parameters())
    print(
        f"{args.data} arch={args.arch} h={args.hidden} L={args.layers} steps={args.steps} "
        f"ts={args.t_scale} skip={args.skip} bs={args.batch} lr={args.lr} cos={args.cosine} ema={args.ema} params={params} "
        f"loss={loss:.4f} train={secs:.1f}s"
    )
    region = Region(args.data)
    own = toy(args.data, args.samples, 999)
    ceiling = quality(own, ref[: args.samples * 2])
    print("  data      in90={:.3f} prec={:.3f} d_s={:.3f} cov={:.3f} d_d={:.3f}".format(region.inside(own), *ceiling))
    g = torch.Generator().manual_seed(7)
    noise = torch.randn((args.samples, 2), generator=g)
    model.eval()
    runs = [(f"ddim{k}", lambda k=k: ddim(model, noise.clone(), k)) for k in args.ddim]
    if not args.no_ddpm:
        runs.append(("ddpm1000", lambda: ddpm(model, noise.clone(), g)))
    clouds = [ref[: args.samples]]
    for name, fn in runs:
        x = fn()
        clouds.append(x.numpy())
        prec, d_s, cov, d_d = quality(x, ref[: args.samples * 2])
        print(f"  {name:9s} in90={region.inside(x.numpy()):.3f} prec={prec:.3f} d_s={d_s:.3f} cov={cov:.3f} d_d={d_d:.3f}")
    if args.png:
        scatter(clouds, args.png)


if __name__ == "__main__":
    main()

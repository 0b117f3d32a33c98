"""The model presets of deme-studio (src/engine/checkpoint/unet_config.rs) as
diffusers UNet2DModel keyword arguments, shared by the reference benchmarks."""
import json

PRESETS = {
    "mnist-tiny": dict(
        sample_size=28, in_channels=1, out_channels=1, block_out_channels=[16, 32, 64],
        down_block_types=["DownBlock2D", "DownBlock2D", "AttnDownBlock2D"],
        up_block_types=["AttnUpBlock2D", "UpBlock2D", "UpBlock2D"], layers_per_block=1,
        attention_head_dim=None, norm_eps=1e-6, norm_num_groups=8, flip_sin_to_cos=False,
        freq_shift=1, downsample_padding=0,
    ),
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


def model_config(arg):
    """A preset name or the path of a diffusers config.json -> UNet2DModel kwargs."""
    if arg in PRESETS:
        return dict(PRESETS[arg])
    with open(arg) as f:
        return {k: v for k, v in json.load(f).items() if not k.startswith("_")}


def peak_rss_mb():
    """Peak resident set of this process in MB (ru_maxrss is in kB on Linux)."""
    import resource
    import sys
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024.0 * 1024.0) if sys.platform == "darwin" else rss / 1024.0


def add_device_arg(parser):
    """`--device`: where the reference runs."""
    parser.add_argument("--device", default="cpu",
                        help="torch device: cpu, cuda, or auto (cuda when torch sees one)")


def pick_device(name):
    """The torch device for `--device`; exits with a clear message when CUDA is
    asked for and torch has none."""
    import torch
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {name}: this torch build sees no CUDA device")
    return dev


def sync(dev):
    """Waits for the device's queued work (a no-op on the CPU)."""
    import torch
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def device_fields(dev):
    """`torch_device`, and on CUDA the peak memory torch's caching allocator
    reserved and allocated in MB (`device_reserved_mb`, `device_in_use_mb`)."""
    import torch
    out = {"torch_device": str(dev)}
    if dev.type == "cuda":
        out["device_reserved_mb"] = torch.cuda.max_memory_reserved(dev) / 2**20
        out["device_in_use_mb"] = torch.cuda.max_memory_allocated(dev) / 2**20
    return out

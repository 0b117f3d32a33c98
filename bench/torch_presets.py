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

"""Load this folder's UNet into diffusers with its DeMe channel-wise projections.

Written by deme-studio beside every model whose weights hold channel-wise
projections (`adapter_list.{k}.weight`, bias-free C x C 1x1 convolutions).
diffusers' `UNet2DModel` has no place for them: `UNet2DModel.from_pretrained`
drops these tensors with only a log line and computes a different function.
This module builds the stock `UNet2DModel` from the folder, then applies each
projection where deme-studio applies it, with forward hooks:

  * after each down block, to the hidden state it passes on (the copies it
    keeps for the skip connections stay unprojected),
  * after the mid block,
  * after each up block.

Usage (needs only torch, diffusers and safetensors):

    import deme_unet                      # this file, from the model folder
    unet = deme_unet.load("path/to/folder")
    eps = unet(x, t).sample

or run `python deme_unet.py FOLDER` to load it and print what was applied.
"""

import os
import sys

import torch
import torch.nn.functional as F
from diffusers import UNet2DModel
from safetensors.torch import load_file

WEIGHTS = "diffusion_pytorch_model.safetensors"
PREFIX = "adapter_list."


def projections(folder):
    """The projection weights of the folder, in site order (may be empty)."""
    state = load_file(os.path.join(folder, WEIGHTS))
    found = {int(k[len(PREFIX):].split(".")[0]): v for k, v in state.items() if k.startswith(PREFIX)}
    if sorted(found) != list(range(len(found))):
        raise ValueError(f"{folder}: projection indices {sorted(found)} are not 0..{len(found) - 1}")
    return [found[k] for k in range(len(found))]


def sites(unet):
    """The blocks whose output is projected, in deme-studio's order."""
    out = list(unet.down_blocks)
    if unet.mid_block is not None:
        out.append(unet.mid_block)
    return out + list(unet.up_blocks)


def _hook(weight):
    def project(module, args, output):
        if isinstance(output, tuple):
            # down blocks return (hidden state, skip copies): project the first only
            h = output[0]
            return (F.conv2d(h, weight.to(device=h.device, dtype=h.dtype)),) + tuple(output[1:])
        return F.conv2d(output, weight.to(device=output.device, dtype=output.dtype))

    return project


def apply_projections(unet, weights):
    """Hooks `weights` (one [C, C, 1, 1] tensor per site) onto `unet`; returns the hook handles."""
    blocks = sites(unet)
    if len(weights) != len(blocks):
        raise ValueError(f"{len(weights)} projections for {len(blocks)} projection sites")
    handles = []
    for block, w in zip(blocks, weights):
        handles.append(block.register_forward_hook(_hook(w)))
    return handles


def load(folder=None, **from_pretrained_kwargs):
    """`UNet2DModel.from_pretrained(folder)` with the folder's projections applied.

    `folder` defaults to the folder holding this file. Keyword arguments go to
    `from_pretrained` (for example `torch_dtype`). The hook handles are kept in
    `unet.deme_projection_hooks`; call `.remove()` on each to get the stock model back.
    """
    folder = folder or os.path.dirname(os.path.abspath(__file__))
    unet = UNet2DModel.from_pretrained(folder, **from_pretrained_kwargs)
    weights = projections(folder)
    unet.deme_projection_hooks = apply_projections(unet, weights)
    return unet


if __name__ == "__main__":
    path = sys.argv[1] if len(sys.argv) > 1 else None
    model = load(path)
    n = len(model.deme_projection_hooks)
    print(f"loaded {path or os.path.dirname(os.path.abspath(__file__))}: UNet2DModel with {n} projections applied")

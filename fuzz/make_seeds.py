#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target into fuzz/seeds/<target>/.

Seeds are small valid (and a few nearly valid) inputs, so the fuzzer starts
from the formats' real structure. Standard library only, plus Pillow for the
JPEG seeds when it is installed. Run from the repository root:

    python3 fuzz/make_seeds.py
"""
import gzip
import io
import json
import os
import struct
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "fuzz", "seeds")


def put(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def safetensors(tensors, metadata=None):
    """tensors: name -> (dtype, shape, raw bytes)."""
    header, offset, blob = {}, 0, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        blob += raw
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + blob


def f32(*v):
    return struct.pack("<%df" % len(v), *v)


def seeds_safetensors():
    put("safetensors", "f32_small", safetensors({
        "conv_in.weight": ("F32", [2, 1, 1, 1], f32(1.0, -2.0)),
        "conv_in.bias": ("F32", [2], f32(0.5, 0.25)),
    }, {"format": "pt"}))
    put("safetensors", "mixed_dtypes", safetensors({
        "a.f16": ("F16", [2], struct.pack("<2e", 1.0, -0.5)),
        "b.bf16": ("BF16", [2], b"\x80\x3f\x00\xc0"),
        "c.i64": ("I64", [1], struct.pack("<q", 7)),
        "d.scalar": ("F32", [], f32(3.0)),
        "e.empty": ("F32", [0, 3], b""),
    }))
    put("safetensors", "legacy_attention_keys", safetensors({
        "mid_block.attentions.0.query.weight": ("F32", [1, 1], f32(1.0)),
        "mid_block.attentions.0.proj_attn.bias": ("F32", [1], f32(0.0)),
    }))
    put("safetensors", "modern_attention_keys", safetensors({
        "mid_block.attentions.0.to_q.weight": ("F32", [1, 1], f32(1.0)),
        "mid_block.attentions.0.to_out.0.bias": ("F32", [1], f32(0.0)),
    }))
    put("safetensors", "header_only", safetensors({}))
    good = safetensors({"x": ("F32", [2], f32(1.0, 2.0))})
    put("safetensors", "bad_truncated", good[:-3])


def seeds_configs():
    for rel in ["assets/mnist-tiny/base/config.json"]:
        with open(os.path.join(ROOT, rel)) as f:
            put("unet_config", "mnist_tiny", f.read())
    cifar = {
        "_class_name": "UNet2DModel", "_diffusers_version": "0.0.4", "act_fn": "silu",
        "attention_head_dim": None, "block_out_channels": [128, 256, 256, 256],
        "center_input_sample": False,
        "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"],
        "downsample_padding": 0, "flip_sin_to_cos": False, "freq_shift": 1, "in_channels": 3,
        "layers_per_block": 2, "mid_block_scale_factor": 1, "norm_eps": 1e-06,
        "norm_num_groups": 32, "out_channels": 3, "sample_size": 32, "time_embedding_type": "positional",
        "up_block_types": ["UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
    }
    put("unet_config", "ddpm_cifar10_32", json.dumps(cifar, indent=2))
    put("unet_config", "minimal", json.dumps({"block_out_channels": [8], "down_block_types": ["DownBlock2D"],
                                               "up_block_types": ["UpBlock2D"], "norm_num_groups": 4}))
    with open(os.path.join(ROOT, "assets/mnist-tiny/deme/expert_1/deme.json")) as f:
        put("checkpoint_meta", "expert", f.read())
    with open(os.path.join(ROOT, "assets/mnist-tiny/base/deme.json")) as f:
        put("checkpoint_meta", "base", f.read())
    put("checkpoint_meta", "minimal", json.dumps({"format_version": 1, "kind": "merge"}))


def seeds_recipe():
    inp = lambda p: {"path": p, "sha256": "0" * 64}
    base = {"format_version": 1, "base": inp("../base"), "experts": [inp("e1"), inp("e2")],
            "weights": [0.5, 0.5], "seed": 0}
    put("recipe", "task_arithmetic", json.dumps(dict(base, method={"name": "ta"})))
    put("recipe", "ties", json.dumps(dict(base, method={"name": "ties", "k": 0.2, "scale": 1.0}, output="sub/dir")))
    put("recipe", "dare", json.dumps(dict(base, method={"name": "dare", "p": 0.9},
                                          block_weights={"mid_block": [1.0, 0.0]})))


def idx(magic, dims, payload):
    return struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in dims) + payload


def seeds_idx():
    with gzip.open(os.path.join(ROOT, "assets/mnist/digits-10k-images-idx3-ubyte.gz")) as f:
        raw = f.read(16 + 3 * 784)
    images = idx(0x803, [3, 28, 28], raw[16:])
    put("idx", "images3", images)
    put("idx", "images3_gz", gzip.compress(images, mtime=0))
    put("idx", "images_tiny", idx(0x803, [2, 2, 3], bytes(range(12))))
    labels = idx(0x801, [4], bytes([0, 7, 9, 3]))
    put("idx", "labels4", labels)
    put("idx", "labels4_gz", gzip.compress(labels, mtime=0))


def seeds_cifar():
    rec = lambda label: bytes([label]) + bytes((i * 7 + label) % 256 for i in range(3072))
    put("cifar10", "two_records", rec(3) + rec(9))
    put("cifar10", "one_record", rec(0))


def png(width, height, color_type, rows):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    raw = b"".join(b"\x00" + r for r in rows)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def seeds_image():
    put("image", "gray_4x3.png", png(4, 3, 0, [bytes([i * 20 + j for j in range(4)]) for i in range(3)]))
    put("image", "rgb_2x2.png", png(2, 2, 2, [bytes([255, 0, 0, 0, 255, 0]), bytes([0, 0, 255, 9, 9, 9])]))
    put("image", "rgba_1x1.png", png(1, 1, 6, [bytes([1, 2, 3, 4])]))
    try:
        from PIL import Image
    except ImportError:
        return
    for mode, name in [("L", "gray_8x8.jpg"), ("RGB", "rgb_8x8.jpg")]:
        img = Image.new(mode, (8, 8))
        img.putdata([(i * 4) % 256 if mode == "L" else ((i * 4) % 256, i, 255 - i) for i in range(64)])
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=75)
        put("image", name, buf.getvalue())


def seeds_data_spec():
    for i, s in enumerate(["mnist", "cifar10:/data/cifar-10-batches-bin", "images:C:\\data", "idx:./t10k",
                           "toy:moons", "toy:swiss-roll", "TOY:8gaussians", "toy:checkerboard", "images: x"]):
        put("data_spec", "spec%d" % i, s)


if __name__ == "__main__":
    seeds_safetensors()
    seeds_configs()
    seeds_recipe()
    seeds_idx()
    seeds_cifar()
    seeds_image()
    seeds_data_spec()
    for t in sorted(os.listdir(OUT)):
        print(t, len(os.listdir(os.path.join(OUT, t))))

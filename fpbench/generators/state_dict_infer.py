"""Recover NVIDIA constructor kwargs from a bare generator state dict (NVIDIA key names).

State-dict checkpoints (`.pt`/`.pth`) carry tensors but no kwargs. Shapes and key names determine
almost everything: family (StyleGAN2 `synthesis.b4.const` vs StyleGAN3 `synthesis.input.*`),
resolution, channels, z/w/c dims, mapping depth, StyleGAN2 architecture, StyleGAN3 layer count,
config T/R. Two things leave no trace in the weights and get NVIDIA's training defaults, which all
official StyleGAN2/2-ADA/3 checkpoints use: `conv_clamp=256` and `num_fp16_res=4` (both only matter
for float16 on CUDA). The result is verified by the loader, which strict-loads the state dict into a
network built from these kwargs.
"""

from __future__ import annotations

import math
import re

import numpy as np
import torch

from ..errors import CheckpointError
from .stylegan3 import layer_schedule

__all__ = ["infer_init_kwargs", "stylegan3_layer_names"]

NVIDIA_CONV_CLAMP = 256
NVIDIA_NUM_FP16_RES = 4

_SG2_BLOCK = re.compile(r"^synthesis\.b(\d+)\.")
_SG3_LAYER = re.compile(r"^synthesis\.L(\d+)_(\d+)_(\d+)\.")
_FC = re.compile(r"^mapping\.fc(\d+)\.weight$")


class _CannotInfer(Exception):
    pass


def infer_init_kwargs(state_dict: dict[str, torch.Tensor], label: str) -> tuple[str, dict]:
    """(family, init_kwargs) for a state dict; CheckpointError when the shapes do not determine them."""
    try:
        if "synthesis.b4.const" in state_dict:
            return "stylegan2", _infer_stylegan2(state_dict)
        if "synthesis.input.freqs" in state_dict:
            return "stylegan3", _infer_stylegan3(state_dict)
        raise _CannotInfer("it has neither StyleGAN2 (synthesis.b4.const) nor StyleGAN3 "
                           "(synthesis.input.freqs) keys")
    except (_CannotInfer, KeyError, IndexError) as err:
        reason = f"missing key {err}" if isinstance(err, KeyError) else str(err)
        raise CheckpointError(f"cannot infer the architecture of {label}: {reason}; "
                              f"provide a .json sidecar with init_kwargs") from None


def _shape(sd, key) -> tuple[int, ...]:
    return tuple(sd[key].shape)


def _mapping(sd, family: str) -> tuple[dict, dict]:
    """Generator-level dims and mapping_kwargs, shared by both families."""
    w_dim = _shape(sd, "mapping.w_avg")[0]
    fcs = sorted(int(m.group(1)) for k in sd if (m := _FC.match(k)))
    if not fcs or fcs != list(range(len(fcs))):
        raise _CannotInfer("mapping.fc* layers are missing or not numbered 0..n-1")
    embed = _shape(sd, "mapping.embed.weight") if "mapping.embed.weight" in sd else None
    c_dim = embed[1] if embed else 0
    embed_features = embed[0] if embed else 0
    z_dim = _shape(sd, "mapping.fc0.weight")[1] - embed_features
    if z_dim < 0 or _shape(sd, f"mapping.fc{fcs[-1]}.weight")[0] != w_dim:
        raise _CannotInfer("mapping layer shapes are inconsistent")
    mapping_kwargs = {"num_layers": len(fcs)}
    if family == "stylegan2":  # StyleGAN3's mapping has no such knobs: they must equal w_dim
        if embed and embed_features != w_dim:
            mapping_kwargs["embed_features"] = embed_features
        if len(fcs) > 1 and _shape(sd, "mapping.fc0.weight")[0] != w_dim:
            mapping_kwargs["layer_features"] = _shape(sd, "mapping.fc0.weight")[0]
    return {"z_dim": z_dim, "c_dim": c_dim, "w_dim": w_dim}, mapping_kwargs


def _sg2_channel_config(channels: dict[int, int]) -> tuple[int, int]:
    """(channel_base, channel_max) with min(channel_base // res, channel_max) == channels[res] for all res."""
    cmax = max(channels.values())
    lo, hi = 1, math.inf
    for res, c in channels.items():
        if c < cmax:  # channel_base // res == c exactly
            lo, hi = max(lo, c * res), min(hi, (c + 1) * res - 1)
        else:         # channel_base // res >= cmax
            lo = max(lo, cmax * res)
    if lo > hi or any(min(lo // r, cmax) != c for r, c in channels.items()):
        raise _CannotInfer(f"per-resolution channels {channels} do not follow min(channel_base // res, channel_max)")
    return lo, cmax


def _infer_stylegan2(sd) -> dict:
    dims, mapping_kwargs = _mapping(sd, "stylegan2")
    resolutions = sorted({int(m.group(1)) for k in sd if (m := _SG2_BLOCK.match(k))})
    expected = [2 ** i for i in range(2, int(math.log2(resolutions[-1])) + 1)]
    if resolutions != expected:
        raise _CannotInfer(f"synthesis blocks {resolutions} are not 4, 8, ..., a power of two")
    channels = {4: _shape(sd, "synthesis.b4.const")[0]}
    for res in resolutions[1:]:
        channels[res] = _shape(sd, f"synthesis.b{res}.conv1.weight")[0]
    channel_base, channel_max = _sg2_channel_config(channels)
    last = resolutions[-1]
    if any(f"synthesis.b{r}.skip.weight" in sd for r in resolutions):
        architecture = "resnet"
    elif len(resolutions) == 1 or "synthesis.b4.torgb.weight" in sd:
        architecture = "skip"
    else:
        architecture = "orig"
    return {
        **dims,
        "img_resolution": last,
        "img_channels": _shape(sd, f"synthesis.b{last}.torgb.weight")[0],
        "mapping_kwargs": mapping_kwargs,
        "channel_base": channel_base,
        "channel_max": channel_max,
        "architecture": architecture,
        "conv_clamp": NVIDIA_CONV_CLAMP,
        "num_fp16_res": NVIDIA_NUM_FP16_RES,
    }


def stylegan3_layer_names(img_resolution: int, img_channels: int, channel_base: float, channel_max: float,
                          num_layers: int = 14, num_critical: int = 2, first_cutoff: float = 2,
                          first_stopband: float = 2 ** 2.1, last_stopband_rel: float = 2 ** 0.3,
                          margin_size: int = 10) -> list[str]:
    """Names `L{i}_{size}_{channels}` that NVIDIA's StyleGAN3 synthesis network gives its layers."""
    _, _, _, sizes, channels = layer_schedule(img_resolution, img_channels, channel_base, channel_max, num_layers,
                                              num_critical, first_cutoff, first_stopband, last_stopband_rel,
                                              margin_size)
    return [f"L{i}_{int(sizes[i])}_{int(channels[i])}" for i in range(num_layers + 1)]


def _infer_stylegan3(sd) -> dict:
    dims, mapping_kwargs = _mapping(sd, "stylegan3")
    layers = {}
    for key in sd:
        if m := _SG3_LAYER.match(key):
            layers[int(m.group(1))] = key.split(".")[1]
    if not layers or sorted(layers) != list(range(len(layers))) or len(layers) < 3:
        raise _CannotInfer("synthesis.L* layers are missing or not numbered 0..n-1")
    names = [layers[i] for i in range(len(layers))]
    sizes = [int(n.split("_")[1]) for n in names]
    channels = [int(n.split("_")[2]) for n in names]
    num_layers = len(names) - 1
    img_resolution, img_channels = sizes[-1], channels[-1]
    conv_kernel = _shape(sd, f"synthesis.{names[0]}.weight")[-1]
    radial = any(sd[k].dim() == 2 for k in sd if k.endswith(".down_filter"))
    extra = {"conv_kernel": conv_kernel} if conv_kernel != 3 else {}
    if radial:
        extra["use_radial_filters"] = True
    for margin in sorted({10, *range(0, 33)}, key=lambda m: m != 10):
        probe = stylegan3_layer_names(img_resolution, img_channels, 2 ** 30, 2 ** 30, num_layers,
                                      margin_size=margin)
        if [int(p.split("_")[1]) for p in probe] == sizes:
            break
    else:
        raise _CannotInfer(f"layer sizes {sizes} do not match NVIDIA's schedule for {num_layers} layers")
    channel_base, channel_max = _sg3_channel_config(names, img_resolution, img_channels, num_layers, margin)
    kwargs = {
        **dims,
        "img_resolution": img_resolution,
        "img_channels": img_channels,
        "mapping_kwargs": mapping_kwargs,
        "channel_base": channel_base,
        "channel_max": channel_max,
        "num_layers": num_layers,
        **({"margin_size": margin} if margin != 10 else {}),
        **extra,
        "conv_clamp": NVIDIA_CONV_CLAMP,
        "num_fp16_res": NVIDIA_NUM_FP16_RES,
    }
    return kwargs


def _sg3_channel_config(names, img_resolution, img_channels, num_layers, margin) -> tuple[int, int]:
    channels = [int(n.split("_")[2]) for n in names[:-1]]
    cmax = max(channels)
    # Official configs use powers of two (T: 32768/512, R: 65536/1024); try those first, then any integer
    # base from the interval each unsaturated layer allows.
    candidates = [2 ** k for k in range(4, 22)]
    last_cutoff = img_resolution / 2
    exponents = np.minimum(np.arange(num_layers + 1) / (num_layers - 2), 1)
    cutoffs = 2 * (last_cutoff / 2) ** exponents
    for c, cutoff in zip(channels, cutoffs):
        if c < cmax:
            candidates += [int(math.ceil(2 * cutoff * (c - 0.5))), int(round(2 * cutoff * c))]
    for base in candidates:
        if stylegan3_layer_names(img_resolution, img_channels, base, cmax, num_layers, margin_size=margin) == names:
            return base, cmax
    raise _CannotInfer(f"layer channels {channels} do not follow min(channel_base / 2 / cutoff, channel_max)")

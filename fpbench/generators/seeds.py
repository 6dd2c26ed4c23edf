"""Seeds -> latent codes, bit-for-bit as NVIDIA's gen_images.py draws them."""

from __future__ import annotations

import numbers
from typing import Iterable

import numpy as np
import torch

from ..errors import ConfigError

__all__ = ["seeds_to_z"]


def seeds_to_z(seeds: Iterable[int] | int, z_dim: int, device="cpu", dtype=torch.float32) -> torch.Tensor:
    """[len(seeds), z_dim]: row i is `np.random.RandomState(seeds[i]).randn(1, z_dim)`.

    Drawn in float64 by NumPy (as NVIDIA does) and cast once to `dtype` on `device`.
    """
    if isinstance(seeds, numbers.Integral):
        seeds = [seeds]
    seeds = list(seeds)
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, numbers.Integral) or not 0 <= int(s) < 2 ** 32:
            raise ConfigError(f"seed {s!r} is not an integer in [0, 2**32); use seeds like 0-9999")
    if not isinstance(z_dim, numbers.Integral) or z_dim < 0:
        raise ConfigError(f"z_dim {z_dim!r} must be a non-negative integer")
    rows = [np.random.RandomState(int(s)).randn(1, int(z_dim)) for s in seeds]
    z = np.concatenate(rows, axis=0) if rows else np.zeros((0, int(z_dim)))
    return torch.from_numpy(z).to(device=device, dtype=dtype)

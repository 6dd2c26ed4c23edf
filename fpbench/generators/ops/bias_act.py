"""Bias + activation + gain + clamp in one call (plain-PyTorch reference path).

Activation names, default slopes and default gains are NVIDIA's (`torch_utils.ops.bias_act`), so
layers built from checkpoint kwargs scale their outputs exactly as the original networks do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

__all__ = ["Activation", "activation_funcs", "bias_act"]


@dataclass(frozen=True)
class Activation:
    func: Callable[[torch.Tensor, float], torch.Tensor]
    def_alpha: float
    def_gain: float


_SQRT2 = math.sqrt(2.0)

activation_funcs: dict[str, Activation] = {
    "linear": Activation(lambda x, a: x, 0.0, 1.0),
    "relu": Activation(lambda x, a: F.relu(x), 0.0, _SQRT2),
    "lrelu": Activation(lambda x, a: F.leaky_relu(x, a), 0.2, _SQRT2),
    "tanh": Activation(lambda x, a: torch.tanh(x), 0.0, 1.0),
    "sigmoid": Activation(lambda x, a: torch.sigmoid(x), 0.0, 1.0),
    "elu": Activation(lambda x, a: F.elu(x), 0.0, 1.0),
    "selu": Activation(lambda x, a: F.selu(x), 0.0, 1.0),
    "softplus": Activation(lambda x, a: F.softplus(x), 0.0, 1.0),
    "swish": Activation(lambda x, a: torch.sigmoid(x) * x, 0.0, _SQRT2),
}


def bias_act(x: torch.Tensor, b: torch.Tensor | None = None, dim: int = 1, act: str = "linear",
             alpha: float | None = None, gain: float | None = None, clamp: float | None = None) -> torch.Tensor:
    """`clamp(act(x + b) * gain, -clamp, clamp)`; `b` is broadcast along dimension `dim` of `x`.

    `alpha`/`gain` default to the activation's NVIDIA defaults (e.g. lrelu: 0.2 and sqrt(2));
    `clamp=None` disables clamping.
    """
    spec = activation_funcs.get(act)
    if spec is None:
        raise ValueError(f"unknown activation {act!r}; expected one of {sorted(activation_funcs)}")
    if clamp is not None and clamp < 0:
        raise ValueError(f"clamp must be >= 0 or None, got {clamp}")
    alpha = float(spec.def_alpha if alpha is None else alpha)
    gain = float(spec.def_gain if gain is None else gain)

    if b is not None:
        if b.ndim != 1 or not 0 <= dim < x.ndim or b.shape[0] != x.shape[dim]:
            raise ValueError(f"bias of shape {tuple(b.shape)} does not match dim {dim} of x {tuple(x.shape)}")
        x = x + b.to(x.dtype).reshape([-1 if i == dim else 1 for i in range(x.ndim)])
    x = spec.func(x, alpha)
    if gain != 1:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-float(clamp), float(clamp))
    return x

"""Small building blocks shared by the StyleGAN2 and StyleGAN3 generators (NVIDIA semantics)."""

from __future__ import annotations

import math

import numpy as np
import torch

from .ops.bias_act import bias_act

__all__ = ["FullyConnectedLayer", "normalize_2nd_moment"]


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """Scale `x` to unit root-mean-square along `dim` (pixel norm of the latent)."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


class FullyConnectedLayer(torch.nn.Module):
    """Equalized-learning-rate linear layer: parameters are stored raw, gains applied at run time.

    y = act(x @ (weight * lr_multiplier / sqrt(in))^T + bias * lr_multiplier). Parameter names
    `weight` [out, in] and `bias` [out] match NVIDIA checkpoints.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, activation: str = "linear",
                 lr_multiplier: float = 1.0, bias_init=0.0, weight_init: float = 1.0):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.activation = activation
        self.lr_multiplier = lr_multiplier
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier
        self.weight = torch.nn.Parameter(torch.randn([out_features, in_features]) * (weight_init / lr_multiplier))
        if bias:
            init = np.broadcast_to(np.asarray(bias_init, dtype=np.float32), [out_features])
            self.bias = torch.nn.Parameter(torch.from_numpy(init.copy()) / lr_multiplier)
        else:
            self.register_parameter("bias", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias
        if b is not None:
            b = b.to(x.dtype)
            if self.bias_gain != 1:
                b = b * self.bias_gain
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return bias_act(x.matmul(w.t()), b, act=self.activation)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, activation={self.activation}"

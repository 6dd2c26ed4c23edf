"""StyleGAN2 modulated (and optionally demodulated) convolution, NVIDIA semantics."""

from __future__ import annotations

import torch

from .conv2d_resample import conv2d_resample

__all__ = ["modulated_conv2d"]


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, noise: torch.Tensor | None = None,
                     up: int = 1, down: int = 1, padding=0, resample_filter: torch.Tensor | None = None,
                     demodulate: bool = True, flip_weight: bool = True, fused_modconv: bool = True) -> torch.Tensor:
    """x: [N, I, H, W]; weight: [O, I, kh, kw]; styles: [N, I]; noise broadcastable to the output.

    Each sample's kernel is `weight * styles[n]` over input channels; with `demodulate` each
    output channel of that kernel is rescaled to unit L2 norm. `fused_modconv=True` runs one grouped
    conv over the batch; False scales activations before/after a shared conv (same result).
    """
    n = x.shape[0]
    out_ch, in_ch, kh, kw = weight.shape
    if x.ndim != 4 or x.shape[1] != in_ch or styles.shape != (n, in_ch):
        raise ValueError(f"modulated_conv2d: x {tuple(x.shape)}, weight {tuple(weight.shape)} and "
                         f"styles {tuple(styles.shape)} do not match")

    if x.dtype == torch.float16 and demodulate:
        # Demodulation cancels any positive rescaling; normalize first so fp16 cannot overflow.
        weight = weight * (1 / (in_ch * kh * kw) ** 0.5 / weight.norm(float("inf"), dim=[1, 2, 3], keepdim=True))
        styles = styles / styles.norm(float("inf"), dim=1, keepdim=True)

    w = dcoefs = None
    if demodulate or fused_modconv:
        w = weight.unsqueeze(0) * styles.reshape(n, 1, -1, 1, 1)  # [N, O, I, kh, kw]
    if demodulate:
        dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()  # [N, O]

    if not fused_modconv:
        x = x * styles.to(x.dtype).reshape(n, -1, 1, 1)
        x = conv2d_resample(x, weight.to(x.dtype), f=resample_filter, up=up, down=down, padding=padding,
                            flip_weight=flip_weight)
        if demodulate:
            x = x * dcoefs.to(x.dtype).reshape(n, -1, 1, 1)
        if noise is not None:
            x = x + noise.to(x.dtype)
        return x

    if demodulate:
        w = w * dcoefs.reshape(n, -1, 1, 1, 1)
    x = x.reshape(1, -1, *x.shape[2:])
    w = w.reshape(-1, in_ch, kh, kw)
    x = conv2d_resample(x, w.to(x.dtype), f=resample_filter, up=up, down=down, padding=padding, groups=n,
                        flip_weight=flip_weight)
    x = x.reshape(n, -1, *x.shape[2:])
    if noise is not None:
        x = x + noise.to(x.dtype)
    return x

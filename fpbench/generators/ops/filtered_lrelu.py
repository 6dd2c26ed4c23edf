"""Filtered leaky ReLU (StyleGAN3): bias, FIR upsample, lrelu + gain + clamp, FIR downsample.

Plain-PyTorch reference built from `upfirdn2d` and `bias_act`; it follows the semantics of NVIDIA's
reference path, so activations match theirs to float32 rounding. The nonlinearity runs at the
temporarily raised sampling rate, which is what keeps its aliasing below the downsampling filter's
stopband.
"""

from __future__ import annotations

import math

import torch

from .bias_act import bias_act
from .upfirdn2d import upfirdn2d


def _filter_size(f: torch.Tensor | None) -> tuple[int, int]:
    """(width, height) of a separable [taps] or full [h, w] filter; None is a 1x1 identity."""
    if f is None:
        return 1, 1
    if f.ndim not in (1, 2):
        raise ValueError(f"filter must be 1D (separable) or 2D, got shape {tuple(f.shape)}")
    return int(f.shape[-1]), int(f.shape[0])


def _parse_padding(padding) -> tuple[int, int, int, int]:
    """int, [x, y] or [x0, x1, y0, y1] -> (x0, x1, y0, y1)."""
    if isinstance(padding, int):
        padding = [padding, padding]
    padding = [int(p) for p in padding]
    if len(padding) == 2:
        padding = [padding[0], padding[0], padding[1], padding[1]]
    if len(padding) != 4:
        raise ValueError(f"padding must be an int, [x, y] or [x0, x1, y0, y1], got {padding}")
    return tuple(padding)


def filtered_lrelu(x: torch.Tensor, fu: torch.Tensor | None = None, fd: torch.Tensor | None = None,
                   b: torch.Tensor | None = None, up: int = 1, down: int = 1, padding=0,
                   gain: float = math.sqrt(2), slope: float = 0.2, clamp: float | None = None,
                   flip_filter: bool = False) -> torch.Tensor:
    """Per channel of x [N, C, H, W]:

    1. add bias `b` [C]; 2. upsample by `up` (zero insertion), pad by `padding` (w.r.t. the
    upsampled image; negative crops) and convolve with `fu` scaled so DC gain is kept;
    3. leaky ReLU with `slope`, times `gain`, clamp to [-clamp, clamp]; 4. convolve with `fd` and keep
    every `down`-th pixel. Filters: [taps] separable, [h, w] full, or None (identity).

    Output size per axis: (in * up + pad0 + pad1 - (fu_taps - 1) - (fd_taps - 1) + down - 1) // down.
    """
    if x.ndim != 4:
        raise ValueError(f"x must be [N, C, H, W], got shape {tuple(x.shape)}")
    if b is not None and tuple(b.shape) != (x.shape[1],):
        raise ValueError(f"bias must have shape [{x.shape[1]}], got {tuple(b.shape)}")
    if not (isinstance(up, int) and up >= 1 and isinstance(down, int) and down >= 1):
        raise ValueError(f"up and down must be integers >= 1, got up={up}, down={down}")
    if not gain > 0 or not slope >= 0 or (clamp is not None and not clamp >= 0):
        raise ValueError(f"need gain > 0, slope >= 0, clamp None or >= 0; got {gain}, {slope}, {clamp}")
    fu_w, fu_h = _filter_size(fu)
    fd_w, fd_h = _filter_size(fd)
    px0, px1, py0, py1 = _parse_padding(padding)
    out_w = (x.shape[3] * up + px0 + px1 - (fu_w - 1) - (fd_w - 1) + down - 1) // down
    out_h = (x.shape[2] * up + py0 + py1 - (fu_h - 1) - (fd_h - 1) + down - 1) // down
    if out_w < 1 or out_h < 1:
        raise ValueError(f"padding {padding} leaves no output pixels for input {tuple(x.shape[2:])}")

    x = bias_act(x, b)
    # gain up**2 restores the DC level lost by inserting up-1 zeros per pixel along each axis.
    x = upfirdn2d(x, fu, up=up, padding=[px0, px1, py0, py1], gain=up ** 2, flip_filter=flip_filter)
    x = bias_act(x, act="lrelu", alpha=slope, gain=gain, clamp=clamp)
    x = upfirdn2d(x, fd, down=down, flip_filter=flip_filter)
    return x

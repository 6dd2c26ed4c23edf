"""Pad, upsample, FIR-filter and downsample batches of 2D images (plain-PyTorch reference path).

Semantics follow NVIDIA's `torch_utils.ops.upfirdn2d` (StyleGAN2-ADA / StyleGAN3) so that their
checkpoints reproduce bit-for-bit up to float rounding: `up` inserts zeros, `padding` is relative to
the upsampled image (negative = crop), the filter is applied as a true convolution unless
`flip_filter`, and `down` keeps every n-th pixel.
"""

from __future__ import annotations

import numbers
from typing import Sequence

import torch
import torch.nn.functional as F

__all__ = ["setup_filter", "upfirdn2d", "filter2d", "upsample2d", "downsample2d",
           "parse_scaling", "parse_padding", "filter_size"]


def parse_scaling(scaling: int | Sequence[int]) -> tuple[int, int]:
    """`s` or `[sx, sy]` -> `(sx, sy)`, each an int >= 1."""
    if isinstance(scaling, numbers.Integral):
        sx = sy = int(scaling)
    else:
        sx, sy = (int(v) for v in scaling)
    if sx < 1 or sy < 1:
        raise ValueError(f"scaling factors must be >= 1, got {scaling!r}")
    return sx, sy


def parse_padding(padding: int | Sequence[int]) -> tuple[int, int, int, int]:
    """`p`, `[px, py]` or `[px0, px1, py0, py1]` -> `(px0, px1, py0, py1)`."""
    if isinstance(padding, numbers.Integral):
        p = int(padding)
        return p, p, p, p
    padding = [int(v) for v in padding]
    if len(padding) == 2:
        px, py = padding
        return px, px, py, py
    if len(padding) == 4:
        return tuple(padding)  # type: ignore[return-value]
    raise ValueError(f"padding must be an int, [x, y] or [x0, x1, y0, y1], got {padding!r}")


def filter_size(f: torch.Tensor | None) -> tuple[int, int]:
    """`(width, height)` of a filter from `setup_filter` (separable filters are square)."""
    if f is None:
        return 1, 1
    if f.ndim not in (1, 2):
        raise ValueError(f"filter must be 1D (separable) or 2D, got shape {tuple(f.shape)}")
    return int(f.shape[-1]), int(f.shape[0])


def setup_filter(f, device: torch.device | str = "cpu", normalize: bool = True, flip_filter: bool = False,
                 gain: float = 1, separable: bool | None = None) -> torch.Tensor:
    """Build a float32 FIR filter for `upfirdn2d`.

    `f`: list/array/tensor of taps `[n]`, a 2D kernel `[h, w]`, a scalar, or None (identity).
    1D taps become the outer product `f f^T` unless `separable` (default: separable only for
    >= 8 taps, which is what NVIDIA chooses, so buffers in checkpoints have matching shapes).
    `gain` scales the DC response of the (2D-equivalent) filter.
    """
    if f is None:
        f = 1
    f = torch.as_tensor(f, dtype=torch.float32).clone()
    if f.ndim == 0:
        f = f.reshape(1)
    if f.ndim not in (1, 2) or f.numel() == 0:
        raise ValueError(f"filter must be a non-empty scalar, 1D or 2D, got shape {tuple(f.shape)}")
    if separable is None:
        separable = f.ndim == 1 and f.numel() >= 8
    if f.ndim == 1 and not separable:
        f = torch.outer(f, f)
    if f.ndim != (1 if separable else 2):
        raise ValueError("a 2D filter cannot be made separable")
    if normalize:
        f = f / f.sum()
    if flip_filter:
        f = f.flip(list(range(f.ndim)))
    # A separable filter is applied once per axis, so each pass carries sqrt(gain).
    f = f * (gain ** (f.ndim / 2))
    return f.to(device=device)


def upfirdn2d(x: torch.Tensor, f: torch.Tensor | None, up=1, down=1, padding=0, flip_filter: bool = False,
              gain: float = 1) -> torch.Tensor:
    """Upsample (zero insertion), pad/crop, convolve with FIR filter `f`, downsample.

    x: [N, C, H, W]; f: [fh, fw], [taps] (separable) or None. Output spatial size per axis:
    `(in * up + pad0 + pad1 - taps) // down + 1`.
    """
    if x.ndim != 4:
        raise ValueError(f"upfirdn2d expects x of shape [N, C, H, W], got {tuple(x.shape)}")
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    if f.ndim not in (1, 2):
        raise ValueError(f"filter must be 1D (separable) or 2D, got shape {tuple(f.shape)}")
    upx, upy = parse_scaling(up)
    downx, downy = parse_scaling(down)
    px0, px1, py0, py1 = parse_padding(padding)
    n, c, h, w = x.shape
    fw, fh = filter_size(f)
    if w * upx + px0 + px1 < fw or h * upy + py0 + py1 < fh:
        raise ValueError("upfirdn2d: padded/upsampled image is smaller than the filter")

    if upx > 1 or upy > 1:
        # Zero insertion: every input pixel followed by (up - 1) zeros along each axis.
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, upx - 1, 0, 0, 0, upy - 1])
        x = x.reshape(n, c, h * upy, w * upx)

    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0): x.shape[2] - max(-py1, 0), max(-px0, 0): x.shape[3] - max(-px1, 0)]

    f = (f * (gain ** (f.ndim / 2))).to(x.dtype)
    if not flip_filter:
        # conv2d correlates; flipping the taps turns it into a true convolution.
        f = f.flip(list(range(f.ndim)))
    if f.ndim == 2:
        x = F.conv2d(x, f[None, None].expand(c, 1, fh, fw).contiguous(), groups=c)
    else:
        x = F.conv2d(x, f[None, None, None, :].expand(c, 1, 1, fw).contiguous(), groups=c)
        x = F.conv2d(x, f[None, None, :, None].expand(c, 1, fw, 1).contiguous(), groups=c)

    if downx > 1 or downy > 1:
        x = x[:, :, ::downy, ::downx]
    return x


def filter2d(x: torch.Tensor, f: torch.Tensor | None, padding=0, flip_filter: bool = False,
             gain: float = 1) -> torch.Tensor:
    """Filter with `f`, padded so the output has the input's size (plus extra `padding`)."""
    px0, px1, py0, py1 = parse_padding(padding)
    fw, fh = filter_size(f)
    p = [px0 + fw // 2, px1 + (fw - 1) // 2, py0 + fh // 2, py1 + (fh - 1) // 2]
    return upfirdn2d(x, f, padding=p, flip_filter=flip_filter, gain=gain)


def upsample2d(x: torch.Tensor, f: torch.Tensor | None, up=2, padding=0, flip_filter: bool = False,
               gain: float = 1) -> torch.Tensor:
    """Upsample by `up` with filter `f`; output is exactly `up` times the input (plus `padding`)."""
    upx, upy = parse_scaling(up)
    px0, px1, py0, py1 = parse_padding(padding)
    fw, fh = filter_size(f)
    p = [px0 + (fw + upx - 1) // 2, px1 + (fw - upx) // 2,
         py0 + (fh + upy - 1) // 2, py1 + (fh - upy) // 2]
    # Zero insertion divides the mean by up^2; the gain restores it.
    return upfirdn2d(x, f, up=up, padding=p, flip_filter=flip_filter, gain=gain * upx * upy)


def downsample2d(x: torch.Tensor, f: torch.Tensor | None, down=2, padding=0, flip_filter: bool = False,
                 gain: float = 1) -> torch.Tensor:
    """Filter with `f` and keep every `down`-th pixel; output is the input size / `down`."""
    downx, downy = parse_scaling(down)
    px0, px1, py0, py1 = parse_padding(padding)
    fw, fh = filter_size(f)
    p = [px0 + (fw - downx + 1) // 2, px1 + (fw - downx) // 2,
         py0 + (fh - downy + 1) // 2, py1 + (fh - downy) // 2]
    return upfirdn2d(x, f, down=down, padding=p, flip_filter=flip_filter, gain=gain)

"""2D convolution combined with FIR up/downsampling (plain-PyTorch reference path).

Same contract as NVIDIA's `torch_utils.ops.conv2d_resample`: the result equals
"upsample (zero insertion) -> FIR filter -> conv -> FIR filter -> downsample" with all padding
applied once, relative to the upsampled image. Cheaper equivalent orderings are chosen per case;
for `up > 1` a strided transposed convolution does the zero insertion and the conv in one op.
"""

from __future__ import annotations

import numbers

import torch
import torch.nn.functional as F

from .upfirdn2d import filter_size, parse_padding, upfirdn2d

__all__ = ["conv2d_resample"]


def _conv(x: torch.Tensor, w: torch.Tensor, stride=1, padding=0, groups: int = 1, transpose: bool = False,
          flip_weight: bool = True) -> torch.Tensor:
    # torch's conv2d is a correlation; flip_weight=False asks for a true convolution.
    if not flip_weight and (w.shape[2] > 1 or w.shape[3] > 1):
        w = w.flip([2, 3])
    if transpose:
        return F.conv_transpose2d(x, w, stride=stride, padding=padding, groups=groups)
    return F.conv2d(x, w, stride=stride, padding=padding, groups=groups)


def conv2d_resample(x: torch.Tensor, w: torch.Tensor, f: torch.Tensor | None = None, up: int = 1, down: int = 1,
                    padding=0, groups: int = 1, flip_weight: bool = True, flip_filter: bool = False) -> torch.Tensor:
    """x: [N, I, H, W]; w: [O, I // groups, kh, kw]; f: filter from `setup_filter` or None.

    `padding` (int, [x, y] or [x0, x1, y0, y1]) is relative to the upsampled image.
    `flip_weight=True` correlates (like `torch.nn.functional.conv2d`), False convolves.
    """
    if x.ndim != 4 or w.ndim != 4:
        raise ValueError(f"conv2d_resample expects 4D x and w, got {tuple(x.shape)} and {tuple(w.shape)}")
    if not (isinstance(up, numbers.Integral) and up >= 1 and isinstance(down, numbers.Integral) and down >= 1):
        raise ValueError(f"up and down must be ints >= 1, got up={up!r} down={down!r}")
    up, down = int(up), int(down)
    out_ch, in_per_group, kh, kw = (int(s) for s in w.shape)
    fw, fh = filter_size(f)
    px0, px1, py0, py1 = parse_padding(padding)

    # Extra padding that keeps the resampled image aligned with the filter's centre.
    if up > 1:
        px0 += (fw + up - 1) // 2
        px1 += (fw - up) // 2
        py0 += (fh + up - 1) // 2
        py1 += (fh - up) // 2
    if down > 1:
        px0 += (fw - down + 1) // 2
        px1 += (fw - down) // 2
        py0 += (fh - down + 1) // 2
        py1 += (fh - down) // 2

    if kw == 1 and kh == 1 and down > 1 and up == 1:
        # A 1x1 conv commutes with resampling: shrink first.
        x = upfirdn2d(x, f, down=down, padding=[px0, px1, py0, py1], flip_filter=flip_filter)
        return _conv(x, w, groups=groups, flip_weight=flip_weight)

    if kw == 1 and kh == 1 and up > 1 and down == 1:
        # A 1x1 conv commutes with resampling: convolve at the low resolution.
        x = _conv(x, w, groups=groups, flip_weight=flip_weight)
        return upfirdn2d(x, f, up=up, padding=[px0, px1, py0, py1], gain=up ** 2, flip_filter=flip_filter)

    if down > 1 and up == 1:
        x = upfirdn2d(x, f, padding=[px0, px1, py0, py1], flip_filter=flip_filter)
        return _conv(x, w, stride=down, groups=groups, flip_weight=flip_weight)

    if up > 1:
        # conv_transpose2d wants [I, O // groups, kh, kw].
        if groups == 1:
            w = w.transpose(0, 1)
        else:
            w = w.reshape(groups, out_ch // groups, in_per_group, kh, kw).transpose(1, 2)
            w = w.reshape(groups * in_per_group, out_ch // groups, kh, kw)
        # The transposed conv already grows the image by (k - 1) (before) and (k - up) (after);
        # whatever padding is left over (or must be cropped) is handed to the FIR filter pass.
        px0 -= kw - 1
        px1 -= kw - up
        py0 -= kh - 1
        py1 -= kh - up
        pxt = max(min(-px0, -px1), 0)
        pyt = max(min(-py0, -py1), 0)
        x = _conv(x, w, stride=up, padding=[pyt, pxt], groups=groups, transpose=True, flip_weight=not flip_weight)
        x = upfirdn2d(x, f, padding=[px0 + pxt, px1 + pxt, py0 + pyt, py1 + pyt], gain=up ** 2,
                      flip_filter=flip_filter)
        if down > 1:
            x = upfirdn2d(x, f, down=down, flip_filter=flip_filter)
        return x

    if px0 == px1 and py0 == py1 and px0 >= 0 and py0 >= 0:
        return _conv(x, w, padding=[py0, px0], groups=groups, flip_weight=flip_weight)

    # General case (asymmetric or negative padding without resampling).
    x = upfirdn2d(x, None, padding=[px0, px1, py0, py1])
    return _conv(x, w, groups=groups, flip_weight=flip_weight)

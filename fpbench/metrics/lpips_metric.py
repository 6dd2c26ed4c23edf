"""LPIPS (Zhang et al. 2018) from the `lpips` package, inputs in [-1, 1].

The backbone (torchvision AlexNet or VGG16, ImageNet weights) is resolved by `weights.resolve`
instead of torchvision's own download, so it honours explicit paths, the cache and offline mode;
the linear heads ship inside the `lpips` package. `pretrained=False` builds the same network with
random backbone and heads (no file read, nothing downloaded) and marks the metric uncalibrated.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings

import torch
import torch.nn.functional as F

from ..errors import ConfigError, MissingFileError
from . import weights as W
from .base import PairwiseMetric, check_weights_choice

_BACKBONES = {"alex": W.ALEXNET, "vgg": W.VGG16}

# Images larger than this are downsampled (antialiased) before LPIPS; the network was calibrated on
# 64x64 patches and is commonly applied to 256x256 images. None disables resizing.
DEFAULT_RESIZE = 256


class LPIPS(PairwiseMetric):
    name = "lpips"

    def __init__(self, *, device="cpu", pretrained: bool = True, net: str = "alex",
                 resize: int | None = DEFAULT_RESIZE, backbone_weights=None, heads_weights=None, seed: int = 0):
        super().__init__(device=device, uncalibrated=not pretrained)
        if net not in _BACKBONES:
            raise ConfigError(f"lpips net {net!r} is not supported; use one of {sorted(_BACKBONES)}")
        if resize is not None and int(resize) < 32:
            raise ConfigError(f"lpips resize={resize} is too small; use >= 32 or None")
        self.net_name = net
        self.resize = None if resize is None else int(resize)
        self.model = build_lpips(net, pretrained=pretrained, backbone_weights=backbone_weights,
                                 heads_weights=heads_weights, seed=seed).to(self.device)

    def scores(self, treated, original):
        a, b = treated.to(torch.float32).clamp(-1, 1), original.to(torch.float32).clamp(-1, 1)
        if self.resize is not None and max(a.shape[-2:]) > self.resize:
            size = _fit(a.shape[-2:], self.resize)
            a = F.interpolate(a, size=size, mode="bilinear", align_corners=False, antialias=True)
            b = F.interpolate(b, size=size, mode="bilinear", align_corners=False, antialias=True)
        if a.shape[1] == 1:
            a, b = a.expand(-1, 3, -1, -1), b.expand(-1, 3, -1, -1)
        return self.model(a, b, normalize=False).reshape(-1)


def _fit(hw, target: int) -> tuple[int, int]:
    h, w = int(hw[0]), int(hw[1])
    s = target / max(h, w)
    return max(1, round(h * s)), max(1, round(w * s))


def build_lpips(net: str = "alex", *, pretrained: bool = True, backbone_weights=None, heads_weights=None,
                seed: int = 0) -> torch.nn.Module:
    """An `lpips.LPIPS` in eval mode with no gradients; random (seeded) weights if not `pretrained`."""
    import lpips

    check_weights_choice(pretrained, backbone_weights=backbone_weights, heads_weights=heads_weights)
    backbone = W.resolve(_BACKBONES[net], backbone_weights, what=f"LPIPS {net} backbone") if pretrained else None
    if heads_weights is not None and not os.path.isfile(heads_weights):
        raise MissingFileError(f"LPIPS heads file {heads_weights} does not exist; omit it to use the heads "
                               f"shipped with the lpips package")
    with _seeded(seed), contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)   # torchvision's notice about lpips' `pretrained=` call
        # pnet_rand=True keeps torchvision from downloading; the backbone is filled in below.
        model = lpips.LPIPS(pretrained=pretrained, net=net, pnet_rand=True, verbose=False,
                            model_path=None if heads_weights is None else str(heads_weights))
    if backbone is not None:
        _load_backbone(model.net, torch.load(backbone, map_location="cpu", weights_only=True))
    if not pretrained:
        # LPIPS training keeps its linear heads non-negative, which makes the score a distance (>= 0);
        # random heads keep that property.
        with torch.no_grad():
            for param in model.lins.parameters():
                param.abs_()
    return model.eval().requires_grad_(False)


def _load_backbone(slices: torch.nn.Module, state: dict) -> None:
    """Copy torchvision `features.<i>.*` tensors into lpips' slices, whose children are named `<i>`."""
    own = {}
    for slice_name, sl in slices.named_children():
        for idx, _ in sl.named_children():
            own[idx] = slice_name
    mapped = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "features" and parts[1] in own:
            mapped[f"{own[parts[1]]}.{parts[1]}.{'.'.join(parts[2:])}"] = value
    missing, _ = slices.load_state_dict(mapped, strict=False)
    if missing:
        raise ConfigError(f"LPIPS backbone weights lack {len(missing)} tensors (e.g. {missing[0]}); "
                          f"pass torchvision ImageNet weights of the chosen net")


@contextlib.contextmanager
def _seeded(seed: int):
    """Random init from a fixed seed without disturbing the caller's RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield

"""The common metric interface and input checks.

Images arrive as the generator makes them: float NCHW in [-1, 1] on any device. Pairwise metrics
keep one float64 score per image (so the mean does not depend on batch size and resuming from a
`state_dict` is exact); distribution metrics keep one feature row per image.
"""

from __future__ import annotations

import torch

from ..errors import ConfigError

# StyleGAN output is not clamped and overshoots [-1, 1] a little; anything beyond this bound is
# taken as a wrong value range (e.g. 0..255 passed as float).
_RANGE_LIMIT = 2.0


def check_images(x, what: str = "images") -> torch.Tensor:
    """Validate one batch: a float tensor [N, 3, H, W] (or 1 channel), values roughly in [-1, 1]."""
    if not torch.is_tensor(x):
        raise ConfigError(f"{what} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ConfigError(f"{what} have dtype {x.dtype}; pass float images in [-1, 1] (uint8 x -> x / 127.5 - 1)")
    if x.ndim != 4 or x.shape[1] not in (1, 3) or x.shape[0] == 0:
        raise ConfigError(f"{what} have shape {tuple(x.shape)}; expected a non-empty batch [N, 3, H, W]")
    lo, hi = torch.aminmax(x.detach())
    lo, hi = float(lo), float(hi)
    if not (lo == lo and hi == hi) or abs(lo) == float("inf") or abs(hi) == float("inf"):
        raise ConfigError(f"{what} contain NaN or inf values")
    if hi > _RANGE_LIMIT or lo < -_RANGE_LIMIT:
        raise ConfigError(f"{what} have values in [{lo:.3g}, {hi:.3g}]; expected [-1, 1] "
                          f"(0..255 data must be converted with x / 127.5 - 1)")
    return x


def check_pair(treated, original) -> tuple[torch.Tensor, torch.Tensor]:
    check_images(treated, "treated images")
    check_images(original, "original images")
    if treated.shape != original.shape:
        raise ConfigError(f"treated images {tuple(treated.shape)} and original images {tuple(original.shape)} "
                          f"differ in shape; pass the same seeds in the same order")
    if treated.device != original.device:
        raise ConfigError(f"treated images are on {treated.device} but original images on {original.device}")
    return treated, original


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] float -> uint8 exactly as NVIDIA saves generator images (x * 127.5 + 128, clamp, truncate)."""
    return (x.to(torch.float32) * 127.5 + 128).clamp(0, 255).to(torch.uint8)


def check_weights_choice(pretrained: bool, **paths) -> None:
    """Random weights and an explicit weights file contradict each other; say so instead of ignoring one."""
    given = [k for k, v in paths.items() if v is not None]
    if not pretrained and given:
        raise ConfigError(f"pretrained=False builds random weights but {given[0]}= was also given; drop one")


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] float -> [0, 1] float, clamped."""
    return ((x + 1) * 0.5).clamp(0, 1)


class Metric:
    """Base of every metric. Subclasses set `name`, `kind` and implement the accumulator methods."""

    name: str = ""
    kind: str = ""

    def __init__(self, *, device="cpu", uncalibrated: bool = False):
        self.device = torch.device(device)
        self.uncalibrated = bool(uncalibrated)

    def update(self, treated: torch.Tensor, original: torch.Tensor | None) -> None:
        raise NotImplementedError

    def compute(self) -> dict[str, float]:
        raise NotImplementedError

    def reset(self) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def load_state_dict(self, d: dict[str, torch.Tensor]) -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        extra = ", uncalibrated" if self.uncalibrated else ""
        return f"{type(self).__name__}(name={self.name!r}, device={str(self.device)!r}{extra})"


class PairwiseMetric(Metric):
    """Mean over images of a per-image score of treated vs. original (same seed)."""

    kind = "pairwise"

    def __init__(self, *, device="cpu", uncalibrated: bool = False):
        super().__init__(device=device, uncalibrated=uncalibrated)
        self._scores: list[torch.Tensor] = []

    def scores(self, treated: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
        """Per-image scores [N] for a checked batch (on any device)."""
        raise NotImplementedError

    @torch.no_grad()
    def update(self, treated: torch.Tensor, original: torch.Tensor) -> None:
        check_pair(treated, original)
        s = self.scores(treated.to(self.device), original.to(self.device))
        self._scores.append(s.detach().to("cpu", torch.float64).reshape(-1))

    def values(self) -> torch.Tensor:
        """All per-image scores so far, in update order (float64, CPU)."""
        return torch.cat(self._scores) if self._scores else torch.zeros(0, dtype=torch.float64)

    def compute(self) -> dict[str, float]:
        v = self.values()
        if v.numel() == 0:
            raise ConfigError(f"metric {self.name!r} has no images; call update() before compute()")
        return {self.name: float(v.mean())}

    def reset(self) -> None:
        self._scores = []

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"scores": self.values().clone()}

    def load_state_dict(self, d: dict[str, torch.Tensor]) -> None:
        if "scores" not in d:
            raise ConfigError(f"state for metric {self.name!r} lacks 'scores'; was it saved by another metric?")
        self._scores = [d["scores"].to("cpu", torch.float64).reshape(-1).clone()]

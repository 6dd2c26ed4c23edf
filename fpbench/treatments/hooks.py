"""Hook plumbing: which layers a treatment touches, and a context manager that installs forward hooks.

Hooks only route a layer's output through a pure function of `functional`; they never read tensor
values on the host, so a treated forward pass is as asynchronous as a plain one.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import re
from typing import Callable, Iterable, Iterator, Sequence

import torch

from ..errors import ConfigError

HookFn = Callable[[torch.nn.Module, tuple, torch.Tensor], torch.Tensor]

# StyleGAN2 layers at resolutions <= 32 are the ones the authors' released code treats
# (b4.conv1 and conv0/conv1 of blocks 8, 16, 32), for every output resolution.
MAX_TREATED_RESOLUTION = 32
_SG2_CONV = re.compile(r"^synthesis\.b(\d+)\.conv[01]$")
_SG3_LAYER = re.compile(r"^synthesis\.L\d+_\d+_\d+$")


def feature_layers(G) -> list[str]:
    layers = getattr(G, "feature_layers", None)
    if layers is None:
        raise ConfigError(f"{type(G).__name__} has no `feature_layers`; load it with fpbench.generators.load_generator")
    return list(layers)


def default_layers(G) -> list[str]:
    """The layers treated when none are given: the earliest ones, whose output is at most 32 x 32.

    StyleGAN2: ``synthesis.b4.conv1`` and ``conv0``/``conv1`` of blocks 8, 16 and 32 (as in the
    authors' code; ``torgb`` layers are never treated).

    StyleGAN3: the synthesis layers (not ToRGB) whose output sampling rate is <= 32, i.e. the layers
    with the same feature-map resolution as StyleGAN2's b4..b32 (four layers, ``L0``-``L3``, for the
    released 512 and 1024 models). ``synthesis.input`` is left out, like StyleGAN2's constant input:
    its Fourier features are fixed functions of the first w and the paper treats conv outputs.
    """
    chosen = []
    for name in feature_layers(G):
        m = _SG2_CONV.match(name)
        if m:
            if int(m.group(1)) <= MAX_TREATED_RESOLUTION:
                chosen.append(name)
            continue
        if _SG3_LAYER.match(name):
            module = G.get_submodule(name)
            if getattr(module, "is_torgb", False):
                continue
            rate = getattr(module, "out_sampling_rate", None)
            if rate is not None and rate <= MAX_TREATED_RESOLUTION:
                chosen.append(name)
    if not chosen:
        raise ConfigError(f"no default treatment layers for {type(G).__name__}; pass layers=[...] from G.feature_layers")
    return chosen


def resolve_layers(G, layers: Sequence[str] | None) -> list[str]:
    """`layers`, checked against `G.feature_layers`, or `default_layers(G)` when None."""
    if layers is None:
        return default_layers(G)
    known = feature_layers(G)
    for name in layers:
        if name not in known:
            raise ConfigError(f"layer {name!r} is not one of G.feature_layers ({', '.join(known)})")
    return list(layers)


def check_layers_arg(layers) -> list[str] | None:
    """Shape check of a `layers` argument at construction (names are checked against G later)."""
    if layers is None:
        return None
    if isinstance(layers, str):
        layers = [layers]
    layers = list(layers)
    if not layers or not all(isinstance(n, str) for n in layers):
        raise ConfigError(f"layers must be a non-empty list of layer names, got {layers!r}")
    return layers


def check_number(name: str, value, *, low: float | None = None, low_inclusive: bool = True,
                 high: float | None = None, hint: str = "") -> float:
    """A finite real number within bounds, else ConfigError naming the parameter and the value."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise ConfigError(f"{name} must be a finite number, got {value!r}{hint}")
    v = float(value)
    if low is not None and (v < low or (v == low and not low_inclusive)):
        op = ">=" if low_inclusive else ">"
        raise ConfigError(f"{name} must be {op} {low:g}, got {value!r}{hint}")
    if high is not None and v > high:
        raise ConfigError(f"{name} must be <= {high:g}, got {value!r}{hint}")
    return v


def module_device(G) -> torch.device:
    for t in G.parameters():
        return t.device
    for t in G.buffers():
        return t.device
    return torch.device("cpu")


@contextlib.contextmanager
def forward_hooks(G, hooks: Iterable[tuple[str, HookFn]]) -> Iterator[None]:
    """Install ``module.register_forward_hook(fn)`` for each ``(module name, fn)``; remove on exit.

    Removal also happens when the block raises, and when installing a later hook fails.
    """
    handles = []
    try:
        for name, fn in hooks:
            handles.append(G.get_submodule(name).register_forward_hook(fn))
        yield
    finally:
        for h in handles:
            h.remove()


class Treatment:
    """Base class: subclasses validate at construction, and `_prepare(G)` returns the hooks.

    `_prepare` does every check that needs the generator (layer names, statistics fingerprint),
    so a misconfigured treatment fails at `applied(G)` entry, before anything is generated.
    """

    name: str = "treatment"

    @property
    def params(self) -> dict:
        return {}

    def _prepare(self, G) -> list[tuple[str, HookFn]]:
        raise NotImplementedError

    @contextlib.contextmanager
    def applied(self, G) -> Iterator["Treatment"]:
        hooks = self._prepare(G)
        with forward_hooks(G, hooks):
            yield self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{type(self).__name__}({args})"


class NoTreatment(Treatment):
    """The untreated generator (a baseline row in every table)."""

    name = "none"

    def _prepare(self, G):
        return []

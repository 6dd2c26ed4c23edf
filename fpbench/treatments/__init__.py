"""Artifact treatments for StyleGAN generators, applied through forward hooks.

    with FeatureRescaling(stats, t=2.0, p=2.0).applied(G):
        img = G(z, c)

Every treatment validates its parameters at construction and everything that needs the generator
(layer names, statistics fingerprint) at ``applied(G)`` entry, before any generation; the hooks are
removed when the block exits, also on exceptions. The math lives in `functional`.
"""

from __future__ import annotations

import inspect
import os

from ..errors import ConfigError
from . import functional
from .hooks import NoTreatment, Treatment, default_layers
from .layerwise import LayerwiseRescaling
from .pixelnorm import PixelNorm
from .rescaling import FeatureRescaling
from .truncation import Truncation

TREATMENTS: dict[str, type[Treatment]] = {
    "none": NoTreatment,
    "truncation": Truncation,
    "rescale": FeatureRescaling,
    "layerwise": LayerwiseRescaling,
    "pixelnorm": PixelNorm,
}
_NEEDS_STATS = {"rescale", "layerwise"}


def build(name: str, G=None, stats=None, stats_kwargs: dict | None = None, **params) -> Treatment:
    """Make the treatment called `name` (one of `TREATMENTS`) with keyword `params`.

    ``rescale`` and ``layerwise`` need feature statistics: `stats` (a `FeatureStats` or the path of
    a saved one), or else `G`, from which they are estimated (cached) with
    ``estimate_feature_stats(G, **stats_kwargs)``.
    """
    cls = TREATMENTS.get(name)
    if cls is None:
        raise ConfigError(f"unknown treatment {name!r}; choose one of {', '.join(TREATMENTS)}")
    allowed = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "stats")]
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ConfigError(f"treatment {name!r} has no parameter(s) {', '.join(unknown)}; "
                          f"allowed: {', '.join(allowed) or 'none'}")
    if name not in _NEEDS_STATS:
        return cls(**params)
    if stats is None:
        if G is None:
            raise ConfigError(f"treatment {name!r} needs feature statistics: pass stats= or G=")
        from ..stats import estimate_feature_stats

        stats = estimate_feature_stats(G, **(stats_kwargs or {}))
    elif isinstance(stats, (str, os.PathLike)):
        from ..stats import FeatureStats

        stats = FeatureStats.load(stats)
    return cls(stats, **params)


__all__ = [
    "FeatureRescaling", "LayerwiseRescaling", "NoTreatment", "PixelNorm", "TREATMENTS", "Treatment",
    "Truncation", "build", "default_layers", "functional",
]

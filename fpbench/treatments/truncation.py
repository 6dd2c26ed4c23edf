"""The truncation trick as a treatment (the baseline the paper compares against)."""

from __future__ import annotations

from ..errors import ConfigError
from . import functional as F
from .hooks import Treatment, check_number


class Truncation(Treatment):
    """``w -> w_avg.lerp(w, psi)`` on the ws with index < ``cutoff`` (all when None).

    Hooks the output of ``G.mapping``, so ``G(z)`` inside `applied` equals ``G(z, truncation_psi=psi,
    truncation_cutoff=cutoff)`` (do not also pass ``truncation_psi``: the two would compound).
    psi must lie in [0, 1]; psi > 1 (extrapolation away from the average) needs
    ``allow_extrapolation=True``.
    """

    name = "truncation"

    def __init__(self, psi: float = 0.7, cutoff: int | None = None, allow_extrapolation: bool = False):
        hint = "" if allow_extrapolation else " (psi > 1 needs allow_extrapolation=True)"
        self.psi = check_number("psi", psi, low=0.0, high=None if allow_extrapolation else 1.0, hint=hint)
        if cutoff is not None and (isinstance(cutoff, bool) or not isinstance(cutoff, int) or cutoff < 0):
            raise ConfigError(f"truncation cutoff must be None or an integer >= 0, got {cutoff!r}")
        self.cutoff = cutoff
        self.allow_extrapolation = bool(allow_extrapolation)

    @property
    def params(self) -> dict:
        return {"psi": self.psi, "cutoff": self.cutoff}

    def _prepare(self, G):
        mapping = getattr(G, "mapping", None)
        if mapping is None or getattr(mapping, "w_avg", None) is None:
            raise ConfigError(f"{type(G).__name__} has no mapping.w_avg; truncation needs a StyleGAN generator")
        psi, cutoff = self.psi, self.cutoff

        def hook(module, inputs, ws):
            return F.truncate(ws, module.w_avg, psi, cutoff)
        return [("mapping", hook)]

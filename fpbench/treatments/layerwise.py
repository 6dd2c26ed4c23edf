"""Layer-wise variant of the treatment (paper Sec. 5.5, Eq. 5-7): an ablation baseline."""

from __future__ import annotations

from ..stats import FeatureStats
from . import functional as F
from .hooks import check_number
from .rescaling import FeatureRescaling, channel_check


class LayerwiseRescaling(FeatureRescaling):
    """Rescale the Eq. 3 risky channels (``r > t``) that also correlate with the layer's mean
    absolute "cancer" map above ``t_prime`` (Eq. 5-7); see `functional.layerwise_mask`.

    ``t_prime`` is a correlation in units of the normalised map's std (the paper shows 0.3-0.9).
    """

    name = "layerwise"

    def __init__(self, stats: FeatureStats, t: float = 2.0, p: float = 2.0, t_prime: float = 0.5,
                 layers=None, c: float = 0.1):
        self.t_prime = check_number("t_prime", t_prime)
        super().__init__(stats, t=t, p=p, layers=layers, risk_rule="paper", c=c)

    @property
    def params(self) -> dict:
        return {"t": self.t, "p": self.p, "t_prime": self.t_prime, "c": self.c,
                "layers": "default" if self.layers is None else list(self.layers)}

    def _hook(self, layer, mean, std):
        t, p, t_prime, c = self.t, self.p, self.t_prime, self.c

        def hook(module, inputs, output):
            channel_check(layer, output, mean)
            return F.layerwise_rescale(output, mean, std, t, p, t_prime, c)
        return hook

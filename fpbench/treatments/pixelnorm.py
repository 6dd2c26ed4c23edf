"""Pixel-wise feature vector normalisation (ProGAN) on a pretrained generator: the paper's
pixel-wise ablation (Sec. 5.5), which it reports makes even normal images unrealistic."""

from __future__ import annotations

from . import functional as F
from .hooks import Treatment, check_layers_arg, check_number, resolve_layers


class PixelNorm(Treatment):
    """``x -> x / sqrt(mean_c(x^2) + eps)`` at each pixel of the given layers (default: `default_layers`)."""

    name = "pixelnorm"

    def __init__(self, layers=None, eps: float = 1e-8):
        self.layers = check_layers_arg(layers)
        self.eps = check_number("eps", eps, low=0.0, low_inclusive=False)

    @property
    def params(self) -> dict:
        return {"eps": self.eps, "layers": "default" if self.layers is None else list(self.layers)}

    def _prepare(self, G):
        eps = self.eps

        def hook(module, inputs, output):
            return F.pixel_norm(output, eps)
        return [(layer, hook) for layer in resolve_layers(G, self.layers)]

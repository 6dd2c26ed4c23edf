"""PSNR and SSIM of treated vs. original images (torchmetrics, on [0, 1] images, data_range=1)."""

from __future__ import annotations

import torch

from ..errors import ConfigError
from .base import PairwiseMetric, to_uint8, to_unit

# Identical images have infinite PSNR; we report this cap instead so means stay finite.
PSNR_CAP_DB = 100.0


def _prepare(x: torch.Tensor, quantize: bool) -> torch.Tensor:
    if quantize:   # score the 8-bit images a user would save, not the float output
        return to_uint8(x).to(torch.float32) / 255.0
    return to_unit(x.to(torch.float32))


class PSNR(PairwiseMetric):
    """Peak signal-to-noise ratio in dB per image, capped at `PSNR_CAP_DB` (100 dB)."""

    name = "psnr"

    def __init__(self, *, device="cpu", quantize: bool = False, cap_db: float = PSNR_CAP_DB):
        super().__init__(device=device)
        self.quantize = bool(quantize)
        self.cap_db = float(cap_db)

    def scores(self, treated, original):
        from torchmetrics.functional.image import peak_signal_noise_ratio

        a, b = _prepare(treated, self.quantize), _prepare(original, self.quantize)
        psnr = peak_signal_noise_ratio(a, b, data_range=1.0, reduction="none", dim=(1, 2, 3))
        return psnr.nan_to_num(posinf=self.cap_db).clamp(max=self.cap_db)


class SSIM(PairwiseMetric):
    """Structural similarity per image: gaussian window 11, sigma 1.5, data_range 1.

    The SSIM map comes from torchmetrics; by default it is averaged over the valid region only (a
    border of kernel_size // 2 pixels dropped), as in scikit-image and the reference SSIM code.
    torchmetrics' own mean includes that border computed on reflect-padded images
    (`valid_only=False` gives it).
    """

    name = "ssim"

    def __init__(self, *, device="cpu", quantize: bool = False, kernel_size: int = 11, sigma: float = 1.5,
                 valid_only: bool = True):
        super().__init__(device=device)
        self.valid_only = bool(valid_only)
        self.quantize = bool(quantize)
        self.kernel_size = int(kernel_size)
        self.sigma = float(sigma)

    def scores(self, treated, original):
        from torchmetrics.functional.image import structural_similarity_index_measure

        if min(treated.shape[-2:]) < self.kernel_size:
            raise ConfigError(f"SSIM needs images of at least {self.kernel_size}x{self.kernel_size} pixels, "
                              f"got {tuple(treated.shape[-2:])}")
        a, b = _prepare(treated, self.quantize), _prepare(original, self.quantize)
        _, ssim_map = structural_similarity_index_measure(
            a, b, gaussian_kernel=True, sigma=self.sigma, kernel_size=self.kernel_size, data_range=1.0,
            reduction="none", return_full_image=True)
        if self.valid_only:
            p = (_gaussian_size(self.sigma) - 1) // 2
            ssim_map = ssim_map[..., p:-p, p:-p]
        return ssim_map.flatten(1).mean(1)


def _gaussian_size(sigma: float) -> int:
    # torchmetrics sizes its gaussian window from sigma (3.5 sigma each side) like scikit-image
    return int(3.5 * sigma + 0.5) * 2 + 1

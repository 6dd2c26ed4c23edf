"""Kaiser-windowed low-pass FIR design for StyleGAN3's resampling filters.

Written against numpy/torch only so that designing a generator needs no scipy. The separable
design reproduces `scipy.signal.firwin(numtaps, cutoff, width=width, fs=fs)` (Kaiser window whose
beta follows from the transition width, unit DC gain); the radial design is a jinc (2D ideal
low-pass) under the same window, normalised to unit DC gain. Design runs in float64 and the result
is returned as float32, so designed filters match checkpoint buffers bit for bit or nearly so.
"""

from __future__ import annotations

import math

import numpy as np
import torch


def kaiser_atten(numtaps: int, width: float) -> float:
    """Stop-band attenuation (dB) a Kaiser FIR of `numtaps` reaches for a transition `width`
    given as a fraction of Nyquist (Kaiser's empirical formula)."""
    return 2.285 * (numtaps - 1) * math.pi * width + 7.95


def kaiser_beta(atten: float) -> float:
    """Kaiser window shape parameter for a stop-band attenuation of `atten` dB."""
    if atten > 50:
        return 0.1102 * (atten - 8.7)
    if atten > 21:
        return 0.5842 * (atten - 21) ** 0.4 + 0.07886 * (atten - 21)
    return 0.0


def bessel_j1(x: np.ndarray) -> np.ndarray:
    """Bessel function of the first kind, order 1, in float64 to ~1e-15 (torch's is ~1e-7).

    Bessel's integral J1(x) = 1/(2 pi) * integral over one period of cos(t - x sin t); the integrand is
    periodic and band-limited to about |x|, so the trapezoid rule with N > |x| + 40 nodes is exact
    to rounding.
    """
    x = np.asarray(x, dtype=np.float64)
    n = int(np.ceil(np.abs(x).max(initial=0.0))) + 64
    t = np.arange(n) * (2 * np.pi / n)
    return np.cos(t - x[..., None] * np.sin(t)).mean(axis=-1)


def _kaiser_window(numtaps: int, width: float, fs: float) -> np.ndarray:
    beta = kaiser_beta(kaiser_atten(numtaps, width / (fs / 2)))
    return np.kaiser(numtaps, beta)


def separable_lowpass(numtaps: int, cutoff: float, width: float, fs: float) -> np.ndarray:
    """1D low-pass taps [numtaps], float64: windowed sinc with cutoff `cutoff` (same units as fs)."""
    rel_cutoff = cutoff / (fs / 2)
    m = np.arange(numtaps) - (numtaps - 1) / 2
    h = rel_cutoff * np.sinc(rel_cutoff * m)
    h = h * _kaiser_window(numtaps, width, fs)
    return h / h.sum()


def radial_lowpass(numtaps: int, cutoff: float, width: float, fs: float) -> np.ndarray:
    """2D radially symmetric low-pass taps [numtaps, numtaps], float64 (windowed jinc)."""
    x = (np.arange(numtaps) - (numtaps - 1) / 2) / fs
    r = np.hypot(*np.meshgrid(x, x))
    j1 = bessel_j1(2 * cutoff * np.pi * r)
    with np.errstate(divide="ignore", invalid="ignore"):
        f = np.where(r > 0, j1 / (np.pi * np.where(r > 0, r, 1.0)), cutoff)  # limit at r=0 is cutoff
    w = _kaiser_window(numtaps, width, fs)
    f = f * np.outer(w, w)
    return f / f.sum()


def design_lowpass_filter(numtaps: int, cutoff: float, width: float, fs: float,
                          radial: bool = False) -> torch.Tensor | None:
    """StyleGAN3 layer filter: None for a single tap (identity), else float32 taps
    ([numtaps] separable, or [numtaps, numtaps] when `radial`)."""
    if numtaps < 1:
        raise ValueError(f"numtaps must be >= 1, got {numtaps}")
    if numtaps == 1:
        return None
    f = radial_lowpass(numtaps, cutoff, width, fs) if radial else separable_lowpass(numtaps, cutoff, width, fs)
    return torch.as_tensor(f, dtype=torch.float32)

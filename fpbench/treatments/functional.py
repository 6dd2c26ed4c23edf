"""Pure tensor math of the treatments (no modules, no hooks, no host syncs).

Feature maps are ``x [N, C, H, W]``; per-channel statistics ``mean``/``std`` are ``[C]``; risks and
masks are ``[N, C]`` so that every image in a batch is judged on its own. Channel statistics are
computed in float32 even when ``x`` is float16; outputs keep ``x``'s dtype.

Two risk rules
--------------
``"paper"`` (Eq. 3 of the paper, default)::

    r = |mean_hw(x) - mu| / max(sigma, c)          rescaled where r > t, by x / (p * r)

``"official"`` (the authors' released code)::

    d = |mean_hw(x) - mu|,  r = d / sigma           rescaled where d > c and r > t, by x / (p * r)

The released code has no floor on sigma; instead it skips channels whose absolute deviation ``d``
is at most ``c`` (the code hard-wires this threshold per block, 0.01 to 0.2 in different files of
the release; ``c`` defaults to 0.1 here, the paper's constant). So the
two rules differ on channels with small sigma: the paper rule divides by ``c`` instead (smaller
risk, gentler rescaling), the official rule uses the raw, possibly huge, ratio but ignores small
absolute deviations. For sigma >= c and d > c both rules give the same result.
"""

from __future__ import annotations

import torch

RISK_RULES = ("paper", "official")


def channel_mean(x: torch.Tensor) -> torch.Tensor:
    """Spatial mean of each channel, float32: ``[N, C, H, W] -> [N, C]``."""
    return x.float().mean(dim=(2, 3))


def _stat(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return v.to(device=x.device, dtype=torch.float32)


def risk(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, c: float = 0.1) -> torch.Tensor:
    """Eq. 3: ``r = |mean_hw(x) - mu| / max(sigma, c)``, ``[N, C]`` float32."""
    dev = (channel_mean(x) - _stat(mean, x)).abs()
    return dev / _stat(std, x).clamp_min(c)


def official_risk(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor):
    """The released code's quantities: ``(d, r)`` with ``d = |mean_hw(x) - mu|`` and ``r = d / sigma``."""
    dev = (channel_mean(x) - _stat(mean, x)).abs()
    return dev, dev / _stat(std, x)


def risk_mask(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, t: float,
              rule: str = "paper", c: float = 0.1):
    """Which channels to rescale and by which risk: ``(mask [N, C] bool, r [N, C] float32)``.

    ``rule="paper"``: ``mask = r > t`` with the floored risk of Eq. 3. ``rule="official"``:
    ``mask = (d > c) & (d / sigma > t)`` and ``r = d / sigma`` (see the module docstring).
    The comparison with ``t`` is strict: a channel with ``r == t`` is left alone.
    """
    if rule == "paper":
        r = risk(x, mean, std, c)
        return r > t, r
    if rule == "official":
        dev, r = official_risk(x, mean, std)
        return (dev > c) & (r > t), r
    raise ValueError(f"unknown risk rule {rule!r}; expected one of {RISK_RULES}")


def rescale(x: torch.Tensor, r: torch.Tensor, t: float, p: float,
            mask: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. 4: channels with ``r > t`` (or where ``mask`` is true, when given) become ``x / (p * r)``.

    Other channels are returned unchanged (bit for bit). ``r`` and ``mask`` are ``[N, C]``.
    """
    if mask is None:
        mask = r > t
    divisor = torch.where(mask, r * p, torch.ones_like(r))
    return x / divisor.to(x.dtype)[:, :, None, None]


def rescale_by_risk(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, t: float, p: float,
                    rule: str = "paper", c: float = 0.1) -> torch.Tensor:
    """Identify (`risk_mask`) and rescale (`rescale`) in one call: the channel-wise treatment."""
    mask, r = risk_mask(x, mean, std, t, rule, c)
    return rescale(x, r, t, p, mask=mask)


def truncate(w: torch.Tensor, w_avg: torch.Tensor, psi: float, cutoff: int | None = None) -> torch.Tensor:
    """The truncation trick: ``w_avg.lerp(w, psi)`` on the ws layers with index < ``cutoff``.

    ``w`` is ``[N, num_ws, w_dim]`` (or ``[N, w_dim]``, then ``cutoff`` is ignored); ``cutoff=None``
    truncates every layer. Same arithmetic as NVIDIA's mapping network.
    """
    truncated = w_avg.to(w.dtype).lerp(w, psi)
    if cutoff is None or w.ndim < 3:
        return truncated
    keep = torch.arange(w.shape[1], device=w.device) < cutoff
    return torch.where(keep[None, :, None], truncated, w)


def layerwise_map(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Eq. 5-6: mean absolute map of the channels in ``mask``, normalised per image: ``[N, H, W]``.

    ``x_hat = mean_{j in mask} |x_j|`` and ``x_bar = (x_hat - mean(x_hat)) / std(x_hat)`` over the
    spatial positions of each image (unbiased std). An image with no masked channel, or a map with
    no spatial variation, gets zeros.
    """
    a = x.float().abs()
    m = mask.to(a.dtype)
    count = m.sum(dim=1).clamp_min(1.0)
    x_hat = (a * m[:, :, None, None]).sum(dim=1) / count[:, None, None]
    mu = x_hat.mean(dim=(1, 2), keepdim=True)
    flat = x_hat.flatten(1)
    sd = flat.std(dim=1, correction=1 if flat.shape[1] > 1 else 0)[:, None, None]   # 1x1 maps: 0, not NaN
    return (x_hat - mu) / sd.clamp_min(eps)


def layerwise_correlation(x: torch.Tensor, x_bar: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Eq. 7: ``c_j = sum_hw(|x_j| * x_bar) / sum_hw |x_j|``, ``[N, C]``.

    A weighted average of the normalised layer map with weights ``|x_j|``: large when channel
    ``j``'s energy sits where the layer's risky channels are strong.
    """
    a = x.float().abs()
    num = (a * x_bar[:, None]).sum(dim=(2, 3))
    return num / a.sum(dim=(2, 3)).clamp_min(eps)


def layerwise_mask(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, t: float, t_prime: float,
                   c: float = 0.1):
    """Layer-wise variant (Sec. 5.5): ``(mask, r)``; ``mask = (r > t) & (c_j > t_prime)``.

    The candidates are the Eq. 3 risky channels; their mean absolute map (Eq. 5-6) is the layer's
    "cancer" map, and a candidate is kept only if it correlates with it above ``t_prime`` (Eq. 7),
    as in the authors' ablation code. Kept channels are rescaled as in Eq. 4.
    """
    r = risk(x, mean, std, c)
    risky = r > t
    corr = layerwise_correlation(x, layerwise_map(x, risky))
    return risky & (corr > t_prime), r


def layerwise_rescale(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, t: float, p: float,
                      t_prime: float, c: float = 0.1) -> torch.Tensor:
    mask, r = layerwise_mask(x, mean, std, t, t_prime, c)
    return rescale(x, r, t, p, mask=mask)


def pixel_norm(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """ProGAN's pixel-wise feature vector normalisation: ``x / sqrt(mean_c(x^2) + eps)``."""
    scale = (x.float().square().mean(dim=1, keepdim=True) + eps).rsqrt()
    return (x.float() * scale).to(x.dtype)


__all__ = [
    "RISK_RULES", "channel_mean", "layerwise_correlation", "layerwise_map", "layerwise_mask",
    "layerwise_rescale", "official_risk", "pixel_norm", "rescale", "rescale_by_risk", "risk",
    "risk_mask", "truncate",
]

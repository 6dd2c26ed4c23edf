"""Feature proliferation, measured (paper Sec. 3, Definition 3.2 and Fig. 4).

Definition 3.2 calls eta(x_j) = |Y_d(x_j)| / |Y| the fraction of a layer's outputs that are
dominated by feature x_j. We make "dominated" operational for feature maps: channel y of layer l is
dominated by the map s when the Pearson correlation over spatial positions between y and s
(resized to y's resolution, bilinear) is above tau in absolute value. The absolute value counts
negative weights too: y ~ (sum_i w_i) s + b follows s whichever the sign of the weights. So

    eta_l(s) = #{channels y of layer l : |corr(y, resize(s))| > tau} / C_l        per image.

Feature proliferation is eta growing along the forward pass. Random channels at 4 x 4 correlate by
chance more often than at 32 x 32, so compare conditions (original vs edited) layer by layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import torch

from ..errors import ConfigError
from ..stats import FeatureStats
from ..treatments import functional as TF
from ..treatments.hooks import check_number, feature_layers, resolve_layers
from .features import record_features


# --- pure functions ----------------------------------------------------------------------------

def resize_map(source: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``[N, h, w] -> [N, H, W]``, bilinear (antialiased when shrinking)."""
    if tuple(source.shape[-2:]) == tuple(size):
        return source.float()
    shrink = size[0] < source.shape[-2] or size[1] < source.shape[-1]
    return torch.nn.functional.interpolate(source[:, None].float(), size=size, mode="bilinear",
                                           align_corners=False, antialias=shrink)[:, 0]


def map_correlation(x: torch.Tensor, source: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Pearson correlation over space of every channel of ``x [N, C, H, W]`` with ``source [N, h, w]``
    (resized to H x W): ``[N, C]`` in [-1, 1]; a spatially constant map correlates 0."""
    s = resize_map(source, tuple(x.shape[-2:]))
    xc = x.float() - x.float().mean(dim=(2, 3), keepdim=True)
    sc = s - s.mean(dim=(1, 2), keepdim=True)
    num = (xc * sc[:, None]).sum(dim=(2, 3))
    den = (xc.square().sum(dim=(2, 3)) * sc.square().sum(dim=(1, 2))[:, None]).sqrt()
    return num / den.clamp_min(eps)


def proliferation_ratio(features: Mapping[str, torch.Tensor], source: torch.Tensor,
                        tau: float = 0.5) -> dict[str, torch.Tensor]:
    """eta per layer and image: ``{layer: [N]}``, the fraction of channels with |corr| > tau."""
    return {layer: (map_correlation(x, source).abs() > tau).float().mean(dim=1) for layer, x in features.items()}


def high_risk_counts(features: Mapping[str, torch.Tensor], stats: FeatureStats, t: float = 2.0,
                     risk_rule: str = "paper", c: float = 0.1) -> dict[str, torch.Tensor]:
    """Number of high-risk channels per layer and image (Eq. 3 / the chosen rule): ``{layer: [N] int64}``."""
    out = {}
    for layer, x in features.items():
        mask, _ = TF.risk_mask(x, stats.mean[layer], stats.std[layer], t, risk_rule, c)
        out[layer] = mask.sum(dim=1)
    return out


# --- experiments on a generator ----------------------------------------------------------------

@dataclass
class ProliferationResult:
    """eta of one source map under several conditions.

    ``layers``: where eta was measured, forward order (the layers after the edited one).
    ``source``: ``[N, h, w]``, the tracked map. ``eta[condition][layer]``: ``[N]`` in [0, 1].
    ``images[condition]``: ``[N, C, H, W]``. Conditions: ``"original"`` and ``"cured"`` (cure
    experiment); ``"original"``, ``"inserted"`` and, with a treatment, ``"treated"`` (insert).
    """

    layers: list[str]
    source: torch.Tensor
    eta: dict[str, dict[str, torch.Tensor]]
    images: dict[str, torch.Tensor]
    params: dict = field(default_factory=dict)

    def mean_eta(self, condition: str) -> torch.Tensor:
        """``[len(layers)]``: eta averaged over images, in layer order."""
        return torch.stack([self.eta[condition][l].mean() for l in self.layers])


def _downstream(G, layer: str, layers: Sequence[str] | None) -> list[str]:
    known = feature_layers(G)
    resolve_layers(G, [layer])
    if layers is not None:
        return resolve_layers(G, layers)
    after = known[known.index(layer) + 1:]
    return [l for l in after if not l.endswith("torgb") and not getattr(G.get_submodule(l), "is_torgb", False)]


def _check_channel(channel) -> int:
    if isinstance(channel, bool) or not isinstance(channel, int) or channel < 0:
        raise ConfigError(f"channel must be an integer >= 0, got {channel!r}")
    return channel


def cure_experiment(G, z: torch.Tensor, layer: str, channel: int, mode: str = "zero", *, stats: FeatureStats = None,
                    p: float = 2.0, c_floor: float = 0.1, tau: float = 0.5, layers: Sequence[str] | None = None,
                    c=None, noise_mode: str = "const") -> ProliferationResult:
    """Fig. 4 left: cure channel ``channel`` of ``layer`` and measure eta of its map downstream.

    ``mode="zero"`` sets the map to 0 (the paper's cure); ``mode="rescale"`` divides it by
    ``p * r`` with r its Eq. 3 risk (needs ``stats``), whatever r is. The source map is the
    channel's original output.
    """
    if mode not in ("zero", "rescale"):
        raise ConfigError(f"cure mode must be 'zero' or 'rescale', got {mode!r}")
    if mode == "rescale" and stats is None:
        raise ConfigError("cure mode 'rescale' needs stats= (fpbench.stats.estimate_feature_stats)")
    check_number("tau", tau, low=0.0, high=1.0)
    check_number("p", p, low=0.0, low_inclusive=False)
    channel = _check_channel(channel)
    measured = _downstream(G, layer, layers)
    if stats is not None:
        stats.check(G, [layer])

    original = record_features(G, z, [layer] + measured, c=c, noise_mode=noise_mode)
    x0 = original.features[layer]
    if channel >= x0.shape[1]:
        raise ConfigError(f"channel {channel} out of range: layer {layer!r} has {x0.shape[1]} channels")
    source = x0[:, channel]

    def cure(x):
        if mode == "zero":
            factor = torch.zeros(x.shape[0], device=x.device)
        else:
            r = TF.risk(x, stats.mean[layer], stats.std[layer], c_floor)[:, channel]
            factor = 1.0 / (p * r)
        x = x.clone()
        x[:, channel] = x[:, channel] * factor.to(x.dtype)[:, None, None]
        return x

    cured = record_features(G, z, measured, c=c, noise_mode=noise_mode, edits={layer: cure})
    feats0 = {l: original.features[l] for l in measured}
    return ProliferationResult(
        layers=measured, source=source,
        eta={"original": proliferation_ratio(feats0, source, tau),
             "cured": proliferation_ratio(cured.features, source, tau)},
        images={"original": original.images, "cured": cured.images},
        params={"experiment": "cure", "layer": layer, "channel": channel, "mode": mode, "tau": tau, "p": p})


def insert_experiment(G, z: torch.Tensor, layer: str, channel: int, source: torch.Tensor, *, treatment=None,
                      tau: float = 0.5, layers: Sequence[str] | None = None, c=None,
                      noise_mode: str = "const") -> ProliferationResult:
    """Fig. 4 right: replace channel ``channel`` of ``layer`` by ``source`` (``[N or 1, H, W]``, e.g.
    a proliferating map taken from another sample) and measure eta of ``source`` downstream.

    With ``treatment`` (e.g. `FeatureRescaling`), a third condition ``"treated"`` runs the same
    insertion with the treatment applied after it.
    """
    check_number("tau", tau, low=0.0, high=1.0)
    channel = _check_channel(channel)
    measured = _downstream(G, layer, layers)
    if source.ndim != 3:
        raise ConfigError(f"source must be a [N, H, W] map, got shape {tuple(source.shape)}")
    src = source.to(z.device).expand(z.shape[0], *source.shape[1:])

    def insert(x):
        if channel >= x.shape[1] or tuple(x.shape[-2:]) != tuple(src.shape[-2:]):
            raise ConfigError(f"cannot insert a {tuple(src.shape[-2:])} map as channel {channel} of layer "
                              f"{layer!r} with output {tuple(x.shape[1:])}")
        x = x.clone()
        x[:, channel] = src.to(x.dtype)
        return x

    runs = {"original": record_features(G, z, measured, c=c, noise_mode=noise_mode),
            "inserted": record_features(G, z, measured, c=c, noise_mode=noise_mode, edits={layer: insert})}
    if treatment is not None:
        runs["treated"] = record_features(G, z, measured, c=c, noise_mode=noise_mode, edits={layer: insert},
                                          treatment=treatment)
    return ProliferationResult(
        layers=measured, source=src,
        eta={k: proliferation_ratio(r.features, src, tau) for k, r in runs.items()},
        images={k: r.images for k, r in runs.items()},
        params={"experiment": "insert", "layer": layer, "channel": channel, "tau": tau,
                "treatment": None if treatment is None else {"name": treatment.name, **treatment.params}})


def count_high_risk(G, stats: FeatureStats, z: torch.Tensor, t: float = 2.0, risk_rule: str = "paper",
                    c_floor: float = 0.1, layers: Sequence[str] | None = None, c=None,
                    noise_mode: str = "const") -> dict[str, torch.Tensor]:
    """Per-layer count of high-risk channels of untreated samples: ``{layer: [N] int64}``."""
    layers = stats.layers if layers is None else resolve_layers(G, layers)
    stats.check(G, layers)
    rec = record_features(G, z, layers, c=c, noise_mode=noise_mode)
    return high_risk_counts(rec.features, stats, t, risk_rule, c_floor)

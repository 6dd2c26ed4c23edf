"""Data of the paper's Fig. 3: histograms of the mean and the standard deviation of feature maps.

Weight demodulation assumes unit-std inputs; Fig. 3 shows they are not. For every sample and
channel of a layer we take the spatial mean and the spatial std (population) of the map and
histogram them, streamed over n samples with fixed bins (constant memory). The layer outputs
recorded here are the inputs of the next modulated convolution.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from ..errors import ConfigError
from ..treatments.hooks import feature_layers, forward_hooks, module_device, resolve_layers


@dataclass
class FeatureHistograms:
    """Counts per layer over ``n`` samples x channels.

    ``mean_edges`` / ``std_edges``: ``[bins + 1]`` bin edges. ``mean_counts[layer]`` /
    ``std_counts[layer]``: ``[bins]`` int64; values outside the range are counted in the first /
    last bin and also in ``outside[layer] = (mean_below, mean_above, std_below, std_above)``.
    ``moments[layer]``: ``{"mean_of_means", "std_of_means", "mean_of_stds", "std_of_stds"}`` (floats,
    over all samples x channels, from streamed float64 sums).
    """

    layers: list[str]
    n: int
    mean_edges: torch.Tensor
    std_edges: torch.Tensor
    mean_counts: dict[str, torch.Tensor]
    std_counts: dict[str, torch.Tensor]
    outside: dict[str, tuple[int, int, int, int]]
    moments: dict[str, dict[str, float]]

    def pooled(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Counts summed over layers: ``(mean_counts [bins], std_counts [bins])``."""
        return (torch.stack(list(self.mean_counts.values())).sum(0),
                torch.stack(list(self.std_counts.values())).sum(0))


def _hist(v: torch.Tensor, lo: float, hi: float, bins: int) -> torch.Tensor:
    idx = ((v - lo) / (hi - lo) * bins).floor().clamp(0, bins - 1).long()
    return torch.bincount(idx.flatten(), minlength=bins)


@torch.no_grad()
def feature_histograms(G, n: int = 1000, batch_size: int = 32, seed: int = 0, layers: Sequence[str] | None = None,
                       bins: int = 100, mean_range: tuple[float, float] = (-3.0, 3.0),
                       std_range: tuple[float, float] = (0.0, 3.0), noise_mode: str = "const",
                       progress: bool = True) -> FeatureHistograms:
    """Histograms of per-channel spatial mean and std of untreated samples (seeds seed..seed+n-1).

    ``layers=None``: every ``G.feature_layers`` layer except ToRGB outputs.
    """
    from tqdm.auto import tqdm

    from ..generators import seeds_to_z
    from ..stats import _labels

    for name, value, low in (("n", n, 1), ("batch_size", batch_size, 1), ("bins", bins, 1), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")
    for name, (lo, hi) in (("mean_range", mean_range), ("std_range", std_range)):
        if not lo < hi:
            raise ConfigError(f"{name} must be (low, high) with low < high, got {(lo, hi)!r}")
    if layers is None:
        layers = [l for l in feature_layers(G)
                  if not l.endswith("torgb") and not getattr(G.get_submodule(l), "is_torgb", False)]
    else:
        layers = resolve_layers(G, layers)
    device = module_device(G)
    mean_counts = {l: torch.zeros(bins, dtype=torch.long, device=device) for l in layers}
    std_counts = {l: torch.zeros(bins, dtype=torch.long, device=device) for l in layers}
    outside = {l: torch.zeros(4, dtype=torch.long, device=device) for l in layers}
    sums = {l: torch.zeros(4, dtype=torch.float64, device=device) for l in layers}  # Σm, Σm², Σs, Σs²
    counts = {l: 0 for l in layers}

    def hook(layer):
        def fn(module, inputs, x):
            x = x.detach().float()
            m = x.mean(dim=(2, 3))
            s = x.std(dim=(2, 3), unbiased=False)
            mean_counts[layer] += _hist(m, *mean_range, bins)
            std_counts[layer] += _hist(s, *std_range, bins)
            outside[layer] += torch.stack([(m < mean_range[0]).sum(), (m >= mean_range[1]).sum(),
                                           (s < std_range[0]).sum(), (s >= std_range[1]).sum()])
            md, sd = m.double(), s.double()
            counts[layer] += m.numel()          # a shape: known on the host, no device sync
            sums[layer] += torch.stack([md.sum(), md.square().sum(), sd.sum(), sd.square().sum()])
        return fn

    with forward_hooks(G, [(l, hook(l)) for l in layers]), \
            tqdm(total=n, unit="img", desc="feature histograms", disable=not progress) as bar:
        for start in range(seed, seed + n, batch_size):
            seeds = list(range(start, min(start + batch_size, seed + n)))
            z = seeds_to_z(seeds, G.z_dim, device=device)
            G(z, _labels(G, None, seeds, device), noise_mode=noise_mode)
            bar.update(len(seeds))

    moments = {}
    for l in layers:
        k = counts[l]
        sm, sm2, ss, ss2 = sums[l].tolist()
        moments[l] = {"mean_of_means": sm / k, "std_of_means": max(sm2 / k - (sm / k) ** 2, 0.0) ** 0.5,
                      "mean_of_stds": ss / k, "std_of_stds": max(ss2 / k - (ss / k) ** 2, 0.0) ** 0.5}
    return FeatureHistograms(
        layers=list(layers), n=n,
        mean_edges=torch.linspace(*mean_range, bins + 1, dtype=torch.float64),
        std_edges=torch.linspace(*std_range, bins + 1, dtype=torch.float64),
        mean_counts={l: v.cpu() for l, v in mean_counts.items()},
        std_counts={l: v.cpu() for l, v in std_counts.items()},
        outside={l: tuple(int(v) for v in outside[l].tolist()) for l in layers},
        moments=moments)

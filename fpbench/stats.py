"""Per-layer, per-channel feature statistics: the mu and sigma of Eq. 3.

For every channel j of layer l, ``mu_{l,j}`` and ``sigma_{l,j}`` are the mean and the population
standard deviation (ddof = 0) over n untreated samples of that channel's *spatial mean*. Samples
use the seeds ``seed, seed + 1, ..., seed + n - 1`` turned into z exactly as NVIDIA's
``gen_images.py`` does (`fpbench.generators.seeds_to_z`), ``truncation_psi=1`` and the given
``noise_mode``.

Estimation streams: each batch's per-channel means are merged into float64 running moments
(Chan et al.'s parallel update), so memory does not grow with n. Results are cached as
``.safetensors`` under ``cache_dir()/stats/``, keyed by the weights' fingerprint and every
setting that changes the numbers (n, seed, layers, noise_mode, labels), and reused.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from .cache import atomic_path
from .cache import cache_dir as _default_cache_dir
from .errors import ConfigError, MissingFileError, StatsMismatchError

FORMAT_VERSION = 1
NOISE_MODES = ("const", "random", "none")


class ChannelMoments:
    """Running count, mean and sum of squared deviations of ``[B, C]`` rows, in float64.

    State is three things of size C (or 1), whatever the number of rows merged.
    """

    def __init__(self):
        self.count = 0
        self.mean: torch.Tensor | None = None
        self.m2: torch.Tensor | None = None

    def update(self, values: torch.Tensor) -> None:
        v = values.detach().to(torch.float64)
        nb = v.shape[0]
        if nb == 0:
            return
        mb = v.mean(dim=0)
        m2b = (v - mb).square().sum(dim=0)
        if self.mean is None:
            self.count, self.mean, self.m2 = nb, mb, m2b
            return
        na = self.count
        n = na + nb
        delta = mb - self.mean
        self.mean = self.mean + delta * (nb / n)
        self.m2 = self.m2 + m2b + delta.square() * (na * nb / n)
        self.count = n

    def std(self) -> torch.Tensor:
        return (self.m2 / self.count).sqrt()

    def state_numel(self) -> int:
        return sum(t.numel() for t in (self.mean, self.m2) if t is not None)


@dataclass
class FeatureStats:
    """mu and sigma per layer: ``mean[layer]``, ``std[layer]`` are float64 ``[C]`` tensors on the CPU.

    ``meta`` holds how they were made (``fingerprint``, ``n``, ``seed``, ``layers``, ``noise_mode``,
    ``c``, ``ddof``); `check` compares it with a generator.
    """

    mean: dict[str, torch.Tensor]
    std: dict[str, torch.Tensor]
    meta: dict = field(default_factory=dict)

    @property
    def fingerprint(self) -> str | None:
        return self.meta.get("fingerprint")

    @property
    def layers(self) -> list[str]:
        return list(self.mean)

    def check(self, G, layers: Sequence[str] | None = None) -> None:
        """Raise StatsMismatchError unless these stats belong to `G` and cover `layers` with valid values."""
        from .generators import weights_fingerprint

        fp = weights_fingerprint(G)
        if self.fingerprint != fp:
            raise StatsMismatchError(
                f"feature statistics were estimated for weights {self.fingerprint}, not for this generator "
                f"({fp}); re-estimate them with estimate_feature_stats(G)")
        self.validate(layers)

    def validate(self, layers: Sequence[str] | None = None) -> None:
        """Raise StatsMismatchError if a requested layer is missing or its sigma is NaN, infinite or 0."""
        for layer in self.layers if layers is None else layers:
            if layer not in self.mean or layer not in self.std:
                raise StatsMismatchError(
                    f"feature statistics lack layer {layer!r} (they have {', '.join(self.layers) or 'none'}); "
                    f"re-estimate them with layers=None")
            mean, std = self.mean[layer], self.std[layer]
            if mean.shape != std.shape or mean.ndim != 1:
                raise StatsMismatchError(f"feature statistics of layer {layer!r} have shapes {tuple(mean.shape)} "
                                         f"and {tuple(std.shape)}; re-estimate them")
            bad = ~torch.isfinite(mean) | ~torch.isfinite(std) | (std <= 0)
            if bad.any():
                j = int(bad.nonzero()[0, 0])
                raise StatsMismatchError(
                    f"feature statistics of layer {layer!r} channel {j} have mean={float(mean[j])}, "
                    f"std={float(std[j])} (NaN, infinite or non-positive std); re-estimate them with more samples")

    def save(self, path) -> Path:
        """Write atomically to `path` (.safetensors); the metadata is stored as JSON strings."""
        from safetensors.torch import save_file

        tensors = {}
        for layer in self.layers:
            tensors[f"mean/{layer}"] = self.mean[layer].detach().cpu().contiguous()
            tensors[f"std/{layer}"] = self.std[layer].detach().cpu().contiguous()
        meta = {"format": "fpbench.feature_stats", "version": str(FORMAT_VERSION),
                "meta": json.dumps(self.meta, sort_keys=True), "layers": json.dumps(self.layers)}
        path = Path(path)
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata=meta)
        return path

    @classmethod
    def load(cls, path) -> "FeatureStats":
        from safetensors import safe_open

        path = Path(path)
        if not path.exists():
            raise MissingFileError(f"feature statistics file {path} does not exist; estimate them with "
                                   f"estimate_feature_stats(G)")
        try:
            with safe_open(str(path), framework="pt") as f:
                info = f.metadata() or {}
                if info.get("format") != "fpbench.feature_stats":
                    raise StatsMismatchError(f"{path} is not an fpbench feature-statistics file")
                layers = json.loads(info["layers"])
                mean = {l: f.get_tensor(f"mean/{l}") for l in layers}
                std = {l: f.get_tensor(f"std/{l}") for l in layers}
                meta = json.loads(info.get("meta", "{}"))
        except StatsMismatchError:
            raise
        except Exception as err:  # a truncated or foreign file
            raise StatsMismatchError(f"cannot read feature statistics {path} ({type(err).__name__}); "
                                     f"delete it and re-estimate") from None
        return cls(mean=mean, std=std, meta=meta)


def _labels_key(c) -> object:
    if c is None or isinstance(c, int):
        return c
    t = torch.as_tensor(c).detach().to("cpu", torch.float32).contiguous()
    return "tensor:" + hashlib.sha256(t.numpy().tobytes() + str(tuple(t.shape)).encode()).hexdigest()[:16]


def _labels(G, c, seeds, device, first_seed: int | None = None) -> torch.Tensor:
    """Labels for a batch: none for unconditional G; else one-hot of `c`, or of seed % c_dim when c is
    None. A ``[n, c_dim]`` tensor is indexed by ``seed - first_seed``."""
    c_dim = int(getattr(G, "c_dim", 0) or 0)
    seeds = list(seeds)
    n = len(seeds)
    if c_dim == 0:
        return torch.zeros([n, 0], device=device)
    if c is None:
        idx = torch.tensor([s % c_dim for s in seeds], device=device)
    elif isinstance(c, int):
        idx = torch.full([n], c, device=device)
    else:
        t = torch.as_tensor(c, dtype=torch.float32, device=device)
        if t.ndim == 1:
            return t.reshape(1, c_dim).expand(n, c_dim)
        start = seeds[0] - (first_seed if first_seed is not None else seeds[0])
        return t[start:start + n]
    return torch.nn.functional.one_hot(idx, c_dim).to(torch.float32)


def _check_args(G, n, batch_size, seed, layers, c, noise_mode) -> list[str]:
    from .treatments.hooks import feature_layers

    for name, value, low in (("n", n, 2), ("batch_size", batch_size, 1), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")
    if seed + n > 2 ** 32:
        raise ConfigError(f"seeds {seed}..{seed + n - 1} exceed 2**32 - 1 (numpy RandomState limit); lower seed or n")
    if noise_mode not in NOISE_MODES:
        raise ConfigError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
    known = feature_layers(G)
    if layers is None:
        return known
    if isinstance(layers, str):
        layers = [layers]
    for layer in layers:
        if layer not in known:
            raise ConfigError(f"layer {layer!r} is not one of G.feature_layers ({', '.join(known)})")
    return list(layers)


def _check_labels(G, c, n) -> None:
    c_dim = int(getattr(G, "c_dim", 0) or 0)
    if c is None or c_dim == 0:
        return
    if isinstance(c, int) and not isinstance(c, bool):
        if not 0 <= c < c_dim:
            raise ConfigError(f"class index c={c} is out of range for c_dim={c_dim}")
        return
    shape = tuple(torch.as_tensor(c).shape)
    if shape not in ((c_dim,), (n, c_dim)):
        raise ConfigError(f"labels c must have shape ({c_dim},) or ({n}, {c_dim}), got {shape}")


def stats_cache_key(fingerprint: str, n: int, seed: int, layers: Sequence[str], noise_mode: str, c) -> str:
    blob = json.dumps({"fingerprint": fingerprint, "n": n, "seed": seed, "layers": list(layers),
                       "noise_mode": noise_mode, "c": _labels_key(c), "version": FORMAT_VERSION}, sort_keys=True)
    return f"{fingerprint}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"


def estimate_feature_stats(G, n: int = 3000, batch_size: int = 32, seed: int = 0,
                           layers: Sequence[str] | None = None, c=None, noise_mode: str = "const",
                           device=None, cache_dir=None, progress: bool = True,
                           use_cache: bool = True) -> FeatureStats:
    """Estimate (or load from cache) mu and sigma of each channel's spatial mean, per layer.

    Args:
        G: an fpbench generator (has ``feature_layers``, ``z_dim``, ``c_dim``).
        n: number of samples (seeds ``seed .. seed + n - 1``). The paper uses about 3,000.
        layers: layer names from ``G.feature_layers``; None = all of them (one forward pass serves
            every layer, and any treatment's layers are then covered).
        c: labels for a conditional G: None = class ``seed % c_dim`` per sample, an int = that class
            for all, or a one-hot tensor ``[c_dim]`` / ``[n, c_dim]``. Ignored when ``c_dim == 0``.
        device: where to run; None = where G's parameters are. G itself is not moved.
        cache_dir: directory of the cache files; None = ``fpbench.cache.cache_dir() / "stats"``.
        use_cache: False = neither read nor write the cache.

    The cache file name is ``<weights fingerprint>-<hash of the settings>.safetensors``.
    """
    from tqdm.auto import tqdm

    from .generators import seeds_to_z, weights_fingerprint
    from .treatments.hooks import forward_hooks, module_device

    layers = _check_args(G, n, batch_size, seed, layers, c, noise_mode)
    _check_labels(G, c, n)
    g_device = module_device(G)
    device = torch.device(device) if device is not None else g_device
    if device.type != g_device.type or (device.index is not None and device.index != g_device.index):
        raise ConfigError(f"device={device} but the generator is on {g_device}; move G with G.to(device)")
    device = g_device
    fingerprint = weights_fingerprint(G)
    key = stats_cache_key(fingerprint, n, seed, layers, noise_mode, c)
    path = Path(cache_dir) if cache_dir is not None else _default_cache_dir() / "stats"
    path = path / f"{key}.safetensors"
    if use_cache and path.exists():
        stats = FeatureStats.load(path)
        if stats.fingerprint == fingerprint and stats.layers == layers:
            return stats

    moments = {layer: ChannelMoments() for layer in layers}

    def recorder(layer):
        def hook(module, inputs, output):
            moments[layer].update(output.detach().to(torch.float64).mean(dim=(2, 3)))
        return hook

    was_training = G.training
    G.eval()
    try:
        with torch.no_grad(), forward_hooks(G, [(layer, recorder(layer)) for layer in layers]), \
                tqdm(total=n, unit="img", desc="feature stats", disable=not progress) as bar:
            for start in range(seed, seed + n, batch_size):
                seeds = range(start, min(start + batch_size, seed + n))
                z = seeds_to_z(list(seeds), G.z_dim, device=device)
                G(z, _labels(G, c, seeds, device, first_seed=seed), truncation_psi=1, noise_mode=noise_mode)
                bar.update(len(seeds))
    finally:
        G.train(was_training)

    stats = FeatureStats(
        mean={layer: moments[layer].mean.cpu() for layer in layers},
        std={layer: moments[layer].std().cpu() for layer in layers},
        meta={"fingerprint": fingerprint, "n": n, "seed": seed, "layers": layers, "noise_mode": noise_mode,
              "c": _labels_key(c), "ddof": 0, "seeds": f"{seed}..{seed + n - 1}"},
    )
    if use_cache:
        stats.save(path)
    return stats


__all__ = ["ChannelMoments", "FeatureStats", "estimate_feature_stats", "stats_cache_key"]

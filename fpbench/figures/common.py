"""What every figure needs: a loaded generator, seeds, treatments built from short specs, batched
synthesis to uint8 arrays, and writing the result under the output folder.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from ..errors import ConfigError
from . import compose

# Treatments that need per-layer feature statistics of the generator.
NEEDS_STATS = {"rescale", "layerwise"}

# Friendly spellings accepted on the command line -> the name `fpbench.treatments.build` knows.
ALIASES = {
    "ours": "rescale", "rescaling": "rescale", "fr": "rescale", "feature_rescaling": "rescale",
    "feature-rescaling": "rescale", "trunc": "truncation", "psi": "truncation",
    "layerwise_rescaling": "layerwise", "layer-wise": "layerwise",
    "pixel_norm": "pixelnorm", "pixel-norm": "pixelnorm", "untreated": "none",
}
DISPLAY = {
    "rescale": "feature rescaling", "truncation": "truncation",
    "layerwise": "layer-wise rescaling", "pixelnorm": "pixel norm", "none": "untreated",
}
SYMBOLS = {"psi": "ψ", "t_prime": "t'"}


def parse_seeds(text: str | Sequence[int]) -> list[int]:
    """'0-3,7' -> [0, 1, 2, 3, 7] (NVIDIA's gen_images.py syntax); a list of ints passes through."""
    if not isinstance(text, str):
        return [int(s) for s in text]
    seeds: list[int] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        m = re.fullmatch(r"(\d+)-(\d+)", part)
        if m:
            a, b = int(m.group(1)), int(m.group(2))
            if b < a:
                raise ConfigError(f"seed range {part!r} runs backwards; write it as {b}-{a}")
            seeds.extend(range(a, b + 1))
        elif part.isdigit():
            seeds.append(int(part))
        else:
            raise ConfigError(f"bad seed {part!r}; use integers and ranges like 0-7,12")
    if not seeds:
        raise ConfigError("no seeds given; pass e.g. --seeds 0-7")
    return seeds


def parse_floats(text: str | Sequence[float], what: str) -> list[float]:
    if not isinstance(text, str):
        return [float(v) for v in text]
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"bad {what} list {text!r}; use comma-separated numbers like 0.5,0.7") from None
    if not values:
        raise ConfigError(f"empty {what} list; use comma-separated numbers like 0.5,0.7")
    return values


@dataclass(frozen=True)
class TreatmentSpec:
    """A treatment name plus its parameters, parsed from 'name' or 'name:k=v,k=v'."""

    name: str
    params: tuple[tuple[str, float | str], ...] = ()
    title: str | None = field(default=None, compare=False)  # overrides the generated label

    @classmethod
    def parse(cls, text: str) -> "TreatmentSpec":
        name, _, rest = text.strip().partition(":")
        name = ALIASES.get(name.strip().lower(), name.strip().lower())
        if not name:
            raise ConfigError(f"empty treatment in {text!r}; use e.g. truncation:psi=0.7")
        params = []
        for item in filter(None, (p.strip() for p in rest.split(","))):
            key, eq, value = item.partition("=")
            if not eq:
                raise ConfigError(f"bad treatment parameter {item!r} in {text!r}; write key=value, e.g. psi=0.7")
            params.append((key.strip(), _number(value.strip(), text)))
        return cls(name, tuple(params))

    @property
    def kwargs(self) -> dict:
        return dict(self.params)

    @property
    def label(self) -> str:
        if self.title:
            return self.title
        base = DISPLAY.get(self.name, self.name)
        if not self.params:
            return base
        args = ", ".join(f"{SYMBOLS.get(k, k)}={_fmt(v)}" for k, v in self.params)
        return f"{base} ({args})"

    @property
    def slug(self) -> str:
        return "_".join([self.name] + [f"{k}{_fmt(v)}" for k, v in self.params])


def _number(value: str, text: str):
    """'2' -> 2, '0.7' -> 0.7; anything else stays a string (e.g. risk_rule=official) for `build` to check."""
    if not value:
        raise ConfigError(f"empty treatment value in {text!r}; write key=value, e.g. psi=0.7")
    try:
        f = float(value)
    except ValueError:
        return value
    return int(f) if f.is_integer() and "." not in value and "e" not in value.lower() else f


def _fmt(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


DEFAULT_TREATMENTS = ("rescale:t=2,p=2", "truncation:psi=0.7")


def parse_treatments(items: Iterable[str] | None, check: bool = True) -> list[TreatmentSpec]:
    """Specs from command-line items (None = DEFAULT_TREATMENTS), checked with `check_specs`."""
    specs = []
    for item in items if items is not None else DEFAULT_TREATMENTS:
        # "a:x=1 b" on the command line arrive as separate items; ';' also separates.
        specs.extend(TreatmentSpec.parse(part) for part in str(item).split(";") if part.strip())
    if check:
        check_specs(specs)
    return specs


def check_specs(specs: Sequence[TreatmentSpec]) -> None:
    """Build each treatment once without a generator, so a bad name or value fails before any work."""
    from .. import treatments
    from ..stats import FeatureStats

    for spec in specs:
        stats = FeatureStats(mean={}, std={}) if spec.name in NEEDS_STATS else None
        treatments.build(spec.name, stats=stats, **spec.kwargs)


def load_model(source: str, device: str | torch.device = "cpu"):
    """'tiny' -> the tiny random-weights generator; anything else goes to `load_generator`."""
    from .. import generators

    if source == "tiny":
        return generators.tiny(seed=0, device=device)
    return generators.load_generator(source, device=device)


def model_tag(source: str) -> str:
    """Short, file-name-safe name of a model source (zoo name or file stem)."""
    stem = Path(source).name
    for suffix in (".pkl", ".pt", ".pth", ".safetensors"):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", stem) or "model"


@dataclass
class Session:
    """A generator plus the settings shared by every figure: device, batch size, statistics."""

    G: torch.nn.Module
    device: torch.device
    model: str = "model"
    batch_size: int = 8
    stats_n: int = 3000
    stats_seed: int = 0
    class_idx: int | None = None
    _stats: object = field(default=None, repr=False)

    @property
    def random_weights(self) -> bool:
        return self.model == "tiny"

    @property
    def title(self) -> str:
        return f"{self.model} (random weights)" if self.random_weights else self.model

    def stats(self):
        if self._stats is None:
            from ..stats import estimate_feature_stats

            self._stats = estimate_feature_stats(self.G, n=self.stats_n, batch_size=max(self.batch_size, 32),
                                                 seed=self.stats_seed)
        return self._stats

    def treatment(self, spec: TreatmentSpec):
        """The treatment object for `spec` (None for 'none')."""
        from .. import treatments

        if spec.name == "none":
            return None
        stats = self.stats() if spec.name in NEEDS_STATS else None
        return treatments.build(spec.name, G=self.G, stats=stats, **spec.kwargs)

    def labels(self, n: int) -> torch.Tensor:
        c_dim = int(getattr(self.G, "c_dim", 0) or 0)
        c = torch.zeros([n, c_dim], device=self.device)
        if c_dim:
            if self.class_idx is None:
                raise ConfigError(f"the model is conditional ({c_dim} classes); pass --class-idx")
            c[:, self.class_idx] = 1
        return c

    def z(self, seeds: Sequence[int]) -> torch.Tensor:
        from ..generators import seeds_to_z

        return seeds_to_z(list(seeds), self.G.z_dim, device=self.device, dtype=torch.float32)

    @torch.no_grad()
    def images(self, z: torch.Tensor, spec: TreatmentSpec | None = None) -> np.ndarray:
        """uint8 [N,H,W,C] for latents z, with the treatment of `spec` applied (batched)."""
        treatment = self.treatment(spec) if spec is not None else None
        return self._run(treatment, lambda zb: self.G(zb, self.labels(len(zb)), noise_mode="const"), z)

    @torch.no_grad()
    def ws(self, z: torch.Tensor, spec: TreatmentSpec | None = None) -> torch.Tensor:
        """Mapped latents [N,num_ws,w_dim] (a treatment acting on the mapping, e.g. truncation, applies)."""
        treatment = self.treatment(spec) if spec is not None else None
        return self._run(treatment, lambda zb: self.G.mapping(zb, self.labels(len(zb))), z, to_uint8=False)

    @torch.no_grad()
    def images_from_ws(self, ws: torch.Tensor, spec: TreatmentSpec | None = None) -> np.ndarray:
        treatment = self.treatment(spec) if spec is not None else None
        return self._run(treatment, lambda wb: self.G.synthesis(wb, noise_mode="const"), ws)

    def _run(self, treatment, fn, x: torch.Tensor, to_uint8: bool = True):
        # One `applied` block for all batches: its checks (e.g. the stats fingerprint) run once.
        outs = []
        with treatment.applied(self.G) if treatment is not None else contextlib.nullcontext():
            for i in range(0, len(x), self.batch_size):
                y = fn(x[i:i + self.batch_size].to(self.device))
                outs.append(compose.to_uint8(y) if to_uint8 else y)
        return np.concatenate(outs) if to_uint8 else torch.cat(outs)


@dataclass
class FigureOutput:
    """Files written for one figure: the PNG, extra files (PDF, GIF, MP4), layout and metadata."""

    kind: str
    png: Path
    extra: list[Path] = field(default_factory=list)
    layout: compose.GridLayout | None = None
    meta: dict = field(default_factory=dict)
    caption: str = ""


def write_grid(kind: str, image, layout, out_dir: Path, name: str, meta: dict, caption: str = "") -> FigureOutput:
    meta = dict(meta, kind=kind, layout=layout.to_dict() if layout else None)
    png = compose.save_png(image, Path(out_dir) / f"{name}.png", meta)
    return FigureOutput(kind, png, [], layout, meta, caption)


def psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-image PSNR in dB of uint8 batches [N,H,W,C] (inf where identical)."""
    mse = ((a.astype(np.float64) - b.astype(np.float64)) ** 2).reshape(len(a), -1).mean(axis=1)
    with np.errstate(divide="ignore"):
        return 10 * np.log10(255.0 ** 2 / mse)


def fmt_psnr(value: float) -> str:
    return "identical" if not np.isfinite(value) else f"{value:.2f} dB"

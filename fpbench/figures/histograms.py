"""Feature statistics histograms (paper Fig. 3): spatial mean and std of every feature map, per layer.

Weight demodulation assumes unit-std inputs; the std panel marks std = 1 so the gap is visible.
Data from `fpbench.analysis.feature_histograms`; curves are densities so layers compare.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..cache import atomic_path
from ..errors import ConfigError
from .common import FigureOutput, Session, parse_floats
from .compose import _readable

KIND = "histograms"
HELP = "histograms of per-map spatial mean and std of the feature maps, per layer (Fig 3); PNG + PDF"
DPI = 100
FIGSIZE = (11.0, 4.2)


def plot(h, title: str):
    """A matplotlib Figure (Agg) of `h` (a `FeatureHistograms`): mean panel, std panel."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=FIGSIZE, dpi=DPI, layout="constrained")
    axes = fig.subplots(1, 2)
    colors = matplotlib.colormaps["viridis"](np.linspace(0, 0.9, max(len(h.layers), 1)))
    panels = [(axes[0], h.mean_edges, h.mean_counts, "spatial mean of a feature map", 0.0, "0"),
              (axes[1], h.std_edges, h.std_counts, "spatial std of a feature map", 1.0, "unit std (assumed)")]
    for ax, edges, counts, xlabel, ref, ref_label in panels:
        e = edges.numpy()
        width = np.diff(e)
        for color, layer in zip(colors, h.layers):
            c = counts[layer].numpy().astype(np.float64)
            ax.stairs(c / max(c.sum(), 1) / width, e, color=color, lw=1.2, label=layer.removeprefix("synthesis."))
        pooled = np.sum([counts[l].numpy() for l in h.layers], axis=0).astype(np.float64)
        ax.stairs(pooled / max(pooled.sum(), 1) / width, e, color="black", lw=2.2, label="all layers")
        ax.axvline(ref, color="red", ls="--", lw=1.2, label=ref_label)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("density")
        ax.set_xlim(e[0], e[-1])
    axes[1].legend(fontsize=7, ncol=2 if len(h.layers) > 8 else 1, loc="upper right")
    fig.suptitle(f"{title}: {h.n} images x channels per layer")
    return fig


def save(fig, out_dir: Path, name: str, meta: dict) -> tuple[Path, Path]:
    paths = []
    for suffix in ("png", "pdf"):
        dest = Path(out_dir) / f"{name}.{suffix}"
        with atomic_path(dest) as tmp:
            md = {"fpbench": json.dumps(meta, sort_keys=True, default=str)} if suffix == "png" else None
            fig.savefig(tmp, format=suffix, dpi=DPI, metadata=md)
            _readable(tmp)
        paths.append(dest)
    return paths[0], paths[1]


def add_arguments(p) -> None:
    p.add_argument("--n", type=int, default=1000, help="images to sample (default 1000; the paper uses 10,000)")
    p.add_argument("--layers", help="comma-separated layers (default: every non-ToRGB synthesis layer)")
    p.add_argument("--bins", type=int, default=100)
    p.add_argument("--mean-range", default="-3,3", help="x range of the mean panel (default -3,3)")
    p.add_argument("--std-range", default="0,3", help="x range of the std panel (default 0,3)")


def validate(args) -> dict:
    mean_range = parse_floats(args.mean_range, "--mean-range")
    std_range = parse_floats(args.std_range, "--std-range")
    for flag, r in (("--mean-range", mean_range), ("--std-range", std_range)):
        if len(r) != 2 or not r[0] < r[1]:
            raise ConfigError(f"{flag} must be two increasing numbers like 0,3, got {','.join(map(str, r))}")
    if args.n < 1 or args.bins < 1:
        raise ConfigError(f"--n and --bins must be >= 1, got {args.n} and {args.bins}")
    layers = [s.strip() for s in args.layers.split(",") if s.strip()] if args.layers else None
    return {"mean_range": tuple(mean_range), "std_range": tuple(std_range), "layers": layers}


def run(session: Session, args, plan: dict, out_dir: Path, name: str) -> list[FigureOutput]:
    from ..analysis import feature_histograms

    h = feature_histograms(session.G, n=args.n, batch_size=max(session.batch_size, 32), layers=plan["layers"],
                           bins=args.bins, mean_range=plan["mean_range"], std_range=plan["std_range"])
    fig = plot(h, session.title)
    meta = {"kind": KIND, "model": session.model, "n": h.n, "layers": h.layers, "moments": h.moments,
            "outside": h.outside}
    png, pdf = save(fig, out_dir, name, meta)
    caption = f"{session.title}: spatial mean / std of feature maps over {h.n} images"
    return [FigureOutput(KIND, png, [pdf], None, meta, caption)]

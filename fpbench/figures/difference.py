"""Difference maps (paper Fig. 7): each treated image next to |treated - untreated|, PSNR written in.

The map is the per-pixel mean absolute difference over colour channels, multiplied by `gain` so
small changes are visible (white = large change); the PSNR is of the unamplified images.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import ConfigError
from . import compose
from .common import FigureOutput, Session, TreatmentSpec, fmt_psnr, parse_seeds, parse_treatments, psnr, write_grid

KIND = "difference"
HELP = "treated images beside their difference maps from the untreated image, with PSNR (Fig 7)"


def difference_map(a: np.ndarray, b: np.ndarray, gain: float = 4.0) -> np.ndarray:
    """uint8 [N,H,W] map of gain * mean_c |a - b| for uint8 batches [N,H,W,C]."""
    d = np.abs(a.astype(np.float32) - b.astype(np.float32)).mean(axis=-1) * gain
    return np.clip(np.rint(d), 0, 255).astype(np.uint8)


def render(session: Session, seeds: Sequence[int], specs: Sequence[TreatmentSpec], *, gain: float = 4.0,
           cell: int | None = None, pad: int = 4):
    z = session.z(seeds)
    base = session.images(z)
    cell = compose.default_cell(base.shape[1], cell)
    treated = [session.images(z, s) for s in specs]
    scores = {s.label: psnr(base, t).tolist() for s, t in zip(specs, treated)}
    maps = [difference_map(base, t, gain) for t in treated]
    cells = []
    for i in range(len(seeds)):
        row = [compose.fit(compose.to_pil(base[i]), cell)]
        for s, t, m in zip(specs, treated, maps):
            row.append(compose.fit(compose.to_pil(t[i]), cell))
            diff = compose.fit(compose.to_pil(m[i]), cell)
            row.append(compose.annotate(diff, fmt_psnr(scores[s.label][i]), corner="br", color=(255, 60, 60)))
        cells.append(row)
    col_labels = ["untreated"]
    for s in specs:
        col_labels += [s.label, f"difference (x{gain:g})"]
    image, layout = compose.grid(cells, cell=cell, pad=pad, col_labels=col_labels,
                                 row_labels=[f"seed {s}" for s in seeds], title=session.title)
    return image, layout, scores


def add_arguments(p) -> None:
    p.add_argument("--gain", type=float, default=4.0, help="amplification of the difference maps (default 4)")


def validate(args) -> dict:
    if args.gain <= 0:
        raise ConfigError(f"--gain must be > 0, got {args.gain:g}")
    specs = parse_treatments(args.treatments or ["truncation:psi=0.7", "rescale:t=2,p=2"])
    if not specs:
        raise ConfigError("no treatments; pass e.g. --treatments truncation:psi=0.7 rescale")
    return {"seeds": parse_seeds(args.seeds), "specs": specs}


def run(session: Session, args, plan: dict, out_dir: Path, name: str) -> list[FigureOutput]:
    image, layout, scores = render(session, plan["seeds"], plan["specs"], gain=args.gain, cell=args.cell,
                                   pad=args.pad)
    meta = {"model": session.model, "seeds": plan["seeds"], "treatments": [s.label for s in plan["specs"]],
            "psnr_db": scores, "gain": args.gain}
    caption = f"{session.title}: difference maps (x{args.gain:g}) with PSNR vs untreated"
    return [write_grid(KIND, image, layout, out_dir, name, meta, caption)]

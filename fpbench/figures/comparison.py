"""Comparison grids (paper Figs 1, 5, 10-12): one row per seed, one column per treatment.

`auto_pick` chooses the seeds a treatment changes most (lowest PSNR between untreated and treated),
which is where artifacts usually are; `--curated-seeds` takes an explicit list instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import ConfigError
from . import compose
from .common import FigureOutput, Session, TreatmentSpec, fmt_psnr, psnr, write_grid


def auto_pick(session: Session, pool: Sequence[int], spec: TreatmentSpec, k: int) -> list[tuple[int, float]]:
    """The `k` seeds of `pool` whose image `spec` changes most, as (seed, PSNR dB), most changed first."""
    if k < 1:
        raise ConfigError(f"--auto-pick must be >= 1, got {k}")
    if k > len(pool):
        raise ConfigError(f"--auto-pick {k} needs a pool of at least {k} seeds, got {len(pool)}; widen --pool")
    scores: list[float] = []
    for i in range(0, len(pool), max(session.batch_size, 1) * 4):
        chunk = list(pool[i:i + session.batch_size * 4])
        z = session.z(chunk)
        scores.extend(psnr(session.images(z), session.images(z, spec)).tolist())
    order = np.argsort(np.asarray(scores), kind="stable")[:k]
    return [(int(pool[j]), float(scores[j])) for j in order]


def render(session: Session, seeds: Sequence[int], specs: Sequence[TreatmentSpec], *,
           cell: int | None = None, pad: int = 4, show_psnr: bool = False, title: str | None = None,
           transpose: bool = False):
    """(image, layout, per-treatment PSNR) of the grid: rows = seeds, columns = untreated + specs
    (`transpose`: rows = untreated + specs, columns = seeds, as in the paper's Figs 1 and 5)."""
    z = session.z(seeds)
    base = session.images(z)
    columns = [base] + [session.images(z, s) for s in specs]
    cell = compose.default_cell(base.shape[1], cell)
    scores = {s.label: psnr(base, col).tolist() for s, col in zip(specs, columns[1:])}
    cells = []
    for i in range(len(seeds)):
        row = []
        for j, col in enumerate(columns):
            panel = compose.fit(compose.to_pil(col[i]), cell)
            if show_psnr and j > 0:
                panel = compose.annotate(panel, fmt_psnr(scores[specs[j - 1].label][i]), corner="br")
            row.append(panel)
        cells.append(row)
    col_labels = ["untreated"] + [s.label for s in specs]
    row_labels = [f"seed {s}" for s in seeds]
    if transpose:
        cells = [list(col) for col in zip(*cells)]
        col_labels, row_labels = row_labels, col_labels
    image, layout = compose.grid(cells, cell=cell, pad=pad, col_labels=col_labels, row_labels=row_labels,
                                 title=(title if title is not None else session.title)
                                 + ("; corner: PSNR vs untreated" if show_psnr else ""))
    return image, layout, scores


def make(session: Session, seeds: Sequence[int], specs: Sequence[TreatmentSpec], out_dir: Path, name: str,
         *, cell: int | None = None, pad: int = 4, show_psnr: bool = False, kind: str = "comparison",
         picked: list[tuple[int, float]] | None = None, title: str | None = None,
         transpose: bool = False) -> FigureOutput:
    if not specs:
        raise ConfigError("no treatments to compare; pass e.g. --treatments rescale truncation:psi=0.7")
    image, layout, scores = render(session, seeds, specs, cell=cell, pad=pad, show_psnr=show_psnr, title=title,
                                   transpose=transpose)
    meta = {"model": session.model, "seeds": list(seeds), "treatments": [s.label for s in specs],
            "rows": "treatments" if transpose else "seeds",
            "psnr_db": scores, "auto_picked": picked}
    caption = f"{session.title}: seeds {', '.join(map(str, seeds))}; columns: untreated, " + \
        ", ".join(s.label for s in specs)
    return write_grid(kind, image, layout, out_dir, name, meta, caption)


# --- command line -------------------------------------------------------------------------------

KIND = "comparison"
HELP = "rows of seeds x columns untreated | treatments (Figs 1, 5)"


def add_arguments(p) -> None:
    p.add_argument("--curated-seeds", help="explicit seed list, e.g. 12,45,301 (overrides --seeds)")
    p.add_argument("--auto-pick", type=int, metavar="K",
                   help="pick the K seeds out of --pool that the first treatment (or --pick-by) changes most")
    p.add_argument("--pool", default="0-63", help="seed pool for --auto-pick (default 0-63)")
    p.add_argument("--pick-by", help="treatment spec that --auto-pick measures (default: the first treatment)")
    p.add_argument("--show-psnr", action="store_true", help="write PSNR vs untreated on each treated panel")
    p.add_argument("--transpose", action="store_true",
                   help="rows = treatments, columns = seeds (the paper's Figs 1 and 5 layout)")


def validate(args) -> dict:
    from .common import parse_seeds, parse_treatments

    specs = parse_treatments(args.treatments)
    if not specs:
        raise ConfigError("no treatments to compare; pass e.g. --treatments rescale truncation:psi=0.7")
    plan = {"specs": specs}
    if args.auto_pick is not None:
        if args.curated_seeds:
            raise ConfigError("--auto-pick and --curated-seeds exclude each other; pass one of them")
        plan["pool"] = parse_seeds(args.pool)
        plan["pick_by"] = TreatmentSpec.parse(args.pick_by) if args.pick_by else specs[0]
        if args.auto_pick < 1 or args.auto_pick > len(plan["pool"]):
            raise ConfigError(f"--auto-pick {args.auto_pick} must be between 1 and the pool size "
                              f"{len(plan['pool'])}; change --auto-pick or --pool")
    else:
        plan["seeds"] = parse_seeds(args.curated_seeds or args.seeds)
    return plan


def run(session: Session, args, plan: dict, out_dir: Path, name: str) -> list[FigureOutput]:
    picked = None
    seeds = plan.get("seeds")
    if seeds is None:
        picked = auto_pick(session, plan["pool"], plan["pick_by"], args.auto_pick)
        seeds = [s for s, _ in picked]
        print("auto-picked (seed, PSNR dB vs untreated): "
              + ", ".join(f"({s}, {fmt_psnr(v)})" for s, v in picked))
    return [make(session, seeds, plan["specs"], out_dir, name, cell=args.cell, pad=args.pad,
                 show_psnr=args.show_psnr, picked=picked, transpose=args.transpose)]

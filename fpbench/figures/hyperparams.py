"""Hyper-parameter grid (paper Fig. 8): truncation over a row of psi values, then feature rescaling
with one row per p and one column per t, all for the same seed (one figure per seed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..errors import ConfigError
from . import compose
from .common import FigureOutput, Session, TreatmentSpec, check_specs, parse_floats, parse_seeds, write_grid

DEFAULT_SEEDS = "0"
KIND = "hyperparams"
HELP = "one row of truncation psi values, then rows of feature rescaling (t, p) values, for a seed (Fig 8)"


def _spec(name: str, **params) -> TreatmentSpec:
    return TreatmentSpec(name, tuple(params.items()))


def render(session: Session, seed: int, psis: Sequence[float], ts: Sequence[float], ps: Sequence[float], *,
           cell: int | None = None, pad: int = 4):
    """Grid: column 0 the untreated image; row 0 psi values; row 1 + i feature rescaling with p = ps[i]."""
    z = session.z([seed])
    base = session.images(z)[0]
    cell = compose.default_cell(base.shape[0], cell)
    plain = compose.fit(compose.to_pil(base), cell)
    cols = max(len(psis), len(ts))

    def row(images_and_labels):
        panels = [plain] + [compose.annotate(compose.fit(compose.to_pil(img), cell), text, corner="bl")
                            for img, text in images_and_labels]
        return panels + [None] * (cols + 1 - len(panels))

    cells = [row([(session.images(z, _spec("truncation", psi=psi))[0], f"ψ={psi:g}") for psi in psis])]
    for p in ps:
        cells.append(row([(session.images(z, _spec("rescale", t=t, p=p))[0], f"t={t:g} p={p:g}")
                          for t in ts]))
    row_labels = ["truncation"] + [f"ours, p={p:g}" for p in ps]
    col_labels = ["untreated"] + [""] * cols  # each panel carries its own values
    return compose.grid(cells, cell=cell, pad=pad, col_labels=col_labels, row_labels=row_labels,
                        title=f"{session.title}, seed {seed}")


def add_arguments(p) -> None:
    p.add_argument("--psis", default="0.55,0.65,0.75,0.85,0.95", help="truncation psi values (top row)")
    p.add_argument("--ts", default="0,1,2,3,4", help="feature rescaling t values (columns)")
    p.add_argument("--ps", default="1,2,3", help="feature rescaling p values (one row each)")


def validate(args) -> dict:
    plan = {"seeds": parse_seeds(args.seeds), "psis": parse_floats(args.psis, "--psis"),
            "ts": parse_floats(args.ts, "--ts"), "ps": parse_floats(args.ps, "--ps")}
    if any(p <= 0 for p in plan["ps"]):
        raise ConfigError(f"--ps values must be > 0, got {args.ps}")
    if any(t < 0 for t in plan["ts"]):
        raise ConfigError(f"--ts values must be >= 0, got {args.ts}")
    check_specs([_spec("truncation", psi=psi) for psi in plan["psis"]])
    return plan


def run(session: Session, args, plan: dict, out_dir: Path, name: str) -> list[FigureOutput]:
    outputs = []
    for seed in plan["seeds"]:
        image, layout = render(session, seed, plan["psis"], plan["ts"], plan["ps"], cell=args.cell, pad=args.pad)
        meta = {"model": session.model, "seed": seed, "psis": plan["psis"], "ts": plan["ts"], "ps": plan["ps"]}
        stem = name if len(plan["seeds"]) == 1 else f"{name}_seed{seed}"
        caption = f"{session.title}, seed {seed}: truncation psi row, feature rescaling (t, p) rows"
        outputs.append(write_grid(KIND, image, layout, out_dir, stem, meta, caption))
    return outputs

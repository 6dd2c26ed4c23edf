"""Layer-wise variant vs ours (paper Figs 10-11, and pixel norm, Fig 12): rows of seeds, columns
untreated | layer-wise rescaling for each t' | channel-wise feature rescaling (| pixel norm).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError
from . import comparison
from .common import FigureOutput, Session, TreatmentSpec, check_specs, parse_floats, parse_seeds

KIND = "layerwise"
HELP = "untreated | layer-wise variant for each t' | ours (| pixel norm) per seed (Figs 10-12)"


def add_arguments(p) -> None:
    p.add_argument("--t-primes", default="0.3,0.5,0.7,0.9", help="layer-wise thresholds t' (default 0.3,0.5,0.7,0.9)")
    p.add_argument("--t", type=float, default=2.0, help="t of both variants (default 2)")
    p.add_argument("--p", type=float, default=2.0, help="p of both variants (default 2)")
    p.add_argument("--pixelnorm", action="store_true", help="add a pixel-norm column (Fig 12)")
    p.add_argument("--transpose", action="store_true", help="rows = variants, columns = seeds (Fig 11 layout)")


def validate(args) -> dict:
    if args.p <= 0 or args.t < 0:
        raise ConfigError(f"need --p > 0 and --t >= 0, got p={args.p:g}, t={args.t:g}")
    if args.treatments:
        raise ConfigError("layerwise builds its own columns; use --t-primes/--t/--p/--pixelnorm, not --treatments")
    specs = [TreatmentSpec("layerwise", (("t", args.t), ("p", args.p), ("t_prime", tp)), title=f"layer-wise t'={tp:g}")
             for tp in parse_floats(args.t_primes, "--t-primes")]
    specs.append(TreatmentSpec("rescale", (("t", args.t), ("p", args.p)), title="ours (channel-wise)"))
    if args.pixelnorm:
        specs.append(TreatmentSpec("pixelnorm", title="pixel norm"))
    check_specs(specs)
    return {"seeds": parse_seeds(args.seeds), "specs": specs}


def run(session: Session, args, plan: dict, out_dir: Path, name: str) -> list[FigureOutput]:
    return [comparison.make(session, plan["seeds"], plan["specs"], out_dir, name, cell=args.cell, pad=args.pad,
                            kind=KIND, transpose=args.transpose,
                            title=f"{session.title}; t={args.t:g}, p={args.p:g} for both variants")]

"""`python -m fpbench.figures <kind> [options]`: regenerate the paper's qualitative figures.

Every kind writes a PNG (plus PDF for plots, GIF/MP4 on request) under --out and mirrors it to
W&B (offline unless --wandb-mode online). User mistakes print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import FpbenchError
from . import FIGURES
from .common import Session, load_model, model_tag


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def add_common(p: argparse.ArgumentParser, seeds_default: str) -> None:
    g = p.add_argument_group("common options")
    g.add_argument("--model", default="tiny",
                   help="zoo name, checkpoint path (.pkl/.pt/.pth/.safetensors) or 'tiny' (random weights)")
    g.add_argument("--seeds", default=seeds_default, help=f"seeds, e.g. 0-7,12 (default {seeds_default})")
    g.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    g.add_argument("--out", type=Path, default=Path("results/figures"), help="output folder")
    g.add_argument("--name", help="output file stem (default: <kind>_<model>)")
    g.add_argument("--treatments", nargs="+", metavar="SPEC",
                   help="treatments as name[:k=v,...], e.g. rescale:t=2,p=2 truncation:psi=0.7 "
                        "(also layerwise:t_prime=0.5, pixelnorm, none)")
    g.add_argument("--cell", type=int,
                   help="panel size in pixels (default: native resolution, enlarged to >= 128 or shrunk to 512)")
    g.add_argument("--pad", type=int, default=4, help="pixels between panels (default 4)")
    g.add_argument("--batch-size", type=int, default=8)
    g.add_argument("--stats-n", type=int, default=3000, help="images for the feature statistics (default 3000)")
    g.add_argument("--class-idx", type=int, help="class for conditional models")
    g.add_argument("--wandb", action=argparse.BooleanOptionalAction, default=True,
                   help="mirror the figures to W&B (default on, offline)")
    g.add_argument("--wandb-mode", default="offline", choices=["offline", "online", "disabled"])
    g.add_argument("--wandb-project", default="fpbench")
    g.add_argument("--wandb-dir", help="folder for W&B run files (default: wandb's own)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fpbench.figures", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="kind", required=True, metavar="kind")
    for module in FIGURES.values():
        p = sub.add_parser(module.KIND, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        add_common(p, getattr(module, "DEFAULT_SEEDS", "0-3"))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    module = FIGURES[args.kind]
    try:
        # Everything a user can get wrong is checked before the generator loads.
        if args.batch_size < 1 or args.pad < 0 or (args.cell is not None and args.cell < 8) or args.stats_n < 1:
            from ..errors import ConfigError

            raise ConfigError("--batch-size and --stats-n must be >= 1, --pad >= 0 and --cell >= 8")
        plan = module.validate(args)
        device = args.device or _default_device()
        G = load_model(args.model, device)
        session = Session(G=G, device=device, model=model_tag(args.model) if args.model != "tiny" else "tiny",
                          batch_size=args.batch_size, stats_n=args.stats_n, class_idx=args.class_idx)
        name = args.name or f"{module.KIND}_{session.model}"
        outputs = module.run(session, args, plan, args.out, name)
    except FpbenchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for out in outputs:
        for path in [out.png, *out.extra]:
            print(path)
    if args.wandb and args.wandb_mode != "disabled":
        from .wandb_log import log_figures

        config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
        log_figures(outputs, config=config, project=args.wandb_project, mode=args.wandb_mode,
                    name=f"figures-{args.kind}-{outputs[0].png.stem}" if outputs else None,
                    directory=args.wandb_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`python -m fpbench.report` / `fpbench-report`: rebuild tables and figures from results/."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="fpbench-report", description=__doc__)
    ap.add_argument("--results", default="results", help="results folder (default: results)")
    ap.add_argument("--sweep", action="append", help="only runs of this sweep (repeatable)")
    ap.add_argument("--out", default=None, help="output folder (default: <results>/report)")
    ap.add_argument("--wandb", choices=("auto", "offline", "online", "off"), default="auto",
                    help="log the tables and figures as a W&B summary run in the sweep's group "
                         "(default auto: offline unless logged in; off: no W&B)")
    ap.add_argument("--project", default="fpbench")
    args = ap.parse_args(argv)
    results = Path(args.results)
    if not (results / "runs").is_dir():
        print(f"fpbench-report: error: no runs under {results / 'runs'}; run a sweep first "
              f"(python -m fpbench sweep=smoke) or pass --results DIR", file=sys.stderr)
        return 2
    from . import build_report

    report = build_report(results, sweeps=args.sweep, out_dir=args.out)
    print(report.markdown)
    if args.wandb != "off":
        from types import SimpleNamespace

        from ..tracking import log_report

        logger = SimpleNamespace(project=args.project, entity=None, mode=args.wandb)
        group = "_".join(args.sweep) if args.sweep else "report"  # a sweep's own group when given
        log_report(logger, results, group, report.tables, report.pngs, uncalibrated=report.uncalibrated)
    print("wrote:")
    for path in report.files:
        print(f"  {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Job lists of a grid sweeper over a union of grids (`hydra/sweeper=union`).

Hydra's basic sweeper runs one Cartesian product. Fig. 6 needs truncation over psi *next to*
rescaling over (t, p); those keys exist only in their own treatment's schema, so one product
cannot hold both. The sweeper (`hydra_plugins.fpbench_sweeper.UnionSweeper`) runs `params x grid`
for each grid in `grids` and concatenates the
job lists. Command-line sweeps replace a key wherever it appears, as with the basic sweeper.
"""

from __future__ import annotations

from typing import Any, List, Mapping, Optional, Sequence

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser


def expand_jobs(params: Optional[Mapping[str, Any]], grids: Optional[Sequence[Mapping[str, Any]]],
                arguments: Sequence[str], parser: OverridesParser | None = None) -> List[List[str]]:
    """Every job's override list, in launch order (also used to validate a sweep up front)."""
    parser = parser or OverridesParser.create()
    base = [f"{k}={v}" for k, v in (params or {}).items()]
    jobs: List[List[str]] = []
    for grid in (list(grids) if grids else [{}]):
        conf = base + [f"{k}={v}" for k, v in grid.items()] + list(arguments)
        overrides = parser.parse_overrides(conf)
        jobs.extend(BasicSweeper.split_arguments(overrides, None)[0])
    return jobs

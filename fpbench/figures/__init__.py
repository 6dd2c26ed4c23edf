"""The paper's qualitative figures for any generator, as PNG/PDF files and W&B images.

Command line: `python -m fpbench.figures <kind> --model tiny --seeds 0-3`; kinds are the keys of
`FIGURES`. Each module renders (pure composition lives in `compose`) and writes atomically.
"""

from . import comparison, compose, difference, hyperparams, histograms, interpolation, layerwise, proliferation
from .common import FigureOutput, Session, TreatmentSpec, parse_seeds, parse_treatments

FIGURES = {m.KIND: m for m in (comparison, difference, hyperparams, proliferation, histograms, interpolation,
                               layerwise)}

__all__ = ["FIGURES", "FigureOutput", "Session", "TreatmentSpec", "compose", "parse_seeds", "parse_treatments"]

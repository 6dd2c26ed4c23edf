"""Mirror written figures to Weights & Biases (offline unless asked otherwise).

The files on disk are the result; W&B is a copy. Any W&B problem (not installed, no network, bad
login) becomes a warning, and `wandb.finish()` runs whenever a run was started.
"""

from __future__ import annotations

import os
import warnings
from typing import Sequence

from .common import FigureOutput


def log_figures(outputs: Sequence[FigureOutput], *, config: dict, project: str = "fpbench",
                mode: str = "offline", name: str | None = None, directory: str | None = None) -> bool:
    """Log every PNG as wandb.Image (GIF/MP4 as wandb.Video); True when all of it was logged."""
    try:
        import wandb
    except ImportError:
        warnings.warn("wandb is not installed; figures were written to disk only", stacklevel=2)
        return False
    ok = False
    try:
        if directory:
            os.makedirs(directory, exist_ok=True)
        run = wandb.init(project=project, mode=mode, job_type="figures", name=name, config=config,
                         dir=directory)
        payload = {}
        for out in outputs:
            key = f"figures/{out.kind}/{out.png.stem}"
            payload[key] = wandb.Image(str(out.png), caption=out.caption or None)
            for extra in out.extra:
                if extra.suffix in (".gif", ".mp4"):
                    payload[f"{key}/{extra.suffix[1:]}"] = wandb.Video(str(extra), format=extra.suffix[1:])
        run.log(payload)
        ok = True
    except Exception as err:  # noqa: BLE001 - W&B must never lose a figure already on disk
        warnings.warn(f"W&B logging failed ({type(err).__name__}: {_first_line(err)}); "
                      "figures are on disk", stacklevel=2)
    finally:
        try:
            wandb.finish()
        except Exception as err:  # noqa: BLE001
            warnings.warn(f"wandb.finish() failed ({_first_line(err)})", stacklevel=2)
            ok = False
    return ok


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__

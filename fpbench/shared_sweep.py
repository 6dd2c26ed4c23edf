"""Several settings of one model in one pass: each untreated image is generated once for all of them.

A sweep over treatments (or their hyper-parameters) of one model scores every setting against the
same untreated images of the same seeds. Run as independent jobs, each job regenerates those
images (and loads the model, estimates or loads the statistics, builds the metric networks). Here
the settings become *arms* of one pass of the runner's loop (`fpbench.runner._evaluate`): per
batch, the original images are generated once, then each arm generates its treated images and
updates its own metrics. Reference features of distribution metrics are shared through the
runner's on-disk cache. Numbers are identical to independent runs (same seeds, same batches).

    values = run_settings([cfg_t1, cfg_t2, cfg_t3], job_dir)     # one dict of metric values per cfg
"""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import OmegaConf

from .errors import ConfigError

# keys that must agree between settings sharing one pass
SHARED_KEYS = ("model", "dataset", "metrics", "n", "seed", "noise_mode", "device", "dtype", "batch_size",
               "execution", "stats")


def check_shareable(cfgs) -> None:
    if not cfgs:
        raise ConfigError("run_settings needs at least one setting")
    base = OmegaConf.to_container(cfgs[0], resolve=True)
    for i, cfg in enumerate(cfgs[1:], start=1):
        other = OmegaConf.to_container(cfg, resolve=True)
        for key in SHARED_KEYS:
            if base.get(key) != other.get(key):
                raise ConfigError(f"setting {i} differs from setting 0 in {key!r}; only the treatment may differ "
                                  f"between settings that share one pass")


def run_settings(cfgs, job_dir, *, progress: bool | None = None) -> tuple[list[dict], dict]:
    """Evaluate every setting in `cfgs` (differing only in `treatment`) in one pass.

    Returns ``(values, timings)``: one ``{metric: value}`` per setting, and the stage seconds.
    """
    from .config import needs_reference, validate
    from .generators import load_generator, weights_fingerprint
    from .runner import (Arm, StageTimer, _evaluate, build_treatment, create_metrics, default_batch_size,
                         prepare_reference, resolve_device)

    check_shareable(cfgs)
    for cfg in cfgs:
        validate(cfg)
    base = cfgs[0]
    progress = bool(base.progress) if progress is None else progress
    device = resolve_device(base.device)
    dtype = getattr(torch, base.dtype)
    timer = StageTimer(device, sync=bool(base.profile))
    with timer("load_generator"):
        G = load_generator(base.model.source, device=device)
        if dtype != torch.float32:
            G = G.to(dtype)
    fingerprint = weights_fingerprint(G)
    batch = 1 if base.execution == "serial" else (base.batch_size or default_batch_size(device, G.img_resolution))
    arms = []
    for cfg in cfgs:
        with timer("treatment_setup"):
            treatment = build_treatment(cfg, G, device, batch, progress)
        with timer("metrics_setup"):
            metrics = create_metrics(cfg, device)
        if metrics and needs_reference(cfg):
            with timer("reference"):
                prepare_reference(cfg, G, fingerprint, metrics, device, batch, progress)
        arms.append(Arm(name=cfg.treatment.name, treatment=treatment, metrics=metrics))
    run_cfg = OmegaConf.merge(base, {"checkpoint_every": 2 ** 31 - 1, "samples": 0})
    job_dir = Path(job_dir)
    job_dir.mkdir(parents=True, exist_ok=True)
    _evaluate(run_cfg, G, arms, device, dtype, batch, timer, job_dir, "shared", job_dir.name, 0, None)
    values = []
    with timer("compute"):
        for arm in arms:
            out = {}
            for name, m in arm.metrics.items():
                for key, value in m.compute().items():
                    out[key if key not in out else f"{name}/{key}"] = float(value)
            values.append(out)
    return values, dict(timer.seconds)


__all__ = ["SHARED_KEYS", "check_shareable", "run_settings"]

"""Several settings in one pass give exactly the numbers of independent jobs."""

from __future__ import annotations

import pytest
import torch
from hydra import compose, initialize_config_dir

from fpbench.errors import ConfigError
from fpbench.shared_sweep import run_settings

SETTINGS = [["treatment=rescale", "treatment.t=1"], ["treatment=rescale", "treatment.t=2"],
            ["treatment=truncation", "treatment.psi=0.7"]]


def _cfg(tmp_path, extra):
    from fpbench.__main__ import CONF_DIR, _strip_hydra

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        cfg = compose("config", overrides=[
            "model=tiny", "metrics=fast", "logger=none", "n=16", "stats.n=16", "device=cpu", "batch_size=8",
            "progress=false", "samples=0", "resume=false", f"results_dir={tmp_path}", *extra])
    return _strip_hydra(cfg)


def test_shared_pass_equals_independent_jobs(tmp_path):
    from fpbench.runner import run_job

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfgs = [_cfg(tmp_path, s) for s in SETTINGS]
        shared, timings = run_settings(cfgs, tmp_path / "shared")
        alone = [run_job(cfg, tmp_path / f"job{i}")["values"] for i, cfg in enumerate(cfgs)]
    finally:
        torch.set_num_threads(threads)
    assert shared == alone
    assert shared[0] != shared[1] != shared[2]
    assert {"generate_original", "generate_treated", "metrics_update"} <= set(timings)


def test_settings_must_share_seeds_and_model(tmp_path):
    cfgs = [_cfg(tmp_path, SETTINGS[0]), _cfg(tmp_path, SETTINGS[1] + ["n=8"])]
    with pytest.raises(ConfigError, match="setting 1 differs from setting 0 in 'n'"):
        run_settings(cfgs, tmp_path / "x")

"""conf/launcher/: basic (default), submitit_local, submitit_slurm. A 2-job smoke sweep through
submitit_local (W&B on, offline) writes both results; the SLURM options compose; a missing plugin is
one clear line."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fpbench.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
submitit_plugin = pytest.importorskip("hydra_plugins.hydra_submitit_launcher")


def compose(overrides):
    from hydra import compose as hydra_compose, initialize_config_dir

    import fpbench.config  # noqa: F401 - registers the schemas
    from fpbench.__main__ import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        return hydra_compose("config", overrides=overrides, return_hydra_config=True)


def test_basic_is_the_default_launcher():
    cfg = compose([])
    assert cfg.hydra.runtime.choices["launcher"] == "basic"
    assert cfg.hydra.launcher._target_.endswith("BasicLauncher")


def test_slurm_launcher_options_compose_and_stay_out_of_job_names():
    cfg = compose(["launcher=submitit_slurm", "hydra.launcher.partition=gpu", "hydra.launcher.gpus_per_node=4",
                   "hydra.launcher.tasks_per_node=4", "hydra.launcher.timeout_min=90",
                   "hydra.launcher.array_parallelism=8", "treatment.t=3"])
    hl = cfg.hydra.launcher
    assert hl._target_.endswith("SlurmLauncher")
    assert (hl.partition, hl.gpus_per_node, hl.tasks_per_node, hl.timeout_min, hl.array_parallelism) == \
        ("gpu", 4, 4, 90, 8)
    assert "launcher" in cfg.hydra.job.config.override_dirname.exclude_keys
    assert "launcher" not in cfg   # only hydra.* keys: the config hash of a job does not change
    from fpbench.__main__ import _strip_hydra
    from fpbench.config import config_hash

    plain = compose(["treatment.t=3"])
    assert config_hash(_strip_hydra(cfg)) == config_hash(_strip_hydra(plain))


def test_missing_submitit_plugin_is_one_clear_line(monkeypatch, capsys):
    from fpbench.__main__ import main

    monkeypatch.setitem(sys.modules, "hydra_plugins.hydra_submitit_launcher", None)  # import fails
    from fpbench.distributed import check_launcher

    with pytest.raises(ConfigError, match=r"pip install 'fpbench\[cluster\]'"):
        check_launcher(["sweep=table1", "launcher=submitit_slurm"])
    check_launcher(["launcher=basic"])
    assert main(["launcher=submitit_local", "n=2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "hydra-submitit-launcher" in err[0]


@pytest.mark.slow  # two fresh job processes with W&B: ~30-90 s on 2 shared cores
def test_two_job_sweep_through_submitit_local_writes_both_results(tmp_path):
    results = tmp_path / "results"
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    cmd = [sys.executable, "-m", "fpbench", "-m", "launcher=submitit_local", "model=tiny", "treatment=truncation",
           "treatment.psi=0.5,0.7", "n=4", "batch_size=4", "samples=2", "metrics.names=[psnr,ssim]", "logger=wandb",
           "progress=false", "device=cpu", f"results_dir={results}"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    recs = [json.loads(p.read_text()) for p in sorted((results / "runs" / "single").glob("*/metrics.json"))]
    assert sorted(r["treatment"]["params"]["psi"] for r in recs) == [0.5, 0.7]
    assert all(r["status"] == "complete" and set(r["values"]) == {"psnr", "ssim"} for r in recs)
    assert recs[0]["values"] != recs[1]["values"]
    # each job ran in its own process and mirrored its numbers into its own (offline) W&B run
    from fpbench.tracking import offline_run_summary

    assert len({r["wandb"]["run_id"] for r in recs}) == 2
    for r in recs:
        summary = offline_run_summary(r["wandb"]["dir"])
        assert summary["psnr"] == pytest.approx(r["values"]["psnr"], rel=1e-12)
    assert len(list((results / "runs" / "single" / ".submitit").glob("*/*_result.pkl"))) == 2
    # the sweep's end rebuilt the report over the results of both jobs (`python -m fpbench.report`)
    assert any((results / "report").rglob("*.md"))

"""W&B mirroring: offline by default, one run per job with the same numbers as metrics.json,
always finished (also on failure), and a W&B error is a warning, never a lost result."""

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from fpbench.__main__ import CONF_DIR
from fpbench.runner import run_job
from fpbench.tracking import offline_run_meta, offline_run_records, offline_run_summary, wandb_mode


def cfg_for(results: Path, *extra):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        return compose("config", overrides=["model=tiny", "treatment=truncation", "n=4", "batch_size=4",
                                            "metrics=fast", "progress=false", "sweep=single",
                                            f"results_dir={results}", *extra])


def test_mode_auto(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))          # no ~/.netrc: not logged in
    monkeypatch.setenv("NETRC", str(tmp_path / "none"))
    assert wandb_mode("auto") == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert wandb_mode("auto") == "online"
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert wandb_mode("auto") == "offline"
    assert wandb_mode("online") == "online"


def test_job_run_mirrors_metrics_json(tmp_path):
    rec = run_job(cfg_for(tmp_path / "r"), tmp_path / "r" / "runs" / "single" / "job")
    run_dir = Path(rec["wandb"]["dir"])
    assert run_dir.parent == tmp_path / "r" / "wandb" and rec["wandb"]["mode"] == "offline"
    summary = offline_run_summary(run_dir)
    assert {k: summary[k] for k in rec["values"]} == rec["values"]
    meta = offline_run_meta(run_dir)
    assert (meta["group"], meta["job_type"], meta["name"]) == ("single", "truncation", "single/job")
    assert meta["config"]["treatment"] == {"name": "truncation", "psi": 0.7, "cutoff": None,
                                           "allow_extrapolation": False}
    exits = [r for k, r in offline_run_records(run_dir) if k == "exit"]
    assert len(exits) == 1 and exits[0].exit_code == 0
    files = {p.name for p in (run_dir / "files").rglob("*")}
    assert any(n.endswith(".png") for n in files) and any(n.endswith(".table.json") for n in files)


def test_failed_job_still_finishes_the_run(tmp_path, monkeypatch):
    import fpbench.runner as R

    def boom(*a, **k):
        raise RuntimeError("generator exploded")

    monkeypatch.setattr(R, "_run", boom)
    with pytest.raises(RuntimeError, match="exploded"):
        run_job(cfg_for(tmp_path / "r"), tmp_path / "r" / "runs" / "single" / "job")
    (run_dir,) = (tmp_path / "r" / "wandb").glob("offline-run-*")
    exits = [r for k, r in offline_run_records(run_dir) if k == "exit"]
    assert len(exits) == 1 and exits[0].exit_code == 1
    assert not (tmp_path / "r" / "runs" / "single" / "job" / "metrics.json").exists()


@pytest.mark.parametrize("broken", ["init", "Table"])
def test_wandb_error_is_a_warning_not_a_lost_result(tmp_path, monkeypatch, broken):
    import wandb

    def fail(*a, **k):
        raise ConnectionError("wandb.ai unreachable")

    monkeypatch.setattr(wandb, broken, fail)
    with pytest.warns(UserWarning, match=r"W&B (init|logging) failed \(ConnectionError: wandb.ai unreachable\)"):
        rec = run_job(cfg_for(tmp_path / "r"), tmp_path / "r" / "runs" / "single" / "job")
    on_disk = json.loads((tmp_path / "r" / "runs" / "single" / "job" / "metrics.json").read_text())
    assert on_disk["values"] == rec["values"] and set(rec["values"]) == {"psnr", "ssim"}


def test_logger_none_writes_no_wandb(tmp_path):
    rec = run_job(cfg_for(tmp_path / "r", "logger=none"), tmp_path / "r" / "runs" / "single" / "job")
    assert rec["wandb"] is None and not (tmp_path / "r" / "wandb").exists()

"""W&B faults never cost a result: offline, unreachable, missing, or failing mid-run, the job
finishes and `metrics.json` holds exactly the numbers of a run without W&B."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from unittest import mock

import pytest

from hardening_cases import leftovers

OVERRIDES = ["model=tiny", "dataset=generated", "treatment=truncation", "n=8", "batch_size=4", "samples=4",
             "metrics.names=[psnr,ssim]", "progress=false", "sweep=single"]


def compose_cfg(results: Path, *extra: str):
    from hydra import compose, initialize_config_dir

    from fpbench.__main__ import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        return compose("config", overrides=OVERRIDES + [f"results_dir={results}", *extra])


def run(results: Path, *extra: str) -> tuple[dict, Path, list[str]]:
    from fpbench.runner import run_job

    job = results / "runs" / "single" / "job"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        record = run_job(compose_cfg(results, *extra), job)
    return record, job, [str(w.message) for w in caught if "W&B" in str(w.message)]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    record, _, _ = run(tmp_path_factory.mktemp("ref") / "results", "logger=none")
    return record


def assert_complete(record: dict, job: Path, reference: dict) -> None:
    on_disk = json.loads((job / "metrics.json").read_text())
    assert on_disk["status"] == "complete" and on_disk["values"] == reference["values"]   # bit-identical
    assert record["values"] == reference["values"]
    assert on_disk["config_hash"] == reference["config_hash"]
    assert all((job / s).is_file() for s in on_disk["samples"]) and (job / "config.yaml").is_file()
    assert not (job / "checkpoint.pt").exists()
    assert leftovers(job) == []


def test_offline(tmp_path, reference, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    record, job, warned = run(tmp_path / "results", "logger=wandb", "logger.mode=offline")
    assert_complete(record, job, reference)
    assert record["wandb"]["mode"] == "offline" and Path(record["wandb"]["dir"]).is_dir()
    assert warned == []


@pytest.mark.slow
def test_unreachable_server(tmp_path, reference, monkeypatch):
    """Online mode against a server that refuses connections: init times out, the job goes on."""
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_API_KEY", "0" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("WANDB_INIT_TIMEOUT", "5")
    import wandb
    wandb.teardown()   # settings are read when W&B's process-wide state is set up: start it afresh
    record, job, warned = run(tmp_path / "results", "logger=wandb", "logger.mode=online")
    assert_complete(record, job, reference)
    assert record["wandb"] is None
    assert any("W&B init failed" in w and "results are on disk" in w for w in warned), warned


def test_not_installed(tmp_path, reference, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)   # `import wandb` raises ImportError
    record, job, warned = run(tmp_path / "results", "logger=wandb")
    assert_complete(record, job, reference)
    assert any(w.startswith("W&B init failed (ModuleNotFoundError") for w in warned), warned


def test_errors_mid_run(tmp_path, reference, monkeypatch):
    """A real offline run whose logging and finishing raise (an API error mid-run)."""
    import wandb
    from wandb.sdk.wandb_run import Run

    monkeypatch.setenv("WANDB_MODE", "offline")

    def broken(*a, **k):
        raise wandb.errors.CommError("HTTP 500: internal server error")

    with mock.patch.object(Run, "log", broken), mock.patch.object(Run, "finish", broken):
        record, job, warned = run(tmp_path / "results", "logger=wandb", "logger.mode=offline")
    wandb.finish()   # what the fallback in `finish` would do; frees the run for later tests
    assert_complete(record, job, reference)
    assert any("W&B logging failed (CommError" in w for w in warned), warned
    assert any("W&B finish failed (CommError" in w for w in warned), warned


class _Exploding:
    """Stands in for a W&B run whose every attribute raises (a backend that died after init)."""

    def __getattr__(self, name):
        raise ConnectionResetError(104, "Connection reset by peer")


def test_backend_dies_after_init(tmp_path, reference, monkeypatch):
    fake_wandb = mock.MagicMock()
    fake_wandb.finish.side_effect = ConnectionResetError(104, "Connection reset by peer")
    monkeypatch.setattr("fpbench.tracking._init", lambda *a, **k: (_Exploding(), fake_wandb))
    record, job, warned = run(tmp_path / "results", "logger=wandb")
    assert_complete(record, job, reference)
    assert record["wandb"] is None
    assert any("W&B logging failed" in w for w in warned) and any("W&B finish failed" in w for w in warned)

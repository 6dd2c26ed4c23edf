import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _fixtures_dir() -> Path:
    env = os.environ.get("FPBENCH_FIXTURES")
    return Path(env) if env else REPO.parent / "shared" / "fixtures"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    d = _fixtures_dir()
    if not (d / "sg2_a.pkl").exists():
        pytest.skip(f"NVIDIA parity fixtures not found at {d} (set FPBENCH_FIXTURES)")
    return d


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Keep every test's downloads and caches out of the user's home, and offline."""
    monkeypatch.setenv("FPBENCH_CACHE", str(tmp_path_factory.getbasetemp() / "fpbench-cache"))
    monkeypatch.setenv("FPBENCH_OFFLINE", "1")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")

"""`python -m fpbench` with no arguments: the README's main job, complete, offline, on the CPU."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # about a minute of CPU: every metric network is built and run
def test_main_job(tmp_path):
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "WANDB_MODE": "offline"}
    tic = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "fpbench"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    wall = time.perf_counter() - tic
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    job = tmp_path / "results" / "runs" / "main" / "default"
    rec = json.loads((job / "metrics.json").read_text())
    assert set(rec["values"]) == {"psnr", "ssim", "lpips", "id", "fid", "precision", "recall"}
    assert rec["uncalibrated"] == {"psnr": False, "ssim": False, "lpips": True, "id": True, "fid": True, "pr": True}
    assert rec["dataset"]["generated"] and rec["model"]["name"] == "tiny" and rec["device"]["type"] == "cpu"
    out = proc.stdout
    for key in rec["values"]:
        assert f"  {key} " in out
    assert "uncalibrated (random-weight network)" in out and "not comparable to the paper" in out
    assert str(job / "metrics.json") in out and "samples_00.png" in out and "wandb sync" in out
    print(f"main job wall time: {wall:.1f} s")

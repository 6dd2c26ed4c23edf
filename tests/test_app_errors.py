"""A user error found inside a job (after Hydra made the job folder) is still one line, exit 2,
and leaves no partial result behind."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_error_inside_job_leaves_nothing(tmp_path):
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    results = tmp_path / "results"
    proc = subprocess.run([sys.executable, "-m", "fpbench", "sweep=main", "treatment=truncation", "n=4",
                           "metrics=fast", "+metrics.options.psnr.bogus=1", "logger=none", "progress=false",
                           f"results_dir={results}"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    err = [line for line in proc.stderr.splitlines() if line.strip()]
    assert err[-1] == "fpbench: error: metric 'psnr' has no option 'bogus'; see its class docstring"
    assert "Traceback" not in proc.stderr
    assert not (results / "runs").exists()

"""A job killed mid-way (SIGKILL) resumes from its accumulator checkpoint and ends with exactly the
numbers of an uninterrupted run; a finished job is skipped on rerun."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OVERRIDES = ["model=tiny", "dataset=generated", "treatment=rescale", "n=24", "batch_size=4", "checkpoint_every=2",
             "stats.n=8", "metrics.names=[psnr,ssim,pr]", "metrics.pretrained=false",
             "+metrics.options.pr={extractor:inception-v3-compat,layer:'64'}", "logger=none", "progress=false"]


def compose_cfg(results: Path):
    from hydra import compose, initialize_config_dir

    from fpbench.__main__ import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        return compose("config", overrides=OVERRIDES + [f"results_dir={results}"])


def test_killed_job_resumes_to_identical_numbers(tmp_path, capsys):
    from fpbench.runner import run_job

    # reference: an uninterrupted run, in process (also fills the stats / reference-feature caches)
    expected = run_job(compose_cfg(tmp_path / "clean"), tmp_path / "clean" / "job")
    assert expected["resumed_at"] is None

    # the same job from the command line, slowed down per batch, SIGKILLed after its first checkpoint
    killed = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "FPBENCH_DEBUG_BATCH_SLEEP": "0.5"}
    proc = subprocess.Popen([sys.executable, "-m", "fpbench", *OVERRIDES, f"results_dir={killed}"], cwd=tmp_path,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    ckpt = None
    while time.time() < deadline and proc.poll() is None:
        found = list((killed / "runs").glob("*/*/checkpoint.pt")) if (killed / "runs").exists() else []
        if found:
            ckpt = found[0]
            break
        time.sleep(0.05)
    assert ckpt is not None, "no checkpoint appeared before the job ended"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    d = ckpt.parent
    assert d.parent.name == "single" and not (d / "metrics.json").exists()   # no partial result

    capsys.readouterr()
    got = run_job(compose_cfg(killed), d)
    assert "resuming at image" in capsys.readouterr().out
    assert 0 < got["resumed_at"] < 24
    assert got["values"] == expected["values"]       # bit-identical, not just close
    assert got["config_hash"] == expected["config_hash"]
    assert json.loads((d / "metrics.json").read_text())["values"] == expected["values"]
    assert not (d / "checkpoint.pt").exists()

    # finished: a rerun skips it and leaves the result untouched
    mtime = (d / "metrics.json").stat().st_mtime_ns
    run_job(compose_cfg(killed), d)
    assert "done already" in capsys.readouterr().out
    assert (d / "metrics.json").stat().st_mtime_ns == mtime

    # the skip is keyed by the config hash: a metrics.json of another config is recomputed
    rec = json.loads((d / "metrics.json").read_text())
    rec["config_hash"] = "0" * 16
    (d / "metrics.json").write_text(json.dumps(rec))
    again = run_job(compose_cfg(killed), d)
    assert "done already" not in capsys.readouterr().out
    assert again["config_hash"] == expected["config_hash"] and again["values"] == expected["values"]

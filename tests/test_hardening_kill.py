"""SIGKILL a sweep at seeded random moments, rerun it, and compare with an uninterrupted run.

A round starts a sweep in a fresh results dir and cache, kills it after a random delay, reruns
(resume), kills again, ... until a run completes; then every job's numbers must equal the
uninterrupted run's exactly, the sample images must be byte-identical, and no file may be
temporary, truncated, duplicated or left over. Rounds repeat until the wanted number of kills
has landed while the sweep was still working.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from hardening_cases import REPO, leftovers

BASE = ["model=tiny", "dataset=generated", "progress=false", "logger=none", "checkpoint_every=1", "samples=4",
        "stats.n=8", "metrics.pretrained=false"]
QUICK = ["-m", "treatment=truncation,rescale", "n=12", "batch_size=2", "metrics.names=[psnr,ssim]"]
FULL = ["-m", "treatment=none,truncation,rescale", "n=16", "batch_size=2", "metrics.names=[psnr,ssim,fid,pr]",
        "+metrics.options.fid={layer:'64'}", "+metrics.options.pr={extractor:inception-v3-compat,layer:'64'}"]
SWEEP = "kill"


def _run(args, results: Path, cache: Path, cwd: Path):
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "FPBENCH_CACHE": str(cache), "FPBENCH_DEBUG_BATCH_SLEEP": "0.05"}
    flags = [a for a in args if a.startswith("-")]
    cmd = [sys.executable, "-m", "fpbench", *flags, *BASE, *[a for a in args if not a.startswith("-")],
           f"sweep.name={SWEEP}", f"results_dir={results}"]
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def snapshot(results: Path) -> dict:
    """What a finished sweep left: per job its numbers, sample bytes and file names."""
    runs = results / "runs" / SWEEP
    jobs = {}
    for job in sorted(p for p in runs.iterdir() if p.is_dir()):
        files = sorted(str(p.relative_to(job)) for p in job.rglob("*") if p.is_file()
                       and ".hydra" not in p.parts and p.name != "fpbench.log")
        rec = json.loads((job / "metrics.json").read_text()) if (job / "metrics.json").exists() else {}
        jobs[job.name] = {"values": rec.get("values"), "status": rec.get("status"), "files": files,
                          "config_hash": rec.get("config_hash"),
                          "samples": {s: hashlib.sha256((job / s).read_bytes()).hexdigest()
                                      for s in rec.get("samples", [])}}
    return jobs


@dataclass
class Campaign:
    kills: int = 0                  # SIGKILLs that landed while the sweep was working
    late: int = 0                   # runs that finished before their kill moment
    rounds: int = 0
    resumed_jobs: int = 0
    problems: list = field(default_factory=list)

    def line(self) -> str:
        return (f"{self.kills} kills at random points over {self.rounds} rounds, all resumed with identical "
                f"results" if not self.problems else f"{self.kills} kills, problems: {self.problems[:3]}")


def kill_campaign(tmp: Path, args: list[str], kills: int, seed: int, max_rounds: int = 12) -> tuple[Campaign, float]:
    # the uninterrupted reference, timed: kill moments are drawn from its duration
    ref_results = tmp / "reference"
    tic = time.monotonic()
    proc = _run(args, ref_results, tmp / "cache-ref", tmp)
    _, err = proc.communicate(timeout=900)
    duration = time.monotonic() - tic
    assert proc.returncode == 0, err[-3000:]
    expected = snapshot(ref_results)
    assert expected and all(j["status"] == "complete" for j in expected.values())

    rng = random.Random(seed)
    camp = Campaign()
    while camp.kills < kills and camp.rounds < max_rounds:
        camp.rounds += 1
        results, cache = tmp / f"round{camp.rounds}", tmp / f"cache{camp.rounds}"
        for attempt in range(60):
            proc = _run(args, results, cache, tmp)
            delay = rng.uniform(0.3, duration)
            try:
                _, err = proc.communicate(timeout=delay)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.communicate(timeout=60)
                camp.kills += 1
                continue
            if proc.returncode != 0:
                camp.problems.append(f"round {camp.rounds}: rerun failed: {err.strip().splitlines()[-1:]}")
                break
            camp.late += 1
            break
        got = snapshot(results)
        if got != expected:
            diff = {job: {key: (got.get(job, {}).get(key), want.get(key)) for key in want
                          if got.get(job, {}).get(key) != want.get(key)}
                    for job, want in expected.items() if got.get(job) != want}
            diff.update({job: "not in the uninterrupted run" for job in set(got) - set(expected)})
            camp.problems.append(f"round {camp.rounds}: differs from the uninterrupted run: {str(diff)[:600]}")
        bad = leftovers(results) + leftovers(cache)
        if bad:
            camp.problems.append(f"round {camp.rounds}: left behind {bad[:3]}")
        if camp.problems:
            break
    return camp, duration


def _check(camp: Campaign, kills: int) -> None:
    print(camp.line())
    assert not camp.problems, camp.line()
    assert camp.kills >= kills, camp.line()


@pytest.mark.slow
def test_kill_and_resume_quick(tmp_path):
    camp, _ = kill_campaign(tmp_path, QUICK, kills=2, seed=1)
    _check(camp, 2)


@pytest.mark.slow
def test_kill_and_resume_sweep(tmp_path):
    camp, _ = kill_campaign(tmp_path, FULL, kills=12, seed=2026)
    _check(camp, 12)

"""Determinism on the CPU: the same config twice gives bit-identical images, statistics, metrics
and sample files -- in one process and across processes. Also measured (not asserted equal): how
far images move with the number of CPU threads, which is why results record `torch_threads`."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fpbench.generators import seeds_to_z, tiny, weights_fingerprint
from fpbench.stats import estimate_feature_stats
from fpbench.treatments import FeatureRescaling, LayerwiseRescaling, PixelNorm, Truncation
from hardening_cases import REPO

SEEDS = list(range(6))
OVERRIDES = ["model=tiny", "dataset=generated", "treatment=rescale", "n=8", "batch_size=4", "samples=4",
             "stats.n=8", "metrics.pretrained=false", "logger=none", "progress=false", "sweep=single"]
QUICK_METRICS = ["metrics.names=[psnr,ssim]"]
ALL_METRICS = ["metrics.names=[psnr,ssim,lpips,fid,pr]", "+metrics.options.fid={layer:'64'}",
               "+metrics.options.pr={extractor:inception-v3-compat,layer:'64'}"]


def _images(G, stats):
    z = seeds_to_z(SEEDS, G.z_dim)
    out = {"original": G(z, None, noise_mode="const")}
    for name, tr in {"rescale": FeatureRescaling(stats, t=1.0, p=2.0),
                     "layerwise": LayerwiseRescaling(stats, t=1.0, p=2.0, t_prime=0.2),
                     "truncation": Truncation(psi=0.7), "pixelnorm": PixelNorm()}.items():
        with tr.applied(G):
            out[name] = G(z, None, noise_mode="const")
    return out


@torch.no_grad()
def test_images_and_statistics_bit_identical(tmp_path):
    runs = []
    for i in range(2):
        G = tiny(seed=0)
        stats = estimate_feature_stats(G, n=12, batch_size=4, progress=False, use_cache=False)
        runs.append((weights_fingerprint(G), stats, _images(G, stats)))
    (fp_a, st_a, im_a), (fp_b, st_b, im_b) = runs
    assert fp_a == fp_b
    for layer in st_a.layers:
        assert torch.equal(st_a.mean[layer], st_b.mean[layer]) and torch.equal(st_a.std[layer], st_b.std[layer])
    for key in im_a:
        assert torch.equal(im_a[key], im_b[key]), key
    assert not torch.equal(im_a["original"], im_a["rescale"])   # the treatments did act


@torch.no_grad()
def test_thread_count_effect_is_measured_and_tiny():
    """Different CPU thread counts may change the last bits (oneDNN splits reductions differently);
    the size of that effect is what this records."""
    G = tiny(seed=0)
    z = seeds_to_z(SEEDS, G.z_dim)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = G(z, None, noise_mode="const")
        torch.set_num_threads(max(2, threads))
        many = G(z, None, noise_mode="const")
    finally:
        torch.set_num_threads(threads)
    diff = float((one - many).abs().max())
    print(f"max |image(1 thread) - image({max(2, threads)} threads)| = {diff:.3g}")
    assert diff < 1e-5


def compose_cfg(results: Path, metrics: list[str]):
    from hydra import compose, initialize_config_dir

    from fpbench.__main__ import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        return compose("config", overrides=OVERRIDES + metrics + [f"results_dir={results}"])


def _digest(job: Path, record: dict) -> dict:
    return {"values": record["values"], "config_hash": record["config_hash"],
            "fingerprints": record["fingerprints"],
            "samples": {s: hashlib.sha256((job / s).read_bytes()).hexdigest() for s in record["samples"]},
            "config.yaml": (job / "config.yaml").read_text().replace(str(job.parents[2]), "<results>")}


@pytest.mark.parametrize("metrics", [QUICK_METRICS, pytest.param(ALL_METRICS, marks=pytest.mark.slow)],
                         ids=["psnr-ssim", "all-metric-kinds"])
def test_same_job_twice_in_process_bit_identical(tmp_path, monkeypatch, metrics):
    from fpbench.runner import run_job

    digests = []
    for i in range(2):
        monkeypatch.setenv("FPBENCH_CACHE", str(tmp_path / f"cache{i}"))   # nothing reused between runs
        results = tmp_path / f"r{i}"
        job = results / "runs" / "single" / "job"
        digests.append(_digest(job, run_job(compose_cfg(results, metrics), job)))
    assert digests[0] == digests[1]
    assert len(digests[0]["values"]) == (2 if metrics is QUICK_METRICS else 6)


@pytest.mark.slow
def test_same_command_twice_in_two_processes_bit_identical(tmp_path):
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    digests = []
    for i in range(2):
        results = tmp_path / f"r{i}"
        proc = subprocess.run([sys.executable, "-m", "fpbench", *OVERRIDES, *ALL_METRICS, f"results_dir={results}"],
                              cwd=tmp_path,
                              env={**env, "FPBENCH_CACHE": str(tmp_path / f"cache{i}")}, capture_output=True,
                              text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
        (path,) = list(results.rglob("metrics.json"))
        digests.append(_digest(path.parent, json.loads(path.read_text())))
    assert digests[0] == digests[1]

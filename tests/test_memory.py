"""Peak memory of the runner's streaming path does not grow with n.

One job (tiny model, feature rescaling, PSNR/SSIM) is run at n and at 10 n in this process; the
peak resident set size of each run (VmHWM, reset before the run) and the peak of Python-level
allocations (tracemalloc) must be the same up to a small allowance. Keeping every image of a
32x32 job would cost 24 KB per image (original + treated, float32), i.e. ~7 MB more at 10 n.
Measured here: the 10 n run peaked 0.2-0.6 MB above its start, like the n run.
"""

from __future__ import annotations

import sys
import tracemalloc

import pytest
from hydra import compose, initialize_config_dir

from fpbench.timing import peak_memory

N = 32
RSS_ALLOWANCE_MB = 3.0        # allocator noise; keeping the 9 n extra images would add ~7 MB
PY_ALLOWANCE_MB = 0.5


def _cfg(tmp_path, n: int):
    from fpbench.__main__ import CONF_DIR, _strip_hydra

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        cfg = compose("config", overrides=[
            "model=tiny", "treatment=rescale", "metrics=fast", "logger=none", f"n={n}", "stats.n=16",
            "device=cpu", "batch_size=8", "progress=false", "samples=2", "checkpoint_every=1000",
            "resume=false", f"results_dir={tmp_path}"])
    return _strip_hydra(cfg)


def _run(tmp_path, n: int, name: str, trace: bool = True):
    from fpbench.runner import run_job

    cfg = _cfg(tmp_path, n)
    if not trace:   # the warm-up run imports the metric packages: slow under tracemalloc
        return run_job(cfg, tmp_path / name)
    tracemalloc.start()
    try:
        with peak_memory("cpu") as mem:
            record = run_job(cfg, tmp_path / name)
        _, py_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert record["n"] == n and "psnr" in record["values"]
    return mem, py_peak / 2 ** 20


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="peak RSS reset needs Linux /proc")
def test_streaming_peak_memory_does_not_grow_with_n(tmp_path):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # a shared 2-core machine: more threads only spin against other jobs
    try:
        _run(tmp_path, N, "warm", trace=False)                      # imports, stats cache, allocator warm-up
        small, py_small = _run(tmp_path, N, "small")
        large, py_large = _run(tmp_path, 10 * N, "large")
    finally:
        torch.set_num_threads(threads)
    assert not small.host_peak_is_process_max
    grow = (large.host_peak_mb - large.host_start_mb) - (small.host_peak_mb - small.host_start_mb)
    assert grow < RSS_ALLOWANCE_MB, (small, large)
    assert py_large - py_small < PY_ALLOWANCE_MB, (py_small, py_large)

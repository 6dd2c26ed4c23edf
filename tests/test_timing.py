"""fpbench.timing: interleaving, paired ratios, batch-size search, peak memory, Table 3 rows."""

from __future__ import annotations

import sys
import time

import pytest
import torch

from fpbench import timing
from fpbench.errors import ConfigError


def test_interleaved_rotates_order_and_pairs_repeats():
    calls = []
    fns = {k: (lambda k=k: calls.append(k)) for k in "abc"}
    out = timing.interleaved(fns, repeats=3, warmup=1, clock="wall")
    assert calls[:3] == ["a", "b", "c"]                          # warm-up
    assert calls[3:] == list("abc") + list("bca") + list("cab")  # each repeat starts one later
    assert {k: len(v) for k, v in out.items()} == {"a": 3, "b": 3, "c": 3}


def test_ratio_is_median_of_paired_ratios():
    times = {"t": [2.0, 4.0, 30.0], "p": [1.0, 4.0, 10.0]}   # drift: the third repeat is slow for both
    assert timing.ratio(times, "t", "p") == 2.0               # per-repeat 2, 1, 3 -> median 2
    with pytest.raises(ValueError):
        timing.interleaved({"a": lambda: None}, repeats=0)


def test_cpu_clock_ignores_sleeping():
    out = timing.interleaved({"sleep": lambda: time.sleep(0.05)}, repeats=2, warmup=0, clock="cpu")
    assert max(out["sleep"]) < 0.03
    out = timing.interleaved({"sleep": lambda: time.sleep(0.05)}, repeats=2, warmup=0, clock="wall")
    assert min(out["sleep"]) >= 0.05


def test_best_batch_size_stops_at_out_of_memory():
    def run(b):
        if b > 4:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        time.sleep(0.002)   # fixed cost per call: bigger batches are faster per image
    best, speeds = timing.best_batch_size(run, [1, 2, 4, 8, 16], repeats=1, warmup=0, clock="wall")
    assert best == 4 and sorted(speeds) == [1, 2, 4]
    with pytest.raises(RuntimeError, match="boom"):
        timing.best_batch_size(lambda b: (_ for _ in ()).throw(RuntimeError("boom")), [1], repeats=1)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="peak RSS reset needs Linux /proc")
def test_peak_memory_sees_a_transient_allocation():
    with timing.peak_memory() as busy:
        x = torch.ones(96 * 2 ** 20 // 4)   # 96 MB, touched, freed before the block ends
        del x
    assert not busy.host_peak_is_process_max
    assert busy.host_peak_mb - busy.host_start_mb > 64, busy


def test_table3_row_on_tiny():
    from fpbench.generators import tiny
    from fpbench.treatments import Truncation

    G = tiny()
    row = timing.table3(G, Truncation(psi=0.7), batch=4, repeats=2, warmup=1)
    assert row.batch == 4 and row.clock == "cpu"
    assert 0 < row.plain_parallel < row.plain_serial * 10
    assert 0.2 < row.ratio_parallel < 5 and 0.2 < row.ratio_serial < 5
    assert len(row.raw["parallel"]["plain"]) == 2


def test_bench_generator_names_and_checkpoint_round_trip(tmp_path):
    from fpbench.generators import load_generator

    with pytest.raises(ConfigError, match="unknown benchmark network 'nope'"):
        timing.bench_generator("nope")
    path = timing.save_bench_generator("sg3-small-32", tmp_path)
    G, H = load_generator(path), timing.bench_generator("sg3-small-32")
    z = torch.randn(2, G.z_dim)
    with torch.no_grad():
        torch.testing.assert_close(G(z), H(z), rtol=0, atol=0)


def test_runner_timing_job_records_paired_ratio(tmp_path):
    from hydra import compose, initialize_config_dir

    from fpbench.__main__ import CONF_DIR, _strip_hydra
    from fpbench.runner import run_job

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        cfg = _strip_hydra(compose("config", overrides=[
            "sweep=table3", "model=tiny", "treatment=rescale", "execution=batched", "n=16", "batch_size=4",
            "stats.n=16", "device=cpu", "logger=none", "progress=false", "resume=false",
            f"results_dir={tmp_path}", "hydra.mode=RUN"]))
    values = run_job(cfg, tmp_path / "job")["values"]
    assert values["seconds_per_image"] > 0 and values["paired_plain_seconds_per_image"] > 0
    assert 0.2 < values["treated_over_plain"] < 5

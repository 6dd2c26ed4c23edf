"""One setting over several processes (fpbench.distributed): 2 gloo ranks give the numbers of one
process and write one result; a rank killed mid-way stops the job with no result, and the rerun resumes."""

import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from fpbench import distributed as D
from fpbench.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
# a smoke setting: tiny model, a pairwise and a distribution metric (64-d stem features), stats
OVERRIDES = ["model=tiny", "dataset=generated", "treatment=rescale", "n=12", "batch_size=2", "checkpoint_every=1",
             "stats.n=8", "samples=3", "metrics.names=[psnr,ssim,pr]", "metrics.pretrained=false",
             "+metrics.options.pr={extractor:inception-v3-compat,layer:'64'}", "logger=none", "progress=false",
             "device=cpu"]


# ---------------------------------------------------------------------------------------------
# Pure parts

@pytest.mark.parametrize("n,bs,world", [(12, 2, 2), (13, 4, 3), (3, 4, 2), (10_000, 64, 8), (5, 1, 5)])
def test_seed_slices_partition_the_job_on_batch_boundaries(n, bs, world):
    slices = [D.seed_slice(n, bs, r, world) for r in range(world)]
    assert slices[0][0] == 0 and slices[-1][1] == n
    for (lo, hi), (lo2, _) in zip(slices, slices[1:]):
        assert hi == lo2                                  # contiguous, disjoint, in rank order
    for lo, hi in slices:
        assert lo % bs == 0 and (hi % bs == 0 or hi == n)  # same batches as one process
    sizes = [-(-(hi - lo) // bs) for lo, hi in slices]
    assert max(sizes) - min(sizes) <= 1


def test_merge_states_concatenates_per_image_rows_in_rank_order():
    from fpbench.metrics.pairwise import PSNR

    a, b = torch.tensor([1.0, 2.0], dtype=torch.float64), torch.tensor([3.0], dtype=torch.float64)
    merged = D.merge_states(PSNR(), [{"scores": a}, {"scores": b}])
    assert merged["scores"].tolist() == [1.0, 2.0, 3.0]
    dist = SimpleNamespace(kind="distribution", name="fid")
    real = torch.ones(5, 4)
    merged = D.merge_states(dist, [{"fake": torch.zeros(2, 4), "real": real},
                                   {"fake": torch.full((1, 4), 7.0), "real": torch.zeros(0, 4)}])
    assert merged["fake"][:, 0].tolist() == [0.0, 0.0, 7.0] and merged["real"] is real  # reference: rank 0's
    with pytest.raises(ConfigError, match="merge its state across ranks"):
        D.merge_states(SimpleNamespace(kind="other", name="odd"), [{}])


def test_lost_peer_in_a_collective_is_one_clear_error():
    ctx = D.Context(rank=1, world=2, backend="gloo")
    with pytest.raises(D.RankFailedError) as info:
        with D._collective(ctx, "merging metric states"):
            raise RuntimeError("[gloo] Connection closed by peer [127.0.0.1]:1234\nmore detail")
    msg = str(info.value)
    assert "\n" not in msg and "rank 1 of 2" in msg and "merging metric states" in msg and "rerun" in msg


def test_not_distributed_is_one_process(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "SUBMITIT_EXECUTOR"):
        monkeypatch.delenv(var, raising=False)
    ctx = D.context("cpu")
    assert (ctx.rank, ctx.world, ctx.active, ctx.checkpoint_name) == (0, 1, False, "checkpoint.pt")
    assert ctx.plan(12, 4, None) == (0, 12, 4, None)
    assert ctx.broadcast({"x": 1}, "t") == {"x": 1} and ctx.gather(3, "t") == [3]


def test_a_rank_resumes_only_its_own_slice(tmp_path):
    ctx = D.Context(rank=1, world=2)    # no process group: collectives are the identity
    assert ctx.checkpoint_name == "checkpoint.rank1-of-2.pt"
    mine = {"rank": 1, "world": 2, "slice": [6, 12], "batch_size": 2, "position": 8}
    assert ctx.plan(12, 2, mine) == (6, 12, 2, mine)
    for stale in ({**mine, "world": 3}, {**mine, "rank": 0}, {**mine, "slice": [4, 12]}, {**mine, "batch_size": 3},
                  {**mine, "position": 2}):
        assert ctx.plan(12, 2, stale)[3] is None
    for name in ("checkpoint.rank1-of-2.pt", "checkpoint.rank0-of-3.pt", "metrics.json"):
        (tmp_path / name).write_text("x")
    ctx.remove_checkpoint(tmp_path)            # a rank removes its own checkpoint only
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.rank0-of-3.pt", "metrics.json"]
    D.Context().remove_checkpoint(tmp_path)    # rank 0 also removes those of runs with another world size
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


# ---------------------------------------------------------------------------------------------
# 2 processes (gloo) vs 1

def compose_cfg(results: Path, extra=()):
    from hydra import compose, initialize_config_dir

    from fpbench.__main__ import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        return compose("config", overrides=OVERRIDES + [f"results_dir={results}", *extra])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, world: int, port: int, results: str, job_dir: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from fpbench.runner import run_job

    run_job(compose_cfg(Path(results)), job_dir)


def test_two_gloo_processes_give_the_numbers_of_one(tmp_path):
    from fpbench.runner import run_job

    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = run_job(compose_cfg(tmp_path / "one"), tmp_path / "one" / "job")
    finally:
        torch.set_num_threads(torch_threads)

    job_dir = tmp_path / "two" / "job"
    spawn = multiprocessing.get_context("spawn")
    port = _free_port()
    procs = [spawn.Process(target=_rank_main, args=(r, 2, port, str(tmp_path / "two"), str(job_dir)))
             for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    assert [p.exitcode for p in procs] == [0, 0]

    files = sorted(p.name for p in job_dir.iterdir())
    assert files.count("metrics.json") == 1 and not [f for f in files if f.startswith("checkpoint")]
    rec = json.loads((job_dir / "metrics.json").read_text())
    assert rec["distributed"] == {"world_size": 2, "backend": "gloo"}
    assert rec["config_hash"] == single["config_hash"] and rec["n"] == 12
    assert set(rec["values"]) == set(single["values"]) == {"psnr", "ssim", "precision", "recall"}
    for key, value in single["values"].items():
        assert rec["values"][key] == pytest.approx(value, rel=1e-6, abs=1e-12), key
    assert rec["samples"] == single["samples"]   # sample grids of the first seeds, gathered from the ranks


# ---------------------------------------------------------------------------------------------
# torchrun: kill one rank, rerun

def _torchrun(results: Path, cwd: Path, **env):
    full = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", **env}
    return subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                             f"--master_port={_free_port()}", "-m", "fpbench", *OVERRIDES,
                             f"results_dir={results}"], cwd=cwd, env=full, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _worker_pid(agent_pid: int, rank: int) -> int | None:
    """The torchrun worker of `rank` (a child of the agent with RANK=rank in its environment)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            environ = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == agent_pid and f"RANK={rank}".encode() in environ:
            return int(entry.name)
    return None


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the worker through /proc")
def test_killed_rank_stops_the_job_without_a_result_and_the_rerun_resumes(tmp_path):
    from fpbench.runner import run_job

    expected = run_job(compose_cfg(tmp_path / "clean"), tmp_path / "clean" / "job")
    results = tmp_path / "results"
    proc = _torchrun(results, tmp_path, FPBENCH_DEBUG_BATCH_SLEEP="0.7")
    deadline, ckpt = time.time() + 300, None
    while time.time() < deadline and proc.poll() is None and ckpt is None:
        found = list(results.glob("runs/*/*/checkpoint.rank1-of-2.pt"))
        ckpt = found[0] if found else None
        time.sleep(0.05)
    assert ckpt is not None, "rank 1 wrote no checkpoint before the job ended"
    victim = _worker_pid(proc.pid, 1)
    assert victim is not None
    os.kill(victim, signal.SIGKILL)
    out, _ = proc.communicate(timeout=120)
    job_dir = ckpt.parent
    assert proc.returncode != 0
    assert "rank: 1" in out and "SIGKILL" in out, out[-2000:]      # torchrun names the rank and the signal
    assert not (job_dir / "metrics.json").exists()                  # no half-written result
    assert not list(job_dir.glob("*.tmp*"))

    rerun = _torchrun(results, tmp_path)
    out, _ = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, out[-3000:]
    assert "resuming at image" in out
    rec = json.loads((job_dir / "metrics.json").read_text())
    for key, value in expected["values"].items():
        assert rec["values"][key] == pytest.approx(value, rel=1e-6, abs=1e-12), key
    assert not list(job_dir.glob("checkpoint*.pt"))

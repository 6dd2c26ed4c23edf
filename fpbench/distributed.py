"""One setting over several processes: `torchrun --nproc_per_node=K -m fpbench ...` (or a submitit
job with K tasks) splits the seeds of each job between K ranks.

Each rank takes a contiguous slice of the job's *batches* (rank r of W gets batches
[r*B//W, (r+1)*B//W) of the B = ceil(n / batch_size) batches), so every image is generated in the
same batch as in a single-process run. Ranks accumulate their slice with the runner's ordinary loop
and checkpoint it to their own file (`checkpoint.rank<r>-of-<W>.pt`; a rerun with the same world
size resumes every rank). At the end the metric states (one score or feature row per image) are
gathered to rank 0 in rank order -- that is seed order -- and rank 0 loads the merged state and
computes: the numbers are those of a single-process run. Only rank 0 prepares reference features,
writes `metrics.json` and talks to W&B. Feature statistics are estimated by rank 0 first (the
others then read its cache file).

Backends: gloo on the CPU; on CUDA `cpu:gloo,cuda:nccl` (object collectives stay on the CPU, one
GPU per local rank). `FPBENCH_DIST_BACKEND` overrides, `FPBENCH_DIST_TIMEOUT_S` (default 3 h) bounds
how long ranks wait for each other (rank 0 alone computes references and the final metrics).

When a rank dies, torchrun stops the others; a rank that notices a lost peer inside a collective
raises `RankFailedError`. No result is written in either case; rerunning the command resumes.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import torch

from .errors import ConfigError, FpbenchError

CHECKPOINT = "checkpoint.pt"
_DEFAULT_TIMEOUT_S = 3 * 3600


class RankFailedError(FpbenchError):
    """Another rank of a distributed job stopped (killed, crashed, out of memory)."""


def env_rank() -> int:
    """This process's global rank from the launcher's environment (0 when not distributed)."""
    return int(os.environ.get("RANK", "0") or 0)


def is_main_process() -> bool:
    """True on rank 0 and in plain single-process runs: the process that writes shared outputs."""
    return env_rank() == 0


@dataclass(frozen=True)
class Context:
    """Where this process stands in the job's process group (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.backend is not None

    # devices, slices, file names ------------------------------------------------------------
    def device(self, name: str) -> torch.device:
        """The configured device; under torchrun each rank takes the GPU of its local rank."""
        from .runner import resolve_device

        device = resolve_device(name)
        if not self.active or device.type != "cuda":
            return device
        if device.index is not None and _local_world() > 1:
            raise ConfigError(f"device={name} pins every rank to one GPU; use device=cuda (rank r takes "
                              f"cuda:<local rank>) when running several processes per node")
        index = self.local_rank if device.index is None else device.index
        if index >= torch.cuda.device_count():
            raise ConfigError(f"local rank {self.local_rank} has no GPU (only {torch.cuda.device_count()} "
                              f"visible); start at most that many processes per node")
        return torch.device("cuda", index)

    def seed_slice(self, n: int, batch_size: int) -> tuple[int, int]:
        """This rank's image positions [lo, hi) of 0..n-1, on batch boundaries."""
        return seed_slice(n, batch_size, self.rank, self.world)

    @property
    def checkpoint_name(self) -> str:
        return CHECKPOINT if self.world == 1 else f"checkpoint.rank{self.rank}-of-{self.world}.pt"

    def checkpoint_extra(self, lo: int, hi: int) -> dict:
        return {"rank": self.rank, "world": self.world, "slice": [lo, hi]}

    def plan(self, n: int, batch_size: int, ckpt: dict | None) -> tuple[int, int, int, dict | None]:
        """(lo, hi, batch_size, checkpoint): rank 0's batch size for every rank, this rank's slice,
        and its checkpoint if it belongs to exactly that slice (else None: the slice starts over)."""
        batch_size = int(self.broadcast(int(batch_size), "agreeing on the batch size"))
        lo, hi = self.seed_slice(n, batch_size)
        if ckpt is not None and self.world > 1:
            if (ckpt.get("world") != self.world or ckpt.get("rank") != self.rank
                    or list(ckpt.get("slice") or []) != [lo, hi] or int(ckpt["batch_size"]) != batch_size):
                ckpt = None
        if ckpt is not None and not lo <= int(ckpt["position"]) <= hi:
            ckpt = None
        return lo, hi, batch_size, ckpt

    def record(self) -> dict:
        return {"world_size": self.world, "backend": self.backend}

    # collectives ----------------------------------------------------------------------------
    def broadcast(self, obj: Any, what: str) -> Any:
        """Rank 0's `obj` on every rank."""
        if not self.active:
            return obj
        box = [obj if self.is_main else None]
        with _collective(self, what):
            torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj: Any, what: str) -> list | None:
        """Every rank's `obj` in rank order on rank 0; None on the others."""
        if not self.active:
            return [obj]
        out = [None] * self.world if self.is_main else None
        with _collective(self, what):
            torch.distributed.gather_object(obj, out, dst=0)
        return out

    def barrier(self, what: str) -> None:
        if self.active:
            with _collective(self, what):
                torch.distributed.barrier()

    @contextlib.contextmanager
    def main_first(self, what: str) -> Iterator[None]:
        """Rank 0 runs the block first (filling on-disk caches), then the other ranks."""
        if not self.is_main:
            self.barrier(f"waiting for rank 0: {what}")
        yield
        if self.is_main:
            self.barrier(f"rank 0 finished {what}")

    def gather_metrics(self, metrics: Sequence[tuple[str, Any]], samples: dict | None,
                       keep: int) -> dict | None:
        """Merge every rank's metric states into rank 0's metrics; return the merged sample images."""
        if not self.active:
            return samples
        payload = {"metrics": {key: m.state_dict() for key, m in metrics}, "samples": samples}
        parts = self.gather(payload, "merging metric states")
        if not self.is_main:
            return None
        for key, m in metrics:
            m.load_state_dict(merge_states(m, [p["metrics"][key] for p in parts]))
        return merge_samples([p["samples"] for p in parts], keep)

    def remove_checkpoint(self, job_dir: Path) -> None:
        """After the result is written: this rank's checkpoint; on rank 0 also those left by a
        killed run with another number of ranks (they can no longer be resumed)."""
        paths = [Path(job_dir) / self.checkpoint_name]
        if self.is_main:
            paths += Path(job_dir).glob("checkpoint.rank*-of-*.pt")
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def seed_slice(n: int, batch_size: int, rank: int, world: int) -> tuple[int, int]:
    """Positions [lo, hi) of rank `rank` of `world`: contiguous batches, counts differing by at most one."""
    if not (0 <= rank < world) or batch_size < 1 or n < 0:
        raise ValueError(f"bad slice request n={n} batch_size={batch_size} rank={rank} world={world}")
    batches = -(-n // batch_size)
    lo = min(n, rank * batches // world * batch_size)
    hi = min(n, (rank + 1) * batches // world * batch_size)
    return lo, hi


def merge_states(metric, states: Sequence[dict]) -> dict:
    """One metric's `state_dict()`s of all ranks (in rank = seed order) as one state.

    Per-image rows (pairwise scores, generated features) are concatenated; the reference features
    of a distribution metric are rank 0's (only rank 0 prepares them).
    """
    from .metrics.base import PairwiseMetric

    merge = getattr(metric, "merge_state_dicts", None)
    if callable(merge):
        return merge(list(states))
    if isinstance(metric, PairwiseMetric):
        return {"scores": torch.cat([s["scores"] for s in states])}
    if getattr(metric, "kind", "") == "distribution":
        return {"fake": torch.cat([s["fake"] for s in states]), "real": states[0]["real"]}
    raise ConfigError(f"metric {getattr(metric, 'name', metric)!r} does not say how to merge its state "
                      f"across ranks; run it in one process or give it merge_state_dicts()")


def merge_samples(parts: Iterable[dict | None], keep: int) -> dict | None:
    parts = [p for p in parts if p]
    if not parts:
        return None
    return {k: torch.cat([p[k] for p in parts])[:keep] for k in parts[0]}


# ---------------------------------------------------------------------------------------------
# Process group

def context(device: str = "cpu") -> Context:
    """This process's Context; joins the process group the launcher describes (once per process).

    torchrun exports RANK / WORLD_SIZE / MASTER_ADDR; a submitit job with several tasks is turned
    into the same variables. Without them the run is a plain single process.
    """
    import torch.distributed as dist

    _export_submitit_env()
    if not dist.is_available() or "WORLD_SIZE" not in os.environ or "MASTER_ADDR" not in os.environ:
        return Context()
    local_rank = int(os.environ.get("LOCAL_RANK", "0") or 0)
    if not dist.is_initialized():
        backend = os.environ.get("FPBENCH_DIST_BACKEND") or _backend_for(device)
        if "nccl" in backend and torch.cuda.is_available():
            torch.cuda.set_device(local_rank)
        timeout = datetime.timedelta(seconds=float(os.environ.get("FPBENCH_DIST_TIMEOUT_S", _DEFAULT_TIMEOUT_S)))
        try:
            dist.init_process_group(backend=backend, timeout=timeout)
        except (RuntimeError, ValueError) as err:
            raise RankFailedError(f"rank {env_rank()} could not join the process group ({_first_line(err)}); "
                                  f"check MASTER_ADDR/MASTER_PORT and that every rank was started") from None
    return Context(rank=dist.get_rank(), world=dist.get_world_size(), local_rank=local_rank,
                   backend=str(dist.get_backend()))


def _backend_for(device: str) -> str:
    wants_cuda = str(device).startswith("cuda") or (str(device) == "auto" and torch.cuda.is_available())
    return "cpu:gloo,cuda:nccl" if wants_cuda else "gloo"


def _local_world() -> int:
    return int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)


def _export_submitit_env() -> None:
    """Inside a submitit job with several tasks, export torchrun's variables (one rank per task)."""
    if "RANK" in os.environ or not os.environ.get("SUBMITIT_EXECUTOR"):
        return
    try:
        import submitit
        from submitit.helpers import TorchDistributedEnvironment
    except ImportError:
        return
    if submitit.JobEnvironment().num_tasks > 1:
        TorchDistributedEnvironment().export(set_cuda_visible_devices=False)


@contextlib.contextmanager
def _collective(ctx: Context, what: str) -> Iterator[None]:
    try:
        yield
    except (RuntimeError, ConnectionError) as err:  # gloo/nccl report a lost peer as RuntimeError
        raise RankFailedError(f"rank {ctx.rank} of {ctx.world}: another rank stopped while {what} "
                              f"({_first_line(err)}); no result was written: rerun the same command to "
                              f"resume from the per-rank checkpoints") from None


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else type(err).__name__


# ---------------------------------------------------------------------------------------------
# Across jobs: Hydra launchers (conf/launcher/)

_SUBMITIT_LAUNCHERS = ("submitit_local", "submitit_slurm")


def check_launcher(argv: Sequence[str]) -> None:
    """`launcher=submitit_*` needs the hydra-submitit-launcher plugin: say how to get it."""
    for arg in argv:
        key, _, value = arg.partition("=")
        if key.lstrip("+~") in ("launcher", "override launcher") and value in _SUBMITIT_LAUNCHERS:
            try:
                import hydra_plugins.hydra_submitit_launcher  # noqa: F401
            except ImportError:
                raise ConfigError(f"launcher={value} needs the hydra-submitit-launcher package; install it "
                                  f"with pip install 'fpbench[cluster]' (or hydra-submitit-launcher)") from None

"""Timing and memory measurement shared by the benchmarks and the app's Table 3 sweep.

Timings on a shared or throttling machine drift; comparing two ways of doing the same work (plain
vs. treated generation) is only fair when they are measured *interleaved*: every repeat runs each
candidate once, in an order that rotates from repeat to repeat, and the verdict is the median of
per-repeat ratios (load drift between repeats cancels within a repeat). Device work is
synchronised before and after each timed call, so the numbers are device time plus launch cost.

    times = interleaved({"plain": f, "treated": g}, repeats=9, device=dev)
    ratio(times, "treated", "plain")        # median of per-repeat ratios
    rows = table3(G, treatment, batch=16, device=dev)
"""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, Mapping

import torch

__all__ = ["sync", "CLOCKS", "default_clock", "interleaved", "ratio", "median", "Table3Row", "table3", "generation_fns",
           "PeakMemory", "peak_memory", "best_batch_size", "machine_info", "is_oom"]


def sync(device: torch.device | str) -> None:
    """Wait for queued device work (no-op on the CPU)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def median(values) -> float:
    return float(statistics.median(values))


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def default_clock(device: torch.device | str) -> str:
    """'cpu' (this process's CPU time) for CPU work, else 'wall'.

    On a shared CPU a timed call is preempted by other jobs for unpredictable stretches; the CPU
    time the process itself spent is the work done and hardly depends on the neighbours. Device
    work is asynchronous, so GPUs are timed by the wall clock around a synchronisation.
    """
    return "cpu" if torch.device(device).type == "cpu" else "wall"


def interleaved(fns: Mapping[str, Callable[[], object]], repeats: int = 7, warmup: int = 1,
                device: torch.device | str = "cpu", clock: str | None = None) -> dict[str, list[float]]:
    """Seconds of each call in `fns`, `repeats` times each, interleaved with a rotating order.

    Every function is called `warmup` times first (untimed). Returns ``{name: [seconds, ...]}``,
    the i-th entry of every list coming from the same repeat. `clock`: 'wall' or 'cpu' (process
    CPU time); default `default_clock(device)`.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got {repeats}, {warmup}")
    now = CLOCKS[clock or default_clock(device)]
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    sync(device)
    out: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            sync(device)
            tic = now()
            fns[name]()
            sync(device)
            out[name].append(now() - tic)
    return out


def ratio(times: Mapping[str, list[float]], num: str, den: str) -> float:
    """Median over repeats of ``times[num][i] / times[den][i]`` (paired, so drift cancels)."""
    return median([a / b for a, b in zip(times[num], times[den])])


def generation_fns(G, treatment, z: torch.Tensor, c: torch.Tensor | None = None,
                   noise_mode: str = "const") -> dict[str, Callable[[], torch.Tensor]]:
    """``{"plain": ..., "treated": ...}``: one forward pass of `G` on `z`, without and with `treatment`.

    The treated call enters ``treatment.applied(G)`` every time, as a runner does per batch, so its
    setup cost (checks, moving statistics to the device) is part of the measured overhead.
    """
    @torch.no_grad()
    def plain():
        return G(z, c, noise_mode=noise_mode)

    @torch.no_grad()
    def treated():
        with treatment.applied(G):
            return G(z, c, noise_mode=noise_mode)

    return {"plain": plain, "treated": treated}


@dataclass
class Table3Row:
    """Seconds per image: plain and treated at batch 1 ("serial") and at `batch` ("parallel")."""

    batch: int
    plain_serial: float
    treated_serial: float
    plain_parallel: float
    treated_parallel: float
    ratio_serial: float          # median of paired per-repeat ratios, treated / plain at batch 1
    ratio_parallel: float        # same at `batch`
    repeats: int
    clock: str = "wall"
    raw: dict = field(default_factory=dict, repr=False)

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "raw"}


def table3(G, treatment, batch: int = 16, repeats: int = 7, warmup: int = 1, device=None, seed: int = 0,
           noise_mode: str = "const", serial_repeats: int | None = None, clock: str | None = None) -> Table3Row:
    """Table 3 of the paper for `G` on its device: s/image plain vs. treated, batch 1 and `batch`."""
    from .generators import seeds_to_z
    from .treatments.hooks import module_device

    device = torch.device(device) if device is not None else module_device(G)
    c_dim = int(getattr(G, "c_dim", 0) or 0)
    rows = {}
    for label, b, reps in (("serial", 1, serial_repeats or repeats), ("parallel", batch, repeats)):
        z = seeds_to_z(list(range(seed, seed + b)), G.z_dim, device=device)
        c = torch.zeros([b, c_dim], device=device) if c_dim else None
        rows[label] = interleaved(generation_fns(G, treatment, z, c, noise_mode), repeats=reps, warmup=warmup,
                                  device=device, clock=clock)
    s, p = rows["serial"], rows["parallel"]
    return Table3Row(batch=batch, plain_serial=median(s["plain"]), treated_serial=median(s["treated"]),
                     plain_parallel=median(p["plain"]) / batch, treated_parallel=median(p["treated"]) / batch,
                     ratio_serial=ratio(s, "treated", "plain"), ratio_parallel=ratio(p, "treated", "plain"),
                     repeats=repeats, clock=clock or default_clock(device), raw=rows)


# ---------------------------------------------------------------------------------------------
# Memory

def _read_status_kb(key: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_host_peak() -> bool:
    # Linux: writing 5 to clear_refs resets the peak resident set size (VmHWM) of this process.
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


@dataclass
class PeakMemory:
    host_peak_mb: float | None = None      # peak resident set size of the process during the block
    host_start_mb: float | None = None     # resident set size when the block started
    device_peak_mb: float | None = None    # torch's peak allocated CUDA memory during the block
    host_peak_is_process_max: bool = False  # the peak could not be reset: it is the process lifetime max

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@contextlib.contextmanager
def peak_memory(device: torch.device | str = "cpu") -> Iterator[PeakMemory]:
    """Measure peak host RSS and peak CUDA allocation of the enclosed block."""
    device = torch.device(device)
    rec = PeakMemory()
    rec.host_peak_is_process_max = not _reset_host_peak()
    rss = _read_status_kb("VmRSS")
    rec.host_start_mb = rss / 1024 if rss is not None else None
    if device.type == "cuda":
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)
    try:
        yield rec
    finally:
        sync(device)
        hwm = _read_status_kb("VmHWM")
        if hwm is None:
            import resource

            hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss   # kB on Linux
            rec.host_peak_is_process_max = True
        rec.host_peak_mb = hwm / 1024
        if device.type == "cuda":
            rec.device_peak_mb = torch.cuda.max_memory_allocated(device) / 2 ** 20


# ---------------------------------------------------------------------------------------------
# Batch size

def is_oom(err: BaseException) -> bool:
    return isinstance(err, torch.OutOfMemoryError) or "out of memory" in str(err).lower()


def best_batch_size(run: Callable[[int], object], candidates, device="cpu", repeats: int = 3,
                    warmup: int = 1, time_budget_s: float | None = None,
                    clock: str | None = None) -> tuple[int, dict[int, float]]:
    """The candidate batch size with the highest images/s for ``run(batch)``.

    Candidates are tried in increasing order; an out-of-memory error ends the search (the cache is
    emptied), as does throughput falling below 90% of the best so far twice in a row, or the time
    budget running out. Returns ``(best, {batch: images/s})``.
    """
    device = torch.device(device)
    speeds: dict[int, float] = {}
    start = time.perf_counter()
    worse = 0
    for b in sorted(set(int(x) for x in candidates)):
        try:
            t = interleaved({"run": lambda b=b: run(b)}, repeats=repeats, warmup=warmup, device=device,
                            clock=clock)["run"]
        except Exception as err:  # noqa: BLE001 - only OOM ends the search quietly
            if not is_oom(err):
                raise
            if device.type == "cuda":
                torch.cuda.empty_cache()
            break
        speeds[b] = b / median(t)
        best = max(speeds.values())
        worse = worse + 1 if speeds[b] < 0.9 * best else 0
        if worse >= 2 or (time_budget_s is not None and time.perf_counter() - start > time_budget_s):
            break
    if not speeds:
        raise RuntimeError("no batch size fitted in memory")
    return max(speeds, key=speeds.get), speeds


# ---------------------------------------------------------------------------------------------
# Provenance

def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: torch.device | str = "cpu") -> dict:
    """What the numbers were measured on: CPU, cores, threads, load, memory, GPU, versions."""
    device = torch.device(device)
    info = {"host": platform.node(), "os": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__, "cpu": _cpu_model(), "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "device": str(device)}
    with contextlib.suppress(OSError):
        info["load_avg_1m"] = round(os.getloadavg()[0], 2)
    mem = None
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1]) / 2 ** 20
    info["ram_gb"] = round(mem, 1) if mem else None
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, gpu_memory_gb=round(props.total_memory / 2 ** 30, 1), cuda=torch.version.cuda,
                    gpu_capability=f"{props.major}.{props.minor}")
    return info


# ---------------------------------------------------------------------------------------------
# Random-weight networks for benchmarks: the compute cost of a generator does not depend on its
# weights, so these stand in for the released models where those cannot be downloaded.

_SG2_F = dict(z_dim=512, c_dim=0, w_dim=512, img_channels=3, mapping_kwargs={"num_layers": 8},
              channel_base=32768, channel_max=512, num_fp16_res=4, conv_clamp=256)
_SG3 = dict(z_dim=512, c_dim=0, w_dim=512, img_channels=3, mapping_kwargs={"num_layers": 2},
            num_fp16_res=4, conv_clamp=256)

BENCH_MODELS: dict[str, tuple[str, dict, str]] = {
    # name: (family, init kwargs, what it stands for)
    "tiny": ("stylegan2", {}, "fpbench tiny() 32x32; every conv layer is a treated layer (worst case)"),
    "sg2-small-256": ("stylegan2", dict(_SG2_F, img_resolution=256, channel_base=8192, channel_max=128),
                      "config-F layout at 256x256 with 1/4 of the channels (a CPU-sized stand-in)"),
    "sg2-f-256": ("stylegan2", dict(_SG2_F, img_resolution=256), "StyleGAN2 config F 256x256"),
    "sg2-f-512": ("stylegan2", dict(_SG2_F, img_resolution=512), "StyleGAN2 config F 512x512 (AFHQ-Cat cost)"),
    "sg2-f-1024": ("stylegan2", dict(_SG2_F, img_resolution=1024), "StyleGAN2 config F 1024x1024 (FFHQ/MetFaces cost)"),
    "sg3-small-32": ("stylegan3", dict(z_dim=64, c_dim=0, w_dim=64, img_resolution=32, img_channels=3,
                                       mapping_kwargs={"num_layers": 2}, channel_base=256, channel_max=16,
                                       num_layers=6, num_fp16_res=0),
                     "the StyleGAN3-T parity fixture's shape, 32x32"),
    "sg3-t-512": ("stylegan3", dict(_SG3, img_resolution=512, channel_base=32768, channel_max=512),
                  "StyleGAN3-T 512x512 (AFHQv2 cost)"),
    "sg3-r-512": ("stylegan3", dict(_SG3, img_resolution=512, channel_base=65536, channel_max=1024, conv_kernel=1,
                                    use_radial_filters=True), "StyleGAN3-R 512x512 (AFHQv2 cost)"),
    "sg3-t-1024": ("stylegan3", dict(_SG3, img_resolution=1024, channel_base=32768, channel_max=512),
                   "StyleGAN3-T 1024x1024 (FFHQ cost)"),
}


@torch.no_grad()
def bench_generator(name: str, device="cpu", seed: int = 0):
    """A random-weight generator of `BENCH_MODELS[name]` in eval mode on `device` (biases and noise
    strengths randomised so feature statistics are not degenerate)."""
    from .errors import ConfigError
    from .generators import StyleGAN2Generator, StyleGAN3Generator, tiny

    if name not in BENCH_MODELS:
        raise ConfigError(f"unknown benchmark network {name!r}; choose from {', '.join(BENCH_MODELS)}")
    family, kwargs, _ = BENCH_MODELS[name]
    if name == "tiny":
        return tiny(seed, device=device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        G = (StyleGAN2Generator if family == "stylegan2" else StyleGAN3Generator)(**kwargs)
        for pname, p in G.named_parameters():
            if pname.endswith("bias") and not pname.endswith("affine.bias"):
                p.copy_(0.2 * torch.randn(p.shape))
            elif pname.endswith("noise_strength"):
                p.copy_(0.1 * torch.randn(p.shape))
    return G.eval().requires_grad_(False).to(device)


def save_bench_generator(name: str, directory, seed: int = 0):
    """Write `bench_generator(name)` as ``<directory>/<name>.safetensors`` + ``.json`` sidecar, a
    checkpoint `load_generator` (and so the app: ``model=custom model.source=PATH``) can read."""
    import json
    from pathlib import Path

    from safetensors.torch import save_file

    from .cache import atomic_path

    G = bench_generator(name, device="cpu", seed=seed)
    family = "stylegan2" if type(G).__name__.startswith("StyleGAN2") else "stylegan3"
    path = Path(directory) / f"{name}.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_suffix(".json").write_text(json.dumps({"class": family, "init_kwargs": G.init_kwargs}))
    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in G.state_dict().items()}, str(tmp))
    return path

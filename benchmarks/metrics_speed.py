"""Throughput (images/s) of every metric in `fpbench.metrics` on this machine.

    python benchmarks/metrics_speed.py [--device cpu|cuda] [--quick] [--sizes 256,1024]
        [--metrics psnr,ssim,...] [--batch 8] [--out results/bench/metrics_speed_cpu.md]

Every network has random weights (pretrained=False), so nothing is downloaded and the numbers are
labelled uncalibrated; the cost equals the real networks'. Pairwise metrics time `update(treated,
original)` (one image pair counts as one image); distribution metrics time `update(treated)`,
i.e. feature extraction, and `compute()` is timed separately on random feature rows. Each
metric gets one warm-up batch, then timed batches until `--min-time` seconds and `--iters`
batches have passed. Prints a markdown table (and writes it to `--out`).
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import fpbench.metrics as M  # noqa: E402

ALL = ("psnr", "ssim", "lpips", "id", "fid", "kid", "pr", "density_coverage")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(metric, size: int, batch: int, device: torch.device, min_time: float, iters: int) -> dict:
    g = torch.Generator(device="cpu").manual_seed(0)
    treated = (torch.rand(batch, 3, size, size, generator=g) * 2 - 1).to(device)
    original = (treated + 0.05 * torch.randn(treated.shape, generator=g).to(device)).clamp(-1, 1)
    metric.update(treated, original)       # warm-up
    sync(device)
    times = []
    start = time.perf_counter()
    while len(times) < iters or time.perf_counter() - start < min_time:
        treated = treated.flip(0)           # a new tensor each step, so no batch is served from memory
        t0 = time.perf_counter()
        metric.update(treated, original)
        sync(device)
        times.append(time.perf_counter() - t0)
    times.sort()
    per_batch = times[len(times) // 2]
    out = {"ips": batch / per_batch, "iters": len(times)}
    return out


def time_compute(metric, n: int) -> float:
    """Seconds for `compute()` on n generated and n real random feature rows."""
    g = torch.Generator().manual_seed(1)
    dim = metric.extractor.dim
    metric.load_state_dict({"fake": torch.rand(n, dim, generator=g), "real": torch.rand(n, dim, generator=g)})
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # kid shrinks its subset when n < 1000
        metric.compute()
    return time.perf_counter() - t0


def machine(device: torch.device) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    parts = [f"{platform.system()} {platform.release()}", f"CPU {cpu} ({os.cpu_count()} cores, "
             f"torch threads {torch.get_num_threads()})", f"python {platform.python_version()}",
             f"torch {torch.__version__}"]
    if device.type == "cuda":
        parts.append(f"GPU {torch.cuda.get_device_name(device)}")
    try:
        parts.append("load average at start {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    except OSError:
        pass
    return "; ".join(parts)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--sizes", default="256,1024")
    ap.add_argument("--metrics", default=",".join(ALL))
    ap.add_argument("--batch", type=int, default=None, help="images per batch (default 8, --quick 2)")
    ap.add_argument("--min-time", type=float, default=None, help="seconds per measurement (default 5, --quick 0)")
    ap.add_argument("--iters", type=int, default=None, help="timed batches at least (default 5, --quick 2)")
    ap.add_argument("--quick", action="store_true", help="small batches, two timed batches per metric")
    ap.add_argument("--compute-n", type=int, default=None, help="feature rows per set for timing compute() "
                    "(default 2000, --quick 500)")
    ap.add_argument("--out", default=None, help="also write the markdown here")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    batch = args.batch or (2 if args.quick else 8)
    min_time = args.min_time if args.min_time is not None else (0.0 if args.quick else 5.0)
    iters = args.iters or (2 if args.quick else 5)
    sizes = [int(s) for s in args.sizes.split(",")]
    args.compute_n = args.compute_n or (500 if args.quick else 2000)
    names = [n for n in args.metrics.split(",") if n]

    lines = ["# Metric throughput", "",
             f"Command: `python {shlex.join(['benchmarks/metrics_speed.py', *(argv if argv is not None else sys.argv[1:])])}`",
             f"Machine: {machine(device)}", f"Device: {device}; batch {batch}; median of >= {iters} timed batches"
             f"{f' and >= {min_time:g} s' if min_time else ''} after one warm-up batch.",
             "Weights: random (pretrained=False) -- **uncalibrated**; the cost equals the real networks' except "
             "for `id`, whose random stand-in is a tiny 4-layer net (the real w600k_r50 is a ResNet-50).",
             "Distribution metrics share one extractor per key through a FeatureBank; each row times its own "
             "extraction (fid+kid or pr+density_coverage together cost one row, not two).", "",
             "| metric | kind | network | " + " | ".join(f"{s}² img/s" for s in sizes) + f" | compute() on {args.compute_n}+{args.compute_n} rows |",
             "|---|---|---|" + "---|" * len(sizes) + "---|"]
    print("\n".join(lines), flush=True)
    bank = M.FeatureBank()
    for name in names:
        options = {"bank": bank} if name in ("fid", "kid", "pr", "density_coverage") else {}
        metric = M.create(name, device=device, pretrained=False, **options)
        cells, compute = [], ""
        for size in sizes:
            metric.reset(**({"real": True} if metric.kind == "distribution" else {}))
            r = measure(metric, size, batch, device, min_time, iters)
            cells.append(f"{r['ips']:.2f}")
        if metric.kind == "distribution":
            compute = f"{time_compute(metric, args.compute_n):.2f} s"
        net = getattr(metric, "extractor_key", None) or {"lpips": "AlexNet (resize 256)",
                                                           "id": "tiny ArcFace-like ONNX (onnxruntime CPU)"}.get(name, "-")
        row = f"| {name} | {metric.kind} | {net} | " + " | ".join(cells) + f" | {compute or '-'} |"
        lines.append(row)
        print(row, flush=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

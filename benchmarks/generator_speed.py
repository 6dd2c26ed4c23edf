"""Throughput (images/s) of our StyleGAN2 generator with random weights.

    python benchmarks/generator_speed.py [--device cpu|cuda] [--quick]

Prints a markdown table. Configurations: the 32x32 `tiny` network and config-F-like networks
(z = w = 512, 8 mapping layers, channel_base 32768, channel_max 512) at 256 and 1024. On CUDA the
four highest resolutions run in fp16 (`num_fp16_res=4`, as NVIDIA trains them); on CPU everything
is float32.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fpbench.generators import StyleGAN2Generator  # noqa: E402
from fpbench.generators.tiny import TINY_KWARGS  # noqa: E402


def config(resolution: int, num_fp16_res: int) -> dict:
    if resolution == 32:
        return dict(TINY_KWARGS)
    return dict(z_dim=512, c_dim=0, w_dim=512, img_resolution=resolution, img_channels=3,
                mapping_kwargs={"num_layers": 8}, channel_base=32768, channel_max=512,
                num_fp16_res=num_fp16_res, conv_clamp=256)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def measure(G: StyleGAN2Generator, batch: int, device: torch.device, fused: bool, min_time: float,
            min_iters: int) -> tuple[float, int]:
    """Seconds per batch (median of timed iterations after one warm-up) and the iteration count."""
    z = torch.randn(batch, G.z_dim, device=device)
    G(z, None, fused_modconv=fused)
    sync(device)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_iters or time.perf_counter() - start < min_time:
        t0 = time.perf_counter()
        G(z, None, fused_modconv=fused)
        sync(device)
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2], len(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="fewer sizes and shorter timing (CPU: ~1 minute)")
    parser.add_argument("--resolutions", type=int, nargs="*", help="override the resolutions")
    parser.add_argument("--num-fp16-res", type=int, default=4, help="fp16 blocks on CUDA (ignored on CPU)")
    parser.add_argument("--modconv", choices=["both", "fused", "unfused"], default=None,
                        help="modulated-conv execution (default: both; --quick on CPU: both at 32 only)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)

    # Config-F nets cost ~85 GMAC (256) and ~140 GMAC (1024) per image: seconds each on a CPU.
    if device.type == "cpu":
        plan = {32: [1, 16], 256: [1], 1024: [1]} if args.quick else {32: [1, 16, 64], 256: [1, 4], 1024: [1]}
    else:
        plan = {32: [16, 256], 256: [1, 16, 64], 1024: [1, 8, 32]} if args.quick else \
            {32: [16, 256, 1024], 256: [1, 16, 64, 128], 1024: [1, 8, 16, 32]}
    if args.resolutions:
        plan = {r: plan.get(r, [1, 8]) for r in args.resolutions}
    min_time, min_iters = (0.5, 1) if args.quick else (2.0, 3)
    quick_cpu = args.quick and device.type == "cpu" and args.modconv is None
    args.modconv = args.modconv or "both"
    modconv = {"both": (True, False), "fused": (True,), "unfused": (False,)}[args.modconv]

    print(f"torch {torch.__version__}, python {platform.python_version()}, device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else
             f", {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f}"))
    print()
    print("| resolution | params (M) | fp16 blocks | modconv | batch | ms / batch | images/s | timed iters |")
    print("|---:|---:|---:|---|---:|---:|---:|---:|")
    for res, batches in plan.items():
        torch.manual_seed(0)
        G = StyleGAN2Generator(**config(res, args.num_fp16_res)).eval().requires_grad_(False).to(device)
        n_params = sum(p.numel() for p in G.parameters()) / 1e6
        fp16 = sum(getattr(G.synthesis, f"b{r}").use_fp16 for r in G.synthesis.block_resolutions) \
            if device.type == "cuda" else 0
        for fused in (modconv if res == 32 or not quick_cpu else (True,)):
            for batch in batches:
                sec, iters = measure(G, batch, device, fused, min_time, min_iters)
                print(f"| {res} | {n_params:.1f} | {fp16} | {'fused' if fused else 'unfused'} | {batch} | "
                      f"{sec * 1e3:.1f} | {batch / sec:.1f} | {iters} |", flush=True)
        del G


if __name__ == "__main__":
    main()

"""Time cost of a treatment: treated / plain forward time of the same generator and batch.

    python benchmarks/treatment_overhead.py [--device cpu|cuda] [--resolution R] [--channel-base B]
        [--channel-max M] [--batch 8] [--repeats 15] [--treatments rescale,official,layerwise,truncation]

Random-weight StyleGAN2, z = w = 512, 8 mapping layers. On CUDA the default is config F at 1024
(channel_base 32768, channel_max 512, fp16 in the 4 highest resolutions, as FFHQ-1024). On a CPU
that is minutes per batch, so the CPU default is 64 x 64 with channel_base 4096, channel_max 128:
the treated layers (4-32) are then most of the work, a pessimistic case for the ratio.
`--resolution 32` is the tiny test network. The cost of the hooks does not depend on the weights:
every channel's risk is computed and `torch.where` selects, whatever is treated. Statistics come
from a few samples (their estimation is not timed).

Timing is interleaved: each repeat times one plain and one treated forward pass, in alternating
order, after warm-up (on a CPU by default with the process's CPU time, which other jobs on a shared
machine disturb far less than wall time); the ratio reported is median(treated) / median(plain) (and the median of the
per-repeat ratios). The `applied(G)` context is entered outside the timed region. Targets: <= 1.05
on a GPU, <= 1.10 on a CPU, at batch >= 8.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fpbench.generators import StyleGAN2Generator, seeds_to_z  # noqa: E402
from fpbench.generators.tiny import TINY_KWARGS  # noqa: E402
from fpbench.stats import estimate_feature_stats  # noqa: E402
from fpbench.treatments import build  # noqa: E402

TREATMENTS = {
    "rescale": ("rescale", {}),
    "official": ("rescale", {"risk_rule": "official"}),
    "layerwise": ("layerwise", {}),
    "pixelnorm": ("pixelnorm", {}),
    "truncation": ("truncation", {"psi": 0.7}),
}


def make_generator(resolution: int, channel_base: int, channel_max: int, device: torch.device) -> StyleGAN2Generator:
    if resolution == 32:
        kwargs = dict(TINY_KWARGS)
    else:
        kwargs = dict(z_dim=512, c_dim=0, w_dim=512, img_resolution=resolution, img_channels=3,
                      mapping_kwargs={"num_layers": 8}, channel_base=channel_base, channel_max=channel_max,
                      num_fp16_res=4 if device.type == "cuda" else 0, conv_clamp=256)
    torch.manual_seed(0)
    G = StyleGAN2Generator(**kwargs).eval().to(device)
    with torch.no_grad():   # non-trivial biases so that risks vary across channels
        for name, p in G.named_parameters():
            if name.endswith(".bias") and "affine" not in name and "mapping" not in name:
                p.copy_(0.2 * torch.randn_like(p))
    return G


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def time_once(G, z, device, clock) -> float:
    sync(device)
    t0 = clock()
    G(z, None, noise_mode="const")
    sync(device)
    return clock() - t0


@torch.no_grad()
def overhead(G, treatment, z, device, repeats: int, warmup: int, clock) -> dict:
    plain, treated, ratios = [], [], []
    with treatment.applied(G):
        for _ in range(warmup):
            G(z, None)
    for _ in range(warmup):
        G(z, None)
    for i in range(repeats):
        order = (False, True) if i % 2 == 0 else (True, False)
        t = {}
        for is_treated in order:
            if is_treated:
                with treatment.applied(G):
                    t[True] = time_once(G, z, device, clock)
            else:
                t[False] = time_once(G, z, device, clock)
        plain.append(t[False])
        treated.append(t[True])
        ratios.append(t[True] / t[False])
    mp, mt = statistics.median(plain), statistics.median(treated)
    return {"plain_s": mp, "treated_s": mt, "ratio": mt / mp, "median_pair_ratio": statistics.median(ratios)}


@torch.no_grad()
def hook_cost(G, treatment, z, device, repeats: int, clock) -> float:
    """Median time of running only the treatment's hook functions on the real layer outputs."""
    hooks = treatment._prepare(G)
    if not hooks:
        return 0.0
    outputs = {}
    handles = [G.get_submodule(name).register_forward_hook(
        lambda m, i, o, name=name: outputs.__setitem__(name, o)) for name, _ in hooks]
    try:
        G(z, None)
    finally:
        for h in handles:
            h.remove()
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = clock()
        for name, fn in hooks:
            fn(G.get_submodule(name), (), outputs[name])
        sync(device)
        times.append(clock() - t0)
    return statistics.median(times)


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} logical CPUs, torch {torch.__version__} ({torch.get_num_threads()} threads)"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--resolution", type=int, default=None, help="default 1024 on cuda, 64 on cpu")
    ap.add_argument("--channel-base", type=int, default=None, help="default 32768 on cuda, 4096 on cpu")
    ap.add_argument("--channel-max", type=int, default=None, help="default 512 on cuda, 128 on cpu")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--stats-n", type=int, default=16)
    ap.add_argument("--treatments", default="rescale,official,layerwise,truncation")
    ap.add_argument("--clock", choices=("wall", "process"), default=None,
                    help="wall: perf_counter (default on cuda, with synchronize); process: CPU time of this "
                         "process (default on cpu: robust to other load on a shared machine)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    args.resolution = args.resolution or (1024 if gpu else 64)
    args.channel_base = args.channel_base or (32768 if gpu else 4096)
    args.channel_max = args.channel_max or (512 if gpu else 128)
    args.clock = args.clock or ("wall" if gpu else "process")
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    names = args.treatments.split(",")
    for n in names:
        if n not in TREATMENTS:
            ap.error(f"unknown treatment {n!r}; choose from {', '.join(TREATMENTS)}")

    G = make_generator(args.resolution, args.channel_base, args.channel_max, device)
    stats = estimate_feature_stats(G, n=args.stats_n, batch_size=min(args.batch, args.stats_n), progress=False,
                                   use_cache=False)
    z = seeds_to_z(range(args.batch), G.z_dim, device=device)
    print(f"machine: {machine(device)}")
    print(f"command: python {' '.join([Path(sys.argv[0]).as_posix()] + sys.argv[1:])}")
    print(f"generator: StyleGAN2 {args.resolution}x{args.resolution} random weights (channel_base "
          f"{args.channel_base}, channel_max {args.channel_max}), batch {args.batch}, "
          f"{args.repeats} interleaved repeats after {args.warmup} warm-up, {args.clock} clock\n")
    print("| treatment | plain s/batch | treated s/batch | ratio (median/median) | median of pair ratios "
          "| hooks alone s/batch | 1 + hooks/plain |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    worst = 0.0
    for n in names:
        kind, params = TREATMENTS[n]
        tr = build(kind, stats=stats, **params)
        r = overhead(G, tr, z, device, args.repeats, args.warmup, clock)
        hc = hook_cost(G, tr, z, device, max(args.repeats, 5), clock)
        worst = max(worst, r["ratio"]) if n != "truncation" else worst
        print(f"| {n} {tr.params} | {r['plain_s']:.4f} | {r['treated_s']:.4f} | {r['ratio']:.3f} | "
              f"{r['median_pair_ratio']:.3f} | {hc:.4f} | {1 + hc / r['plain_s']:.3f} |", flush=True)
    target = 1.05 if device.type == "cuda" else 1.10
    print(f"\nworst feature-treatment ratio {worst:.3f}; target <= {target:.2f} on {device.type}: "
          f"{'met' if worst <= target else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

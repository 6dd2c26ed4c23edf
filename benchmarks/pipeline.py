"""Throughput of every stage of one setting, and of the whole setting through the app, with memory.

    python benchmarks/pipeline.py [--model tiny] [--device cpu|cuda] [--batch auto|N]
        [--metrics psnr,ssim,lpips,id,fid,pr] [--n 64] [--pretrained] [--threads N] [--out FILE.md]

Stages, each timed interleaved at one batch size (median of `--repeats`): mapping, synthesis,
synthesis with the treatment's hooks (the treatment's cost is the difference), and for each metric
its per-batch work on (treated, original) pairs (feature extraction for the network metrics; PSNR
and SSIM are math only). Metric math at the end (FID's matrix square root, precision/recall's
k-NN over n features) is timed on `--n` random feature rows. End to end runs the app's runner
(`fpbench.runner.run_job`) on the same generator saved as a checkpoint, with `profile=true` so
its stage timer synchronises the device: images/s over the whole job, and its peak host RSS and
device memory. `--batch auto` picks the batch size with the highest plain images/s
(`fpbench.timing.best_batch_size`; stops at out-of-memory). Without `--pretrained` the metric
networks have random weights (numbers uncalibrated; same cost except ArcFace, which is then a
small stand-in ONNX network instead of ResNet-50).
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fpbench import timing  # noqa: E402

NETWORK_METRICS = ("lpips", "id", "fid", "kid", "pr", "density_coverage")


def batch_candidates(device: torch.device) -> list[int]:
    return [1, 2, 4, 8, 16] if device.type == "cpu" else [1, 2, 4, 8, 16, 32, 64, 128]


def stage_fns(G, treatment, metrics: dict, batch: int, device) -> dict:
    from fpbench.generators import seeds_to_z

    z = seeds_to_z(list(range(batch)), G.z_dim, device=device)
    c = torch.zeros([batch, G.c_dim], device=device) if G.c_dim else None
    with torch.no_grad():
        ws = G.mapping(z, c)
        original = G.synthesis(ws).clamp(-1, 1)
        with treatment.applied(G):
            treated = G.synthesis(ws).clamp(-1, 1)

    def no_grad(f):
        return torch.no_grad()(f)

    fns = {
        "mapping": no_grad(lambda: G.mapping(z, c)),
        "synthesis": no_grad(lambda: G.synthesis(ws)),
    }

    def treated_synthesis():
        with treatment.applied(G):
            return G.synthesis(ws)
    fns["synthesis+treatment"] = no_grad(treated_synthesis)
    for name, m in metrics.items():
        if m.kind == "pairwise":
            fns[f"metric:{name}"] = no_grad(lambda m=m: m.scores(treated, original))
        else:
            fns[f"metric:{name} (features)"] = no_grad(lambda m=m: m.extractor(treated))
    return fns


def metric_math(metrics: dict, n: int) -> dict[str, float]:
    """Seconds of `compute()` of each distribution metric on n random feature rows per side."""
    out = {}
    g = torch.Generator().manual_seed(0)
    for name, m in metrics.items():
        if m.kind != "distribution":
            continue
        dim = m.extractor.dim
        m.reset(real=True)
        m.set_real_features(torch.randn(n, dim, generator=g))
        m._fake = [torch.randn(n, dim, generator=g) + 0.1]
        tic = time.perf_counter()
        m.compute()
        out[name] = time.perf_counter() - tic
        m.reset(real=True)
    return out


def end_to_end(model: str, device, batch: int, n: int, metric_names: list[str], pretrained: bool,
               stats_n: int, workdir: Path, fid_sqrtm: str | None = None) -> dict:
    from hydra import compose, initialize_config_dir

    from fpbench.__main__ import CONF_DIR, _strip_hydra
    from fpbench.runner import run_job

    if model in timing.BENCH_MODELS:
        source = timing.save_bench_generator(model, workdir / "models")
    else:
        source = model
    overrides = ["model=custom", f"model.source={source}", "model.name=" + Path(str(model)).stem,
                 "treatment=rescale", "metrics.names=[" + ",".join(metric_names) + "]",
                 f"metrics.pretrained={str(pretrained).lower()}", "dataset=generated", f"n={n}",
                 f"stats.n={stats_n}", f"batch_size={batch}", f"device={device}", "logger=none",
                 "progress=false", "resume=false", "profile=true", "samples=0", f"results_dir={workdir}"]
    if fid_sqrtm and "fid" in metric_names:
        overrides.append(f"+metrics.options.fid.sqrtm={fid_sqrtm}")
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        cfg = _strip_hydra(compose("config", overrides=overrides))
    with timing.peak_memory(device) as mem:
        tic = time.perf_counter()
        record = run_job(cfg, workdir / "e2e")
        seconds = time.perf_counter() - tic
    return {"seconds": seconds, "images_per_s": n / seconds, "timings": record["timings"],
            "values": record["values"], "uncalibrated": record["any_uncalibrated"], "memory": mem.as_dict(),
            "overrides": overrides}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="tiny", help="fpbench.timing.BENCH_MODELS name, zoo name or checkpoint")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch", default="auto")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--metrics", default="psnr,ssim,lpips,id,fid,pr")
    p.add_argument("--n", type=int, default=64, help="images of the end-to-end job; rows for metric math")
    p.add_argument("--stats-n", type=int, default=32)
    p.add_argument("--pretrained", action="store_true", help="real metric weights (else random, labelled)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--skip-e2e", action="store_true")
    p.add_argument("--fid-sqrtm", choices=["torch-fidelity", "eigh"], default=None)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")

    from fpbench import metrics as M
    from fpbench.stats import estimate_feature_stats
    from fpbench.treatments import FeatureRescaling

    if args.model in timing.BENCH_MODELS:
        G = timing.bench_generator(args.model, device=device)
    else:
        from fpbench.generators import load_generator
        G = load_generator(args.model, device=device).eval()
    names = [m for m in args.metrics.split(",") if m]

    from fpbench.generators import seeds_to_z

    def plain(b):
        with torch.no_grad():
            return G(seeds_to_z(list(range(b)), G.z_dim, device=device))

    if args.batch == "auto":
        batch, speeds = timing.best_batch_size(plain, batch_candidates(device), device=device, repeats=3)
    else:
        batch, speeds = int(args.batch), {}
    stats = estimate_feature_stats(G, n=args.stats_n, batch_size=min(batch, args.stats_n), progress=False,
                                   use_cache=False)
    treatment = FeatureRescaling(stats)
    metrics = {n: M.create(n, device=device, pretrained=args.pretrained) for n in names}

    fns = stage_fns(G, treatment, metrics, batch, device)
    with timing.peak_memory(device) as stage_mem:
        times = timing.interleaved(fns, repeats=args.repeats, warmup=1, device=device)
    stages = {k: {"ms_per_batch": timing.median(v) * 1e3, "images_per_s": batch / timing.median(v)}
              for k, v in times.items()}
    treat_ratio = timing.ratio(times, "synthesis+treatment", "synthesis")
    math = metric_math(metrics, args.n)
    e2e = None
    if not args.skip_e2e:
        with tempfile.TemporaryDirectory() as tmp:
            e2e = end_to_end(args.model, device, batch, args.n, names, args.pretrained, args.stats_n, Path(tmp),
                             fid_sqrtm=args.fid_sqrtm)
    result = {"model": args.model, "resolution": int(G.img_resolution), "batch": batch, "batch_speeds": speeds,
              "stages": stages, "treatment_ratio": treat_ratio, "metric_math_s": math, "stage_memory":
              stage_mem.as_dict(), "end_to_end": e2e, "machine": timing.machine_info(device),
              "clock": timing.default_clock(device)}
    text = report(result, args, argv, started)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
        Path(args.out).with_suffix(".json").write_text(json.dumps(result, indent=1, default=str))
    return result


def report(r: dict, args, argv, started: str) -> str:
    cmd = "python3 benchmarks/pipeline.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None
                                                                                  else sys.argv[1:]))
    lines = [f"# Pipeline throughput: {r['model']} ({r['resolution']}x{r['resolution']}) on {r['machine']['device']}",
             "", f"Measured {started}. Command:", "", "```", cmd.strip(), "```", "",
             "Machine: " + ", ".join(f"{k}={v}" for k, v in r["machine"].items()), "",
             f"Batch size {r['batch']}" + (" (auto: images/s by batch " + ", ".join(
                 f"{b}: {s:.3g}" for b, s in r["batch_speeds"].items()) + ")" if r["batch_speeds"] else ""),
             f"; stage clock: {r['clock']}; metric networks "
             + ("pretrained" if args.pretrained else "with random weights (uncalibrated)") + ".", "",
             "| stage | ms / batch | images/s |", "|---|---:|---:|"]
    for k, v in r["stages"].items():
        lines.append(f"| {k} | {v['ms_per_batch']:.1f} | {v['images_per_s']:.1f} |")
    lines += ["", f"Treated / plain synthesis time (median of paired ratios): {r['treatment_ratio']:.3f}", "",
              f"Metric math on {args.n} feature rows per side: "
              + (", ".join(f"{k} {v * 1e3:.0f} ms" for k, v in r["metric_math_s"].items()) or "none"), "",
              "Peak memory during the stage timings: " + json.dumps(r["stage_memory"])]
    e = r["end_to_end"]
    if e:
        t = e["timings"]
        keep = ("treatment_setup", "metrics_setup", "reference", "generate_original", "generate_treated",
                "metrics_update", "compute", "total_this_process")
        lines += ["", f"## End to end (app runner, n={args.n}, profile=true)", "",
                  f"{e['seconds']:.1f} s for {args.n} images = {e['images_per_s']:.2f} images/s (includes "
                  "statistics, metric setup and the generated reference set of n held-out images).", "",
                  "Runner stage seconds: " + ", ".join(f"{k} {t[k]:.2f}" for k in keep if k in t), "",
                  "Peak memory: " + json.dumps(e["memory"]), "",
                  "Values" + (" (uncalibrated)" if e["uncalibrated"] else "") + ": "
                  + ", ".join(f"{k}={v:.4g}" for k, v in e["values"].items())]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

"""Cost of a K-setting sweep of one model: K independent jobs vs. one shared pass.

    python benchmarks/shared_sweep.py [--n 64] [--metrics psnr,ssim,lpips,id] [--threads 1] [--out FILE.md]

Settings: feature rescaling at t = 1, 2, 3 and truncation psi = 0.7 of one model (`--model`: tiny
or a `fpbench.timing.BENCH_MODELS` network; random-weight metric networks), same seeds. Independent = `fpbench.runner.run_job` once per setting (what a
Hydra multirun does, minus process start-up); shared = `fpbench.shared_sweep.run_settings` (every
untreated image generated once, model/statistics loaded once). Both after one warm-up job (imports,
statistics and reference caches), timed with process CPU time and wall time; the metric values of
both must be identical.
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

SETTINGS = [["treatment=rescale", "treatment.t=1"], ["treatment=rescale", "treatment.t=2"],
            ["treatment=rescale", "treatment.t=3"], ["treatment=truncation", "treatment.psi=0.7"]]


def model_overrides(model: str, tmp: Path) -> list[str]:
    if model in timing.BENCH_MODELS and model != "tiny":
        return ["model=custom", f"model.source={timing.save_bench_generator(model, tmp / 'models')}",
                f"model.name={model}"]
    return [f"model={model}"]


def make_cfg(tmp, extra, n, metrics, model, batch):
    from hydra import compose, initialize_config_dir

    from fpbench.__main__ import CONF_DIR, _strip_hydra

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        return _strip_hydra(compose("config", overrides=[
            *model_overrides(model, tmp), "metrics.names=[" + metrics + "]", "metrics.pretrained=false", "logger=none",
            f"n={n}", "stats.n=32", "device=cpu", f"batch_size={batch}", "progress=false", "samples=0",
            "resume=false", f"results_dir={tmp}", *extra]))


def clocked(fn):
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--model", default="tiny")
    p.add_argument("--metrics", default="psnr,ssim,lpips,id")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from fpbench.runner import run_job
    from fpbench.shared_sweep import run_settings

    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cfgs = [make_cfg(tmp, s, args.n, args.metrics, args.model, args.batch) for s in SETTINGS]
        run_job(make_cfg(tmp, SETTINGS[0], args.batch, args.metrics, args.model, args.batch), tmp / "warm")
        alone, wall_i, cpu_i = clocked(lambda: [run_job(c, tmp / f"job{i}")["values"] for i, c in enumerate(cfgs)])
        (shared, stage_s), wall_s, cpu_s = clocked(lambda: run_settings(cfgs, tmp / "shared"))
    assert shared == alone, (shared, alone)
    k = len(cfgs)
    cmd = "python3 benchmarks/shared_sweep.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    text = "\n".join([
        f"# A {k}-setting sweep: independent jobs vs. one shared pass", "",
        f"Measured {started}. Command:", "", "```", cmd.strip(), "```", "",
        "Machine: " + ", ".join(f"{k_}={v}" for k_, v in timing.machine_info("cpu").items()), "",
        f"Model `{args.model}`, n = {args.n} images per setting, batch {args.batch}, metrics {args.metrics} "
        "(random-weight networks), settings: " + "; ".join(" ".join(s) for s in SETTINGS) + ".", "",
        "| | CPU s | wall s |", "|---|---:|---:|",
        f"| {k} independent jobs (`run_job` each) | {cpu_i:.1f} | {wall_i:.1f} |",
        f"| one shared pass (`run_settings`) | {cpu_s:.1f} | {wall_s:.1f} |",
        f"| shared / independent | {cpu_s / cpu_i:.2f} | {wall_s / wall_i:.2f} |", "",
        "Metric values identical in both: yes (asserted).", "",
        "Shared pass stage seconds: " + ", ".join(f"{a} {b:.2f}" for a, b in stage_s.items()), "",
        "The saving is the untreated generation (1 instead of K forward passes per batch), the model load and "
        "statistics look-up; each setting still runs its own treated forward pass and its own metric updates "
        "(pairwise networks see the original images once per setting).",
    ]) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()

"""Table 3 of the paper on this machine: seconds per image, plain vs. treated, serial vs. parallel.

    python benchmarks/table3.py [--models tiny,sg2-small-256] [--device cpu|cuda] [--batch 16]
        [--repeats 9] [--treatment rescale] [--threads N] [--out results/bench/table3_cpu.md]

"plain" is G(z); "serial" is the treated generator at batch 1 and "parallel" the treated generator
at `--batch`, as in the paper's Table 3 (V100, StyleGAN2 FFHQ: 0.075 s plain, 0.972 s serial,
0.409 s parallel). Each ratio compares treated with plain *at the same batch size*, measured
interleaved (plain and treated alternate, order rotating) and reported as the median of per-repeat
ratios, so load drift on a shared machine cancels. Models are `fpbench.timing.BENCH_MODELS` names
(random weights; cost equals the real networks') or zoo names / checkpoint paths. The treatment
enters `applied(G)` on every call, as the runner does per batch.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fpbench import timing  # noqa: E402

PAPER_V100 = {"plain": 0.075, "serial": 0.972, "parallel": 0.409}


def load(name: str, device):
    if name in timing.BENCH_MODELS:
        return timing.bench_generator(name, device=device), timing.BENCH_MODELS[name][2]
    from fpbench.generators import load_generator

    return load_generator(name, device=device).eval(), f"checkpoint {name}"


def make_treatment(name: str, G, n_stats: int, batch: int):
    from fpbench.stats import estimate_feature_stats
    from fpbench.treatments import build

    if name in ("rescale", "layerwise"):
        stats = estimate_feature_stats(G, n=max(n_stats, 2), batch_size=min(batch, n_stats), progress=False,
                                       use_cache=False)
        return build(name, stats=stats)
    return build(name)


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).resolve().parents[1], timeout=5).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="tiny,sg2-small-256")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--serial-repeats", type=int, default=None)
    p.add_argument("--treatment", default="rescale")
    p.add_argument("--stats-n", type=int, default=16, help="samples for the treatment's statistics (not timed)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--clock", choices=["wall", "cpu"], default=None,
                   help="default: cpu (process CPU time) on a CPU device, wall on a GPU")
    p.add_argument("--out", default=None, help="write a markdown report here")
    p.add_argument("--json", default=None, help="write the rows as JSON here")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    machine = timing.machine_info(device)

    rows = []
    for name in [m for m in args.models.split(",") if m]:
        G, what = load(name, device)
        tr = make_treatment(args.treatment, G, args.stats_n, args.batch)
        r = timing.table3(G, tr, batch=args.batch, repeats=args.repeats, serial_repeats=args.serial_repeats,
                          device=device, clock=args.clock)
        row = {"model": name, "what": what, "resolution": int(G.img_resolution), "treatment": args.treatment,
               **r.as_dict()}
        rows.append(row)
        print(json.dumps(row), flush=True)
        del G, tr
    machine["load_avg_1m_end"] = timing.machine_info(device).get("load_avg_1m")
    text = report(rows, args, machine, started, argv)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine, "rows": rows}, indent=1))
    return rows


def report(rows, args, machine, started, argv) -> str:
    cmd = "python3 benchmarks/table3.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    lines = [f"# Table 3 on {machine['device']}: seconds per image, plain vs. treated ({args.treatment})", "",
             f"Measured {started}, git `{git_commit()}`. Command:", "", "```", cmd.strip(), "```", "",
             "Machine: " + ", ".join(f"{k}={v}" for k, v in machine.items()), "",
             f"Interleaved timing: {args.repeats} repeats per batch size after 1 warm-up, plain and treated "
             "alternating; s/image = median / batch; ratio = median of per-repeat treated/plain ratios. "
             f"Clock: {rows[0]['clock'] if rows else '?'} (cpu = this process's CPU time, which other jobs on a "
             "shared machine hardly disturb; wall = elapsed time around a device synchronisation).", "",
             "| model | res | batch | plain b=1 | serial (treated b=1) | ratio | plain b=B | parallel (treated b=B) "
             "| ratio |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['resolution']} | {r['batch']} | {r['plain_serial']:.4g} | "
                     f"{r['treated_serial']:.4g} | {r['ratio_serial']:.3f} | {r['plain_parallel']:.4g} | "
                     f"{r['treated_parallel']:.4g} | {r['ratio_parallel']:.3f} |")
    pv = PAPER_V100
    lines.append(f"| paper, V100, SG2 FFHQ 1024 | 1024 | ? | {pv['plain']} | {pv['serial']} | "
                 f"{pv['serial'] / pv['plain']:.1f} | {pv['plain']} | {pv['parallel']} | "
                 f"{pv['parallel'] / pv['plain']:.1f} |")
    lines += ["", "Models: " + "; ".join(f"`{r['model']}` = {r['what']}" for r in rows) + "."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

"""Rebuild the paper's Tables 1-3 and Figs 6 and 9 from results/ (the files are the source of truth).

    python -m fpbench.report [--results results] [--sweep NAME ...] [--out DIR] [--wandb auto|offline|online|off]

Writes `<out>/table{1,2,3}.{md,tex}`, `<out>/fig{6,9}.{png,pdf}`, `<out>/runs.csv` and
`<out>/report.md` (everything in one page). `<out>` defaults to `<results>/report` (or
`<results>/report/sweeps/<name>` for one sweep, as the end of a sweep writes it).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from ..cache import atomic_write_text
from .collect import Run, load_paper, load_runs
from .plots import fig6, fig9
from .tables import Table, build_tables, to_latex, to_markdown


@dataclass
class ReportOutputs:
    out_dir: Path
    tables: dict[str, tuple[list[str], list[list]]] = field(default_factory=dict)  # W&B long format
    markdown: str = ""
    files: list[Path] = field(default_factory=list)
    pngs: list[Path] = field(default_factory=list)
    uncalibrated: bool = False
    n_runs: int = 0

    def summary_line(self) -> str:
        return f"{self.n_runs} runs -> {len(self.files)} files in {self.out_dir}"


def build_report(results_dir: str | Path = "results", sweeps: Iterable[str] | None = None,
                 out_dir: str | Path | None = None) -> ReportOutputs:
    results_dir = Path(results_dir)
    sweeps = list(sweeps) if sweeps else None
    if out_dir is not None:
        out = Path(out_dir)
    else:
        out = results_dir / "report" / ("sweeps/" + "_".join(sweeps) if sweeps else "")
    runs = load_runs(results_dir, sweeps)
    paper = load_paper(results_dir)
    report = ReportOutputs(out_dir=out, n_runs=len(runs))
    report.uncalibrated = any(r.uncalibrated for r in runs)
    tables = build_tables(runs, paper)
    sections = [f"# fpbench report\n\nFrom {len(runs)} runs under `{results_dir}`"
                + (f" (sweeps: {', '.join(sweeps)})" if sweeps else "") + ".\n"]
    if report.uncalibrated:
        sections.append("**Some numbers are UNCALIBRATED (random-weight metric networks, marked †): they "
                        "check the pipeline, not the paper.**\n")
    for name, table in tables.items():
        md, tex = to_markdown(table), to_latex(table)
        for suffix, text in (("md", md), ("tex", tex)):
            path = out / f"{name}.{suffix}"
            atomic_write_text(path, text)
            report.files.append(path)
        sections.append(md)
        report.tables[name] = (table.long_columns, table.long)
    for name, fn in (("fig6", fig6), ("fig9", fig9)):
        paths = fn(runs, out / name)
        report.files += paths
        report.pngs += [p for p in paths if p.suffix == ".png"]
        if paths:
            sections.append(f"### {'Fig. 6' if name == 'fig6' else 'Fig. 9'}\n\n![{name}]({name}.png)\n")
    runs_csv = out / "runs.csv"
    atomic_write_text(runs_csv, _runs_csv(runs))
    report.files.append(runs_csv)
    report.markdown = "\n".join(sections)
    atomic_write_text(out / "report.md", report.markdown)
    report.files.append(out / "report.md")
    return report


def _runs_csv(runs: list[Run]) -> str:
    keys = sorted({k for r in runs for k in r.rec.get("values", {})})
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["sweep", "job", "model", "dataset", "generated", "treatment", "params", "mode", "execution",
                "n", "uncalibrated"] + keys)
    for r in runs:
        params = ";".join(f"{k}={v}" for k, v in sorted(r.params.items()))
        w.writerow([r.sweep, r.rec.get("job"), r.model, r.dataset, r.generated, r.treatment, params, r.mode,
                    r.execution, r.n, r.uncalibrated] + [r.rec.get("values", {}).get(k, "") for k in keys])
    return buf.getvalue()


__all__ = ["ReportOutputs", "Table", "build_report"]

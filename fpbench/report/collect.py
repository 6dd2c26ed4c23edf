"""Read every job's metrics.json under results/ and the paper's reference numbers."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

PAPER_CSV = Path("paper") / "reference_numbers.csv"
REPO_RESULTS = Path(__file__).resolve().parents[2] / "results"

# metrics.json value keys for each table row (first present wins)
METRIC_KEYS = {
    "psnr": ("psnr",), "ssim": ("ssim",), "lpips": ("lpips",), "id": ("id", "identity", "arcface"),
    "fid": ("fid",), "precision": ("precision", "pr/precision"), "recall": ("recall", "pr/recall"),
}


@dataclass
class Run:
    path: Path
    rec: dict

    @property
    def sweep(self) -> str:
        return self.rec.get("sweep", "")

    @property
    def model(self) -> str:
        return self.rec.get("model", {}).get("name", "?")

    @property
    def family(self) -> str:
        return self.rec.get("model", {}).get("family", "?")

    @property
    def dataset(self) -> str:
        return self.rec.get("dataset", {}).get("name", "?")

    @property
    def generated(self) -> bool:
        return bool(self.rec.get("dataset", {}).get("generated"))

    @property
    def treatment(self) -> str:
        return self.rec.get("treatment", {}).get("name", "?")

    @property
    def params(self) -> dict:
        return self.rec.get("treatment", {}).get("params", {}) or {}

    @property
    def mode(self) -> str:
        return self.rec.get("mode", "eval")

    @property
    def execution(self) -> str:
        return self.rec.get("execution", "batched")

    @property
    def uncalibrated(self) -> bool:
        return bool(self.rec.get("any_uncalibrated"))

    @property
    def n(self) -> int:
        return int(self.rec.get("n", 0))

    def value(self, metric: str) -> float | None:
        values = self.rec.get("values", {})
        for key in METRIC_KEYS.get(metric, (metric,)):
            v = values.get(key)
            if isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v)):
                return float(v)
        return None

    def metric_uncalibrated(self, metric: str) -> bool:
        flags = self.rec.get("uncalibrated", {})
        name = "pr" if metric in ("precision", "recall") else metric
        return bool(flags.get(name, self.uncalibrated))

    def rank(self) -> tuple:
        """Which of several runs of the same setting a table shows: calibrated, most images, newest."""
        return (not self.uncalibrated, self.n, self.rec.get("finished", ""))


def load_runs(results_dir: str | Path, sweeps: Iterable[str] | None = None) -> list[Run]:
    root = Path(results_dir) / "runs"
    wanted = set(sweeps) if sweeps else None
    runs = []
    for path in sorted(root.glob("*/*/metrics.json")):
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if rec.get("status") != "complete":
            continue
        if wanted is not None and rec.get("sweep") not in wanted:
            continue
        runs.append(Run(path.parent, rec))
    return runs


@dataclass(frozen=True)
class PaperValue:
    value: float
    direction: str  # higher | lower


def load_paper(results_dir: str | Path | None = None) -> dict[tuple[str, str, str, str, str], PaperValue]:
    """{(table, model, dataset, method, metric): value} from results/paper/reference_numbers.csv."""
    candidates = ([Path(results_dir) / PAPER_CSV] if results_dir else []) + [REPO_RESULTS / PAPER_CSV]
    for path in candidates:
        if path.exists():
            with open(path, newline="") as f:
                return {(r["table"], r["model"], r["dataset"], r["method"], r["metric"]):
                        PaperValue(float(r["value"]), r["direction"]) for r in csv.DictReader(f)}
    return {}


def is_tt(run: Run) -> bool:
    p = run.params
    return run.treatment == "truncation" and _close(p.get("psi"), 0.7) and p.get("cutoff") in (None, "None")


def is_ours(run: Run) -> bool:
    p = run.params
    return (run.treatment == "rescale" and _close(p.get("t"), 2.0) and _close(p.get("p"), 2.0)
            and _close(p.get("c", 0.1), 0.1) and p.get("risk_rule", "paper") == "paper"
            and p.get("layers", "default") in ("default", None))


def _close(a, b) -> bool:
    try:
        return abs(float(a) - float(b)) < 1e-9
    except (TypeError, ValueError):
        return False


def best(runs: Iterable[Run]) -> Run | None:
    runs = list(runs)
    return max(runs, key=Run.rank) if runs else None

"""Tables 1-3 of the paper from results/, with the paper's numbers and the difference beside ours.

A table is built as data (`Table`: header, rows of cell strings, notes, and a long-format list of
every number for W&B), then rendered as Markdown or LaTeX. Runs join a table column by model family
and dataset; runs the paper has no number for (the tiny model, a custom checkpoint, a generated
reference set) get their own columns. Uncalibrated numbers carry a dagger and a note.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .collect import PaperValue, Run, best, is_ours, is_tt

DAGGER = "†"
UNCAL_NOTE = (f"{DAGGER} uncalibrated: computed with random-weight metric networks (pretrained=false); "
              "not comparable to the paper")
GEN_NOTE = ("generated ref.: FID/precision/recall against untreated images of the same model at held-out "
            "seeds (no real data), so no paper number applies")
DATASET_LABELS = {"afhq_cat": "AFHQ-Cat", "metfaces": "MetFaces", "ffhq": "FFHQ", "afhqv2": "AFHQv2",
                  "generated": "generated"}
METRIC_LABELS = {"psnr": ("PSNR", "higher"), "ssim": ("SSIM", "higher"), "lpips": ("LPIPS", "lower"),
                 "id": ("ID", "higher"), "fid": ("FID", "lower"), "precision": ("Precision", "higher"),
                 "recall": ("Recall", "higher")}
DISTRIBUTION = ("fid", "precision", "recall")

SPECS = {
    "table1": dict(family="stylegan2", paper_model="stylegan2", datasets=("afhq_cat", "metfaces", "ffhq"),
                   metrics=("psnr", "ssim", "lpips", "id", "fid"),
                   title="Table 1. Truncation trick (TT, psi = 0.7) vs feature rescaling (Ours, t = p = 2) "
                         "on StyleGAN2"),
    "table2": dict(family="stylegan3", paper_model="stylegan3", datasets=("ffhq", "afhq_cat"),
                   metrics=("psnr", "ssim", "lpips", "fid"),
                   title="Table 2. Truncation trick (TT, psi = 0.7) vs feature rescaling (Ours, t = p = 2) "
                         "on StyleGAN3"),
}
# StyleGAN3's AFHQ model is trained on AFHQv2; the paper's Table 2 calls that column AFHQ(-Cat).
PAPER_DATASET = {("table2", "afhqv2"): "afhq_cat"}


@dataclass
class Table:
    name: str
    title: str
    header: list[str]
    groups: list[tuple[str, int]]           # (label, span) above the header, LaTeX multicolumn
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)
    long: list[list] = field(default_factory=list)   # W&B table rows
    long_columns: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.long


@dataclass
class _Slot:
    key: str
    label: str
    paper_dataset: str | None     # column's dataset in the paper's CSV, None = no paper numbers
    generated: bool = False
    runs: dict = field(default_factory=dict)   # method -> Run


def _fmt(v: float | None, digits: int = 2) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def _cell(ours: float | None, uncal: bool, paper: PaperValue | None, digits: int = 2) -> tuple[str, float | None]:
    mark = DAGGER if (uncal and ours is not None) else ""
    if paper is None:
        return _fmt(ours, digits) + mark, None
    if ours is None:
        return f"— / {_fmt(paper.value, digits)}", None
    delta = ours - paper.value
    return f"{_fmt(ours, digits)}{mark} / {_fmt(paper.value, digits)} ({delta:+.{digits}f})", delta


def table_for(run: Run) -> str:
    return "table2" if (run.family == "stylegan3" or run.sweep == "table2") else "table1"


def comparison_table(name: str, runs: list[Run], paper: dict) -> Table:
    spec = SPECS[name]
    slots: dict[str, _Slot] = {ds: _Slot(ds, DATASET_LABELS.get(ds, ds), ds) for ds in spec["datasets"]}
    for run in runs:
        if run.mode != "eval" or table_for(run) != name:
            continue
        method = "TT" if is_tt(run) else "Ours" if is_ours(run) else None
        if method is None:
            continue
        ds = PAPER_DATASET.get((name, run.dataset), run.dataset)
        if run.family == spec["family"] and not run.generated and ds in spec["datasets"]:
            slot = slots[ds]
        else:
            key = f"{run.model}:{run.dataset}"
            model_ds = PAPER_DATASET.get((name, run.rec.get("model", {}).get("dataset")),
                                         run.rec.get("model", {}).get("dataset"))
            paper_ds = model_ds if (run.family == spec["family"] and model_ds in spec["datasets"]) else None
            label = f"{run.model} · " + ("generated ref." if run.generated
                                         else DATASET_LABELS.get(run.dataset, run.dataset))
            slot = slots.setdefault(key, _Slot(key, label, paper_ds, run.generated))
        slot.runs.setdefault(method, []).append(run)

    header = ["Metric"] + [f"{s.label} {m}" for s in slots.values() for m in ("TT", "Ours")]
    groups = [(s.label, 2) for s in slots.values()]
    rows, long = [], []
    any_uncal = any_gen = False
    for metric in spec["metrics"]:
        label, direction = METRIC_LABELS[metric]
        row = [f"{label} {'↑' if direction == 'higher' else '↓'}"]
        for slot in slots.values():
            for method in ("TT", "Ours"):
                # per metric, the best run that has it (a P&R-only run of the same setting may exist)
                run = best([r for r in slot.runs.get(method, []) if r.value(metric) is not None])
                ours = run.value(metric) if run else None
                uncal = bool(run and run.metric_uncalibrated(metric))
                pkey = (name, spec["paper_model"], slot.paper_dataset, "truncation_psi0.7" if method == "TT"
                        else "rescale_t2_p2", metric)
                pv = paper.get(pkey) if slot.paper_dataset and not (slot.generated and metric in DISTRIBUTION) else None
                text, delta = _cell(ours, uncal, pv)
                row.append(text)
                any_uncal |= uncal and ours is not None
                any_gen |= slot.generated and metric in DISTRIBUTION and ours is not None
                if run is not None and ours is not None:
                    long.append([slot.label, method, label, ours, pv.value if pv else None, delta, uncal,
                                 run.n, f"{run.sweep}/{run.rec.get('job')}"])
        rows.append(row)
    notes = ["cells: ours / paper (ours − paper); — = not run"]
    n_values = sorted({row[7] for row in long})
    if n_values:
        notes.append(f"images per setting: {', '.join(map(str, n_values))} (paper: 10000)")
    if any_uncal:
        notes.append(UNCAL_NOTE)
    if any_gen:
        notes.append(GEN_NOTE)
    if name == "table2":
        notes.append("StyleGAN3's AFHQ model is trained on AFHQv2; the paper reports it as AFHQ")
    return Table(name, spec["title"], header, groups, rows, notes, long,
                 ["column", "method", "metric", "ours", "paper", "delta", "uncalibrated", "n", "job"])


TIMING_ROWS = (("SG2", "none", "serial"), ("SG2 (batched)", "none", "batched"),
               ("Ours (Serial)", "rescale", "serial"), ("Ours (Parallel)", "rescale", "batched"))
PAPER_TIMING = {"SG2": "none", "Ours (Serial)": "rescale_serial", "Ours (Parallel)": "rescale_parallel"}


def timing_table(runs: list[Run], paper: dict) -> Table:
    datasets = ("ffhq", "afhq_cat")
    slots: dict[str, _Slot] = {ds: _Slot(ds, DATASET_LABELS[ds], ds) for ds in datasets}
    devices = set()
    for run in runs:
        if run.mode != "timing" or run.treatment not in ("none", "rescale"):
            continue
        if run.family == "stylegan2" and run.dataset in datasets:
            slot = slots[run.dataset]
        else:
            key = f"{run.model}:{run.dataset}"
            slot = slots.setdefault(key, _Slot(key, f"{run.model}", None))
        label = next(r[0] for r in TIMING_ROWS if r[1] == run.treatment and r[2] == run.execution)
        current = slot.runs.get(label)
        slot.runs[label] = best([r for r in (current, run) if r is not None])
        devices.add(run.rec.get("device", {}).get("name") or run.rec.get("device", {}).get("type", "?"))

    def ratio(slot, label, value):
        base = slot.runs.get("SG2") or slot.runs.get("SG2 (batched)")
        b = base.value("seconds_per_image") if base else None
        return value / b if (b and value is not None) else None

    header = ["Method"] + [s.label for s in slots.values()]
    rows, long = [], []
    for label, _, _ in TIMING_ROWS:
        row = [label]
        for slot in slots.values():
            run = slot.runs.get(label)
            ours = run.value("seconds_per_image") if run else None
            r = ratio(slot, label, ours)
            pv = paper.get(("table3", "stylegan2", slot.paper_dataset, PAPER_TIMING.get(label, ""),
                            "seconds_per_image_v100")) if slot.paper_dataset else None
            pbase = paper.get(("table3", "stylegan2", slot.paper_dataset, "none", "seconds_per_image_v100")) \
                if slot.paper_dataset else None
            ours_txt = "—" if ours is None else f"{ours:.3g} s" + (f" (×{r:.1f})" if r is not None else "")
            paper_txt = "" if pv is None else f" / {pv.value:.3f} s (×{pv.value / pbase.value:.1f})"
            row.append(ours_txt + paper_txt)
            if run is not None and ours is not None:
                long.append([slot.label, label, ours, r, pv.value if pv else None,
                             (pv.value / pbase.value) if (pv and pbase) else None, run.rec.get("batch_size"),
                             run.rec.get("device", {}).get("name"), f"{run.sweep}/{run.rec.get('job')}"])
        rows.append(row)
    notes = ["cells: ours seconds per image (× plain SG2) / paper on a V100 (× plain); compare the ratios "
             "across hardware, not the seconds",
             "SG2 and Ours (Serial): batch size 1; SG2 (batched) and Ours (Parallel): batched"]
    if devices:
        notes.append(f"measured on: {', '.join(sorted(map(str, devices)))}")
    return Table("table3", "Table 3. Time per image: StyleGAN2 vs feature rescaling, serial and parallel",
                 header, [], rows, notes, long,
                 ["column", "method", "seconds_per_image", "ratio", "paper_seconds", "paper_ratio",
                  "batch_size", "device", "job"])


def build_tables(runs: list[Run], paper: dict) -> dict[str, Table]:
    return {"table1": comparison_table("table1", runs, paper),
            "table2": comparison_table("table2", runs, paper),
            "table3": timing_table(runs, paper)}


# ---------------------------------------------------------------------------------------------
# Rendering

def to_markdown(table: Table) -> str:
    lines = [f"### {table.title}", ""]
    if table.empty:
        lines += ["_No results for this table yet._", ""]
    lines.append("| " + " | ".join(table.header) + " |")
    lines.append("|" + "|".join(["---"] + ["---:"] * (len(table.header) - 1)) + "|")
    for row in table.rows:
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |")
    lines.append("")
    lines += [f"- {n}" for n in table.notes]
    return "\n".join(lines) + "\n"


def _tex(s: str) -> str:
    out = s
    for a, b in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&"), ("#", r"\#"),
                 ("↑", r"$\uparrow$"), ("↓", r"$\downarrow$"), ("×", r"$\times$"), ("·", r"$\cdot$"),
                 ("—", "--"), ("−", "-"), (DAGGER, r"$^\dagger$"), ("ψ", r"$\psi$")):
        out = out.replace(a, b)
    return out


def to_latex(table: Table) -> str:
    ncols = len(table.header)
    lines = [r"\begin{table}[t]", r"\centering", r"\small",
             r"\caption{" + _tex(table.title) + "}", r"\begin{tabular}{l" + "r" * (ncols - 1) + "}", r"\toprule"]
    if table.groups:
        lines.append(" & ".join([""] + [rf"\multicolumn{{{span}}}{{c}}{{{_tex(label)}}}"
                                        for label, span in table.groups]) + r" \\")
        sub = [table.header[0]] + [h.rsplit(" ", 1)[-1] for h in table.header[1:]]
        lines.append(" & ".join(_tex(h) for h in sub) + r" \\")
    else:
        lines.append(" & ".join(_tex(h) for h in table.header) + r" \\")
    lines.append(r"\midrule")
    for row in table.rows:
        lines.append(" & ".join(_tex(c) for c in row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    if table.notes:
        lines.append(r"\par\footnotesize " + r"\\ ".join(_tex(n) for n in table.notes))
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"

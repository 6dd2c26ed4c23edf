"""Figs 6 and 9: precision vs recall per setting, drawn as in the paper.

Fig. 6: recall on x, precision on y. The untreated model ("StyleGAN2") sits bottom-right; the
truncation trick traces a curve over psi (blue, psi = 0.7 highlighted); feature rescaling gives one
point per (t, p) (orange, t = p = 2 in cyan); the red point is the ideal correction (precision 1,
recall unchanged) and the dashed line joins it to the untreated point; the gray band on the left is
the region of uninterest (recall below half the untreated model's). Fig. 9: feature rescaling over
the (t, p) grid, one colour per p, labelled by t. One panel per (model, dataset).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from .collect import Run, best

UNCAL_BANNER = "UNCALIBRATED: random-weight metric networks (pretrained=false), not comparable to the paper"


def _pr(run: Run) -> tuple[float, float] | None:
    p, r = run.value("precision"), run.value("recall")
    return (p, r) if p is not None and r is not None else None


def _groups(runs: list[Run]) -> dict[tuple[str, str], list[Run]]:
    out = defaultdict(list)
    for run in runs:
        if run.mode == "eval" and _pr(run) is not None:
            out[(run.model, run.dataset)].append(run)
    return dict(sorted(out.items()))


def _dedupe(runs: list[Run], key) -> dict:
    buckets = defaultdict(list)
    for r in runs:
        buckets[key(r)].append(r)
    return {k: best(v) for k, v in buckets.items()}


def _prefer_sweep(group: list[Run], sweep: str) -> list[Run]:
    """The figure's own sweep when it ran (Fig. 6 should not show all of Fig. 9's grid)."""
    own = [r for r in group if r.sweep == sweep]
    return own + [r for r in group if r.treatment == "none" and r.sweep != sweep] if own else group


def _zoom(ax, runs: list[Run], extra: list[tuple[float, float]] = ()) -> None:
    """Axes around the points (and the ideal point at precision 1), not the whole unit square."""
    pts = [_pr(r) for r in runs if _pr(r) is not None] + list(extra)
    if not pts:
        return
    ps, rs = [p for p, _ in pts], [r for _, r in pts]
    pad_r = max(0.05, 0.1 * (max(rs) - min(rs)))
    pad_p = max(0.05, 0.1 * (max(ps) - min(ps)))
    ax.set_xlim(max(0.0, min(rs) - pad_r), min(1.02, max(rs) + pad_r))
    ax.set_ylim(max(0.0, min(ps) - pad_p), 1.03)


def _rescale_key(r: Run):
    return (float(r.params.get("t")), float(r.params.get("p")))


def _setup():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _title(model: str, dataset: str, runs: list[Run]) -> str:
    gen = any(r.generated for r in runs)
    return f"{model} · {dataset}" + (" (generated ref.)" if gen else "") + f" · n={max(r.n for r in runs)}"


def _finish(fig, plt, out_base: Path, uncalibrated: bool) -> list[Path]:
    if uncalibrated:
        import textwrap

        width = int(fig.get_figwidth() * 11)  # characters that fit at 9 pt
        fig.suptitle(textwrap.fill(UNCAL_BANNER, width), color="crimson", fontsize=9, fontweight="bold")
        fig.text(0.5, 0.45, "UNCALIBRATED", ha="center", va="center", fontsize=44, color="crimson",
                 alpha=0.12, rotation=20, transform=fig.transFigure)
    fig.tight_layout(rect=(0, 0, 1, 0.93 if uncalibrated else 1))
    out_base.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in ("png", "pdf"):
        path = out_base.with_suffix(f".{ext}")
        from ..cache import atomic_path

        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=ext, dpi=150)
        paths.append(path)
    plt.close(fig)
    return paths


def fig6(runs: list[Run], out_base: Path) -> list[Path]:
    """Precision vs recall: untreated, truncation over psi, rescaling per (t, p)."""
    groups = {k: v for k, v in _groups(runs).items()
              if any(r.treatment in ("truncation", "rescale") for r in v)}
    if not groups:
        return []
    plt = _setup()
    fig, axes = plt.subplots(1, len(groups), figsize=(5.2 * len(groups), 4.6), squeeze=False)
    uncal = False
    for ax, ((model, dataset), group) in zip(axes[0], groups.items()):
        group = _prefer_sweep(group, "fig6")
        uncal |= any(r.rec.get("uncalibrated", {}).get("pr", r.uncalibrated) for r in group)
        base = best([r for r in group if r.treatment == "none"])
        trunc = _dedupe([r for r in group if r.treatment == "truncation"], lambda r: float(r.params.get("psi")))
        ours = _dedupe([r for r in group if r.treatment == "rescale"], _rescale_key)
        if base is not None:
            p0, r0 = _pr(base)
            ax.axvspan(0, r0 / 2, color="0.85", zorder=0, label="region of uninterest")
            ax.plot([r0, r0], [p0, 1.0], "k--", lw=1, zorder=1)
            ax.scatter([r0], [1.0], c="red", s=60, zorder=3, label="ideal (precision 1, recall kept)")
            ax.scatter([r0], [p0], c="black", marker="s", s=50, zorder=3, label="untreated")
        if trunc:
            pts = sorted(trunc.items())
            ax.plot([_pr(r)[1] for _, r in pts], [_pr(r)[0] for _, r in pts], "-o", color="tab:blue", ms=4,
                    lw=1, label="truncation (ψ)", zorder=2)
            for psi, r in pts:
                p, rc = _pr(r)
                ax.annotate(f"ψ={psi:g}", (rc, p), fontsize=7, xytext=(3, 3), textcoords="offset points")
                if abs(psi - 0.7) < 1e-9:
                    ax.scatter([rc], [p], c="blue", s=70, zorder=4, label="ψ = 0.7")
        if ours:
            for (t, p_), r in sorted(ours.items()):
                p, rc = _pr(r)
                star = abs(t - 2) < 1e-9 and abs(p_ - 2) < 1e-9
                ax.scatter([rc], [p], c="cyan" if star else "tab:orange", edgecolors="k", linewidths=0.5,
                           s=70 if star else 40, zorder=4, label="ours t = p = 2" if star else None)
                ax.annotate(f"t={t:g},p={p_:g}", (rc, p), fontsize=7, xytext=(3, -9), textcoords="offset points")
            ax.scatter([], [], c="tab:orange", s=40, label="ours (t, p)")
        _zoom(ax, group, [(1.0, _pr(base)[1])] if base is not None else [])
        _style_pr_axes(ax, _title(model, dataset, group))
    return _finish(fig, plt, out_base, uncal)


def _style_pr_axes(ax, title: str) -> None:
    ax.set_xlabel("recall (diversity)")
    ax.set_ylabel("precision (quality)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")


def fig9(runs: list[Run], out_base: Path) -> list[Path]:
    """Precision and recall of feature rescaling over the (t, p) grid."""
    groups = {k: v for k, v in _groups(runs).items() if any(r.treatment == "rescale" for r in v)}
    if not groups:
        return []
    plt = _setup()
    fig, axes = plt.subplots(1, len(groups), figsize=(5.2 * len(groups), 4.6), squeeze=False)
    uncal = False
    colors = {1.0: "tab:green", 2.0: "tab:orange", 3.0: "tab:purple"}
    for ax, ((model, dataset), group) in zip(axes[0], groups.items()):
        group = _prefer_sweep(group, "fig9")
        uncal |= any(r.rec.get("uncalibrated", {}).get("pr", r.uncalibrated) for r in group)
        ours = _dedupe([r for r in group if r.treatment == "rescale"], _rescale_key)
        by_p = defaultdict(list)
        for (t, p_), r in ours.items():
            by_p[p_].append((t, r))
        for p_, items in sorted(by_p.items()):
            items.sort()
            xs = [_pr(r)[1] for _, r in items]
            ys = [_pr(r)[0] for _, r in items]
            ax.plot(xs, ys, "-o", ms=5, lw=1, color=colors.get(p_, None), label=f"p = {p_:g} (t = {items[0][0]:g}"
                    f" … {items[-1][0]:g})")
            for k in {0, len(items) - 1}:  # label the ends of each line: t grows along it
                ax.annotate(f"t={items[k][0]:g}", (xs[k], ys[k]), fontsize=7, xytext=(3, 3),
                            textcoords="offset points", color=colors.get(p_, "k"))
        star = ours.get((2.0, 2.0))
        if star is not None:
            p, rc = _pr(star)
            ax.scatter([rc], [p], c="cyan", edgecolors="k", s=110, zorder=5, label="t = p = 2")
        base = best([r for r in group if r.treatment == "none"])
        if base is not None:
            p0, r0 = _pr(base)
            ax.scatter([r0], [p0], c="black", marker="s", s=50, zorder=5, label="untreated")
        _zoom(ax, [r for r in group if r.treatment in ("rescale", "none")])
        _style_pr_axes(ax, _title(model, dataset, group))
    return _finish(fig, plt, out_base, uncal)

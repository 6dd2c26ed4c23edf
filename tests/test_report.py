"""Tables and figures from results/ (synthetic metrics.json records): paper numbers side by side,
differences, dataset mapping, best-run choice, uncalibrated labels, Markdown/LaTeX/PNG/PDF output."""

import json
from pathlib import Path

import pytest

from fpbench.report import build_report
from fpbench.report.__main__ import main as report_main
from fpbench.report.collect import load_paper

REPO = Path(__file__).resolve().parents[1]


def write_run(results, sweep, job, *, model="sg2-ffhq-1024", family="stylegan2", dataset="ffhq", generated=False,
              treatment="rescale", params=None, values=None, uncal=None, n=10000, mode="eval", execution="batched",
              finished="2026-01-01T00:00:00+00:00"):
    uncal = uncal or {}
    rec = {"format": 1, "status": "complete", "config_hash": job, "sweep": sweep, "job": job, "mode": mode,
           "execution": execution, "batch_size": 1 if execution == "serial" else 16,
           "model": {"name": model, "family": family, "dataset": dataset, "source": model, "resolution": 1024},
           "dataset": {"name": dataset, "generated": generated}, "treatment": {"name": treatment, "params": params or {}},
           "values": values or {}, "uncalibrated": uncal, "any_uncalibrated": any(uncal.values()), "n": n,
           "device": {"type": "cuda", "name": "Test GPU"}, "finished": finished}
    d = results / "runs" / sweep / job
    d.mkdir(parents=True)
    (d / "metrics.json").write_text(json.dumps(rec))


TT = {"psi": 0.7, "cutoff": None}
OURS = {"t": 2.0, "p": 2.0, "c": 0.1, "risk_rule": "paper", "layers": "default"}
PAIR = {"psnr": 3.9, "ssim": 0.7, "lpips": 0.3, "id": 0.8, "fid": 12.0}


@pytest.fixture()
def results(tmp_path):
    r = tmp_path / "results"
    write_run(r, "table1", "ffhq-tt", treatment="truncation", params=TT, values={**PAIR, "psnr": 3.90})
    write_run(r, "table1", "ffhq-ours", params=OURS, values={**PAIR, "psnr": 4.00, "fid": 11.0})
    # a smaller, older run of the same setting must not win
    write_run(r, "single", "ffhq-ours-small", params=OURS, values={**PAIR, "psnr": 99.0}, n=100)
    write_run(r, "table2", "sg3-afhq-tt", model="sg3-t-afhqv2-512", family="stylegan3", dataset="afhqv2",
              treatment="truncation", params=TT, values={"psnr": 16.5, "ssim": 0.7, "lpips": 0.2, "fid": 25.0})
    write_run(r, "smoke", "tiny-ours", model="tiny", family="tiny", dataset="generated", generated=True,
              params=OURS, values={"psnr": 21.0, "ssim": 0.8, "fid": 3.0}, uncal={"psnr": False, "fid": True}, n=8)
    for execution, tr, sec in (("serial", "none", 0.02), ("serial", "rescale", 0.2), ("batched", "rescale", 0.1)):
        write_run(r, "table3", f"t-{tr}-{execution}", mode="timing", execution=execution, treatment=tr,
                  params=OURS if tr == "rescale" else {}, values={"seconds_per_image": sec}, n=100)
    pr = lambda p, rc: {"precision": p, "recall": rc}  # noqa: E731
    write_run(r, "fig6", "none", treatment="none", values=pr(0.6, 0.5))
    for psi, p, rc in ((0.5, 0.9, 0.2), (0.7, 0.8, 0.3), (1.0, 0.6, 0.5)):
        write_run(r, "fig6", f"psi{psi}", treatment="truncation", params={"psi": psi, "cutoff": None}, values=pr(p, rc))
    for t in (0.0, 2.0, 4.0):
        for p_ in (1.0, 2.0, 3.0):
            write_run(r, "fig9", f"t{t}p{p_}", params={**OURS, "t": t, "p": p_},
                      values=pr(0.6 + 0.05 * p_ - 0.02 * t, 0.5 - 0.03 * p_ + 0.01 * t))
    return r


def test_paper_numbers_are_the_committed_copy():
    committed = (REPO / "results" / "paper" / "reference_numbers.csv").read_text()
    shared = REPO.parent / "shared" / "paper" / "reference_numbers.csv"
    if shared.exists():
        assert committed == shared.read_text()
    paper = load_paper()
    assert paper[("table1", "stylegan2", "ffhq", "truncation_psi0.7", "psnr")].value == 3.80
    assert paper[("table3", "stylegan2", "ffhq", "rescale_parallel", "seconds_per_image_v100")].value == 0.409


def test_tables(results):
    out = build_report(results)
    t1 = (out.out_dir / "table1.md").read_text()
    psnr = next(line for line in t1.splitlines() if line.startswith("| PSNR"))
    cells = [c.strip() for c in psnr.strip("|").split("|")]
    # Metric, AFHQ-Cat TT/Ours, MetFaces TT/Ours, FFHQ TT/Ours, tiny TT/Ours
    assert cells[5] == "3.90 / 3.80 (+0.10)" and cells[6] == "4.00 / 4.28 (-0.28)"
    assert cells[1] == "— / 3.66"
    fid = [c.strip() for c in next(x for x in t1.splitlines() if x.startswith("| FID")).strip("|").split("|")]
    assert fid[6] == "11.00 / 11.91 (-0.91)"
    assert fid[8] == "3.00†"                  # tiny: uncalibrated FID, no paper number
    assert "tiny · generated ref." in t1
    assert "uncalibrated" in t1 and "generated ref.:" in t1
    t2 = (out.out_dir / "table2.md").read_text()
    assert "16.50 / 16.03 (+0.47)" in t2       # SG3 AFHQv2 model -> the paper's AFHQ column
    t3 = (out.out_dir / "table3.md").read_text()
    assert "0.02 s (×1.0) / 0.075 s (×1.0)" in t3
    assert "0.1 s (×5.0) / 0.409 s (×5.5)" in t3
    tex = (out.out_dir / "table1.tex").read_text()
    assert tex.count("\\\\") >= 7 and "$^\\dagger$" in tex and "\\multicolumn{2}{c}{FFHQ}" in tex
    cols, rows = out.tables["table1"]
    assert cols[:4] == ["column", "method", "metric", "ours"] and len(rows) == 5 * 2 + 3
    assert out.uncalibrated


def test_figures_and_cli(results, capsys):
    assert report_main(["--results", str(results)]) == 0
    out = capsys.readouterr().out
    report = results / "report"
    for name in ("fig6.png", "fig6.pdf", "fig9.png", "fig9.pdf", "runs.csv", "report.md"):
        assert (report / name).stat().st_size > 500, name
        assert str(report / name) in out
    from PIL import Image

    with Image.open(report / "fig6.png") as im:
        assert im.size[0] > 300 and im.size[1] > 300
    assert len((report / "runs.csv").read_text().splitlines()) == 1 + 5 + 3 + 4 + 9
    # the summary W&B run (offline here) holds the tables and figures, flagged uncalibrated
    from fpbench.tracking import offline_run_meta, offline_run_summary

    (run_dir,) = (results / "wandb").glob("offline-run-*")
    meta = offline_run_meta(run_dir)
    assert (meta["group"], meta["job_type"]) == ("report", "summary") and "uncalibrated" in meta["tags"]
    summary = offline_run_summary(run_dir)
    assert summary["uncalibrated"] is True and summary["tables"] == ["table1", "table2", "table3"]
    logged = {p.name for p in (run_dir / "files" / "media").rglob("*")}
    assert {n.split("_")[0] for n in logged if n.endswith(".table.json")} == {"table1", "table2", "table3"}
    assert {n.split("_")[0] for n in logged if n.endswith(".png")} == {"fig6", "fig9"}


def test_report_without_runs_is_one_line(tmp_path, capsys):
    assert report_main(["--results", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fpbench-report: error: no runs under")

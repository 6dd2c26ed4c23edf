"""End to end on the tiny model: every sweep's shape runs (Hydra multirun in a temp dir), writes
metrics.json + samples, mirrors the same numbers into an offline W&B run, is skipped on rerun, and
`python -m fpbench.report` rebuilds tables and figures from the results."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fpbench.tracking import offline_run_meta, offline_run_records, offline_run_summary

REPO = Path(__file__).resolve().parents[1]
SMOKE_METRICS = "metrics.names=[psnr,ssim,pr]"   # pairwise + a distribution metric, seconds on CPU


def run(args, cwd, timeout=600, **env):
    full_env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
                "WANDB_MODE": "offline", "WANDB_SILENT": "true", **env}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=full_env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    work = tmp_path_factory.mktemp("smoke")
    proc = run(["-m", "fpbench", "sweep=smoke", f"results_dir={work / 'results'}", SMOKE_METRICS,
                "progress=false"], cwd=work)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return work / "results", proc


def records(results, sweep):
    return {p.parent.name: json.loads(p.read_text()) for p in (results / "runs" / sweep).glob("*/metrics.json")}


def test_smoke_sweep_writes_every_job(smoke):
    results, _ = smoke
    recs = records(results, "smoke")
    assert len(recs) == 13
    kinds = {(r["mode"], r["treatment"]["name"], r["execution"]) for r in recs.values()}
    assert {("eval", t, "batched") for t in ("none", "truncation", "rescale", "layerwise", "pixelnorm")} <= kinds
    assert {("timing", t, e) for t in ("none", "rescale") for e in ("serial", "batched")} <= kinds
    for job, r in recs.items():
        job_dir = results / "runs" / "smoke" / job
        assert r["status"] == "complete" and r["sweep"] == "smoke" and r["job"] == job
        assert r["n"] == 8 and r["seeds"] == {"start": 0, "stop": 8, "noise_mode": "const",
                                               "z": "np.random.RandomState(seed).randn(1, z_dim)"}
        assert (job_dir / "config.yaml").is_file() and not (job_dir / "checkpoint.pt").exists()
        assert len(r["fingerprints"]["generator"]) == 16 and r["git"]["commit"]
        assert r["versions"]["torch"] and r["device"]["type"] == "cpu"
        assert r["model"]["name"] == "tiny" and r["dataset"]["generated"] is True
        if r["mode"] == "timing":
            assert r["values"]["seconds_per_image"] > 0 and r["uncalibrated"] == {}
            continue
        assert set(r["values"]) == {"psnr", "ssim", "precision", "recall"}
        assert r["uncalibrated"] == {"psnr": False, "ssim": False, "pr": True} and r["any_uncalibrated"]
        assert r["timings"]["generate_original"] > 0 and r["timings"]["images_per_second"] > 0
        assert r["samples"] and all((job_dir / s).is_file() for s in r["samples"])
        assert 0 <= r["values"]["precision"] <= 1 and 0 <= r["values"]["recall"] <= 1
        if r["treatment"]["name"] == "none":
            assert r["values"]["psnr"] >= 99 and r["values"]["ssim"] == pytest.approx(1.0, abs=1e-4)
        else:
            assert r["values"]["psnr"] < 99
    # treatment parameters reach the treatment
    psis = sorted(r["treatment"]["params"]["psi"] for r in recs.values() if r["treatment"]["name"] == "truncation")
    assert psis == [0.5, 0.7]


def test_wandb_offline_runs_hold_the_same_numbers(smoke):
    results, _ = smoke
    for job, r in records(results, "smoke").items():
        run_dir = Path(r["wandb"]["dir"])
        assert r["wandb"]["mode"] == "offline" and run_dir.is_dir()
        summary = offline_run_summary(run_dir)
        for key, value in r["values"].items():
            assert summary[key] == pytest.approx(value, rel=1e-12), (job, key)
        assert summary["uncalibrated"] is r["any_uncalibrated"]
        meta = offline_run_meta(run_dir)
        assert meta["group"] == "smoke" and meta["job_type"] == r["treatment"]["name"]
        assert meta["name"] == f"smoke/{job}" and meta["config"]["n"] == 8
        kinds = {k for k, _ in offline_run_records(run_dir)}
        assert "exit" in kinds  # wandb.finish() ran
    # the sweep's summary run, with the regenerated tables
    summaries = [d for d in (results / "wandb").glob("offline-run-*") if offline_run_meta(d).get("job_type") == "summary"]
    assert len(summaries) == 1
    meta = offline_run_meta(summaries[0])
    assert meta["group"] == "smoke" and "uncalibrated" in meta["tags"]
    assert offline_run_summary(summaries[0])["uncalibrated"] is True


def test_sweep_end_report_and_rerun_skips(smoke, tmp_path):
    results, first = smoke
    report = results / "report" / "sweeps" / "smoke"
    for name in ("table1.md", "table1.tex", "table3.md", "fig6.png", "fig6.pdf", "fig9.png", "runs.csv"):
        assert (report / name).is_file(), name
    before = {p: p.stat().st_mtime_ns for p in (results / "runs" / "smoke").glob("*/metrics.json")}
    proc = run(["-m", "fpbench", "sweep=smoke", f"results_dir={results}", SMOKE_METRICS, "progress=false",
                "logger=none"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("done already") == 13
    assert before == {p: p.stat().st_mtime_ns for p in before}


def test_report_command_on_smoke_results(smoke, tmp_path):
    results, _ = smoke
    proc = run(["-m", "fpbench.report", "--results", str(results)], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = results / "report"
    table1 = (out / "table1.md").read_text()
    recs = records(results, "smoke")
    ours = next(r for r in recs.values() if r["treatment"]["name"] == "rescale"
                and r["treatment"]["params"]["t"] == 2 and r["treatment"]["params"]["p"] == 2)
    tt = next(r for r in recs.values() if r["treatment"]["name"] == "truncation"
              and r["treatment"]["params"]["psi"] == 0.7)
    row = next(line for line in table1.splitlines() if line.startswith("| PSNR"))
    assert f"{tt['values']['psnr']:.2f}" in row and f"{ours['values']['psnr']:.2f}" in row
    assert "— / 3.80" in row and "— / 4.28" in row       # the paper's FFHQ numbers side by side
    assert "tiny · generated ref." in table1
    tex = (out / "table1.tex").read_text()
    assert "\\begin{tabular}" in tex and "\\multicolumn{2}{c}{FFHQ}" in tex
    table3 = (out / "table3.md").read_text()
    assert "Ours (Parallel)" in table3 and "0.409 s" in table3
    for name in ("fig6.png", "fig6.pdf", "fig9.png", "fig9.pdf"):
        assert (out / name).stat().st_size > 1000
    assert "wrote:" in proc.stdout and str(out / "fig6.png") in proc.stdout


# Each paper sweep's exact shape at toy size (sweep=X size=smoke); no W&B to keep it quick.
SHAPES = {"table1": 2, "table2": 2, "table3": 4, "fig6": 12, "fig9": 15}


# table2 has table1's shape on tiny, fig6/fig9 are 12/15 jobs: slow-marked (`pytest -m slow`);
# every job of every sweep is composed and validated in test_config.
@pytest.mark.parametrize("sweep", [s if s in ("table1", "table3") else pytest.param(s, marks=pytest.mark.slow)
                                   for s in sorted(SHAPES)])
def test_each_sweep_runs_in_smoke_size(tmp_path, sweep):
    results = tmp_path / "results"
    proc = run(["-m", "fpbench", f"sweep={sweep}", "size=smoke", "metrics=fast", "logger=none",
                f"results_dir={results}", "progress=false", "stats.n=8"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    recs = records(results, sweep)
    assert len(recs) == SHAPES[sweep]
    assert all(r["model"]["name"] == "tiny" and r["sweep"] == sweep for r in recs.values())
    assert (results / "report" / "sweeps" / sweep / "table1.md").is_file()

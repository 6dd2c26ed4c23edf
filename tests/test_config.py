"""Every config and every sweep composes (Hydra compose API); values validate; bad input is one line."""


import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import fpbench.config as C
from fpbench.__main__ import CONF_DIR, main, preflight, rewrite_model_path
from fpbench.errors import ConfigError, MissingFileError
from fpbench.sweeper import expand_jobs

GROUPS = ["model", "dataset", "treatment", "metrics", "logger", "sweep", "size"]
SWEEP_JOBS = {"table1": 6, "table2": 4, "table3": 8, "fig6": 12, "fig9": 15, "smoke": 13}


def options(group):
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


@pytest.fixture()
def hydra_ctx():
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        yield


def sweep_jobs(overrides):
    base = compose("config", overrides=overrides, return_hydra_config=True)
    sw = base.hydra.sweeper
    return base, expand_jobs(dict(sw.get("params") or {}), [dict(g) for g in sw.get("grids") or []], overrides)


def test_issue_option_names_exist():
    assert set(options("model")) >= {"sg2-ffhq-1024", "sg2-afhqcat-512", "sg2-metfaces-1024", "sg2-afhqv2-512",
                                     "sg3-t-ffhq-1024", "sg3-r-ffhq-1024", "sg3-t-afhqv2-512",
                                     "sg3-r-afhqv2-512", "tiny"}
    assert set(options("dataset")) >= {"ffhq", "afhq_cat", "afhqv2", "metfaces", "generated"}
    assert set(options("treatment")) == {"none", "truncation", "rescale", "layerwise", "pixelnorm"}
    assert set(options("metrics")) >= {"paper", "fast", "all"}
    assert set(options("logger")) == {"wandb", "none"}
    assert set(options("sweep")) >= set(SWEEP_JOBS)


@pytest.mark.parametrize("group", GROUPS)
def test_every_option_composes_and_validates(hydra_ctx, group):
    for opt in options(group):
        overrides = [f"{group}={opt}"]
        if group == "model" and opt == "custom":
            overrides.append("model.source=/x/net.pkl")
        cfg = compose("config", overrides=overrides)
        assert OmegaConf.is_missing(cfg, "n") is False
        C.validate(cfg, check_paths=False)
        if group == "model":
            assert cfg.model.name == (opt if opt != "custom" else "net")
            assert cfg.dataset.name == cfg.model.dataset  # a model brings its default dataset


def test_model_default_dataset_and_override(hydra_ctx):
    cfg = compose("config", overrides=["model=sg2-metfaces-1024"])
    assert (cfg.dataset.name, cfg.model.family, cfg.model.resolution) == ("metfaces", "stylegan2", 1024)
    cfg = compose("config", overrides=["model=sg3-t-afhqv2-512", "dataset=generated"])
    assert cfg.dataset.generated and cfg.model.family == "stylegan3"


def test_paper_defaults(hydra_ctx):
    cfg = compose("config", overrides=["treatment=rescale"])
    assert (cfg.n, cfg.seed, cfg.noise_mode, cfg.batch_size) == (10000, 0, "const", None)
    assert (cfg.treatment.t, cfg.treatment.p, cfg.treatment.c, cfg.stats.n) == (2.0, 2.0, 0.1, 3000)
    assert compose("config", overrides=["treatment=truncation"]).treatment.psi == 0.7
    assert list(compose("config", overrides=["metrics=paper"]).metrics.names) == \
        ["psnr", "ssim", "lpips", "id", "fid", "pr"]


@pytest.mark.parametrize("sweep", sorted(SWEEP_JOBS))
def test_every_sweep_composes_every_job(hydra_ctx, sweep):
    base, jobs = sweep_jobs([f"sweep={sweep}"])
    assert str(base.hydra.mode).endswith("MULTIRUN")
    assert base.sweep.name == sweep
    assert len(jobs) == SWEEP_JOBS[sweep]
    assert len({tuple(sorted(j)) for j in jobs}) == len(jobs)  # no duplicate job
    for job in jobs:
        cfg = compose("config", overrides=job)
        C.validate(cfg, check_paths=False)
        assert cfg.sweep.name == sweep


@pytest.mark.parametrize("sweep", ["table1", "table2", "table3", "fig6", "fig9"])
def test_size_smoke_keeps_the_shape_on_tiny(hydra_ctx, sweep):
    _, full = sweep_jobs([f"sweep={sweep}"])
    _, jobs = sweep_jobs([f"sweep={sweep}", "size=smoke"])
    n_models = len({o for j in full for o in j if o.startswith("model=")})
    assert len(jobs) == len(full) // n_models
    for job in jobs[:3]:
        cfg = compose("config", overrides=job)
        assert cfg.model.name == "tiny" and cfg.n == 8 and cfg.metrics.pretrained is False


def test_sweep_contents(hydra_ctx):
    _, jobs = sweep_jobs(["sweep=table1"])
    cfgs = [compose("config", overrides=j) for j in jobs]
    assert {(c.model.family, c.dataset.name, c.treatment.name) for c in cfgs} == {
        ("stylegan2", d, t) for d in ("ffhq", "afhq_cat", "metfaces") for t in ("truncation", "rescale")}
    assert all(c.treatment.get("psi", 0.7) == 0.7 for c in cfgs)
    _, jobs = sweep_jobs(["sweep=fig9"])
    grid = {(float(dict(o.split("=") for o in j)["treatment.t"]), float(dict(o.split("=") for o in j)["treatment.p"]))
            for j in jobs}
    assert grid == {(float(t), float(p)) for t in range(5) for p in (1, 2, 3)}
    _, jobs = sweep_jobs(["sweep=fig6"])
    psis = sorted(float(dict(o.split("=") for o in j)["treatment.psi"]) for j in jobs if "treatment=truncation" in j)
    assert psis == [0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    assert sum("treatment=rescale" in j for j in jobs) == 5 and sum("treatment=none" in j for j in jobs) == 1
    _, jobs = sweep_jobs(["sweep=table3"])
    cfgs = [compose("config", overrides=j) for j in jobs]
    assert {(c.mode, c.treatment.name, c.execution) for c in cfgs} == {
        ("timing", t, e) for t in ("none", "rescale") for e in ("serial", "batched")}


def test_command_line_replaces_sweep_values(hydra_ctx):
    _, jobs = sweep_jobs(["sweep=fig9", "treatment.t=2"])
    assert len(jobs) == 3 and all("treatment.t=2" in j for j in jobs)


def test_config_hash_ignores_execution_keys(hydra_ctx):
    a = compose("config", overrides=["n=16"])
    b = compose("config", overrides=["n=16", "logger=none", "progress=false", "batch_size=3", "results_dir=/x"])
    c = compose("config", overrides=["n=17"])
    assert C.config_hash(a) == C.config_hash(b) != C.config_hash(c)
    # stats settings only matter to treatments that use statistics
    t1 = compose("config", overrides=["treatment=truncation"])
    t2 = compose("config", overrides=["treatment=truncation", "stats.n=99"])
    assert C.config_hash(t1) == C.config_hash(t2)


def test_model_path_is_rewritten_to_custom(hydra_ctx):
    argv = rewrite_model_path(["model=/ckpt/net.pkl", "n=3"])
    assert argv == ["model=custom", "model.source=/ckpt/net.pkl", "n=3"]
    assert rewrite_model_path(["model=tiny"]) == ["model=tiny"]
    cfg = compose("config", overrides=argv)
    assert (cfg.model.name, cfg.model.source, cfg.model.family, cfg.dataset.name) == \
        ("net", "/ckpt/net.pkl", "custom", "generated")


def test_preflight_validates_every_sweep_job(tmp_path):
    # only the 4th fig9 job has t=-1: the whole sweep is refused before any job runs
    with pytest.raises(ConfigError, match=r"treatment.t=-1.0 is invalid"):
        preflight(["sweep=fig9", "size=smoke", "treatment.t=0,1,2,-1", f"results_dir={tmp_path}/r"])
    with pytest.raises(MissingFileError, match="dataset path"):
        preflight(["dataset=ffhq", "dataset.path=/does/not/exist", f"results_dir={tmp_path}/r"])


BAD = [
    (["model=nope"], r"unknown model option 'nope'; choose one of: .*sg2-ffhq-1024"),
    (["nn=5"], r"Could not override 'nn': Key 'nn' not in 'Config'"),
    (["+foo=1"], r"unknown key foo; check the spelling"),
    (["treatment=truncation", "treatment.t=2"], r"Key 't' not in 'TruncationConfig'"),
    (["treatment.t=-1"], r"treatment.t=-1.0 is invalid; it must be a number >= 0"),
    (["treatment.p=0"], r"treatment.p=0.0 is invalid; it must be a number > 0"),
    (["n=0"], r"n=0 is invalid; it must be an integer >= 1"),
    (["n=abc"], r"Value 'abc' of type 'str' could not be converted to Integer"),
    (["batch_size=0"], r"batch_size=0 is invalid"),
    (["dataset=ffhq", "dataset.path=/no/such/ffhq.zip"], r"dataset path /no/such/ffhq.zip does not exist"),
    (["dataset=ffhq"], r"dataset ffhq has no path but FID/precision-recall need real images"),
    (["model=/no/such/net.pkl"], r"model checkpoint /no/such/net.pkl does not exist"),
    (["sweep=fig9", "dataset=generated", "treatment.t=0,-1"], r"treatment.t=-1.0 is invalid"),
    (["device=gpu"], r"device='gpu' is not a device"),
    (["dataset=generated", "n=20", "dataset.heldout_seed=10"], r"reference seeds 10..29 overlap the evaluated seeds 0..19"),
]


@pytest.mark.parametrize("argv,pattern", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, argv, pattern):
    import re

    results = tmp_path / "results"
    rc = main(argv + [f"results_dir={results}", "logger=none"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and err[0].startswith("fpbench: error: "), err
    assert re.search(pattern, err[0]), err[0]
    assert not (results / "runs").exists()


def test_unwritable_results_dir(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    rc = main([f"results_dir={blocker}/results", "logger=none"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert err[0].startswith(f"fpbench: error: results_dir={blocker}/results is not writable")


def test_job_dirname_is_path_safe():
    assert C._job_dirname("") == "default"
    assert "/" not in C._job_dirname("model.source=/a/b.pkl,n=3")
    long = C._job_dirname("x=" + "a" * 500)
    assert len(long) <= 180 and long != C._job_dirname("x=" + "a" * 499)

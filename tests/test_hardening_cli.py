"""Bad command lines (`python -m fpbench ...`): one stderr line, nonzero exit, no result files.

The cases run `fpbench.__main__.main` in-process (a real process costs seconds of imports each);
`test_cli_real_process_*` checks in real processes that the exit status and the absence of a
Python traceback hold there too. The bad-input table's summary counts these cases as well.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

import pytest
import torch

from hardening_cases import REPO, denied, full_disk, leftovers, mock_enospc

FIXTURES = REPO.parent / "shared" / "fixtures"
QUICK = ["logger=none", "n=4", "metrics=fast", "progress=false", "stats.n=4"]
# What a job folder may hold after a refused run: Hydra's own record of the command, nothing else.
HYDRA_BOOKKEEPING = (".hydra", "fpbench.log")


@dataclass
class CliCase:
    name: str
    argv: list[str]                      # {tmp} is replaced by the case's temp dir
    pattern: str
    setup: object = None                 # callable(tmp) run first
    around: object = None                # callable(tmp) -> context manager the run happens in
    entry: str = "CLI"
    skip: object = None                  # callable() -> reason to skip, or None
    env: dict = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.entry}: {self.name}"


def _write(name: str, data: bytes):
    return lambda tmp: (tmp / name).write_bytes(data)


def _copy_fixture(name: str, dest: str, nbytes: int | None = None):
    """Copy a fixture (its first `nbytes` only, if given); skip where the fixtures are absent."""
    def setup(tmp):
        src = FIXTURES / name
        if not src.exists():
            pytest.skip(f"fixture {src} not found")
        (tmp / dest).write_bytes(src.read_bytes()[:nbytes])
    return setup


CLI_CASES = [
    # wrong types
    CliCase("n is not a number", ["n=abc"], r"Value 'abc' of type 'str' could not be converted to Integer"),
    CliCase("n is fractional", ["n=1.5"], r"Value '1\.5' of type 'float' could not be converted to Integer"),
    CliCase("psi is text", ["treatment=truncation", "treatment.psi=high"], r"Value 'high' of type 'str' could not be converted to Float"),
    CliCase("results_dir is a list", ["results_dir=[a,b]"], r"results_dir|Value '\[.*\]'"),
    CliCase("treatment layers is not a list", ["treatment.layers=3"], r"layers"),
    # out of range / not a choice
    CliCase("negative n", ["n=-5"], r"n=-5 is invalid; it must be an integer >= 1"),
    CliCase("negative seed", ["seed=-1"], r"seed=-1 is invalid; it must be an integer >= 0"),
    CliCase("seeds beyond 2**32", ["seed=4294967290", "n=10"], r"exceed 2\*\*32-1"),
    CliCase("psi is NaN", ["treatment=truncation", "treatment.psi=nan"], r"treatment\.psi=nan is invalid"),
    CliCase("t is infinite", ["treatment.t=inf"], r"treatment\.t=inf is invalid"),
    CliCase("c is negative", ["treatment.c=-0.1"], r"treatment\.c=-0\.1 is invalid"),
    CliCase("unknown risk rule", ["treatment.risk_rule=mine"], r"treatment\.risk_rule='mine' is invalid; choose one of paper, official"),
    CliCase("unknown dtype", ["dtype=float64"], r"dtype='float64' is invalid; choose one of float32, float16, bfloat16"),
    CliCase("unknown noise mode", ["noise_mode=loud"], r"noise_mode='loud' is invalid"),
    CliCase("unknown mode", ["mode=train"], r"mode='train' is invalid; choose one of eval, timing"),
    CliCase("unknown logger mode", ["logger=wandb", "logger.mode=cloud"], r"logger\.mode='cloud' is invalid"),
    CliCase("unknown metric", ["metrics.names=[psnr,fud]"], r"unknown metric 'fud'; choose from"),
    CliCase("metric listed twice", ["metrics.names=[psnr,psnr]"], r"lists a metric twice"),
    CliCase("options for a metric that does not exist", ["+metrics.options.fud.x=1"], r"metrics\.options\.fud: no metric .fud."),
    CliCase("stats from one sample", ["stats.n=1"], r"stats\.n=1 is invalid; it must be an integer >= 2"),
    CliCase("one reference image", ["dataset.n_ref=1"], r"dataset\.n_ref=1 is invalid"),
    CliCase("checkpoint_every=0", ["checkpoint_every=0"], r"checkpoint_every=0 is invalid"),
    CliCase("unknown treatment", ["treatment=cure"], r"unknown treatment option 'cure'; choose one of"),
    CliCase("unknown sweep", ["sweep=table9"], r"unknown sweep option 'table9'"),
    CliCase("unknown flag", ["--bogus"], r"unrecognized arguments: --bogus .*; flags such as -m go before the overrides"),
    CliCase("flag between overrides", ["-m", "treatment=truncation,rescale"],
            r"unrecognized arguments: treatment=truncation,rescale .*flags such as -m go before the overrides"),
    CliCase("CUDA device that does not exist", ["device=cuda:7"], r"device=cuda:7 but",
            skip=lambda: "8 CUDA devices here" if torch.cuda.device_count() > 7 else None),
    # files: missing, empty, corrupt, wrong format, hostile, permission denied, disk full
    CliCase("checkpoint that is not a checkpoint", ["model={tmp}/net.pkl"],
            r"net\.pkl is not a checkpoint \(it looks like", setup=_write("net.pkl", b"GIF89a....")),
    CliCase("empty checkpoint", ["model={tmp}/net.pkl"], r"net\.pkl is empty \(0 bytes\)", setup=_write("net.pkl", b"")),
    CliCase("hostile checkpoint", ["model={tmp}/net.pkl"], r"refusing to load net\.pkl: it references os\.system",
            setup=_write("net.pkl", b"\x80\x04cos\nsystem\n\x8c\x04true\x85R.")),
    CliCase("truncated safetensors checkpoint", ["model={tmp}/g.safetensors"], r"cannot read g\.safetensors: .*truncated or corrupt",
            setup=_copy_fixture("sg2_a.safetensors", "g.safetensors", nbytes=5000)),
    CliCase("checkpoint not readable", ["model={tmp}/g.pkl"], r"cannot read .*g\.pkl \(Permission denied\)",
            setup=_copy_fixture("sg2_a.pkl", "g.pkl"), around=lambda tmp: denied(tmp / "g.pkl")),
    CliCase("dataset path that does not exist", ["dataset=ffhq", "dataset.path={tmp}/ffhq.zip"], r"dataset path .*ffhq\.zip does not exist"),
    CliCase("results_dir not writable", ["results_dir={tmp}/ro/results"], r"results_dir=.*ro/results is not writable \(Permission denied\)",
            setup=lambda tmp: (tmp / "ro").mkdir(), around=lambda tmp: denied(tmp / "ro")),
    CliCase("results_dir on a full disk", ["results_dir={tmp}/full/results"], r"results_dir=.*full/results is not writable \(No space left on device\)",
            around=lambda tmp: full_disk(tmp / "full")),
    CliCase("disk fills up while the result is written", [], r"cannot write .*metrics\.json \(No space left on device\)",
            around=lambda tmp: mock_enospc(tmp / "results", names=(".metrics.json.",))),
]


def _expand(argv: list[str], tmp: Path) -> list[str]:
    out = [a.replace("{tmp}", str(tmp)) for a in argv]
    if not any(a.startswith("results_dir=") for a in out):
        out.append(f"results_dir={tmp / 'results'}")
    return out


def check_cli_case(c: CliCase, tmp: Path) -> str | None:
    """None if `fpbench <argv>` is refused as it should be, else what went wrong."""
    tmp.mkdir(parents=True, exist_ok=True)
    reason = c.skip() if c.skip else None
    if reason:
        return None
    if c.setup:
        c.setup(tmp)
    from fpbench.__main__ import main

    argv = _expand(QUICK + c.argv, tmp)
    err, out = io.StringIO(), io.StringIO()
    ctx = c.around(tmp) if c.around else contextlib.nullcontext()
    saved_argv = list(sys.argv)
    try:
        with ctx, contextlib.redirect_stderr(err), contextlib.redirect_stdout(out), \
                mock.patch.dict(os.environ, {"FPBENCH_CACHE": str(tmp / "cache"), **c.env}):
            rc = main(argv)
    except BaseException as exc:  # noqa: BLE001
        if isinstance(exc, (KeyboardInterrupt, pytest.skip.Exception)):
            raise
        return f"raised {type(exc).__name__}: {str(exc)[:200]}"
    finally:
        sys.argv = saved_argv
    lines = [line for line in err.getvalue().splitlines() if line.strip()]
    if rc in (0, None):
        return f"exit status {rc}; stderr {lines[-3:]}"
    if len(lines) != 1 or not lines[0].startswith("fpbench: error: "):
        return f"stderr is not one 'fpbench: error:' line: {lines[-6:]}"
    if not re.search(c.pattern, lines[0]):
        return f"message {lines[0]!r} does not match {c.pattern!r}"
    if "Traceback" in err.getvalue() + out.getvalue():
        return "a traceback was printed"
    results = Path(next(a.split("=", 1)[1] for a in argv if a.startswith("results_dir=")))
    produced = [p for p in results.rglob("*") if p.is_file() and not p.name.startswith(".filler")
                and not any(part in HYDRA_BOOKKEEPING for part in p.relative_to(results).parts)]
    if produced:
        return f"left files: {[str(p.relative_to(results)) for p in produced][:4]}"
    bad = leftovers(results)
    if bad:
        return f"left behind: {bad[:3]}"
    return None


check_cli_case.results = {}


@pytest.mark.parametrize("c", CLI_CASES, ids=[c.id for c in CLI_CASES])
def test_cli_bad_input(c, tmp_path):
    if c.skip and c.skip():
        pytest.skip(c.skip())
    check_cli_case.results[c.id] = problem = check_cli_case(c, tmp_path)
    assert problem is None, f"{c.id}: {problem}"


def _run(args, cwd, **env):
    full = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", **env}
    return subprocess.run([sys.executable, "-m", "fpbench", *args], cwd=cwd, env=full, capture_output=True,
                          text=True, timeout=300)


def test_cli_real_process_runtime_error_is_one_line(tmp_path):
    """In a real process: a corrupt checkpoint found at run time is one line, exit 2, no traceback."""
    (tmp_path / "net.pkl").write_bytes(b"\x80\x04\x95garbage")
    proc = _run(["model=" + str(tmp_path / "net.pkl"), f"results_dir={tmp_path / 'results'}", *QUICK], tmp_path)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("fpbench: error: cannot read net.pkl"), lines
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not list((tmp_path / "results").rglob("metrics.json"))


@pytest.mark.slow
@pytest.mark.parametrize("args,pattern", [
    (["n=-1"], r"n=-1 is invalid"),
    (["model=/no/such.pkl"], r"does not exist"),
    (["treatment=truncation", "treatment.psi=nan"], r"psi=nan is invalid"),
])
def test_cli_real_process_preflight(tmp_path, args, pattern):
    proc = _run([*args, f"results_dir={tmp_path / 'results'}", "logger=none"], tmp_path)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and re.search(pattern, lines[0]), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and not (tmp_path / "results" / "runs").exists()

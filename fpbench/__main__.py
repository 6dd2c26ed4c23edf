"""`python -m fpbench [overrides]`: compose, validate every job, run, always finish the tracker.

With no arguments this is the quick main job (`sweep=main`). A user error -- unknown config option,
misspelled key, out-of-range value, missing file, unwritable results dir -- is one line on stderr
and exit status 2, before any weights load or any result file is written.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
PROG = "fpbench"
# Hydra flags that do not run jobs (help, printing the config, shell completion): no preflight.
_INFO_FLAGS = ("--help", "-h", "--hydra-help", "--version", "--cfg", "-c", "--info", "-i",
               "--resolve", "--package", "-p", "--shell-completion", "-sc")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        argv = ["sweep=main"]
        print(f"{PROG}: no arguments: running the quick main job (sweep=main); "
              f"`{PROG} --help` lists the options", file=sys.stderr)
    from .errors import FpbenchError

    try:
        argv = rewrite_model_path(rewrite_group_appends(argv))
        if not any(a.split("=")[0] in _INFO_FLAGS for a in argv if a.startswith("-")):
            check_flags(argv)
            preflight(argv)
    except FpbenchError as err:
        return fail(err)
    except Exception as err:  # Hydra / OmegaConf composition errors are user errors too
        if _is_config_error(err):
            return fail(err)
        raise
    saved = sys.argv
    sys.argv = [sys.argv[0] if sys.argv and sys.argv[0] else PROG] + argv  # hydra.main reads sys.argv
    try:
        _hydra_main()
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = saved
    return 0


def check_flags(argv: list[str]) -> None:
    """Hydra's own argument parser, with its multi-line usage error turned into one line."""
    from hydra._internal.utils import get_args_parser

    from .errors import ConfigError

    def error(message: str):
        raise ConfigError(f"{message}; flags such as -m go before the overrides (`{PROG} --help` lists them)")

    parser = get_args_parser()
    parser.error = error
    parser.parse_args(argv)


def fail(err: BaseException) -> int:
    print(f"{PROG}: error: {one_line(err)}", file=sys.stderr)
    return 2


def one_line(err: BaseException) -> str:
    """A Hydra/OmegaConf error (often several lines plus a cause) squeezed into one line."""
    import re

    from hydra.errors import MissingConfigException

    from .errors import FpbenchError

    if isinstance(err, FpbenchError):
        return " ".join(str(err).split())
    if isinstance(err, MissingConfigException):
        m = re.search(r"Could not find '([^']+)'", str(err))
        if m and "/" in m.group(1) and err.options:
            group, bad = m.group(1).rsplit("/", 1)
            opts = ", ".join(o for o in err.options if not o.endswith("_schema"))
            return f"unknown {group} option {bad!r}; choose one of: {opts}"
    parts: list[str] = []
    node: BaseException | None = err
    while node is not None and len(parts) < 2:
        text = str(node).strip().splitlines()[0].strip().rstrip(".") if str(node).strip() else ""
        if text and "$VALUE" not in text and text not in parts:
            parts.append(text)
        node = node.__cause__ or (None if node.__suppress_context__ else node.__context__)
    return ": ".join(parts) or type(err).__name__


def _is_config_error(err: BaseException) -> bool:
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    return isinstance(err, (HydraException, OmegaConfBaseException))


# Groups that config.yaml already selects: `+group=x` (the usual spelling for adding a sweep) would be
# refused by Hydra as a second value, so it is read as `group=x`.
_DEFAULT_GROUPS = ("sweep", "size", "model", "dataset", "treatment", "metrics", "logger", "launcher")


def rewrite_group_appends(argv: list[str]) -> list[str]:
    """`+sweep=table1` -> `sweep=table1` for groups the defaults list already holds."""
    out = []
    for arg in argv:
        key, eq, value = arg.partition("=")
        out.append(f"{key[1:]}={value}" if eq and key.startswith("+") and key[1:] in _DEFAULT_GROUPS else arg)
    return out


def rewrite_model_path(argv: list[str]) -> list[str]:
    """`model=/path/net.pkl` -> `model=custom model.source=/path/net.pkl` (a group option cannot be a path)."""
    from .config import looks_like_path

    out = []
    for arg in argv:
        key, eq, value = arg.partition("=")
        if eq and key in ("model", "override model") and looks_like_path(value) and "," not in value:
            out += ["model=custom", f"model.source={value}"]
        else:
            out.append(arg)
    return out


def preflight(argv: list[str]) -> None:
    """Compose and validate every job the command would launch; raise on the first bad one."""
    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from .config import validate
    from .distributed import check_launcher
    from .sweeper import expand_jobs

    check_launcher(argv)
    flags = [a for a in argv if a.startswith("-")]
    overrides = [a for a in argv if not a.startswith("-")]
    multirun_flag = any(f in ("-m", "--multirun") for f in flags)
    parser = OverridesParser.create()
    parsed = parser.parse_overrides(overrides)
    is_sweep_arg = [o.is_sweep_override() for o in parsed]
    plain = [a for a, s in zip(overrides, is_sweep_arg) if not s]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None, job_name=PROG):
        base = compose(config_name="config", overrides=plain, return_hydra_config=True)
        mode = str(base.hydra.mode) if base.hydra.get("mode") is not None else "RUN"
        multirun = multirun_flag or any(is_sweep_arg) or mode.endswith("MULTIRUN")
        if not multirun:
            validate(_strip_hydra(base))
            return
        sweeper = base.hydra.sweeper
        params = dict(sweeper.get("params") or {})
        grids = [dict(g) for g in (sweeper.get("grids") or [])]
        jobs = expand_jobs(params, grids, overrides, parser)
        if not jobs:
            from .errors import ConfigError
            raise ConfigError("the sweep has no jobs; check hydra.sweeper.params")
        for job in jobs:
            cfg = compose(config_name="config", overrides=job)
            validate(cfg)


def _strip_hydra(cfg):
    from omegaconf import OmegaConf, open_dict

    cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    with open_dict(cfg):
        cfg.pop("hydra", None)
    return cfg


def _hydra_main() -> None:
    import hydra

    from . import config as _config  # noqa: F401 - registers schemas and resolvers

    @hydra.main(config_path=str(CONF_DIR), config_name="config", version_base=None)
    def task(cfg) -> None:
        from .errors import FpbenchError
        from .runner import run_from_hydra

        try:
            run_from_hydra(cfg)
        except FpbenchError as err:  # found inside the job (e.g. metric weights missing offline)
            from hydra.core.hydra_config import HydraConfig

            from .runner import discard_unfinished

            discard_unfinished(Path(HydraConfig.get().runtime.output_dir))
            sys.exit(fail(err))

    task()


if __name__ == "__main__":
    sys.exit(main())

"""Weights & Biases mirroring of results (files on disk stay the source of truth).

One W&B run per job: group = the sweep, job_type = the treatment, name = the job's overrides, the
full config, summary metrics, one wandb.Table row and the sample grids. Offline unless the user is
logged in (or asks for logger.mode=online); `wandb sync <dir>/wandb/offline-run-*` uploads later.
`logger=none` turns it off. Any W&B failure is a warning: a result is never lost to W&B, and
`wandb.finish()` is always called once a run has started. At the end of a sweep a summary run in
the sweep's group logs the regenerated tables and figures.
"""

from __future__ import annotations

import json
import netrc
import os
import struct
import warnings
from pathlib import Path
from typing import Any, Iterable, Sequence

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

UNCALIBRATED_NOTE = "uncalibrated: metric networks with random weights (pretrained=false)"


def wandb_mode(requested: str) -> str:
    """'auto' -> online when logged in (WANDB_API_KEY or a `wandb login` entry), else offline."""
    if requested in ("online", "offline"):
        return requested
    env = os.environ.get("WANDB_MODE")
    if env in ("online", "offline", "disabled"):
        return env
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    try:
        host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("://")[-1].rstrip("/")
        if netrc.netrc().authenticators(host):
            return "online"
    except (OSError, netrc.NetrcParseError):
        pass
    return "offline"


def _warn(what: str, err: BaseException) -> None:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    warnings.warn(f"W&B {what} failed ({type(err).__name__}: {text}); results are on disk", stacklevel=3)


class Tracker:
    """No-op tracker (logger=none, or W&B could not start)."""

    def info(self) -> dict | None:
        return None

    def log_job(self, record: dict, sample_paths: Sequence[Path]) -> None:
        pass

    def finish(self, exit_code: int = 0) -> None:
        pass


class WandbTracker(Tracker):
    def __init__(self, run, wandb_module):
        self.run, self.wandb = run, wandb_module
        self._finished = False

    def info(self) -> dict | None:
        try:
            return {"run_id": self.run.id, "dir": str(Path(self.run.dir).parent),
                    "mode": "offline" if self.run.offline else "online", "project": self.run.project}
        except Exception:  # noqa: BLE001
            return None

    def log_job(self, record: dict, sample_paths: Sequence[Path]) -> None:
        try:
            wandb = self.wandb
            summary = summary_values(record)
            self.run.summary.update(summary)
            columns, row = table_row(record)
            payload: dict[str, Any] = {"results": wandb.Table(columns=columns, data=[row])}
            note = f" ({UNCALIBRATED_NOTE})" if record.get("any_uncalibrated") else ""
            for path in sample_paths:
                payload[f"samples/{Path(path).stem}"] = wandb.Image(
                    str(path), caption=f"original | treated: {record['job']}{note}")
            self.run.log(payload)
        except Exception as err:  # noqa: BLE001
            _warn("logging", err)

    def finish(self, exit_code: int = 0) -> None:
        if self._finished:
            return
        self._finished = True
        try:
            self.run.finish(exit_code=exit_code)
        except Exception as err:  # noqa: BLE001
            _warn("finish", err)
            try:
                self.wandb.finish(exit_code=exit_code)
            except Exception:  # noqa: BLE001
                pass


def summary_values(record: dict) -> dict:
    """What a job run's summary holds: the metric values plus how to read them."""
    out = dict(record.get("values", {}))
    out["n"] = record.get("n")
    out["uncalibrated"] = bool(record.get("any_uncalibrated"))
    out["dataset_generated"] = bool(record.get("dataset", {}).get("generated"))
    out["config_hash"] = record.get("config_hash")
    return out


def table_row(record: dict) -> tuple[list[str], list]:
    params = record.get("treatment", {}).get("params", {})
    columns = ["sweep", "job", "model", "dataset", "treatment", "params", "n", "uncalibrated"]
    row = [record.get("sweep"), record.get("job"), record.get("model", {}).get("name"),
           record.get("dataset", {}).get("name"), record.get("treatment", {}).get("name"),
           json.dumps(params, sort_keys=True), record.get("n"), bool(record.get("any_uncalibrated"))]
    for key, value in sorted(record.get("values", {}).items()):
        columns.append(key)
        row.append(value)
    return columns, row


def _init(cfg_logger, *, directory: Path, **kwargs):
    import wandb

    directory.mkdir(parents=True, exist_ok=True)
    mode = wandb_mode(cfg_logger.mode)
    run = wandb.init(project=cfg_logger.project, entity=cfg_logger.entity, mode=mode, dir=str(directory),
                     reinit="finish_previous", settings=wandb.Settings(silent=True, console="off"),
                     **kwargs)
    return run, wandb


def start_job_tracker(cfg: DictConfig, job_dir: Path, job_name: str) -> Tracker:
    if cfg.logger.kind != "wandb":
        return Tracker()
    directory = Path(cfg.logger.dir or cfg.results_dir)
    tags = list(cfg.logger.tags) + [cfg.model.name, cfg.dataset.name]
    if cfg.metrics.pretrained is False and cfg.mode == "eval" and list(cfg.metrics.names):
        tags.append("uncalibrated")
    if cfg.dataset.generated:
        tags.append("generated-reference")
    try:
        run, wandb = _init(cfg.logger, directory=directory, group=cfg.sweep.name, job_type=cfg.treatment.name,
                           name=f"{cfg.sweep.name}/{job_name}", tags=tags,
                           config=OmegaConf.to_container(cfg, resolve=True),
                           notes=UNCALIBRATED_NOTE if "uncalibrated" in tags else None)
    except Exception as err:  # noqa: BLE001
        _warn("init", err)
        return Tracker()
    return WandbTracker(run, wandb)


def log_report(cfg_logger, directory: Path, group: str, tables: dict[str, Any], figures: Iterable[Path],
               *, uncalibrated: bool) -> dict | None:
    """The sweep's summary run: regenerated tables as wandb.Table, figures as wandb.Image."""
    try:
        run, wandb = _init(cfg_logger, directory=directory, group=group, job_type="summary",
                           name=f"{group}/summary", tags=["summary"] + (["uncalibrated"] if uncalibrated else []),
                           notes=UNCALIBRATED_NOTE if uncalibrated else None)
    except Exception as err:  # noqa: BLE001
        _warn("init", err)
        return None
    ok = 1
    try:
        payload = {}
        for name, (columns, rows) in tables.items():
            payload[f"tables/{name}"] = wandb.Table(columns=list(columns), data=[list(r) for r in rows])
        for path in figures:
            cap = path.stem + (f" ({UNCALIBRATED_NOTE})" if uncalibrated else "")
            payload[f"figures/{path.stem}"] = wandb.Image(str(path), caption=cap)
        run.log(payload)
        run.summary.update({"uncalibrated": uncalibrated, "tables": sorted(tables)})
        ok = 0
        return {"run_id": run.id, "dir": str(Path(run.dir).parent)}
    except Exception as err:  # noqa: BLE001
        _warn("summary logging", err)
        return None
    finally:
        try:
            run.finish(exit_code=ok)
        except Exception as err:  # noqa: BLE001
            _warn("finish", err)


class SweepSummaryCallback(Callback):
    """Hydra callback: when a multirun ends, rebuild the report and log the sweep's summary run."""

    def __init__(self, **_: Any) -> None:
        super().__init__()

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from .distributed import is_main_process

        if not is_main_process():  # under torchrun every rank runs the sweep; one report is enough
            return
        try:
            from .report import build_report

            outputs = build_report(config.results_dir, sweeps=[config.sweep.name])
            print(f"[fpbench] report: {outputs.summary_line()}", flush=True)
            if config.logger.kind == "wandb":
                log_report(config.logger, Path(config.logger.dir or config.results_dir), config.sweep.name,
                           outputs.tables, outputs.pngs, uncalibrated=outputs.uncalibrated)
        except Exception as err:  # noqa: BLE001 - the jobs' results are written already
            warnings.warn(f"sweep summary failed ({type(err).__name__}: {err}); rerun `python -m fpbench.report`",
                          stacklevel=2)


# ---------------------------------------------------------------------------------------------
# Reading an offline run back from its files (tests, and checking what W&B holds before syncing)

def offline_run_records(run_dir: str | os.PathLike, wait: float = 30.0) -> list[tuple[str, Any]]:
    """(record type, protobuf) for every record of the `.wandb` file in an offline run folder.

    W&B's service writes the file asynchronously, also after `finish()` returns: wait up to `wait`
    seconds for the closing `exit` record.
    """
    import time

    from wandb.proto import wandb_internal_pb2 as pb

    run_dir = Path(run_dir)
    deadline = time.monotonic() + wait
    while True:
        files = list(run_dir.glob("*.wandb"))
        records = []
        if files:
            for blob in _leveldb_log_records(files[0].read_bytes()):
                rec = pb.Record()
                try:
                    rec.ParseFromString(blob)
                except Exception:  # noqa: BLE001 - a record still being written
                    break
                kind = rec.WhichOneof("record_type")
                records.append((kind, getattr(rec, kind) if kind else None))
        if any(kind == "exit" for kind, _ in records) or time.monotonic() > deadline:
            if not files:
                raise FileNotFoundError(f"no .wandb file in {run_dir}")
            return records
        time.sleep(0.1)


def offline_run_summary(run_dir: str | os.PathLike) -> dict:
    """The final summary (top-level keys) of an offline run, replayed from its `.wandb` file."""
    summary: dict = {}
    for kind, rec in offline_run_records(run_dir):
        if kind != "summary":
            continue
        for item in rec.update:
            key = item.key or (item.nested_key[0] if len(item.nested_key) == 1 else None)
            if key and not key.startswith("_"):
                summary[key] = json.loads(item.value_json)
        for item in rec.remove:
            summary.pop(item.key, None)
    return summary


def offline_run_meta(run_dir: str | os.PathLike) -> dict:
    for kind, rec in offline_run_records(run_dir):
        if kind == "run":
            config = {u.key: json.loads(u.value_json) for u in rec.config.update if u.key != "_wandb"}
            return {"run_id": rec.run_id, "group": rec.run_group, "job_type": rec.job_type,
                    "name": rec.display_name, "config": config, "tags": list(rec.tags)}
    return {}


def _leveldb_log_records(data: bytes, block: int = 32768):
    """W&B's transaction log: a 7-byte header, then LevelDB-log records in 32 KiB blocks."""
    if data[:4] != b":W&B":
        raise ValueError("not a W&B transaction log")
    pos, pending = 7, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if length == 0 and kind == 0:
            pos += left
            continue
        chunk = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind == 1:
            yield chunk
        elif kind == 2:
            pending = chunk
        elif kind == 3:
            pending += chunk
        elif kind == 4:
            yield pending + chunk
            pending = b""

"""One setting: seeds -> z -> batches on the device -> original + treated images -> metrics -> results.

The untreated image of each seed is generated once per batch and shared by every *arm* (a treatment
plus its metrics); a job today has one arm, and several treatments over the same seeds only add
arms. Metrics consume the images in memory. Every `checkpoint_every` batches the accumulator state
(metric `state_dict()`s and the position) is saved atomically, so a killed job resumes where it
stopped and ends with the same numbers as an uninterrupted run. `metrics.json` (written atomically,
last) is the job's result; a rerun skips a job whose `metrics.json` has the same config hash.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch
from omegaconf import DictConfig, OmegaConf

from .cache import atomic_path, atomic_write_json, atomic_write_text, cache_dir
from .config import (DISTRIBUTION_METRICS, NEEDS_STATS, config_hash, metric_names, needs_reference,
                     validate)
from .errors import ConfigError

FORMAT_VERSION = 1
CHECKPOINT = "checkpoint.pt"
METRICS_JSON = "metrics.json"
# Debugging/testing aid: seconds to sleep after each batch (lets a test kill a job mid-way).
_SLEEP_ENV = "FPBENCH_DEBUG_BATCH_SLEEP"


# ---------------------------------------------------------------------------------------------
# Entry points

def run_from_hydra(cfg: DictConfig) -> dict:
    """Hydra task: the job folder is Hydra's output dir (results/runs/<sweep>/<job>)."""
    from hydra.core.hydra_config import HydraConfig

    hc = HydraConfig.get()
    job_dir = Path(hc.runtime.output_dir)
    record = run_job(cfg, job_dir)
    from .distributed import is_main_process

    if str(hc.mode).endswith("RUN") and not str(hc.mode).endswith("MULTIRUN") and is_main_process():
        print(summary_table(record, job_dir), flush=True)
    return record


def summary_table(record: dict, job_dir: Path) -> str:
    """The closing printout of a single run: metric values, how to read them, what was written."""
    uncal = record.get("uncalibrated", {})
    lines = ["", f"fpbench: {record['model']['name']} | {record['dataset']['name']}"
             + (" (generated reference)" if record["dataset"].get("generated") else "")
             + f" | {record['treatment']['name']} {record['treatment'].get('params', {})} | n={record['n']}", ""]
    width = max([len(k) for k in record["values"]] + [6])
    lines.append(f"  {'metric':<{width}}  {'value':>10}  note")
    for key, value in record["values"].items():
        owner = "pr" if key in ("precision", "recall") else key.split("/")[0]
        note = "uncalibrated (random-weight network)" if uncal.get(owner) else ""
        lines.append(f"  {key:<{width}}  {value:>10.4f}  {note}")
    if record.get("any_uncalibrated"):
        lines += ["", "  uncalibrated: metric networks have random weights (metrics.pretrained=false); the numbers",
                  "  check the pipeline and are not comparable to the paper."]
    lines += ["", "wrote:"] + [f"  {job_dir / name}" for name in ["metrics.json", "config.yaml", *record.get("samples", [])]]
    wb = record.get("wandb") or {}
    if wb.get("dir"):
        lines.append(f"  {wb['dir']}  (W&B {wb.get('mode', '')} run; `wandb sync {wb['dir']}` uploads it)")
    return "\n".join(lines)


def run_job(cfg: DictConfig, job_dir: str | os.PathLike, *, job_name: str | None = None) -> dict:
    """Run (or skip, or resume) one job; return its metrics.json record."""
    from . import distributed
    from .tracking import Tracker, start_job_tracker

    validate(cfg)
    if cfg.deterministic:
        from .determinism import enable_deterministic

        enable_deterministic()
    ctx = distributed.context(cfg.device)  # rank 0 of 1 unless started by torchrun / a multi-task job
    job_dir = Path(job_dir)
    job_name = job_name or job_dir.name
    chash = config_hash(cfg)
    done = ctx.broadcast(read_result(job_dir), "reading the job's result")
    if cfg.resume and done is not None and done.get("config_hash") == chash:
        if ctx.is_main:
            _say(cfg, f"[fpbench] {cfg.sweep.name}/{job_name}: done already (config hash {chash}); skipped")
        return done
    tracker = start_job_tracker(cfg, job_dir, job_name) if ctx.is_main else Tracker()
    exit_code = 1
    try:
        record, samples = _run(cfg, job_dir, job_name, chash, tracker_info=tracker.info(), ctx=ctx)
        tracker.log_job(record, [job_dir / s for s in samples])
        exit_code = 0
    finally:
        tracker.finish(exit_code)
    record = ctx.broadcast(record, "waiting for rank 0 to write the result")
    ctx.remove_checkpoint(job_dir)
    return record


def discard_unfinished(job_dir: Path) -> None:
    """After a user error inside a job: remove what Hydra wrote for it, so no partial result stays.

    Only a folder with no result and no checkpoint is touched, and only Hydra's own files in it.
    """
    import shutil

    job_dir = Path(job_dir)
    if (job_dir / METRICS_JSON).exists() or any(job_dir.glob("checkpoint*.pt")):
        return
    shutil.rmtree(job_dir / ".hydra", ignore_errors=True)
    for log in job_dir.glob("*.log"):
        log.unlink(missing_ok=True)
    for d in (job_dir, job_dir.parent, job_dir.parent.parent):  # <job>, <sweep>, runs/
        try:
            d.rmdir()  # only if empty
        except OSError:
            break


def read_result(job_dir: str | os.PathLike) -> dict | None:
    import json

    path = Path(job_dir) / METRICS_JSON
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------------------------------------
# Devices, batch sizes, timers

def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name} but CUDA is not available here; use device=cpu or device=auto")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"device={name} but only {torch.cuda.device_count()} CUDA device(s) exist")
    return device


def default_batch_size(device: torch.device, resolution: int) -> int:
    """Images per batch when batch_size=null: bounded by the pixels one batch holds."""
    if device.type == "cpu":
        return max(1, min(16, (64 * 64 * 16) // (resolution * resolution) or 1))
    budget = 16 * 1024 * 1024  # pixels per batch: 16 x 1024^2 leaves a 24 GB GPU room for the metrics
    if device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory
        budget = int(budget * max(0.25, min(4.0, total / (24 * 1024 ** 3))))
    return max(1, min(64, budget // (resolution * resolution)))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


class StageTimer:
    """Wall time per stage. With `sync`, the device is synchronized at stage boundaries (exact
    device time, costs a host sync); without it, stages are host time and only totals are exact."""

    def __init__(self, device: torch.device, sync: bool, initial: dict | None = None):
        self.device, self.sync = device, sync
        self.seconds: dict[str, float] = dict(initial or {})

    @contextlib.contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        if self.sync:
            _sync(self.device)
        tic = time.perf_counter()
        try:
            yield
        finally:
            if self.sync:
                _sync(self.device)
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - tic


# ---------------------------------------------------------------------------------------------
# The job

@dataclass
class Arm:
    """A treatment and the metrics that score it against the shared untreated images."""

    name: str
    treatment: Any
    metrics: dict[str, Any] = field(default_factory=dict)


def _run(cfg: DictConfig, job_dir: Path, job_name: str, chash: str, *, tracker_info: dict,
         ctx=None) -> tuple[dict | None, list[str]]:
    from .distributed import Context
    from .generators import load_generator, weights_fingerprint

    ctx = ctx or Context()
    t_start = time.perf_counter()
    device = ctx.device(cfg.device)
    dtype = getattr(torch, cfg.dtype)
    timing_mode = cfg.mode == "timing"
    ckpt = _load_checkpoint(job_dir, chash, ctx.checkpoint_name) if cfg.resume and not timing_mode else None
    timer = StageTimer(device, sync=cfg.profile or timing_mode, initial=(ckpt or {}).get("timings"))
    progress = bool(cfg.progress) and ctx.is_main

    with timer("load_generator"):
        G = load_generator(cfg.model.source, device=device)
        if dtype != torch.float32:
            G = G.to(dtype)
    fingerprint = weights_fingerprint(G)
    device_batch = cfg.batch_size or default_batch_size(device, G.img_resolution)
    if cfg.execution == "serial":
        batch_size = 1
    elif ckpt is not None:
        batch_size = int(ckpt["batch_size"])  # same batch boundaries -> identical accumulators
    else:
        batch_size = device_batch
    # this rank's seeds (all of them in one process); rank 0's batch size holds for every rank
    lo, hi, batch_size, ckpt = ctx.plan(cfg.n, batch_size, ckpt)

    with timer("treatment_setup"), ctx.main_first("estimating feature statistics"):
        treatment = build_treatment(cfg, G, device, cfg.stats.batch_size or device_batch, progress)
    arm = Arm(name=cfg.treatment.name, treatment=treatment)
    with timer("metrics_setup"):
        arm.metrics = create_metrics(cfg, device) if not timing_mode else {}
    reference = {}
    if arm.metrics and needs_reference(cfg) and ctx.is_main:  # only rank 0 computes the final numbers
        with timer("reference"):
            reference = prepare_reference(cfg, G, fingerprint, arm.metrics, device, device_batch, progress)

    job_dir.mkdir(parents=True, exist_ok=True)
    position = lo
    samples = None
    if ckpt is not None:
        position = int(ckpt["position"])
        for key, m in _arm_metrics([arm]):
            m.load_state_dict(ckpt["metrics"][key])
        samples = ckpt.get("samples")
        _say(cfg, f"[fpbench] {cfg.sweep.name}/{job_name}: resuming at image {position} of {cfg.n}")

    if timing_mode:
        if ctx.is_main:  # the speed of one process: other ranks do not time
            values, images_timed = _time_generation(cfg, G, arm, device, dtype, batch_size, timer, job_name)
        samples = None
    else:
        samples = _evaluate(cfg, G, [arm], device, dtype, batch_size, timer, job_dir, chash, job_name,
                            position, samples, stop=hi, checkpoint=ctx.checkpoint_name,
                            checkpoint_extra=ctx.checkpoint_extra(lo, hi), progress=progress)
        samples = ctx.gather_metrics(list(_arm_metrics([arm])), samples, keep=cfg.samples)
    if not ctx.is_main:
        return None, []
    if not timing_mode:
        with timer("compute"):
            values, flags = {}, {}
            for name, m in arm.metrics.items():
                for key, value in m.compute().items():
                    values[key if key not in values else f"{name}/{key}"] = float(value)
                flags[name] = bool(getattr(m, "uncalibrated", False))
        images_timed = cfg.n

    try:
        sample_files = write_samples(job_dir, samples, cfg) if samples is not None else []
    except BaseException:
        _discard_outputs(job_dir)
        raise
    total = time.perf_counter() - t_start
    timings = dict(timer.seconds)
    timings["total_this_process"] = total
    gen_time = timings.get("generate_original", 0.0) + timings.get("generate_treated", 0.0)
    loop_time = gen_time + timings.get("metrics_update", 0.0) + timings.get("checkpoint", 0.0)
    timings["generation_images_per_second"] = images_timed / gen_time if gen_time > 0 else None
    timings["images_per_second"] = images_timed / loop_time if loop_time > 0 else None

    uncal = {} if timing_mode else flags
    record = {
        "format": FORMAT_VERSION,
        "status": "complete",
        "config_hash": chash,
        "sweep": cfg.sweep.name,
        "job": job_name,
        "mode": cfg.mode,
        "execution": cfg.execution,
        "batch_size": batch_size,
        "model": {"name": cfg.model.name, "source": cfg.model.source, "family": cfg.model.family,
                  "resolution": int(G.img_resolution), "dataset": cfg.model.dataset},
        "dataset": dataset_record(cfg, reference),
        "treatment": {"name": cfg.treatment.name, "params": _jsonable(getattr(treatment, "params", {}))},
        "values": values,
        "uncalibrated": uncal,
        "any_uncalibrated": any(uncal.values()),
        "n": cfg.n,
        "seeds": {"start": cfg.seed, "stop": cfg.seed + cfg.n, "noise_mode": cfg.noise_mode,
                  "z": "np.random.RandomState(seed).randn(1, z_dim)"},
        "resumed_at": int(ckpt["position"]) if ckpt is not None else None,
        "timings": timings,
        "device": device_record(device, dtype),
        "versions": package_versions(),
        "git": git_record(),
        "fingerprints": {"generator": fingerprint,
                         **{f"metric/{k}": fp for k, fp in metric_fingerprints(arm.metrics).items()}},
        "samples": sample_files,
        "wandb": tracker_info,
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    if ctx.active:
        record["distributed"] = ctx.record()
    try:
        atomic_write_text(job_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
        atomic_write_json(job_dir / METRICS_JSON, record)
    except BaseException:
        _discard_outputs(job_dir)
        raise
    with contextlib.suppress(FileNotFoundError):
        (job_dir / CHECKPOINT).unlink()
    _say(cfg, f"[fpbench] {cfg.sweep.name}/{job_name}: " + format_values(values, uncal)
         + f"  -> {job_dir / METRICS_JSON}")
    return record, sample_files


def _discard_outputs(job_dir: Path) -> None:
    """Writing the result failed (disk full, ...): remove its other files, a result is all or nothing."""
    for path in [job_dir / "config.yaml", *job_dir.glob("samples_*.png")]:
        with contextlib.suppress(OSError):
            path.unlink()


def _seed_batches(cfg: DictConfig, batch_size: int, start: int, end: int | None = None) -> Iterator[tuple[int, list[int]]]:
    end = cfg.n if end is None else end
    for pos in range(start, end, batch_size):
        stop = min(pos + batch_size, end)
        yield pos, list(range(cfg.seed + pos, cfg.seed + stop))


def _labels(G, n: int, device, dtype) -> torch.Tensor | None:
    c_dim = int(getattr(G, "c_dim", 0) or 0)
    return torch.zeros([n, c_dim], device=device, dtype=dtype) if c_dim else None


@torch.no_grad()
def _evaluate(cfg, G, arms: list[Arm], device, dtype, batch_size, timer, job_dir, chash, job_name,
              position, samples, *, stop: int | None = None, checkpoint: str = CHECKPOINT,
              checkpoint_extra: dict | None = None, progress: bool | None = None):
    """Positions [position, stop) (stop: the job's end; a rank of a distributed job ends its slice)."""
    from tqdm.auto import tqdm

    from .generators import seeds_to_z

    sleep = float(os.environ.get(_SLEEP_ENV, "0") or 0)
    keep = min(cfg.samples, cfg.n)
    stop = cfg.n if stop is None else stop
    bar = tqdm(total=stop, initial=position, unit="img", desc=f"{cfg.sweep.name}/{job_name}"[:60],
               disable=not (cfg.progress if progress is None else progress), dynamic_ncols=True, leave=False)
    try:
        for batch_index, (pos, seeds) in enumerate(_seed_batches(cfg, batch_size, position, stop), start=1):
            z = seeds_to_z(seeds, G.z_dim, device=device, dtype=dtype)
            c = _labels(G, len(seeds), device, dtype)
            with timer("generate_original"):
                original = G(z, c, truncation_psi=1, noise_mode=cfg.noise_mode).clamp(-1, 1)
            for arm in arms:
                with timer("generate_treated"):
                    treated = _generate_treated(G, arm, z, c, original, cfg.noise_mode).clamp(-1, 1)
                with timer("metrics_update"):
                    for m in arm.metrics.values():
                        m.update(treated, original)
            if samples is None and pos < keep:
                take = keep - pos
                samples = {"original": original[:take].detach().float().cpu(),
                           "treated": treated[:take].detach().float().cpu()}
            elif samples is not None and samples["original"].shape[0] < keep and pos < keep:
                take = keep - pos
                samples = {k: torch.cat([v, t[:take].detach().float().cpu()])
                           for (k, v), t in zip(samples.items(), (original, treated))}
            bar.update(len(seeds))
            done = pos + len(seeds)
            if done < stop and batch_index % cfg.checkpoint_every == 0:
                with timer("checkpoint"):
                    _save_checkpoint(job_dir, chash, done, batch_size, arms, samples, timer.seconds,
                                     name=checkpoint, extra=checkpoint_extra)
            if sleep:
                time.sleep(sleep)
    finally:
        bar.close()
    return samples


def _generate_treated(G, arm: Arm, z, c, original, noise_mode):
    if arm.treatment is None or arm.name == "none":
        return original  # untreated: the same tensor, no second forward pass
    with arm.treatment.applied(G):
        return G(z, c, truncation_psi=1, noise_mode=noise_mode)


@torch.no_grad()
def _time_generation(cfg, G, arm: Arm, device, dtype, batch_size, timer, job_name):
    """Seconds per image of the generator as configured (plain, or with the treatment hooks on)."""
    from tqdm.auto import tqdm

    from .generators import seeds_to_z

    stage = "generate_original" if arm.name == "none" else "generate_treated"
    treated = arm.name != "none"
    warm_seeds = list(range(cfg.seed, cfg.seed + batch_size))
    z = seeds_to_z(warm_seeds, G.z_dim, device=device, dtype=dtype)
    c = _labels(G, batch_size, device, dtype)
    with (arm.treatment.applied(G) if treated else contextlib.nullcontext()):
        for _ in range(cfg.timing_warmup):
            with timer("warmup"):
                G(z, c, noise_mode=cfg.noise_mode)
        bar = tqdm(total=cfg.n, unit="img", desc=f"{cfg.sweep.name}/{job_name}"[:60],
                   disable=not cfg.progress, leave=False)
        for _, seeds in _seed_batches(cfg, batch_size, 0):
            z = seeds_to_z(seeds, G.z_dim, device=device, dtype=dtype)
            c = _labels(G, len(seeds), device, dtype)
            with timer(stage):
                G(z, c, noise_mode=cfg.noise_mode)
            bar.update(len(seeds))
        bar.close()
    seconds = timer.seconds[stage]
    values = {"seconds_per_image": seconds / cfg.n, "images_per_second": cfg.n / seconds}
    if treated:
        # Across jobs, load drift swamps a few % of overhead: also time plain and treated interleaved on
        # one batch in this job (fpbench.timing; paired ratios, treatment entered per call as per batch).
        from . import timing

        z = seeds_to_z(warm_seeds, G.z_dim, device=device, dtype=dtype)
        c = _labels(G, batch_size, device, dtype)
        repeats = max(3, min(15, cfg.n // batch_size))
        times = timing.interleaved(timing.generation_fns(G, arm.treatment, z, c, cfg.noise_mode),
                                   repeats=repeats, warmup=1, device=device, clock="wall")
        values["paired_plain_seconds_per_image"] = timing.median(times["plain"]) / batch_size
        values["paired_treated_seconds_per_image"] = timing.median(times["treated"]) / batch_size
        values["treated_over_plain"] = timing.ratio(times, "treated", "plain")
    return values, cfg.n


# ---------------------------------------------------------------------------------------------
# Treatments, metrics, reference sets

def treatment_params(cfg: DictConfig) -> dict:
    params = OmegaConf.to_container(cfg.treatment, resolve=True)
    params.pop("name", None)
    return {k: v for k, v in params.items() if not (k == "layers" and v is None)}


def build_treatment(cfg: DictConfig, G, device, batch_size: int, progress: bool):
    from .treatments import build

    name = cfg.treatment.name
    params = treatment_params(cfg)
    if name not in NEEDS_STATS:
        return build(name, **params)
    from .stats import estimate_feature_stats

    stats = estimate_feature_stats(G, n=cfg.stats.n, batch_size=cfg.stats.batch_size or batch_size,
                                   seed=cfg.stats.seed, noise_mode=cfg.noise_mode, device=device,
                                   progress=progress)
    return build(name, stats=stats, **params)


def create_metrics(cfg: DictConfig, device) -> dict[str, Any]:
    from . import metrics as M

    names = metric_names(cfg)
    options = OmegaConf.to_container(cfg.metrics.options, resolve=True) if cfg.metrics.options else {}
    # one bank: metrics on the same feature extractor share the network and each batch's features
    bank = M.FeatureBank() if any(n in DISTRIBUTION_METRICS for n in names) else None
    out = {}
    for name in names:
        opts = dict(options.get(name) or {})
        if name in DISTRIBUTION_METRICS:
            opts.setdefault("bank", bank)
        out[name] = M.create(name, device=device, pretrained=cfg.metrics.pretrained, **opts)
    return out


def dataset_record(cfg: DictConfig, reference: dict) -> dict:
    ds = cfg.dataset
    label = ds.name if not ds.generated else "generated (untreated images of the same model, held-out seeds)"
    return {"name": ds.name, "generated": bool(ds.generated), "path": ds.path, "label": label, **reference}


def prepare_reference(cfg, G, fingerprint: str, metrics: dict, device, batch_size: int, progress: bool) -> dict:
    """Give every distribution metric its reference features, from the on-disk cache when possible.

    Real images go through `fpbench.data` (cached by the set's content hash and the extractor).
    Generated references (untreated images of this model at held-out seeds) are cached here, keyed
    by the generator's fingerprint, the seeds, the noise mode and the extractor.
    """
    import hashlib
    import json

    dist = {k: m for k, m in metrics.items() if getattr(m, "kind", "") == "distribution"}
    if not dist:
        return {}
    ds = cfg.dataset
    if not ds.generated:
        from . import data

        ref = data.ReferenceSet(ds.path, resolution=int(G.img_resolution), max_images=ds.n_ref)
        data.attach_reference(dist.values(), ref, batch_size=batch_size)
        return {"reference": {"path": str(ref.source), "content_hash": ref.content_hash()}, "n_ref": len(ref)}
    n_ref = ds.n_ref if ds.n_ref is not None else cfg.n
    source = {"seed": ds.heldout_seed, "n": n_ref, "noise_mode": cfg.noise_mode}
    missing = {}
    for name, m in dist.items():
        key_blob = json.dumps({"generator": fingerprint, **source, "extractor": str(m.extractor_key)},
                              sort_keys=True)
        path = cache_dir() / "features" / f"generated-{hashlib.sha256(key_blob.encode()).hexdigest()[:32]}.pt"
        if path.exists():
            try:
                m.set_real_features(torch.load(path, map_location="cpu", weights_only=True))
                continue
            except Exception:  # noqa: BLE001 - a bad cache entry is recomputed
                pass
        missing[name] = (m, path)
    if missing:
        for images in reference_batches(cfg, G, device, batch_size, n_ref, progress):
            for m, _ in missing.values():
                m.update_real(images)
        for m, path in missing.values():
            with atomic_path(path) as tmp:
                torch.save(m.real_features(), tmp)
    return {"reference": {"generated_seeds": [ds.heldout_seed, ds.heldout_seed + n_ref], **source},
            "n_ref": n_ref}


@torch.no_grad()
def reference_batches(cfg, G, device, batch_size: int, n_ref: int, progress: bool):
    """Untreated images of G at the held-out seeds, float [-1, 1] on `device`."""
    from tqdm.auto import tqdm

    from .generators import seeds_to_z

    ds = cfg.dataset
    dtype = getattr(torch, cfg.dtype)
    bar = tqdm(total=n_ref, unit="img", desc="reference (generated)", disable=not progress, leave=False)
    for pos in range(0, n_ref, batch_size):
        seeds = list(range(ds.heldout_seed + pos, ds.heldout_seed + min(pos + batch_size, n_ref)))
        z = seeds_to_z(seeds, G.z_dim, device=device, dtype=dtype)
        yield G(z, _labels(G, len(seeds), device, dtype), noise_mode=cfg.noise_mode).float().clamp(-1, 1)
        bar.update(len(seeds))
    bar.close()


# ---------------------------------------------------------------------------------------------
# Checkpoints (accumulator state, saved atomically)

def _arm_metrics(arms: list[Arm]):
    """(checkpoint key, metric) over all arms; one arm keeps the plain metric names."""
    for i, arm in enumerate(arms):
        for name, m in arm.metrics.items():
            yield (name if len(arms) == 1 else f"{i}:{arm.name}/{name}"), m


def _save_checkpoint(job_dir: Path, chash: str, position: int, batch_size: int, arms: list[Arm], samples,
                     timings: dict, *, name: str = CHECKPOINT, extra: dict | None = None) -> None:
    state = {**(extra or {}), "format": FORMAT_VERSION, "config_hash": chash, "position": position, "batch_size": batch_size,
             "metrics": {k: m.state_dict() for k, m in _arm_metrics(arms)}, "samples": samples,
             "timings": dict(timings)}
    with atomic_path(job_dir / name) as tmp:
        torch.save(state, tmp)


def _load_checkpoint(job_dir: Path, chash: str, name: str = CHECKPOINT) -> dict | None:
    path = job_dir / name
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - unreadable checkpoint: start over
        return None
    if state.get("config_hash") != chash or state.get("format") != FORMAT_VERSION:
        return None
    return state


# ---------------------------------------------------------------------------------------------
# Sample grids

def write_samples(job_dir: Path, samples: dict | None, cfg: DictConfig, per_grid: int = 4) -> list[str]:
    """PNG grids under an 'original | treated' header, one row per seed (the first seeds of the job)."""
    from PIL import Image, ImageDraw

    from .cache import atomic_write_bytes
    from .metrics.base import to_uint8

    if not samples or samples["original"].shape[0] == 0:
        return []
    orig, treat = to_uint8(samples["original"]), to_uint8(samples["treated"])
    n, ch, h, w = orig.shape
    scale = max(1, 128 // max(h, w))
    tw, th, gap, head = w * scale, h * scale, 2, 14
    names = []
    for g, start in enumerate(range(0, n, per_grid)):
        rows = list(range(start, min(start + per_grid, n)))
        canvas = Image.new("RGB", (2 * tw + gap, head + len(rows) * (th + gap) - gap), "white")
        draw = ImageDraw.Draw(canvas)
        for col, label in enumerate(("original", cfg.treatment.name)):
            draw.text((col * (tw + gap) + 3, 1), label, fill="black")
        for r, i in enumerate(rows):
            for col, img in enumerate((orig[i], treat[i])):
                arr = img.permute(1, 2, 0).numpy()
                tile = Image.fromarray(arr if ch == 3 else arr[..., 0]).convert("RGB")
                canvas.paste(tile.resize((tw, th), Image.NEAREST), (col * (tw + gap), head + r * (th + gap)))
        name = f"samples_{g:02d}.png"
        atomic_write_bytes(job_dir / name, _png_bytes(canvas))
        names.append(name)
    return names


def _png_bytes(img) -> bytes:
    import io

    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------
# Provenance

def device_record(device: torch.device, dtype) -> dict:
    rec = {"type": device.type, "name": platform.processor() or platform.machine(), "dtype": str(dtype),
           "torch_threads": torch.get_num_threads()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        rec.update(name=props.name, memory_gb=round(props.total_memory / 1024 ** 3, 1),
                   cuda=torch.version.cuda)
    return rec


def package_versions() -> dict:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for pkg in ("fpbench", "torch", "torchvision", "numpy", "hydra-core", "omegaconf", "wandb",
                "torchmetrics", "torch-fidelity", "lpips", "insightface", "onnxruntime", "scipy"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    if out.get("fpbench") is None:
        from . import __version__
        out["fpbench"] = __version__
    return out


def git_record() -> dict:
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=5).stdout.strip() or None
        dirty = bool(subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                    capture_output=True, text=True, timeout=5).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": dirty if commit else None}


def metric_fingerprints(metrics: dict) -> dict:
    """Which network weights each metric used: the extractor key (it names the weights file's
    digest) for distribution metrics, a content hash of the metric's torch modules otherwise."""
    from .generators import weights_fingerprint

    out = {}
    for name, m in metrics.items():
        key = getattr(m, "extractor_key", None)
        if isinstance(key, str):
            out[name] = key
            continue
        modules = [v for v in vars(m).values() if isinstance(v, torch.nn.Module)]
        if modules:
            out[name] = ("random-" if getattr(m, "uncalibrated", False) else "") + \
                weights_fingerprint(torch.nn.ModuleList(modules))
    return out


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)


def format_values(values: dict, uncalibrated: dict) -> str:
    tag = " (uncalibrated)" if any(uncalibrated.values()) else ""
    return " ".join(f"{k}={v:.4g}" for k, v in values.items()) + tag


def _say(cfg, text: str) -> None:
    print(text, flush=True)

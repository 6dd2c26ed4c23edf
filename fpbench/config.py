"""Typed configuration: the schemas behind `conf/`, registered in Hydra's ConfigStore.

Every YAML file under `conf/` extends one of these dataclasses and sets only what differs, so a
misspelled key or a value of the wrong type is rejected while composing (struct mode). Value ranges
(t >= 0, n >= 1, ...) and everything that needs the file system (dataset path, checkpoint path,
writable results dir) are checked by `validate`, which runs before any weights load.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from .errors import ConfigError, MissingFileError

CHECKPOINT_SUFFIXES = (".pkl", ".pt", ".pth", ".safetensors")
NOISE_MODES = ("const", "random", "none")
DTYPES = ("float32", "float16", "bfloat16")
DISTRIBUTION_METRICS = ("fid", "pr", "kid")  # need a reference set (real or generated)
NEEDS_STATS = ("rescale", "layerwise")           # treatments that use per-channel mu, sigma


@dataclass
class ModelConfig:
    name: str = MISSING            # label used in job names, tables and W&B
    source: str = MISSING          # zoo name ('sg2-ffhq-1024', 'tiny') or a checkpoint path
    family: str = "stylegan2"      # stylegan2 | stylegan3 | tiny | custom: picks the paper table
    resolution: Optional[int] = None
    dataset: str = "generated"     # the dataset this model was trained on (its default reference)


@dataclass
class DatasetConfig:
    name: str = MISSING            # ffhq | afhq_cat | afhqv2 | metfaces | generated
    path: Optional[str] = None     # folder or zip of real images; needed for FID / P&R on real data
    generated: bool = False        # reference = untreated images of the same model, held-out seeds
    n_ref: Optional[int] = None    # reference images (null: n for generated, all for real data)
    heldout_seed: int = 1_000_000  # first seed of the generated reference set (disjoint from 0..n-1)


@dataclass
class StatsConfig:
    n: int = 3000                  # samples for the per-channel feature statistics (paper: ~3,000)
    batch_size: Optional[int] = None
    seed: int = 0


@dataclass
class TreatmentConfig:
    name: str = "none"


@dataclass
class TruncationConfig(TreatmentConfig):
    name: str = "truncation"
    psi: float = 0.7
    cutoff: Optional[int] = None
    allow_extrapolation: bool = False  # psi > 1 pushes away from the mean w


@dataclass
class RescaleConfig(TreatmentConfig):
    name: str = "rescale"
    t: float = 2.0
    p: float = 2.0
    c: float = 0.1
    risk_rule: str = "paper"
    layers: Optional[List[str]] = None


@dataclass
class LayerwiseConfig(TreatmentConfig):
    name: str = "layerwise"
    t: float = 2.0
    p: float = 2.0
    t_prime: float = 0.5           # t' of Sec. 5.5: layer-wise "cancer" threshold
    c: float = 0.1
    layers: Optional[List[str]] = None


@dataclass
class PixelNormConfig(TreatmentConfig):
    name: str = "pixelnorm"
    layers: Optional[List[str]] = None


@dataclass
class MetricsConfig:
    names: List[str] = field(default_factory=lambda: ["psnr", "ssim", "lpips", "id", "fid", "pr"])
    pretrained: bool = True        # false: random-weight networks, numbers flagged uncalibrated
    options: Dict[str, Any] = field(default_factory=dict)  # per metric: {fid: {...}, pr: {k: 3}}


@dataclass
class LoggerConfig:
    kind: str = "wandb"            # wandb | none
    project: str = "fpbench"
    entity: Optional[str] = None
    mode: str = "auto"             # auto (online if logged in, else offline) | offline | online
    dir: Optional[str] = None      # null: <results_dir>
    tags: List[str] = field(default_factory=list)


@dataclass
class SweepConfig:
    name: str = "single"


@dataclass
class Config:
    model: ModelConfig = MISSING
    dataset: DatasetConfig = MISSING
    treatment: Any = MISSING
    metrics: MetricsConfig = MISSING
    logger: LoggerConfig = MISSING
    stats: StatsConfig = field(default_factory=StatsConfig)  # for treatments that need mu, sigma
    sweep: SweepConfig = field(default_factory=SweepConfig)
    n: int = 10_000                # images per setting; seeds seed .. seed + n - 1
    seed: int = 0
    batch_size: Optional[int] = None   # null: chosen from the device and resolution
    device: str = "auto"           # auto | cpu | cuda | cuda:N | mps
    dtype: str = "float32"
    noise_mode: str = "const"
    mode: str = "eval"             # eval: metrics | timing: seconds per image (Table 3)
    execution: str = "batched"     # batched ("parallel") | serial (batch size 1)
    timing_warmup: int = 2         # batches excluded from timing
    results_dir: str = "results"
    samples: int = 8               # seeds shown in the sample grids (original | treated)
    checkpoint_every: int = 25     # batches between accumulator checkpoints
    resume: bool = True            # skip finished jobs, resume killed ones
    progress: bool = True
    profile: bool = False          # synchronize the device at stage boundaries for exact timings
    deterministic: bool = False    # deterministic GPU kernels, no TF32 (slower; CPU is deterministic anyway)


# Keys that change how a job runs but not its numbers: left out of the config hash and job names.
EXECUTION_KEYS = ("logger", "results_dir", "progress", "checkpoint_every", "resume", "device",
                  "batch_size", "profile", "sweep", "samples")

TREATMENT_SCHEMAS = {
    "none": TreatmentConfig, "truncation": TruncationConfig, "rescale": RescaleConfig,
    "layerwise": LayerwiseConfig, "pixelnorm": PixelNormConfig,
}


@dataclass
class UnionSweeperConf:
    """Hydra's basic grid sweeper plus `grids`: a list of grids whose job lists are concatenated.

    `params` are swept in every grid (e.g. the model list); each grid adds its own keys (e.g.
    {treatment: truncation, treatment.psi: "0.5,0.7"}). Lets one sweep cover settings whose keys
    differ (truncation's psi next to rescale's t and p), which a single Cartesian grid cannot.
    """

    _target_: str = "hydra_plugins.fpbench_sweeper.union_sweeper.UnionSweeper"
    max_batch_size: Optional[int] = None
    params: Optional[Dict[str, str]] = None
    grids: Optional[List[Dict[str, str]]] = None


_SCHEMA_TYPES = {c.__name__: c for c in (ModelConfig, DatasetConfig, StatsConfig, MetricsConfig,
                                          LoggerConfig, SweepConfig)}


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(name="config_schema", node=Config)
    # treatment is typed Any in Config (each treatment has its own keys): its YAML files extend these
    for name, schema in TREATMENT_SCHEMAS.items():
        cs.store(group="schema/treatment", name=name, node=schema)
    cs.store(group="hydra/sweeper", name="union", node=UnionSweeperConf)


def _job_dirname(override_dirname: str) -> str:
    """A job's folder name from its overrides: path-safe, bounded length, 'default' when empty."""
    name = re.sub(r"[^A-Za-z0-9=,._+\-]", "_", override_dirname or "") or "default"
    if len(name) > 180:  # file systems allow 255 bytes; keep it unique with a hash of the whole
        name = name[:160] + "-" + hashlib.sha256(name.encode()).hexdigest()[:12]
    return name


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("fpbench_jobdir"):
        OmegaConf.register_new_resolver("fpbench_jobdir", _job_dirname)
    if not OmegaConf.has_resolver("fpbench_stem"):  # a user checkpoint is named after its file
        OmegaConf.register_new_resolver("fpbench_stem", lambda path: Path(str(path)).stem)


register_configs()
register_resolvers()


# ---------------------------------------------------------------------------------------------
# Validation: one clear line per problem, before any weights load.

def validate(cfg: DictConfig, *, check_paths: bool = True) -> None:
    """Raise a ConfigError (or MissingFileError) naming the first invalid value."""
    _check_keys(cfg)
    _check_int(cfg.n, "n", low=1)
    _check_int(cfg.seed, "seed", low=0)
    if cfg.seed + cfg.n > 2**32:
        raise ConfigError(f"seeds {cfg.seed}..{cfg.seed + cfg.n - 1} exceed 2**32-1; lower seed or n")
    if cfg.batch_size is not None:
        _check_int(cfg.batch_size, "batch_size", low=1)
    _check_int(cfg.checkpoint_every, "checkpoint_every", low=1)
    _check_int(cfg.samples, "samples", low=0)
    _check_int(cfg.timing_warmup, "timing_warmup", low=0)
    _check_choice(cfg.noise_mode, "noise_mode", NOISE_MODES)
    _check_choice(cfg.dtype, "dtype", DTYPES)
    _check_choice(cfg.mode, "mode", ("eval", "timing"))
    _check_choice(cfg.execution, "execution", ("batched", "serial"))
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", str(cfg.device)):
        raise ConfigError(f"device={cfg.device!r} is not a device; use auto, cpu, cuda, cuda:N or mps")
    _validate_treatment(cfg.treatment)
    _check_int(cfg.stats.n, "stats.n", low=2)
    _check_int(cfg.stats.seed, "stats.seed", low=0)
    if cfg.stats.batch_size is not None:
        _check_int(cfg.stats.batch_size, "stats.batch_size", low=1)
    _validate_metrics(cfg)
    _check_choice(cfg.logger.kind, "logger.kind", ("wandb", "none"))
    _check_choice(cfg.logger.mode, "logger.mode", ("auto", "offline", "online"))
    if cfg.dataset.n_ref is not None:
        _check_int(cfg.dataset.n_ref, "dataset.n_ref", low=2)
    if cfg.dataset.generated:
        _check_int(cfg.dataset.heldout_seed, "dataset.heldout_seed", low=0)
        lo, hi = cfg.dataset.heldout_seed, cfg.dataset.heldout_seed + (cfg.dataset.n_ref or cfg.n)
        if hi > 2**32 or (lo < cfg.seed + cfg.n and cfg.seed < hi):
            raise ConfigError(f"dataset.heldout_seed={lo} makes the reference seeds {lo}..{hi - 1} overlap the "
                              f"evaluated seeds {cfg.seed}..{cfg.seed + cfg.n - 1} (or pass 2**32); move it")
    if check_paths:
        _validate_model_source(cfg.model.source)
        _validate_dataset(cfg)
        check_writable(cfg.results_dir, "results_dir")


def _check_keys(cfg: DictConfig) -> None:
    """Reject keys no schema declares (`+key=value` can add them past struct mode)."""
    import dataclasses

    def walk(node, schema, prefix: str) -> None:
        fields = {f.name: f for f in dataclasses.fields(schema)}
        for key in node.keys():
            if key == "hydra" and not prefix:
                continue
            if key not in fields:
                raise ConfigError(f"unknown key {prefix}{key}; check the spelling (keys of {prefix.rstrip('.') or 'the config'}: "
                                  f"{', '.join(fields)})")
            ftype = fields[key].type
            nested = _SCHEMA_TYPES.get(ftype if isinstance(ftype, str) else getattr(ftype, "__name__", ""))
            if key == "treatment" and not prefix:
                nested = TREATMENT_SCHEMAS.get(node.treatment.get("name"), TreatmentConfig)
            if nested is not None and isinstance(node.get(key), DictConfig):
                walk(node[key], nested, f"{prefix}{key}.")

    walk(cfg, Config, "")


def _check_int(value, key: str, *, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ConfigError(f"{key}={value} is invalid; it must be an integer >= {low}")


def _check_number(value, key: str, *, low: float, strict: bool = False) -> None:
    ok = isinstance(value, (int, float)) and math.isfinite(value) and (value > low if strict else value >= low)
    if not ok:
        raise ConfigError(f"{key}={value} is invalid; it must be a number {'>' if strict else '>='} {low:g}")


def _check_choice(value, key: str, choices) -> None:
    if value not in choices:
        raise ConfigError(f"{key}={value!r} is invalid; choose one of {', '.join(map(str, choices))}")


def _validate_treatment(tr: DictConfig) -> None:
    name = tr.name
    _check_choice(name, "treatment.name", tuple(TREATMENT_SCHEMAS))
    if name == "truncation":
        _check_number(tr.psi, "treatment.psi", low=0.0)
        if tr.psi > 1 and not tr.allow_extrapolation:
            raise ConfigError(f"treatment.psi={tr.psi} > 1 extrapolates away from the mean w; "
                              "set treatment.allow_extrapolation=true if that is intended")
        if tr.cutoff is not None:
            _check_int(tr.cutoff, "treatment.cutoff", low=0)
    if name in ("rescale", "layerwise"):
        _check_number(tr.t, "treatment.t", low=0.0)
        _check_number(tr.p, "treatment.p", low=0.0, strict=True)
    if name == "rescale":
        _check_number(tr.c, "treatment.c", low=0.0)
        _check_choice(tr.risk_rule, "treatment.risk_rule", ("paper", "official"))
    if name == "layerwise":
        _check_number(tr.t_prime, "treatment.t_prime", low=0.0)
        _check_number(tr.c, "treatment.c", low=0.0)


def metric_names(cfg: DictConfig) -> list[str]:
    """The configured metric names with 'all' expanded to every registered metric."""
    names = list(cfg.metrics.names)
    if "all" in names:
        from . import metrics as metrics_pkg
        registered = list(getattr(metrics_pkg, "REGISTRY", {}) or [])
        names = [n for n in names if n != "all"] + [n for n in registered if n not in names]
    return names


def _validate_metrics(cfg: DictConfig) -> None:
    names = metric_names(cfg)
    if len(set(names)) != len(names):
        raise ConfigError(f"metrics.names={names} lists a metric twice; list each once")
    from . import metrics as metrics_pkg
    registry = getattr(metrics_pkg, "REGISTRY", None)
    if registry:
        unknown = [n for n in names if n not in registry]
        if unknown:
            raise ConfigError(f"unknown metric {unknown[0]!r}; choose from {', '.join(sorted(registry))}")
    for key in cfg.metrics.options:  # options of unselected metrics are allowed (presets set several)
        if registry and key not in registry:
            raise ConfigError(f"metrics.options.{key}: no metric {key!r}; choose from {', '.join(sorted(registry))}")


def needs_reference(cfg: DictConfig) -> bool:
    return cfg.mode == "eval" and any(n in DISTRIBUTION_METRICS for n in metric_names(cfg))


def _validate_model_source(source: str) -> None:
    if looks_like_path(source):
        path = Path(source).expanduser()
        if not path.is_file():
            raise MissingFileError(f"model checkpoint {source} does not exist; check the path")
        return
    from .generators import ZOO
    known = set(ZOO) | {"tiny"}
    if ZOO and source not in known:
        raise ConfigError(f"unknown model {source!r}; use a zoo name ({', '.join(sorted(known))}) "
                          "or a checkpoint path")


def looks_like_path(value: str) -> bool:
    return "/" in value or os.sep in value or value.endswith(CHECKPOINT_SUFFIXES)


def _validate_dataset(cfg: DictConfig) -> None:
    ds = cfg.dataset
    if ds.path is not None:
        if ds.generated:
            raise ConfigError(f"dataset {ds.name} is generated and takes no path; drop dataset.path")
        if not Path(str(ds.path)).expanduser().exists():
            raise MissingFileError(f"dataset path {ds.path} does not exist; point dataset.path at a "
                                   "folder or zip of the real images")
    elif needs_reference(cfg) and not ds.generated:
        raise MissingFileError(
            f"dataset {ds.name} has no path but FID/precision-recall need real images; set "
            f"dataset.path=/path/to/{ds.name} (folder or zip) or use dataset=generated")


def check_writable(directory: str, key: str) -> None:
    """Create `directory` if needed and prove a file can be written there."""
    path = Path(directory).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".fpbench-write-test-") as f:
            f.write(b"\0" * 65536)   # an empty file needs no space: write some, or a full disk passes
            f.flush()
            os.fsync(f.fileno())
    except OSError as err:
        raise ConfigError(f"{key}={directory} is not writable ({err.strerror or err}); "
                          f"choose another with {key}=PATH") from None


# ---------------------------------------------------------------------------------------------
# Identity of a job's result.

def result_config(cfg: DictConfig) -> dict:
    """The part of the config that determines the numbers (execution-only keys removed)."""
    data = OmegaConf.to_container(cfg, resolve=True)
    for key in EXECUTION_KEYS:
        data.pop(key, None)
    if data.get("mode") == "timing":
        data["batch_size"] = cfg.batch_size  # batch size is what a timing run measures
    else:
        data.pop("timing_warmup", None)
    if cfg.treatment.name not in NEEDS_STATS:
        data.pop("stats", None)
    return data


def config_hash(cfg: DictConfig) -> str:
    blob = json.dumps(result_config(cfg), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]

"""`load_generator`: one entry point for every checkpoint source we accept.

Sources: an NVIDIA snapshot `.pkl` (read by `safe_pickle`, nothing in it executed), a state-dict
`.pt`/`.pth` (torch.load with weights_only=True), a `.safetensors` state dict, a zoo name
(downloaded into the cache) or `tiny`. State dicts take their constructor kwargs from a sidecar
`NAME.json` (`{"class": ..., "init_kwargs": {...}}`) when present, else from their shapes
(`state_dict_infer`). The network is always one of our own classes, strict-loaded.
"""

from __future__ import annotations

import json
import os
import pickle
import re
from pathlib import Path

import torch

from ..errors import CheckpointError, ConfigError, MissingFileError, UnsafeCheckpointError
from .safe_pickle import load_nvidia_pickle
from .state_dict_infer import infer_init_kwargs
from .zoo import ZOO, zoo_entry, zoo_path

__all__ = ["build_generator", "load_generator", "read_checkpoint"]

_FAMILIES = ("stylegan2", "stylegan3")
_TORCH_LEGACY_HEAD = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"
_NOT_PICKLE = (  # common things found under a checkpoint's name by mistake
    (b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"\x1f\x8b", "a gzip archive"),
    (b"<", "an HTML/XML page (a failed download?)"), (b"{", "a JSON file"),
)


def load_generator(source: str | os.PathLike, device: str | torch.device = "cpu", *,
                   progress: bool = True) -> torch.nn.Module:
    """A StyleGAN2/StyleGAN3 generator from `source`, in eval mode, requires_grad False, on `device`."""
    if isinstance(source, str) and source == "tiny":
        from .tiny import tiny
        G = tiny(device=device)
    else:
        family, init_kwargs, state_dict, label, inferred = read_checkpoint(source, progress=progress)
        G = build_generator(family, init_kwargs, state_dict, label, inferred=inferred)
    return G.to(device).eval().requires_grad_(False)


def read_checkpoint(source: str | os.PathLike, *, progress: bool = True):
    """(family, init_kwargs, state_dict, label, kwargs_were_inferred) without building the network."""
    path = _resolve(source, progress)
    label = path.name
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory, not a checkpoint file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes); re-download or re-export it")
    try:
        kind = _sniff(path)
    except OSError as err:
        raise CheckpointError(f"cannot read {path} ({err.strerror or err}); check its permissions") from None
    suffix = path.suffix.lower()
    if suffix not in (".pkl", ".pt", ".pth", ".safetensors"):
        raise CheckpointError(f"{path}: unknown checkpoint format '{path.suffix}'; use an NVIDIA .pkl, "
                              f"a state-dict .pt/.pth or .safetensors (+ NAME.json), or a zoo name")
    if suffix == ".safetensors":
        return _state_dict_checkpoint(path, _read_safetensors(path))
    if kind == "pickle":
        ck = load_nvidia_pickle(path)
        return ck.family, ck.init_kwargs, ck.state_dict, label, False
    if kind in ("zip", "torch-legacy"):
        return _state_dict_checkpoint(path, _read_torch(path))
    raise CheckpointError(f"{label} is not a checkpoint (it looks like {kind}); check the path or re-download it")


def build_generator(family: str, init_kwargs: dict, state_dict: dict, label: str, *,
                    inferred: bool = False) -> torch.nn.Module:
    """Our network for `family` built from NVIDIA's `init_kwargs`, strict-loaded with `state_dict`."""
    from .stylegan2 import StyleGAN2Generator
    from .stylegan3 import StyleGAN3Generator

    cls = {"stylegan2": StyleGAN2Generator, "stylegan3": StyleGAN3Generator}.get(family)
    if cls is None:
        raise CheckpointError(f"cannot load {label}: no {family} generator implementation is available")
    _check_sizes(init_kwargs, state_dict, family, label)
    try:
        G = cls(**init_kwargs)
    except (TypeError, ValueError, AssertionError, KeyError, RuntimeError, MemoryError) as err:
        raise CheckpointError(f"cannot build a {family} generator for {label} from its init kwargs "
                              f"({_one_line(err)}); fix the init_kwargs") from None
    try:
        G.load_state_dict(state_dict, strict=True)
    except RuntimeError as err:
        detail = _one_line(err)
        if inferred:
            raise CheckpointError(f"cannot infer the architecture of {label}: the weights do not fit the "
                                  f"inferred kwargs ({detail}); provide a .json sidecar with init_kwargs") from None
        raise CheckpointError(f"the weights in {label} do not match its init kwargs ({detail})") from None
    return G


def _check_sizes(init_kwargs: dict, state_dict: dict, family: str, label: str) -> None:
    """Refuse kwargs asking for sizes far beyond any tensor in the weights (a corrupt or forged file)
    before building, so such a file cannot make us allocate gigabytes first."""
    dims = [int(d) for t in state_dict.values() if isinstance(t, torch.Tensor) for d in t.shape]
    limit = max(4096, 4 * max(dims, default=0))

    def walk(kwargs: dict, prefix: str) -> None:
        for key, value in kwargs.items():
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}.")
            elif isinstance(value, int) and not isinstance(value, bool) and (
                    key.endswith(("_dim", "_channels", "_features", "_max", "resolution"))
                    or key == "num_layers"):
                cap = 256 if key == "num_layers" else limit
                if value > cap:
                    raise CheckpointError(f"cannot build a {family} generator for {label}: {prefix}{key}={value} "
                                          f"is far larger than its weights; the file is corrupt")

    walk(init_kwargs, "")


def _resolve(source, progress: bool) -> Path:
    if not isinstance(source, (str, os.PathLike)) or not str(source).strip():
        raise ConfigError(f"checkpoint source must be a file path or a zoo name ({', '.join(ZOO)}), got {source!r}")
    if isinstance(source, str) and source in ZOO:
        return zoo_path(source, progress=progress)
    path = Path(source).expanduser()
    if path.exists():
        return path
    if isinstance(source, str) and not path.suffix and os.sep not in source and "/" not in source:
        zoo_entry(source)  # raises ConfigError listing the valid names
    raise MissingFileError(f"checkpoint {path} does not exist; check the path (or use a zoo name: {', '.join(ZOO)})")


def _sniff(path: Path) -> str:
    with open(path, "rb") as f:
        head = f.read(16)
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if head.startswith(_TORCH_LEGACY_HEAD):
        return "torch-legacy"
    if head.startswith(b"\x80"):
        return "pickle"
    for magic, what in _NOT_PICKLE:
        if head.startswith(magic):
            return what
    return "an unknown binary format"


def _sidecar(path: Path) -> Path:
    return path.with_suffix(".json")


def _state_dict_checkpoint(path: Path, state_dict: dict):
    label = path.name
    sidecar = _sidecar(path)
    if not sidecar.exists():
        family, kwargs = infer_init_kwargs(state_dict, label)
        return family, kwargs, state_dict, label, True
    try:
        meta = json.loads(sidecar.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"cannot read {sidecar.name}: {_one_line(err)}; fix or delete the sidecar") from None
    kwargs = meta.get("init_kwargs") if isinstance(meta, dict) else None
    if not isinstance(kwargs, dict):
        raise CheckpointError(f"{sidecar.name} has no 'init_kwargs' object; write "
                              f'{{"class": "stylegan2"|"stylegan3", "init_kwargs": {{...}}}}')
    family = meta.get("class")
    if family is None:
        family = _family_from_keys(state_dict, label)
    if family not in _FAMILIES:
        raise CheckpointError(f"{sidecar.name}: 'class' must be one of {', '.join(_FAMILIES)}, not {family!r}")
    return family, kwargs, state_dict, label, False


def _family_from_keys(state_dict: dict, label: str) -> str:
    if "synthesis.b4.const" in state_dict:
        return "stylegan2"
    if "synthesis.input.freqs" in state_dict:
        return "stylegan3"
    return infer_init_kwargs(state_dict, label)[0]  # raises with the usual message


def _read_safetensors(path: Path) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"cannot read {path.name}: {_one_line(err)}; the file is truncated or corrupt") from None


def _read_torch(path: Path) -> dict:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        text = str(err)
        found = re.search(r"GLOBAL ([\w.]+)", text) or re.search(r"global '?([\w.]+)", text)
        if "weights_only" in text.lower() or "unsupported global" in text.lower():
            name = found.group(1) if found else "a global that is not allowed"
            raise UnsafeCheckpointError(f"refusing to load {path.name}: it references {name}, "
                                        f"which a generator state dict never needs") from None
        raise CheckpointError(f"cannot read {path.name}: {_one_line(err)}; the file is truncated or corrupt") from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise CheckpointError(f"cannot read {path.name}: {_one_line(err)}; the file is truncated or corrupt") from None
    return _extract_state_dict(obj, path.name)


def _extract_state_dict(obj, label: str) -> dict:
    if isinstance(obj, dict):
        if obj and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
            return dict(obj)
        for key in ("G_ema", "state_dict"):
            if key in obj:
                return _extract_state_dict(obj[key], f"{label}['{key}']")
    raise CheckpointError(f"{label} holds no generator state dict (expected a dict of tensors, or one "
                          f"under 'G_ema' or 'state_dict')")


def _one_line(err: BaseException) -> str:
    text = " ".join(line.strip() for line in str(err).splitlines() if line.strip()) or type(err).__name__
    return text if len(text) <= 300 else text[:297] + "..."

"""Read NVIDIA training snapshots (.pkl) without executing anything stored in them.

NVIDIA's snapshots (stylegan2-ada-pytorch, stylegan3) pickle every network as a "persistent
object": a call to `torch_utils.persistence._reconstruct_persistent_obj(meta)` whose `meta` carries
the Python source of the defining module, which NVIDIA's loader executes. We unpickle with an
allow-list of exact (module, name) globals, each mapped to a function of ours: persistent objects
become inert `PersistentRecord`s (the source text is ignored), tensors are rebuilt from the raw
bytes by our own parser of torch's legacy storage stream, NumPy values are rebuilt from raw bytes
with non-object dtypes only. Any other global raises `UnsafeCheckpointError` before it is called.

From the record tree we take only what a generator needs: its family (from the classes present),
its constructor kwargs and a flat state dict with NVIDIA's key names.
"""

from __future__ import annotations

import collections
import io
import math
import os
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import CheckpointError, UnsafeCheckpointError

__all__ = ["GeneratorCheckpoint", "PersistentRecord", "generator_from_snapshot", "load_nvidia_pickle", "unpickle_snapshot"]

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001

_STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "DoubleStorage": torch.float64, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}

# Positional order of NVIDIA's Generator(...) arguments, for snapshots whose _init_args is not empty.
_GENERATOR_POSITIONAL = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels")


class PersistentRecord:
    """What we keep of an NVIDIA persistent object: its class name and its `__dict__`."""

    __slots__ = ("class_name", "state")

    def __init__(self, class_name: str, state: dict):
        self.class_name = class_name
        self.state = state

    def __setstate__(self, state):  # NVIDIA never BUILDs a persistent object; a file that does is forged
        raise pickle.UnpicklingError("unexpected BUILD on a persistent object")

    def __repr__(self) -> str:
        return f"PersistentRecord({self.class_name})"


@dataclass
class GeneratorCheckpoint:
    family: str                       # "stylegan2" or "stylegan3"
    init_kwargs: dict
    state_dict: dict[str, torch.Tensor]
    key: str                          # snapshot entry it came from: "G_ema" or "G"


class _EasyDict(dict):
    """Stand-in for dnnlib.util.EasyDict (a dict with attribute access); converted to dict later."""


class _NdarrayType:
    """Stand-in for the `numpy.ndarray` class object, only accepted as `_reconstruct`'s subtype."""


class _ArrayStub:
    """Result of `numpy...._reconstruct`; the BUILD that follows fills in the array from raw bytes."""

    __slots__ = ("array",)

    def __init__(self):
        self.array = None

    def __setstate__(self, state):
        if not (isinstance(state, tuple) and len(state) == 5):
            raise pickle.UnpicklingError("malformed numpy array state")
        _version, shape, dtype, is_fortran, raw = state
        _check_dtype(dtype)
        if not isinstance(raw, (bytes, bytearray)):
            raise pickle.UnpicklingError("numpy array data is not raw bytes")
        if not (isinstance(shape, tuple) and all(isinstance(s, int) and s >= 0 for s in shape)):
            raise pickle.UnpicklingError("malformed numpy array shape")
        flat = np.frombuffer(bytes(raw), dtype=dtype)
        self.array = flat.reshape(shape, order="F" if is_fortran else "C").copy()


def _check_dtype(dtype) -> None:
    if not isinstance(dtype, np.dtype) or dtype.hasobject or dtype.kind not in "biufc":
        raise pickle.UnpicklingError(f"numpy dtype {dtype!r} is not a plain numeric type")


def _np_dtype(obj, align=False, copy=False):
    if not isinstance(obj, str):
        raise pickle.UnpicklingError("numpy dtype must be given by a type string")
    dtype = np.dtype(obj)
    _check_dtype(dtype)
    return dtype


def _np_scalar(dtype, data=None):
    _check_dtype(dtype)
    if not isinstance(data, (bytes, bytearray)) or len(data) != dtype.itemsize:
        raise pickle.UnpicklingError("malformed numpy scalar")
    return np.frombuffer(bytes(data), dtype=dtype)[0]


def _np_reconstruct(subtype, shape, dtype_code):
    if subtype is not _NdarrayType:
        raise pickle.UnpicklingError("numpy _reconstruct of something other than ndarray")
    return _ArrayStub()


def _reconstruct_persistent_obj(meta):
    """Replaces NVIDIA's loader: keeps class name and state, never looks at `module_src`."""
    if not isinstance(meta, dict) or meta.get("type") != "class":
        raise pickle.UnpicklingError("malformed persistent object (meta is not a class record)")
    class_name, state = meta.get("class_name"), meta.get("state")
    if not isinstance(class_name, str) or not isinstance(state, dict):
        raise pickle.UnpicklingError("malformed persistent object (class_name/state)")
    return PersistentRecord(class_name, state)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None):
    if not isinstance(storage, torch.Tensor) or storage.dim() != 1:
        raise pickle.UnpicklingError("tensor storage was not produced by a storage stream")
    if not (isinstance(storage_offset, int) and storage_offset >= 0
            and isinstance(size, tuple) and isinstance(stride, tuple) and len(size) == len(stride)
            and all(isinstance(v, int) and v >= 0 for v in size + stride)):
        raise pickle.UnpicklingError("malformed tensor geometry")
    if backward_hooks:
        raise pickle.UnpicklingError("tensor carries backward hooks")
    numel = math.prod(size)
    if numel > storage.numel():  # a stride-0 view would make a small file allocate without bound
        raise pickle.UnpicklingError(f"tensor of {numel} elements overlaps itself in a storage of {storage.numel()}")
    try:  # as_strided checks the view stays inside the storage
        return torch.as_strided(storage, size, stride, storage_offset).clone()
    except RuntimeError as err:
        raise pickle.UnpicklingError(f"tensor out of bounds of its storage ({str(err).splitlines()[0]})") from None


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    if not isinstance(data, torch.Tensor):
        raise pickle.UnpicklingError("parameter data is not a tensor")
    if backward_hooks:
        raise pickle.UnpicklingError("parameter carries backward hooks")
    return data


class _StorageType:
    __slots__ = ("name", "dtype")

    def __init__(self, name: str, dtype: torch.dtype):
        self.name, self.dtype = name, dtype


class _PendingStorage:
    __slots__ = ("key", "dtype", "numel")

    def __init__(self, key: str, dtype: torch.dtype, numel: int):
        self.key, self.dtype, self.numel = key, dtype, numel


class _StorageUnpickler(pickle.Unpickler):
    """One pickle of a legacy `torch.save` stream; the only global allowed is `torch.<X>Storage`."""

    def __init__(self, file, label: str):
        super().__init__(file)
        self._label = label
        self.storages: dict[str, _PendingStorage] = {}

    def find_class(self, module, name):
        # torch.cuda.*Storage: a tensor pickled from the GPU; its bytes are the same, we load them on the CPU.
        if module in ("torch", "torch.cuda") and name in _STORAGE_DTYPES:
            return _StorageType(name, _STORAGE_DTYPES[name])
        raise _unsafe(self._label, module, name, inner=True)

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"):
            raise pickle.UnpicklingError("unexpected persistent id in a tensor stream")
        _, storage_type, key, _location, numel, view_metadata = pid
        if not isinstance(storage_type, _StorageType) or not isinstance(key, str):
            raise pickle.UnpicklingError("malformed storage record")
        if not isinstance(numel, int) or numel < 0 or view_metadata is not None:
            raise pickle.UnpicklingError("unsupported storage record (size or view)")
        pending = self.storages.setdefault(key, _PendingStorage(key, storage_type.dtype, numel))
        return pending


def _parse_storage_stream(data, label: str) -> torch.Tensor:
    """Our reader for `torch.storage._load_from_bytes(data)`: the legacy (non-zip) torch.save format."""
    if not isinstance(data, (bytes, bytearray)):
        raise pickle.UnpicklingError("tensor stream is not bytes")
    f = io.BytesIO(bytes(data))

    def next_pickle():
        up = _StorageUnpickler(f, label)
        return up, up.load()

    _, magic = next_pickle()
    _, protocol = next_pickle()
    _, sys_info = next_pickle()
    if magic != _LEGACY_MAGIC or protocol != _LEGACY_PROTOCOL:
        raise pickle.UnpicklingError("tensor stream is not a legacy torch storage")
    if not isinstance(sys_info, dict) or sys_info.get("little_endian") is not True:
        raise pickle.UnpicklingError("tensor stream is not little-endian")
    up, root = next_pickle()
    _, keys = next_pickle()
    if not isinstance(root, _PendingStorage) or not isinstance(keys, list):
        raise pickle.UnpicklingError("tensor stream does not hold a single storage")
    result = None
    for key in keys:
        pending = up.storages.get(key)
        if pending is None:
            raise pickle.UnpicklingError("tensor stream lists an unknown storage")
        (count,) = struct.unpack("<q", f.read(8).ljust(8, b"\xff"))
        itemsize = torch.empty((), dtype=pending.dtype).element_size()
        if count != pending.numel:
            raise pickle.UnpicklingError("tensor stream size mismatch")
        raw = f.read(count * itemsize)
        if len(raw) != count * itemsize:
            raise pickle.UnpicklingError("tensor data truncated")
        flat = torch.frombuffer(bytearray(raw), dtype=pending.dtype) if count else torch.empty(0, dtype=pending.dtype)
        if key == root.key:
            result = flat
    if result is None:
        raise pickle.UnpicklingError("tensor stream lacks its storage data")
    return result


def _unsafe(label: str, module: str, name: str, inner: bool = False) -> UnsafeCheckpointError:
    where = "a tensor inside it references" if inner else "it references"
    hint = ""
    if str(module).startswith("dnnlib.tflib"):
        hint = " (a TensorFlow-era pickle: convert it with NVIDIA's legacy.py in a sandbox first)"
    return UnsafeCheckpointError(
        f"refusing to load {label}: {where} {module}.{name}, which a generator checkpoint never needs{hint}")


class _SnapshotUnpickler(pickle.Unpickler):
    def __init__(self, file, label: str):
        super().__init__(file)
        self._label = label
        multiarray = {"scalar": _np_scalar, "_reconstruct": _np_reconstruct}
        self._allowed = {
            ("collections", "OrderedDict"): collections.OrderedDict,
            ("builtins", "set"): set,
            ("builtins", "frozenset"): frozenset,
            ("dnnlib.util", "EasyDict"): _EasyDict,
            ("numpy", "dtype"): _np_dtype,
            ("numpy", "ndarray"): _NdarrayType,
            **{(mod, name): fn for mod in ("numpy.core.multiarray", "numpy._core.multiarray")
               for name, fn in multiarray.items()},
            ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
            ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
            ("torch.storage", "_load_from_bytes"): lambda data: _parse_storage_stream(data, label),
            ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
        }

    def find_class(self, module, name):
        fn = self._allowed.get((module, name))
        if fn is None:
            raise _unsafe(self._label, module, name)
        return fn

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("unexpected persistent id (not an NVIDIA snapshot pickle)")


def unpickle_snapshot(data: bytes, label: str):
    """Unpickle a snapshot with the allow-list; returns the raw tree (dicts, records, tensors)."""
    try:
        return _SnapshotUnpickler(io.BytesIO(data), label).load()
    except UnsafeCheckpointError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, KeyError, IndexError,
            struct.error, RuntimeError, MemoryError, OverflowError, UnicodeDecodeError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        if isinstance(err, EOFError) or "truncated" in reason:
            reason = f"pickle data was truncated ({reason})" if "truncated" not in reason else reason
        raise CheckpointError(f"cannot read {label}: {reason}; the file is truncated or corrupt, re-download it") from None


def _plain(value, label: str):
    """Init kwargs as plain Python: EasyDict/OrderedDict -> dict, NumPy scalars -> Python numbers."""
    if isinstance(value, dict):
        return {k: _plain(v, label) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v, label) for v in value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, _ArrayStub):
        return value.array.tolist()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise CheckpointError(f"cannot read {label}: the generator's init kwargs hold a {type(value).__name__}")


def _flatten_state(record: PersistentRecord, prefix: str, out: dict, classes: list, label: str) -> None:
    classes.append(record.class_name)
    st = record.state
    non_persistent = st.get("_non_persistent_buffers_set") or set()
    if not isinstance(non_persistent, (set, frozenset, list, tuple)):
        raise CheckpointError(f"cannot read {label}: {prefix or 'generator '}_non_persistent_buffers_set is not a set")
    for group in ("_parameters", "_buffers"):
        entries = st.get(group) or {}
        if not isinstance(entries, dict):
            raise CheckpointError(f"cannot read {label}: {prefix or 'generator '}{group} is not a dict")
        for name, tensor in entries.items():
            if tensor is None or (group == "_buffers" and name in non_persistent):
                continue
            if not isinstance(tensor, torch.Tensor):
                raise CheckpointError(f"cannot read {label}: {prefix}{name} is not a tensor")
            out[prefix + name] = tensor
    modules = st.get("_modules") or {}
    if not isinstance(modules, dict):
        raise CheckpointError(f"cannot read {label}: {prefix or 'generator '}_modules is not a dict")
    for name, child in modules.items():
        if child is None:
            continue
        if not isinstance(child, PersistentRecord):
            raise CheckpointError(f"cannot read {label}: submodule {prefix}{name} is not an NVIDIA network")
        _flatten_state(child, f"{prefix}{name}.", out, classes, label)


def _family(classes: list, label: str) -> str:
    if "SynthesisInput" in classes:
        return "stylegan3"
    if "SynthesisBlock" in classes:
        return "stylegan2"
    raise CheckpointError(
        f"cannot read {label}: its generator is neither StyleGAN2 nor StyleGAN3 (classes {sorted(set(classes))})")


def generator_from_snapshot(snapshot, label: str) -> GeneratorCheckpoint:
    if not isinstance(snapshot, dict):
        raise CheckpointError(f"cannot read {label}: not an NVIDIA training snapshot (top level is not a dict)")
    key = next((k for k in ("G_ema", "G") if isinstance(snapshot.get(k), PersistentRecord)), None)
    if key is None:
        raise CheckpointError(f"cannot read {label}: the snapshot has no 'G_ema' or 'G' network "
                              f"(keys {sorted(map(str, snapshot))})")
    record = snapshot[key]
    if record.class_name != "Generator":
        raise CheckpointError(f"cannot read {label}: '{key}' is a {record.class_name}, not a Generator")
    state_dict: dict[str, torch.Tensor] = {}
    classes: list[str] = []
    _flatten_state(record, "", state_dict, classes, label)
    kwargs = _plain(record.state.get("_init_kwargs") or {}, label)
    args = _plain(record.state.get("_init_args") or (), label)
    if not isinstance(kwargs, dict) or not isinstance(args, (tuple, list)) or len(args) > len(_GENERATOR_POSITIONAL):
        raise CheckpointError(f"cannot read {label}: malformed generator init arguments")
    kwargs = {**dict(zip(_GENERATOR_POSITIONAL, args)), **kwargs}
    return GeneratorCheckpoint(_family(classes, label), kwargs, state_dict, key)


def load_nvidia_pickle(path: str | os.PathLike) -> GeneratorCheckpoint:
    """Family, init kwargs and state dict of the generator in an NVIDIA snapshot, read safely."""
    path = Path(path)
    data = path.read_bytes()
    try:
        return generator_from_snapshot(unpickle_snapshot(data, path.name), path.name)
    except RecursionError:
        raise CheckpointError(f"cannot read {path.name}: it is nested too deeply for a generator snapshot") from None

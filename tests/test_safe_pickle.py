"""The NVIDIA snapshot reader: exact extraction from genuine files, refusal of everything else.

Hostile files are made by rewriting the genuine fixtures opcode by opcode (FRAMEs dropped, one
opcode replaced), so each differs from a real snapshot only in its payload.
"""

import io
import json
import pickle
import pickletools
import struct

import pytest
import torch
from safetensors.torch import load_file

from fpbench.errors import CheckpointError, UnsafeCheckpointError
from fpbench.generators.safe_pickle import load_nvidia_pickle, unpickle_snapshot

NAMES = ["sg2_a", "sg3_t"]


# ---------------------------------------------------------------- pickle rewriting helpers

def _ops(data: bytes):
    """(opcode, arg, raw bytes of the op) for every op, FRAMEs dropped (frames are optional)."""
    ops = list(pickletools.genops(data))
    out = []
    for i, (op, arg, pos) in enumerate(ops):
        end = ops[i + 1][2] if i + 1 < len(ops) else len(data)
        if op.name != "FRAME":
            out.append((op, arg, data[pos:end]))
    return out


def _unicode(s: str) -> bytes:
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def _bytes_op(b: bytes) -> bytes:
    return b"B" + struct.pack("<I", len(b)) + b


def _call(module: str, name: str, arg: str) -> bytes:
    """Ops that push module.name(arg): GLOBAL, the argument, TUPLE1, REDUCE."""
    return b"c" + f"{module}\n{name}\n".encode() + _unicode(arg) + b"\x85R"


def _rewrite(data: bytes, match, replacement: bytes, occurrence: int = 0) -> bytes:
    """Replace the `occurrence`-th op for which match(op_name, arg) holds (negative: from the end)."""
    ops = _ops(data)
    hits = [i for i, (op, arg, _) in enumerate(ops) if match(op.name, arg)]
    assert hits, "pattern not found in fixture"
    target = hits[occurrence]
    return b"".join(replacement if i == target else raw for i, (_, _, raw) in enumerate(ops))


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def _touch_cmd(marker) -> str:
    return f"touch {marker}"


def _py_write(marker) -> str:
    return f"open({str(marker)!r}, 'w').write('pwned')"


# ---------------------------------------------------------------- genuine files

@pytest.mark.parametrize("name", NAMES)
def test_genuine_snapshot_exact(fixtures_dir, name):
    ck = load_nvidia_pickle(fixtures_dir / f"{name}.pkl")
    ref = load_file(fixtures_dir / f"{name}.safetensors")
    meta = json.loads((fixtures_dir / f"{name}.json").read_text())
    assert ck.key == "G_ema"
    assert ck.family == meta["class"]
    assert ck.init_kwargs == meta["init_kwargs"]
    assert type(ck.init_kwargs["mapping_kwargs"]) is dict  # EasyDict converted
    assert sorted(ck.state_dict) == sorted(ref)
    for k, v in ref.items():
        assert ck.state_dict[k].dtype == v.dtype and torch.equal(ck.state_dict[k], v), k


@pytest.mark.parametrize("name", NAMES)
def test_unframed_rewrite_is_faithful(fixtures_dir, tmp_path, name):
    # The helper the hostile tests rely on must not itself change what a file means.
    data = (fixtures_dir / f"{name}.pkl").read_bytes()
    plain = b"".join(raw for _, _, raw in _ops(data))
    ck = load_nvidia_pickle(_write(tmp_path / "x.pkl", plain))
    ref = load_nvidia_pickle(fixtures_dir / f"{name}.pkl")
    assert all(torch.equal(ck.state_dict[k], v) for k, v in ref.state_dict.items())


def test_numpy1_module_names_load(fixtures_dir, tmp_path):
    data = (fixtures_dir / "sg3_t.pkl").read_bytes()
    new = data
    while True:  # every string naming numpy 2's module -> numpy 1's
        try:
            new = _rewrite(new, lambda n, a: a == "numpy._core.multiarray", _unicode("numpy.core.multiarray"))
        except AssertionError:
            break
    assert b"numpy._core" not in new and b"numpy.core.multiarray" in new
    ck = load_nvidia_pickle(_write(tmp_path / "np1.pkl", new))
    ref = load_nvidia_pickle(fixtures_dir / "sg3_t.pkl")
    assert ck.init_kwargs == ref.init_kwargs
    assert all(torch.equal(ck.state_dict[k], v) for k, v in ref.state_dict.items())


def test_old_torch_ordereddicts_and_missing_g_ema(tmp_path):
    # PyTorch 1.x snapshots: OrderedDict containers, a 'G' but no 'G_ema', a None buffer, None module.
    from collections import OrderedDict

    def rec(class_name, params=(), buffers=(), modules=(), **attrs):
        return ("REC", class_name, dict(_parameters=OrderedDict(params), _buffers=OrderedDict(buffers),
                                        _modules=OrderedDict(modules), _non_persistent_buffers_set=set(), **attrs))

    tree = {"G": rec("Generator", modules=[
        ("synthesis", rec("SynthesisNetwork", modules=[("b4", rec("SynthesisBlock",
                                                                  params=[("const", torch.arange(4.0))],
                                                                  buffers=[("resample_filter", None)]))])),
        ("unused", None)], _init_kwargs={"z_dim": 1}, _init_args=())}
    data = _nvidia_like_dumps(tree)
    ck = load_nvidia_pickle(_write(tmp_path / "old.pkl", data))
    assert ck.key == "G" and ck.family == "stylegan2" and ck.init_kwargs == {"z_dim": 1}
    assert list(ck.state_dict) == ["synthesis.b4.const"]
    assert torch.equal(ck.state_dict["synthesis.b4.const"], torch.arange(4.0))


def _legacy_storage_stream(t: torch.Tensor, storage_pickle: bytes | None = None) -> bytes:
    """A storage as torch's legacy (non-zip) save writes it, built by hand."""
    key = "1"
    head = (pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2) + pickle.dumps(1001, protocol=2)
            + pickle.dumps({"protocol_version": 1001, "little_endian": True,
                            "type_sizes": {"short": 2, "int": 4, "long": 4}}, protocol=2))
    if storage_pickle is None:
        storage_pickle = (b"\x80\x02(" + _unicode("storage") + b"ctorch\nFloatStorage\n" + _unicode(key)
                          + _unicode("cpu") + b"J" + struct.pack("<i", t.numel()) + b"Nt" + b"Q.")
    tail = pickle.dumps([key], protocol=2) + struct.pack("<q", t.numel()) + t.contiguous().numpy().tobytes()
    return head + storage_pickle + tail


def _nvidia_like_dumps(tree) -> bytes:
    """Minimal writer of NVIDIA-style snapshots for synthetic trees (records, tensors, containers)."""
    out = io.BytesIO()
    out.write(b"\x80\x02")

    def w(obj):
        if isinstance(obj, tuple) and obj and obj[0] == "REC":
            out.write(b"ctorch_utils.persistence\n_reconstruct_persistent_obj\n")
            w({"type": "class", "version": 6, "module_src": "# none", "class_name": obj[1], "state": obj[2]})
            out.write(b"\x85R")
        elif isinstance(obj, torch.Tensor):
            out.write(b"ctorch._utils\n_rebuild_tensor_v2\n(")
            out.write(b"ctorch.storage\n_load_from_bytes\n" + _bytes_op(_legacy_storage_stream(obj)) + b"\x85R")
            w(0), w(tuple(obj.shape)), w(tuple(obj.stride())), w(False)
            out.write(b"ccollections\nOrderedDict\n)R")
            out.write(b"tR")
        elif isinstance(obj, dict):
            if type(obj) is not dict:
                out.write(b"ccollections\nOrderedDict\n)R")
            else:
                out.write(b"}")
            for k, v in obj.items():
                w(k), w(v), out.write(b"s")
        elif isinstance(obj, set):
            out.write(b"cbuiltins\nset\n]\x85R")
        elif isinstance(obj, tuple):
            out.write(b"(")
            for v in obj:
                w(v)
            out.write(b"t")
        elif isinstance(obj, str):
            out.write(_unicode(obj))
        elif isinstance(obj, bool):
            out.write(b"\x88" if obj else b"\x89")
        elif isinstance(obj, int):
            out.write(b"J" + struct.pack("<i", obj))
        elif obj is None:
            out.write(b"N")
        else:
            raise TypeError(type(obj))

    w(tree)
    out.write(b".")
    return out.getvalue()


# ---------------------------------------------------------------- hostile files

@pytest.mark.parametrize("module,name,cmd", [
    ("os", "system", _touch_cmd), ("posix", "system", _touch_cmd),
    ("builtins", "exec", _py_write), ("builtins", "eval", _py_write),
])
def test_top_level_payload_refused(tmp_path, module, name, cmd):
    marker = tmp_path / "pwned"
    data = b"\x80\x02" + _call(module, name, cmd(marker)) + b"."
    # The payload is live: a plain unpickler runs it.
    pickle.loads(data)
    assert marker.exists()
    marker.unlink()
    path = _write(tmp_path / "evil.pkl", data)
    with pytest.raises(UnsafeCheckpointError) as err:
        load_nvidia_pickle(path)
    assert str(err.value) == (f"refusing to load evil.pkl: it references {module}.{name}, "
                              f"which a generator checkpoint never needs")
    assert not marker.exists()


@pytest.mark.parametrize("name", NAMES)
def test_payload_in_nested_state_refused(fixtures_dir, tmp_path, name):
    marker = tmp_path / "pwned"
    data = (fixtures_dir / f"{name}.pkl").read_bytes()
    # Replace the value of the last module's `training` flag: the innermost layer of G_ema. The key
    # string is memoized once, so later modules fetch it with BINGET <its memo index>.
    ops = _ops(data)
    first = next(i for i, (op, arg, _) in enumerate(ops) if arg == "training")
    memo_index = sum(op.name == "MEMOIZE" for op, _, _ in ops[:first + 1])
    idx = max(i for i, (op, arg, _) in enumerate(ops) if op.name in ("BINGET", "LONG_BINGET") and arg == memo_index)
    assert idx > len(ops) * 0.9 and ops[idx + 1][0].name == "NEWFALSE"
    evil = b"".join(_call("posix", "system", _touch_cmd(marker)) if i == idx + 1 else raw
                    for i, (_, _, raw) in enumerate(ops))
    with pytest.raises(UnsafeCheckpointError, match=r"references posix\.system"):
        load_nvidia_pickle(_write(tmp_path / "evil.pkl", evil))
    assert not marker.exists()


@pytest.mark.parametrize("name", NAMES)
def test_payload_in_tensor_stream_refused(fixtures_dir, tmp_path, name):
    marker = tmp_path / "pwned"
    hostile_storage = b"\x80\x02" + _call("posix", "system", _touch_cmd(marker)) + b"."
    stream = _legacy_storage_stream(torch.zeros(3), storage_pickle=hostile_storage)
    data = (fixtures_dir / f"{name}.pkl").read_bytes()
    evil = _rewrite(data, lambda n, a: n in ("BINBYTES", "SHORT_BINBYTES", "BINBYTES8"), _bytes_op(stream), -1)
    with pytest.raises(UnsafeCheckpointError) as err:
        load_nvidia_pickle(_write(tmp_path / "evil.pkl", evil))
    assert "a tensor inside it references posix.system" in str(err.value)
    assert not marker.exists()


def test_handmade_tensor_stream_matches(tmp_path):
    # Our own writer of the legacy stream round-trips through the reader (guards the test above).
    t = torch.randn(2, 3)
    tree = {"G_ema": ("REC", "Generator", {"_parameters": {"w": t}, "_buffers": {}, "_modules": {
        "s": ("REC", "SynthesisInput", {"_parameters": {}, "_buffers": {}, "_modules": {}})}})}
    ck = load_nvidia_pickle(_write(tmp_path / "h.pkl", _nvidia_like_dumps(tree)))
    assert ck.family == "stylegan3" and torch.equal(ck.state_dict["w"], t)


@pytest.mark.parametrize("name", NAMES)
def test_module_src_never_executed(fixtures_dir, tmp_path, name):
    marker = tmp_path / "pwned"
    src = f"import pathlib\npathlib.Path({str(marker)!r}).write_text('pwned')\n"
    data = (fixtures_dir / f"{name}.pkl").read_bytes()
    evil = _rewrite(data, lambda n, a: a == "# source omitted", _unicode(src))
    assert src.encode() in evil
    ck = load_nvidia_pickle(_write(tmp_path / "src.pkl", evil))  # still a valid snapshot: loads
    assert ck.family == json.loads((fixtures_dir / f"{name}.json").read_text())["class"]
    assert not marker.exists()


@pytest.mark.parametrize("global_", [
    ("torch", "load"), ("numpy", "load"), ("torch._utils", "_rebuild_device_tensor_from_numpy"),
    ("subprocess", "Popen"), ("builtins", "getattr"), ("torch_utils.persistence", "persistent_class"),
])
def test_other_globals_refused(tmp_path, global_):
    data = b"\x80\x02" + _call(*global_, "x") + b"."
    with pytest.raises(UnsafeCheckpointError, match=f"references {global_[0]}.{global_[1]},"):
        load_nvidia_pickle(_write(tmp_path / "g.pkl", data))


def test_object_dtype_numpy_refused(tmp_path):
    # numpy.dtype('O') would let an array carry arbitrary pickled objects.
    data = b"\x80\x02cnumpy\ndtype\n" + _unicode("O8") + b"\x89\x88\x87R."
    with pytest.raises(CheckpointError, match="not a plain numeric type"):
        unpickle_snapshot(data, "o.pkl")


def test_truncated_and_garbage_are_checkpoint_errors(fixtures_dir, tmp_path):
    data = (fixtures_dir / "sg2_a.pkl").read_bytes()
    with pytest.raises(CheckpointError, match=r"^cannot read half\.pkl: .*truncated.*re-download it$"):
        load_nvidia_pickle(_write(tmp_path / "half.pkl", data[: len(data) // 2]))
    with pytest.raises(CheckpointError, match="not an NVIDIA training snapshot"):
        load_nvidia_pickle(_write(tmp_path / "list.pkl", pickle.dumps([1, 2], protocol=4)))
    with pytest.raises(CheckpointError, match="no 'G_ema' or 'G' network"):
        load_nvidia_pickle(_write(tmp_path / "d.pkl", pickle.dumps({"D": 1}, protocol=4)))

"""Table-driven bad inputs over every user-facing entry point.

Each case breaks one input the usual way (wrong type, out of range, missing, empty, truncated,
corrupt, wrong format, permission denied, disk full, interrupted download) and must be refused with
an fpbench error whose message is one line (for the CLI: exactly one stderr line and a nonzero exit,
no traceback), leaving nothing half-written behind. tests/test_hardening_summary.py counts every case
of this table and of tests/test_hardening_cli.py: "N bad inputs tried, all refused with a clear message".
"""

from __future__ import annotations

import http.client
import io
import json
import re
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from PIL import Image

from fpbench.errors import (CheckpointError, ConfigError, FpbenchError, MissingFileError, StatsMismatchError,
                            UnsafeCheckpointError)
from hardening_cases import corrupt_zip_member, denied, full_disk, leftovers

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"


@dataclass
class Case:
    entry: str                     # which entry point
    name: str
    run: Callable[[Path], object]  # does the bad thing in a fresh temp dir
    error: type[BaseException]
    pattern: str                   # regex the one-line message must match
    watch: str | None = None       # a folder (relative to the temp dir) that must hold no leftovers

    @property
    def id(self) -> str:
        return f"{self.entry}: {self.name}"


CASES: list[Case] = []


def case(entry: str, name: str, error, pattern: str, watch: str | None = None):
    def register(fn):
        CASES.append(Case(entry, name, fn, error, pattern, watch))
        return fn
    return register


def _fixture(name: str) -> Path:
    path = FIXTURES / name
    if not path.exists():
        pytest.skip(f"fixture {path} not found")
    return path


def _png(size=(16, 16), seed=0) -> bytes:
    arr = np.random.RandomState(seed).randint(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _images(folder: Path, n=4, size=(16, 16)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / f"{i:03d}.png").write_bytes(_png(size, i))
    return folder


# ---------------------------------------------------------------------------------------------
# load_generator

def _load(path):
    from fpbench.generators import load_generator
    return load_generator(path)


@case("load_generator", "path does not exist", MissingFileError, r"checkpoint .*nope\.pkl does not exist")
def _(tmp):
    return _load(tmp / "nope.pkl")


@case("load_generator", "a directory", CheckpointError, r"is a directory, not a checkpoint file")
def _(tmp):
    (tmp / "d.pkl").mkdir()
    return _load(tmp / "d.pkl")


@case("load_generator", "empty file", CheckpointError, r"is empty \(0 bytes\)")
def _(tmp):
    (tmp / "e.pkl").write_bytes(b"")
    return _load(tmp / "e.pkl")


@case("load_generator", "truncated NVIDIA pickle", CheckpointError, r"^cannot read cut\.pkl: .*truncated")
def _(tmp):
    data = _fixture("sg2_a.pkl").read_bytes()
    (tmp / "cut.pkl").write_bytes(data[: len(data) * 2 // 3])
    return _load(tmp / "cut.pkl")


@case("load_generator", "bit-rotted NVIDIA pickle", CheckpointError, r"^cannot (read|build|load) rot\.pkl")
def _(tmp):
    data = bytearray(_fixture("sg3_t.pkl").read_bytes())
    for i in range(200, len(data), 997):
        data[i] ^= 0x5A
    (tmp / "rot.pkl").write_bytes(bytes(data))
    return _load(tmp / "rot.pkl")


@case("load_generator", "PNG saved under a checkpoint name", CheckpointError, r"looks like a PNG image")
def _(tmp):
    (tmp / "g.pkl").write_bytes(_png())
    return _load(tmp / "g.pkl")


@case("load_generator", "HTML error page from a failed download", CheckpointError, r"HTML/XML page")
def _(tmp):
    (tmp / "g.pkl").write_bytes(b"<!DOCTYPE html><html><body>403 Forbidden</body></html>")
    return _load(tmp / "g.pkl")


@case("load_generator", "unknown file format", CheckpointError, r"unknown checkpoint format '\.ckpt'")
def _(tmp):
    (tmp / "g.ckpt").write_bytes(b"\x80\x04K\x01.")
    return _load(tmp / "g.ckpt")


@case("load_generator", "pickle that runs os.system", UnsafeCheckpointError, r"refusing to load evil\.pkl: .*system")
def _(tmp):
    (tmp / "evil.pkl").write_bytes(b"\x80\x04cos\nsystem\n\x8c\x04true\x85R.")
    return _load(tmp / "evil.pkl")


@case("load_generator", "truncated safetensors", CheckpointError, r"^cannot read cut\.safetensors: .*truncated or corrupt")
def _(tmp):
    data = _fixture("sg2_a.safetensors").read_bytes()
    (tmp / "cut.safetensors").write_bytes(data[: len(data) // 3])
    return _load(tmp / "cut.safetensors")


@case("load_generator", "state dict .pt holding no tensors", CheckpointError, r"holds no generator state dict")
def _(tmp):
    torch.save({"note": "not weights"}, tmp / "s.pt")
    return _load(tmp / "s.pt")


@case("load_generator", "sidecar .json is not JSON", CheckpointError, r"cannot read g\.json: .*fix or delete the sidecar")
def _(tmp):
    (tmp / "g.safetensors").write_bytes(_fixture("sg2_a.safetensors").read_bytes())
    (tmp / "g.json").write_text('{"class": "stylegan2", "init_kwargs": {')
    return _load(tmp / "g.safetensors")


@case("load_generator", "sidecar names an unknown class", CheckpointError, r"'class' must be one of stylegan2, stylegan3")
def _(tmp):
    (tmp / "g.safetensors").write_bytes(_fixture("sg2_a.safetensors").read_bytes())
    meta = json.loads(_fixture("sg2_a.json").read_text())
    (tmp / "g.json").write_text(json.dumps({**meta, "class": "biggan"}))
    return _load(tmp / "g.safetensors")


@case("load_generator", "weights of another architecture than the sidecar", CheckpointError,
      r"the weights in g\.safetensors do not match its init kwargs|cannot build")
def _(tmp):
    (tmp / "g.safetensors").write_bytes(_fixture("sg3_t.safetensors").read_bytes())
    (tmp / "g.json").write_text(_fixture("sg2_a.json").read_text())
    return _load(tmp / "g.safetensors")


@case("load_generator", "misspelled zoo name", ConfigError, r"unknown model 'sg2-ffhq'; valid zoo names")
def _(tmp):
    return _load("sg2-ffhq")


@case("load_generator", "wrong type (None)", FpbenchError, r"None")
def _(tmp):
    return _load(None)


@case("load_generator", "permission denied", CheckpointError, r"cannot read .*g\.pkl.*[Pp]ermission denied")
def _(tmp):
    path = tmp / "g.pkl"
    path.write_bytes(_fixture("sg2_a.pkl").read_bytes())
    with denied(path):
        return _load(path)


@case("load_generator", "zoo checkpoint not cached, offline", MissingFileError,
      r"cannot download https://\S+stylegan2-afhqv2-512x512\.pkl .*place it at \S+stylegan2-afhqv2-512x512\.pkl",
      watch="cache")
def _(tmp):
    return _load("sg2-afhqv2-512")


class _Response(io.BytesIO):
    """An HTTP response that dies after `cut` bytes, the way a dropped connection does."""

    def __init__(self, body: bytes, cut: int, exc: BaseException):
        super().__init__(body[:cut])
        self.headers = {"Content-Length": str(len(body))}
        self._exc = exc

    def read(self, n=-1):
        chunk = super().read(n)
        if not chunk:
            raise self._exc
        return chunk

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _interrupted(tmp, exc):
    from unittest import mock
    body = _fixture("sg2_a.pkl").read_bytes()
    with mock.patch.dict("os.environ", {"FPBENCH_OFFLINE": "0"}), \
            mock.patch.object(urllib.request, "urlopen", lambda *a, **k: _Response(body, 100_000, exc)):
        return _load("sg2-afhqv2-512")


@case("load_generator", "download interrupted (connection reset)", MissingFileError,
      r"cannot download https://\S+ \(.*reset.*\); download it by hand", watch="cache")
def _(tmp):
    return _interrupted(tmp, ConnectionResetError(104, "Connection reset by peer"))


@case("load_generator", "download interrupted (server closed early)", MissingFileError,
      r"cannot download https://\S+ \(.*\); download it by hand", watch="cache")
def _(tmp):
    return _interrupted(tmp, http.client.IncompleteRead(b"", 700_000))


@case("load_generator", "cached zoo file changed on disk", MissingFileError, r"does not match its recorded sha256")
def _(tmp):
    from fpbench.cache import cache_dir
    models = cache_dir() / "models"
    models.mkdir(parents=True, exist_ok=True)
    (models / "stylegan2-afhqv2-512x512.pkl").write_bytes(b"\x80\x04K\x01.")
    (models / "stylegan2-afhqv2-512x512.pkl.sha256").write_text("0" * 64 + "\n")
    return _load("sg2-afhqv2-512")


# ---------------------------------------------------------------------------------------------
# Reference sets (real images for FID / precision-recall)

def _ref(source, **kw):
    from fpbench.data import ReferenceSet
    ref = ReferenceSet(source, **kw)
    return torch.cat(list(ref.batches(4)))


@case("reference set", "path does not exist", MissingFileError, r"reference images .*nope do not exist")
def _(tmp):
    return _ref(tmp / "nope")


@case("reference set", "empty folder", MissingFileError, r"no images \(png/jpg/jpeg/webp/bmp\) found in")
def _(tmp):
    (tmp / "empty").mkdir()
    return _ref(tmp / "empty")


@case("reference set", "a file that is neither folder nor zip", ConfigError, r"is neither a folder nor a zip")
def _(tmp):
    (tmp / "ffhq.tar").write_bytes(b"\0" * 1024)
    return _ref(tmp / "ffhq.tar")


@case("reference set", "truncated zip", FpbenchError, r"neither a folder nor a zip|cannot read zip")
def _(tmp):
    import zipfile
    with zipfile.ZipFile(tmp / "ffhq.zip", "w") as zf:
        for i in range(4):
            zf.writestr(f"00000/img{i:08d}.png", _png(seed=i))
    data = (tmp / "ffhq.zip").read_bytes()
    (tmp / "ffhq.zip").write_bytes(data[: len(data) - 60])
    return _ref(tmp / "ffhq.zip")


@case("reference set", "zip member with bad CRC", FpbenchError, r"cannot read image 00000/img00000000\.png in .*fix or remove it")
def _(tmp):
    images = {f"00000/img{i:08d}.png": _png(seed=i) for i in range(3)}
    return _ref(corrupt_zip_member(tmp / "ffhq.zip", images))


@case("reference set", "corrupt PNG in a folder", FpbenchError, r"cannot read image 001\.png in .*fix or remove it")
def _(tmp):
    folder = _images(tmp / "imgs")
    (folder / "001.png").write_bytes(_png()[:40])
    return _ref(folder)


@case("reference set", "text file named .jpg", FpbenchError, r"cannot read image notes\.jpg")
def _(tmp):
    folder = _images(tmp / "imgs", n=2)
    (folder / "notes.jpg").write_text("not an image")
    return _ref(folder)


@case("reference set", "images of different sizes, no resolution", ConfigError, r"differ in size .*pass resolution=")
def _(tmp):
    folder = _images(tmp / "imgs", n=2)
    (folder / "big.png").write_bytes(_png((24, 24)))
    return _ref(folder)


@case("reference set", "resolution=0", ConfigError, r"resolution must be a positive integer, got 0")
def _(tmp):
    return _ref(_images(tmp / "imgs"), resolution=0)


@case("reference set", "max_images=-3", ConfigError, r"max_images must be a positive integer, got -3")
def _(tmp):
    return _ref(_images(tmp / "imgs"), max_images=-3)


@case("reference set", "wrong type (resolution='abc')", ConfigError, r"resolution must be a positive integer, got 'abc'")
def _(tmp):
    return _ref(_images(tmp / "imgs"), resolution="abc")


@case("reference set", "permission denied on the folder", FpbenchError, r"cannot read reference folder .*[Pp]ermission denied")
def _(tmp):
    folder = _images(tmp / "imgs")
    (folder / "sub").mkdir()
    (folder / "sub" / "x.png").write_bytes(_png())
    with denied(folder / "sub"):
        return _ref(folder)


@case("reference set", "too few images for precision/recall's k", ConfigError, r"has 3 images but metric 'pr' needs at least 4")
def _(tmp):
    from types import SimpleNamespace

    from fpbench.data import ReferenceSet, attach_reference
    ref = ReferenceSet(_images(tmp / "imgs", n=3))
    return attach_reference([SimpleNamespace(kind="distribution", k=3, name="pr")], ref)


# ---------------------------------------------------------------------------------------------
# Feature-statistics files

def _stats_file(tmp, **overrides) -> Path:
    from fpbench.stats import FeatureStats
    mean = {"synthesis.b4.conv1": torch.zeros(32, dtype=torch.float64)}
    std = {"synthesis.b4.conv1": torch.ones(32, dtype=torch.float64)}
    std.update(overrides.get("std", {}))
    s = FeatureStats(mean=mean, std=std, meta={"fingerprint": overrides.get("fingerprint", "0" * 16)})
    return s.save(tmp / "stats.safetensors")


def _load_stats(path):
    from fpbench.stats import FeatureStats
    return FeatureStats.load(path)


@case("stats file", "does not exist", MissingFileError, r"feature statistics file .*nope\.safetensors does not exist")
def _(tmp):
    return _load_stats(tmp / "nope.safetensors")


@case("stats file", "truncated", StatsMismatchError, r"cannot read feature statistics .*delete it and re-estimate")
def _(tmp):
    path = _stats_file(tmp)
    path.write_bytes(path.read_bytes()[:-40])
    return _load_stats(path)


@case("stats file", "random bytes", StatsMismatchError, r"cannot read feature statistics")
def _(tmp):
    (tmp / "s.safetensors").write_bytes(np.random.RandomState(0).bytes(4096))
    return _load_stats(tmp / "s.safetensors")


@case("stats file", "a generator's weights instead of statistics", StatsMismatchError,
      r"is not an fpbench feature-statistics file")
def _(tmp):
    return _load_stats(_fixture("sg2_a.safetensors"))


@case("stats file", "NaN sigma", StatsMismatchError, r"channel 3 have mean=0\.0, std=nan")
def _(tmp):
    std = torch.ones(32, dtype=torch.float64)
    std[3] = float("nan")
    _load_stats(_stats_file(tmp, std={"synthesis.b4.conv1": std})).validate()


@case("stats file", "statistics of another generator", StatsMismatchError, r"estimated for weights 0{16}, not for this generator")
def _(tmp):
    from fpbench.generators import tiny
    _load_stats(_stats_file(tmp)).check(tiny())


@case("stats file", "lacks a treated layer", StatsMismatchError, r"lack layer 'synthesis\.b8\.conv1'")
def _(tmp):
    _load_stats(_stats_file(tmp)).validate(["synthesis.b8.conv1"])


@case("stats file", "given to a treatment by a wrong path", MissingFileError, r"feature statistics file .* does not exist")
def _(tmp):
    from fpbench.treatments import build
    return build("rescale", stats=tmp / "missing.safetensors", t=2.0, p=2.0)


@case("stats file", "cache directory on a full disk", FpbenchError, r"(?i)cannot write .*no space left", watch="full")
def _(tmp):
    from fpbench.stats import FeatureStats
    s = FeatureStats(mean={"a": torch.zeros(64 * 1024, dtype=torch.float64)},
                     std={"a": torch.ones(64 * 1024, dtype=torch.float64)}, meta={})
    with full_disk(tmp / "full"):
        return s.save(tmp / "full" / "stats.safetensors")


@case("stats file", "cache directory not writable", FpbenchError, r"(?i)cannot write .*permission denied", watch="ro")
def _(tmp):
    from fpbench.stats import FeatureStats
    (tmp / "ro").mkdir()
    s = FeatureStats(mean={"a": torch.zeros(4, dtype=torch.float64)}, std={"a": torch.ones(4, dtype=torch.float64)})
    with denied(tmp / "ro"):
        return s.save(tmp / "ro" / "stats.safetensors")


# ---------------------------------------------------------------------------------------------
# Results directories (the API; the CLI cases are below)

@case("results dir", "is a file", ConfigError, r"results_dir=.*blocker/results is not writable")
def _(tmp):
    from fpbench.config import check_writable
    (tmp / "blocker").write_text("x")
    return check_writable(str(tmp / "blocker" / "results"), "results_dir")


@case("results dir", "permission denied", ConfigError, r"results_dir=.* is not writable \(Permission denied\)")
def _(tmp):
    from fpbench.config import check_writable
    (tmp / "results").mkdir()
    with denied(tmp / "results"):
        return check_writable(str(tmp / "results" / "runs"), "results_dir")


@case("results dir", "disk full while writing a result", FpbenchError, r"(?i)cannot write .*metrics\.json.*no space left",
      watch="full")
def _(tmp):
    from fpbench.cache import atomic_write_json
    with full_disk(tmp / "full"):
        return atomic_write_json(tmp / "full" / "runs" / "metrics.json", {"values": {"fid": 1.0}, "pad": "x" * 300_000})


# ---------------------------------------------------------------------------------------------
# Running the table

def check_case(c: Case, tmp: Path) -> str | None:
    """None if the case is refused as it should be, else what went wrong."""
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        c.run(tmp)
    except c.error as err:
        msg = str(err)
        if "\n" in msg.strip() or not msg.strip():
            return f"message is not one line: {msg!r}"
        if not re.search(c.pattern, msg):
            return f"message {msg!r} does not match {c.pattern!r}"
        if "Traceback" in msg:
            return "message holds a traceback"
    except BaseException as err:  # noqa: BLE001
        if isinstance(err, (KeyboardInterrupt, pytest.skip.Exception)):
            raise
        return f"raised {type(err).__name__} instead of {c.error.__name__}: {str(err)[:200]}"
    else:
        return f"was accepted (no {c.error.__name__})"
    if c.watch:
        from fpbench.cache import cache_dir
        root = cache_dir() if c.watch == "cache" else tmp / c.watch
        bad = leftovers(root)
        if c.watch == "cache":
            bad += [str(p) for p in (root / "models").glob("*") if p.is_file()] if (root / "models").exists() else []
        if bad:
            return f"left behind: {bad[:3]}"
    return None


RESULTS: dict[str, str | None] = {}


@pytest.fixture()
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FPBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_bad_input(c, fresh_cache):
    RESULTS[c.id] = check_case(c, fresh_cache / "case")
    assert RESULTS[c.id] is None, f"{c.id}: {RESULTS[c.id]}"

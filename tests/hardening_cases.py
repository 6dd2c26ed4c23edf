"""Shared helpers of the hardening tests: files broken in the usual ways, permission and disk-full
simulation, and the invariant 'nothing half-written was left behind'."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from unittest import mock

REPO = Path(__file__).resolve().parents[1]


_CAP_DAC = (1 << 1) | (1 << 2)   # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH


def _capabilities(effective_mask_off: int | None):
    """Get (and with a mask, clear bits of) this thread's effective capabilities; None if unsupported."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]

    header, data = Header(0x20080522, 0), (Data * 2)()
    if libc.capget(ctypes.byref(header), data) != 0:
        return None
    before = data[0].effective
    if effective_mask_off is not None:
        data[0].effective = before & ~effective_mask_off
        if libc.capset(ctypes.byref(header), data) != 0:
            return None
    return before


def _set_effective(value: int) -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]

    header, data = Header(0x20080522, 0), (Data * 2)()
    libc.capget(ctypes.byref(header), data)
    data[0].effective = value
    libc.capset(ctypes.byref(header), data)


@contextlib.contextmanager
def denied(*paths: Path):
    """`paths` unreadable and unwritable for the code in the block. As root, the block runs without
    the capabilities that bypass file permissions (Linux), so mode 000 means what it says."""
    modes = [(p, p.stat().st_mode) for p in paths]
    for p in paths:
        p.chmod(0)
    saved = _capabilities(_CAP_DAC) if os.geteuid() == 0 else None
    if os.geteuid() == 0 and saved is None:
        for p, mode in modes:
            p.chmod(mode)
        import pytest
        pytest.skip("running as root without a way to drop CAP_DAC_OVERRIDE")
    try:
        yield
    finally:
        if saved is not None:
            _set_effective(saved)
        for p, mode in modes:
            p.chmod(mode)


@contextlib.contextmanager
def full_disk(path: Path, size_kb: int = 256):
    """A directory at `path` on a filesystem with no space left: a tiny tmpfs filled up when we may
    mount one, else every file write there fails with ENOSPC (mocked at `open`/`os.open`)."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = False
    if os.geteuid() == 0 and sys.platform.startswith("linux"):
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(path)],
                                 capture_output=True).returncode == 0
    if mounted:
        try:
            fd = os.open(path / ".filler", os.O_WRONLY | os.O_CREAT)
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * 4096)
            os.close(fd)
            yield "tmpfs"
        finally:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)
        return
    with mock_enospc(path):
        yield "mock"


@contextlib.contextmanager
def mock_enospc(under: Path, names: tuple[str, ...] = ()):
    """File writes below `under` fail with ENOSPC: `open(..., 'w*')` and `os.open(O_WRONLY|O_RDWR)`;
    with `names`, only files whose name starts with one of them (e.g. the temp file of metrics.json)."""
    real_open, real_os_open = open, os.open
    under = str(Path(under).resolve())

    def inside(p) -> bool:
        try:
            path = Path(os.fspath(p)).resolve()
        except TypeError:
            return False
        return str(path).startswith(under) and (not names or path.name.startswith(names))

    def fake_open(file, mode="r", *a, **kw):
        if inside(file) and any(c in mode for c in "wax+"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(file))
        return real_open(file, mode, *a, **kw)

    def fake_os_open(file, flags, *a, **kw):
        if inside(file) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(file))
        return real_os_open(file, flags, *a, **kw)

    with mock.patch("builtins.open", fake_open), mock.patch("os.open", fake_os_open):
        yield


def leftovers(root: Path) -> list[str]:
    """Files under `root` that are temporary or do not parse: what a crash must never leave."""
    bad = []
    if not root.exists():
        return bad
    for p in root.rglob("*"):
        if not p.is_file() or p.name == ".filler":
            continue
        if p.name.endswith(".part") or p.name.startswith(".fpbench-write-test-"):
            bad.append(f"{p} (temporary file)")
        elif p.suffix == ".json":
            try:
                json.loads(p.read_text())
            except ValueError:
                bad.append(f"{p} (truncated json)")
        elif p.suffix == ".png" and p.read_bytes()[-8:] != b"IEND\xaeB`\x82":
            bad.append(f"{p} (truncated png)")
        elif p.suffix == ".pt":
            import torch
            try:
                torch.load(p, map_location="cpu", weights_only=True)
            except Exception:  # noqa: BLE001
                bad.append(f"{p} (unreadable torch file)")
    return bad


def corrupt_zip_member(dest: Path, images: dict[str, bytes]) -> Path:
    """A zip whose first member's data is damaged (its CRC no longer matches)."""
    with zipfile.ZipFile(dest, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, data in images.items():
            zf.writestr(name, data)
    raw = bytearray(dest.read_bytes())
    first = next(iter(images.values()))
    at = bytes(raw).find(first[16:48])
    raw[at:at + 32] = bytes(32)
    dest.write_bytes(bytes(raw))
    return dest

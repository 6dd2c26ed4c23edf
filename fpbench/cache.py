"""Cache directory, atomic writes and verified downloads.

Everything fpbench downloads (generator pickles, metric weights) goes through `fetch`, which
downloads to `<dest>.part`, checks the sha256 and renames; a recorded digest is re-checked on
later use. Offline, `fetch` fails with a message naming the URL and where to put the file.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import http.client
import json
import os
import re
import socket
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

from .errors import FpbenchError, MissingFileError

_CHUNK = 1 << 20


def cache_dir() -> Path:
    """`$FPBENCH_CACHE`, else `$XDG_CACHE_HOME/fpbench`, else `~/.cache/fpbench`."""
    env = os.environ.get("FPBENCH_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "fpbench"


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `dest`; rename it onto `dest` only if the block succeeds."""
    dest = Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_parts(dest.parent)
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.{_HOST}-{os.getpid()}.", suffix=".part", dir=dest.parent)
    except OSError as err:
        _raise_write_error(dest, err)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, dest)
    except FpbenchError:
        raise
    except Exception as err:  # noqa: BLE001 - re-raised unless it is a full disk or a denied write
        _raise_write_error(dest, err)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


# Temp files are named .<dest>.<host>-<pid>.<random>.part: one whose process died (SIGKILL, power
# loss) is removed by the next atomic write into the same folder on the same host.
_HOST = re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname().split(".")[0] or "host")
_PART = re.compile(r"\.([A-Za-z0-9_-]+)-(\d+)\.[A-Za-z0-9_]+\.part$")


def _remove_stale_parts(directory: Path) -> None:
    for part in directory.glob(".*.part"):
        m = _PART.search(part.name)
        if m and m.group(1) == _HOST and not _alive(int(m.group(2))):
            with contextlib.suppress(OSError):
                part.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


_NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_NOT_ALLOWED = (errno.EACCES, errno.EPERM, errno.EROFS)


def _raise_write_error(dest: Path, err: BaseException):
    """Disk full / permission denied while writing `dest` is a user error (one line); else re-raise."""
    code = err.errno if isinstance(err, OSError) else None
    if code is None and _no_space(dest.parent):
        code = errno.ENOSPC   # torch.save and safetensors report a full disk in exceptions of their own
    if code in _NO_SPACE:
        raise FpbenchError(f"cannot write {dest} ({os.strerror(code)}); free some space or choose another "
                           f"directory") from None
    if code in _NOT_ALLOWED:
        raise FpbenchError(f"cannot write {dest} ({os.strerror(code)}); check its permissions or choose "
                           f"another directory") from None
    raise err


def _no_space(directory: Path) -> bool:
    try:
        st = os.statvfs(directory)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < (1 << 20)


def atomic_write_bytes(dest: str | os.PathLike, data: bytes) -> None:
    with atomic_path(dest) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def atomic_write_text(dest: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(dest, text.encode("utf-8"))


def atomic_write_json(dest: str | os.PathLike, obj) -> None:
    atomic_write_text(dest, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _digest_record(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def fetch(url: str, dest: str | os.PathLike, sha256: str | None = None, *, desc: str | None = None,
          progress: bool = True) -> Path:
    """Return `dest`, downloading `url` there first if it is not cached.

    `sha256`, when given, is checked after download and on every later use; when not given, the
    digest of the first download is recorded beside the file and checked on later use, so a file
    that changes on disk is noticed.
    """
    dest = Path(dest)
    record = _digest_record(dest)
    if dest.exists():
        expected = sha256 or (record.read_text().strip() if record.exists() else None)
        if expected and sha256_file(dest) != expected:
            raise MissingFileError(
                f"{dest} does not match its recorded sha256 (corrupt or replaced); delete it and retry")
        return dest
    try:
        with atomic_path(dest) as tmp:
            _download(url, tmp, desc=desc or dest.name, progress=progress)
            digest = sha256_file(tmp)
            if sha256 and digest != sha256:
                raise MissingFileError(f"download of {url} has sha256 {digest}, expected {sha256}; retry later")
    except (urllib.error.URLError, OSError, TimeoutError, http.client.HTTPException) as err:
        if isinstance(err, MissingFileError):
            raise
        raise MissingFileError(
            f"cannot download {url} ({_reason(err)}); download it by hand and place it at {dest}") from None
    atomic_write_text(record, digest + "\n")
    return dest


def _reason(err: Exception) -> str:
    reason = getattr(err, "reason", None) or err
    return str(reason).splitlines()[0] if str(reason) else type(err).__name__


def _download(url: str, dest: Path, *, desc: str, progress: bool) -> None:
    from tqdm.auto import tqdm

    if os.environ.get("FPBENCH_OFFLINE", "") not in ("", "0"):
        raise urllib.error.URLError("FPBENCH_OFFLINE is set")
    req = urllib.request.Request(url, headers={"User-Agent": "fpbench"})
    with urllib.request.urlopen(req, timeout=30) as resp, open(dest, "wb") as out:
        total = int(resp.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=desc, disable=not progress) as bar:
            for chunk in iter(lambda: resp.read(_CHUNK), b""):
                out.write(chunk)
                bar.update(len(chunk))

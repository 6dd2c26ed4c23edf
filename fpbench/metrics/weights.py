"""Where each metric network finds its pretrained weights.

Resolution order for every file: an explicit path option -> the local caches (fpbench's
`cache_dir()/weights/`, then torch hub's `checkpoints/` where torchvision and torch-fidelity put the
same files) -> a download through `fpbench.cache.fetch` (progress, checksum). Offline with nothing
cached this is one `MissingFileError` naming the file, its URL and where to put it.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import zipfile
from pathlib import Path

from ..cache import atomic_path, cache_dir, fetch, sha256_file
from ..errors import MissingFileError


@dataclasses.dataclass(frozen=True)
class WeightsFile:
    """One downloadable weights file. `sha256_prefix` is the digest prefix in torch hub file names."""

    filename: str
    url: str
    sha256_prefix: str | None = None
    zip_member: str | None = None   # the file lives inside the zip at `url`
    hub_cache: bool = True          # also look in torch hub's checkpoints/ folder


INCEPTION_V3 = WeightsFile(
    "weights-inception-2015-12-05-6726825d.pth",
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth",
    "6726825d")
VGG16 = WeightsFile("vgg16-397923af.pth", "https://download.pytorch.org/models/vgg16-397923af.pth", "397923af")
ALEXNET = WeightsFile("alexnet-owt-7be5be79.pth", "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
                      "7be5be79")
ARCFACE_R50 = WeightsFile("w600k_r50.onnx", "https://github.com/deepinsight/insightface/releases/download/v0.7/buffalo_l.zip",
                          zip_member="w600k_r50.onnx", hub_cache=False)


def weights_dir() -> Path:
    return cache_dir() / "weights"


def insightface_dir(root: str | os.PathLike | None = None) -> Path:
    """insightface's own model folder for `buffalo_l` (`~/.insightface/models/buffalo_l`)."""
    base = Path(root).expanduser() if root else Path("~/.insightface").expanduser()
    return base / "models" / "buffalo_l"


def _hub_checkpoints() -> Path:
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


def candidates(spec: WeightsFile, *, local_dir: Path | None = None) -> list[Path]:
    """Where a cached copy of `spec` may already be, in lookup order."""
    dirs = [local_dir] if local_dir is not None else [weights_dir()]
    if spec.hub_cache:
        dirs.append(_hub_checkpoints())
    return [d / spec.filename for d in dirs]


def resolve(spec: WeightsFile, path: str | os.PathLike | None = None, *, local_dir: Path | None = None,
            what: str = "weights") -> Path:
    """Return a local file holding `spec`: `path` if given, else a cached copy, else a download."""
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise MissingFileError(f"{what} file {p} does not exist; pass an existing path or omit it to use "
                                   f"the cached/downloaded {spec.filename}")
        return p
    for cand in candidates(spec, local_dir=local_dir):
        if cand.is_file():
            _check_prefix(spec, cand)
            return cand
    dest = (local_dir or weights_dir()) / spec.filename
    try:
        if spec.zip_member is None:
            got = fetch(spec.url, dest, desc=spec.filename)
            _check_prefix(spec, got)
            return got
        archive = fetch(spec.url, weights_dir() / Path(spec.url).name, desc=Path(spec.url).name)
        _extract_member(archive, spec.zip_member, dest)
        return dest
    except MissingFileError as err:
        if dest.exists() or "does not match" in str(err):
            raise
        how = f"unzip it from {spec.url}" if spec.zip_member else f"get it from {spec.url}"
        raise MissingFileError(
            f"{what} {spec.filename} is not cached and cannot be downloaded (offline?); {how} "
            f"and place it at {dest}, or pass its path explicitly") from None


def _check_prefix(spec: WeightsFile, path: Path) -> None:
    if spec.sha256_prefix and not file_digest(path).startswith(spec.sha256_prefix):
        raise MissingFileError(f"{path} does not match the sha256 prefix {spec.sha256_prefix} in its name "
                               f"(corrupt or partial download); delete it and retry")


def file_digest(path: str | os.PathLike) -> str:
    """sha256 of a weights file: from the record `fetch` writes beside it, else hashed (once per
    process for an unchanged file -- VGG16 is 528 MB)."""
    path = Path(path)
    record = path.with_name(path.name + ".sha256")
    if record.is_file():
        return record.read_text().strip()
    st = path.stat()
    return _hashed(str(path.resolve()), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=32)
def _hashed(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(path)


def _extract_member(archive: Path, member: str, dest: Path) -> None:
    with zipfile.ZipFile(archive) as zf:
        names = [n for n in zf.namelist() if n.split("/")[-1] == member]
        if not names:
            raise MissingFileError(f"{archive} has no {member}; delete it and retry, or place {member} at {dest}")
        with zf.open(names[0]) as src, atomic_path(dest) as tmp:
            tmp.write_bytes(src.read())

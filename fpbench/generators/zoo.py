"""Official NVIDIA StyleGAN2/StyleGAN3 checkpoints by short name, downloaded once into the cache."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from ..cache import cache_dir, fetch
from ..errors import ConfigError, MissingFileError

__all__ = ["ZOO", "ZooEntry", "zoo_entry", "zoo_path"]

_SG2 = "https://api.ngc.nvidia.com/v2/models/nvidia/research/stylegan2/versions/1/files/"
_SG3 = "https://api.ngc.nvidia.com/v2/models/nvidia/research/stylegan3/versions/1/files/"
_ADA = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/"


class ZooEntry(NamedTuple):
    url: str
    filename: str
    sha256: str | None      # None: the digest of the first download is recorded and checked later
    family: str             # "stylegan2" | "stylegan3"
    resolution: int
    dataset: str            # default reference dataset (conf/dataset name)
    mirrors: tuple[tuple[str, str], ...] = ()   # (url, filename) tried when `url` fails


def _sg2(name: str, res: int, dataset: str, mirror: str | None = None) -> ZooEntry:
    filename = f"stylegan2-{name}-{res}x{res}.pkl"
    mirrors = ((_ADA + mirror, f"stylegan2-ada-pytorch-{mirror}"),) if mirror else ()
    return ZooEntry(_SG2 + filename, filename, None, "stylegan2", res, dataset, mirrors)


def _sg3(cfg: str, name: str, res: int, dataset: str) -> ZooEntry:
    filename = f"stylegan3-{cfg}-{name}-{res}x{res}.pkl"
    return ZooEntry(_SG3 + filename, filename, None, "stylegan3", res, dataset)


ZOO: dict[str, ZooEntry] = {
    "sg2-ffhq-1024": _sg2("ffhq", 1024, "ffhq", "ffhq.pkl"),
    "sg2-afhqcat-512": _sg2("afhqcat", 512, "afhqcat", "afhqcat.pkl"),
    "sg2-metfaces-1024": _sg2("metfaces", 1024, "metfaces", "metfaces.pkl"),
    "sg2-afhqv2-512": _sg2("afhqv2", 512, "afhqv2"),
    "sg3-t-ffhq-1024": _sg3("t", "ffhq", 1024, "ffhq"),
    "sg3-r-ffhq-1024": _sg3("r", "ffhq", 1024, "ffhq"),
    "sg3-t-afhqv2-512": _sg3("t", "afhqv2", 512, "afhqv2"),
    "sg3-r-afhqv2-512": _sg3("r", "afhqv2", 512, "afhqv2"),
}


def zoo_entry(name: str) -> ZooEntry:
    try:
        return ZOO[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown model {name!r}; valid zoo names: {', '.join(ZOO)} "
                          f"(or a path to a .pkl/.pt/.pth/.safetensors file)") from None


def zoo_path(name: str, progress: bool = True) -> Path:
    """Local path of a zoo checkpoint, downloading it into `cache_dir()/models/` if needed."""
    entry = zoo_entry(name)
    models = cache_dir() / "models"
    for _url, filename in entry.mirrors:  # a mirror copy fetched earlier is as good as the primary
        if (models / filename).exists() and not (models / entry.filename).exists():
            return fetch(_url, models / filename, None, progress=progress)
    try:
        return fetch(entry.url, models / entry.filename, entry.sha256, desc=name, progress=progress)
    except MissingFileError as primary:
        for url, filename in entry.mirrors:
            try:
                return fetch(url, models / filename, None, desc=name, progress=progress)
            except MissingFileError:
                pass
        if entry.mirrors:
            raise MissingFileError(f"{primary} (the mirror {entry.mirrors[0][0]} failed too)") from None
        raise

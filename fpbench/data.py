"""Real-image reference sets for the distribution metrics (FID, KID, precision/recall, ...).

A reference set is a folder (searched recursively) or a zip (NVIDIA `dataset_tool.py` zips
included) of png/jpg/jpeg/webp/bmp images, taken in sorted name order and optionally capped to the
first `max_images`. Images are converted to RGB and, when their size differs from `resolution`,
centre-cropped to a square and resized with PIL's Lanczos filter (as NVIDIA's dataset_tool does).
They stream out as float [-1, 1] NCHW batches; the whole set is never held in memory.

Features of a reference set are cached under `cache_dir()/features/`, keyed by a content hash
(file names, sizes and mtimes or zip CRCs, resolution, cap) and the extractor key (network, layer,
weights), written atomically, and reused by every setting of a sweep.
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch

from .cache import atomic_path, cache_dir
from .errors import ConfigError, FpbenchError, MissingFileError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


class ReferenceSet(torch.utils.data.Dataset):
    """Images of a folder or zip as uint8 CHW tensors (item) or float [-1, 1] batches (`batches`)."""

    def __init__(self, source: str | os.PathLike, *, resolution: int | None = None, max_images: int | None = None):
        if not isinstance(source, (str, os.PathLike)):
            raise ConfigError(f"reference images must be given as a folder or zip path, got {source!r}")
        self.source = Path(source).expanduser()
        for key, value in (("resolution", resolution), ("max_images", max_images)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer))
                                      or value < 1):
                raise ConfigError(f"{key} must be a positive integer, got {value!r}")
        self.resolution = None if resolution is None else int(resolution)
        self.is_zip = self.source.is_file() and zipfile.is_zipfile(self.source)
        entries = self._list()
        if not entries:
            raise MissingFileError(f"no images ({'/'.join(e[1:] for e in IMAGE_EXTENSIONS)}) found in {self.source}; "
                               f"point the dataset path at a folder or zip of real images")
        self._entries = entries[:max_images] if max_images is not None else entries
        self.max_images = None if max_images is None else int(max_images)
        self._zip = None
        self._zip_pid = None

    def _list(self) -> list[tuple[str, str]]:
        """Sorted (name, stamp) pairs; the stamp changes whenever the file content may have."""
        if not self.source.exists():
            raise MissingFileError(f"reference images {self.source} do not exist; download the dataset and "
                                   f"pass its folder or zip")
        if self.is_zip:
            try:
                with zipfile.ZipFile(self.source) as zf:
                    infos = zf.infolist()
            except (zipfile.BadZipFile, OSError) as err:
                raise FpbenchError(f"cannot read zip {self.source} ({err}); re-download or re-create it") from None
            return sorted((i.filename, f"{i.file_size}:{i.CRC:08x}") for i in infos
                          if not i.is_dir() and i.filename.lower().endswith(IMAGE_EXTENSIONS))
        if self.source.is_file():
            raise ConfigError(f"{self.source} is neither a folder nor a zip of images")
        out = []
        try:
            for root, dirs, files in os.walk(self.source, onerror=_raise):
                dirs.sort()
                for f in files:
                    if f.lower().endswith(IMAGE_EXTENSIONS):
                        p = Path(root) / f
                        st = p.stat()
                        out.append((p.relative_to(self.source).as_posix(), f"{st.st_size}:{st.st_mtime_ns}"))
        except OSError as err:
            raise FpbenchError(f"cannot read reference folder {self.source} ({err.strerror or err}); "
                               f"check its permissions") from None
        return sorted(out)

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self._entries]

    def content_hash(self) -> str:
        """Hash of what the images would be: names + sizes + mtimes/CRCs, resolution, cap."""
        h = hashlib.sha256()
        h.update(f"zip={self.is_zip};res={self.resolution};n={len(self)}\n".encode())
        for name, stamp in self._entries:
            h.update(f"{name}\t{stamp}\n".encode())
        return h.hexdigest()

    def __getitem__(self, i: int) -> torch.Tensor:
        from PIL import Image

        name = self._entries[i][0]
        try:
            with Image.open(io.BytesIO(self._read(name))) as im:
                im = im.convert("RGB")
                if self.resolution is not None and im.size != (self.resolution, self.resolution):
                    im = _square_resize(im, self.resolution)
                arr = np.asarray(im, dtype=np.uint8)
        except (OSError, ValueError, zipfile.BadZipFile) as err:
            raise FpbenchError(f"cannot read image {name} in {self.source} ({err}); fix or remove it") from None
        return torch.from_numpy(arr.copy()).permute(2, 0, 1)

    def _read(self, name: str) -> bytes:
        if not self.is_zip:
            return (self.source / name).read_bytes()
        if self._zip is None or self._zip_pid != os.getpid():   # one handle per worker process
            self._zip, self._zip_pid = zipfile.ZipFile(self.source), os.getpid()
        return self._zip.read(name)

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_zip"] = None
        return state

    def batches(self, batch_size: int = 32, *, device="cpu", workers: int = 0) -> Iterator[torch.Tensor]:
        """Float [-1, 1] NCHW batches on `device`, in file order; images of different sizes need `resolution`."""
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        loader = torch.utils.data.DataLoader(self, batch_size=batch_size, shuffle=False, num_workers=workers,
                                             collate_fn=self._collate)
        for batch in loader:
            yield batch.to(device).to(torch.float32) / 127.5 - 1

    def _collate(self, items: list[torch.Tensor]) -> torch.Tensor:
        shapes = {tuple(t.shape) for t in items}
        if len(shapes) > 1:
            raise ConfigError(f"images in {self.source} differ in size {sorted(shapes)[:2]}; pass resolution= "
                              f"(the generator's) to resize them")
        return torch.stack(items)

    def __repr__(self) -> str:
        return f"ReferenceSet({str(self.source)!r}, n={len(self)}, resolution={self.resolution})"


def _raise(err: OSError):
    raise err


def _square_resize(im, size: int):
    from PIL import Image

    w, h = im.size
    if w != h:
        s = min(w, h)
        left, top = (w - s) // 2, (h - s) // 2
        im = im.crop((left, top, left + s, top + s))
    return im.resize((size, size), Image.LANCZOS)


def iter_images(source: str | os.PathLike, *, batch_size: int = 32, resolution: int | None = None, device="cpu",
                max_images: int | None = None, progress: bool = False, workers: int = 0) -> Iterator[torch.Tensor]:
    """Stream a folder or zip of real images as float [-1, 1] NCHW batches on `device`."""
    from tqdm.auto import tqdm

    ref = ReferenceSet(source, resolution=resolution, max_images=max_images)
    with tqdm(total=len(ref), unit="img", desc="reference (real)", disable=not progress, leave=False) as bar:
        for batch in ref.batches(batch_size, device=device, workers=workers):
            yield batch
            bar.update(len(batch))


def features_cache_path(ref: ReferenceSet, extractor_key: str) -> Path:
    digest = hashlib.sha256(f"{ref.content_hash()}|{extractor_key}".encode()).hexdigest()[:32]
    return cache_dir() / "features" / f"{digest}.pt"


def reference_features(ref: ReferenceSet, metric, *, batch_size: int = 32, workers: int = 0,
                       use_cache: bool = True) -> torch.Tensor:
    """Features [len(ref), dim] of `ref` for a distribution metric's extractor, from the cache if there.

    Computing streams the images batch by batch through the metric's extractor (via its bank).
    """
    extractor = metric.extractor
    path = features_cache_path(ref, metric.extractor_key)
    if use_cache and path.is_file():
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
            feats = blob["features"]
            if blob.get("extractor_key") == metric.extractor_key and tuple(feats.shape) == (len(ref), extractor.dim):
                return feats
        except Exception:   # unreadable/partial cache entry: recompute and overwrite
            pass
    parts = [metric.bank.features(extractor, batch)
             for batch in ref.batches(batch_size, device=extractor.device, workers=workers)]
    feats = torch.cat(parts)
    if use_cache:
        with atomic_path(path) as tmp:
            torch.save({"features": feats, "extractor_key": metric.extractor_key, "source": str(ref.source),
                        "content_hash": ref.content_hash(), "count": len(ref)}, tmp)
    return feats


def attach_reference(metrics: Iterable, ref: ReferenceSet, *, batch_size: int = 32, workers: int = 0,
                     use_cache: bool = True) -> None:
    """Give every distribution metric in `metrics` the features of `ref` (pairwise ones are skipped).

    Metrics with the same extractor key get one computation; too few real images for a metric's k
    fails here, before any image is read.
    """
    dist = [m for m in metrics if getattr(m, "kind", None) == "distribution"]
    for m in dist:
        need = getattr(m, "k", 1) + 1
        if len(ref) < need:
            raise ConfigError(f"reference set {ref.source} has {len(ref)} images but metric {m.name!r} needs at "
                              f"least {need} (k={need - 1} neighbours); use more real images")
    done: dict[str, torch.Tensor] = {}
    for m in dist:
        if m.extractor_key not in done:
            done[m.extractor_key] = reference_features(ref, m, batch_size=batch_size, workers=workers,
                                                       use_cache=use_cache)
        m.set_real_features(done[m.extractor_key])

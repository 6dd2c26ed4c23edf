"""Real reference sets: folders and zips, caps, resizing, streaming batches, feature cache, errors."""

import os
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

import fpbench.metrics as M
from fpbench.cache import cache_dir
from fpbench.data import ReferenceSet, attach_reference, features_cache_path, reference_features
from fpbench.errors import ConfigError, FpbenchError, MissingFileError


def _write_images(folder, n=6, size=(32, 32), seed=0, nested=True):
    rng = np.random.RandomState(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for i in range(n):
        name = f"sub/{i:03d}.png" if nested and i % 2 else f"{i:03d}.png"
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        arr = rng.randint(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(arr).save(folder / name)
        arrays[name] = arr
    return arrays


def _zip(folder, dest, arrays):
    """A zip laid out like NVIDIA's dataset_tool output (00000/img00000000.png + dataset.json)."""
    with zipfile.ZipFile(dest, "w") as zf:
        for i, name in enumerate(sorted(arrays)):
            zf.write(folder / name, f"00000/img{i:08d}.png")
        zf.writestr("dataset.json", '{"labels": null}')
    return dest


def test_folder_sorted_exact_values(tmp_path):
    arrays = _write_images(tmp_path / "imgs")
    ref = ReferenceSet(tmp_path / "imgs")
    assert ref.names == sorted(arrays) and len(ref) == 6
    batches = list(ref.batches(4))
    assert [b.shape[0] for b in batches] == [4, 2]
    x = torch.cat(batches)
    assert x.dtype == torch.float32 and x.min() >= -1 and x.max() <= 1
    back = (x * 127.5 + 128).clamp(0, 255).to(torch.uint8)   # how the metrics quantise
    for i, name in enumerate(ref.names):
        assert np.array_equal(back[i].permute(1, 2, 0).numpy(), arrays[name])


def test_zip_like_dataset_tool_and_cap(tmp_path):
    arrays = _write_images(tmp_path / "imgs")
    z = ReferenceSet(_zip(tmp_path / "imgs", tmp_path / "ds.zip", arrays), max_images=4)
    assert len(z) == 4 and z.names[0] == "00000/img00000000.png"
    folder = ReferenceSet(tmp_path / "imgs", max_images=4)
    assert torch.equal(torch.cat(list(z.batches(3))), torch.cat(list(folder.batches(3))))


def test_resize_and_center_crop(tmp_path):
    _write_images(tmp_path / "wide", n=2, size=(48, 32), nested=False)
    ref = ReferenceSet(tmp_path / "wide", resolution=16)
    assert next(ref.batches(2)).shape == (2, 3, 16, 16)
    with pytest.raises(ConfigError, match="pass resolution="):
        _write_images(tmp_path / "mixed", n=1, size=(32, 32), nested=False)
        Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(tmp_path / "mixed" / "zz.png")
        list(ReferenceSet(tmp_path / "mixed").batches(2))


def test_content_hash_tracks_files(tmp_path):
    _write_images(tmp_path / "imgs")
    h = ReferenceSet(tmp_path / "imgs").content_hash()
    assert h == ReferenceSet(tmp_path / "imgs").content_hash()
    assert h != ReferenceSet(tmp_path / "imgs", max_images=5).content_hash()
    assert h != ReferenceSet(tmp_path / "imgs", resolution=16).content_hash()
    p = tmp_path / "imgs" / "000.png"
    os.utime(p, ns=(p.stat().st_atime_ns, p.stat().st_mtime_ns + 10**9))
    assert h != ReferenceSet(tmp_path / "imgs").content_hash()


def test_bad_sources(tmp_path):
    with pytest.raises(MissingFileError, match="do not exist"):
        ReferenceSet(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    with pytest.raises(MissingFileError, match="no images"):
        ReferenceSet(tmp_path / "empty")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "a.png").write_bytes(b"definitely not a png")
    with pytest.raises(FpbenchError, match="cannot read image a.png"):
        list(ReferenceSet(tmp_path / "broken").batches(1))
    (tmp_path / "bad.zip").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(FpbenchError):
        ReferenceSet(tmp_path / "bad.zip")
    with pytest.raises(ConfigError, match="max_images"):
        ReferenceSet(tmp_path / "broken", max_images=0)


def test_unreadable_folder(tmp_path, monkeypatch):
    _write_images(tmp_path / "locked")

    def walk_denied(top, onerror=None, **kw):   # what os.walk reports for a folder without read permission
        onerror(PermissionError(13, "Permission denied", str(top)))
        return iter(())

    monkeypatch.setattr(os, "walk", walk_denied)
    with pytest.raises(FpbenchError, match="cannot read reference folder .*Permission denied"):
        ReferenceSet(tmp_path / "locked")


class _CountingMetric:
    """The parts of a distribution metric that `reference_features` uses, with a cheap extractor."""

    kind = "distribution"
    name = "stub"

    def __init__(self, key="stub/mean/v1", k=3):
        self.extractor_key, self.k, self.calls, self.real = key, k, 0, None
        self.extractor = type("E", (), {"dim": 3, "device": torch.device("cpu"), "key": key})()
        self.bank = self

    def features(self, extractor, images):
        self.calls += 1
        return images.mean(dim=(2, 3))

    def set_real_features(self, f):
        self.real = f


def test_feature_cache_roundtrip_and_invalidation(tmp_path):
    _write_images(tmp_path / "imgs")
    ref = ReferenceSet(tmp_path / "imgs")
    m = _CountingMetric()
    first = reference_features(ref, m, batch_size=4)
    assert m.calls == 2 and first.shape == (6, 3)
    path = features_cache_path(ref, m.extractor_key)
    assert path.parent == cache_dir() / "features" and path.is_file()
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".part")]
    again = reference_features(ReferenceSet(tmp_path / "imgs"), m, batch_size=4)
    assert m.calls == 2 and torch.equal(first, again)                # served from the cache
    other = _CountingMetric(key="stub/mean/v2")
    reference_features(ref, other)
    assert other.calls == 1                                          # other extractor: other entry
    path.write_bytes(b"garbage")
    assert torch.equal(reference_features(ref, m, batch_size=4), first) and m.calls == 4


def test_attach_reference_checks_k_before_reading(tmp_path):
    _write_images(tmp_path / "imgs", n=3)
    ref = ReferenceSet(tmp_path / "imgs")
    m = _CountingMetric(k=3)
    with pytest.raises(ConfigError, match="has 3 images but metric 'stub' needs at least 4"):
        attach_reference([m], ref)
    assert m.calls == 0


def test_attach_reference_with_real_metrics(tmp_path):
    _write_images(tmp_path / "imgs", n=4)
    ref = ReferenceSet(tmp_path / "imgs")
    bank = M.FeatureBank()
    fid = M.create("fid", pretrained=False, bank=bank, layer="64")
    kid = M.create("kid", pretrained=False, bank=bank, layer="64", subset_size=2)
    psnr = M.create("psnr")
    attach_reference([fid, kid, psnr], ref, batch_size=3)
    assert fid.real_features().shape == (4, 64) and torch.equal(fid.real_features(), kid.real_features())
    direct = M.create("fid", pretrained=False, bank=bank, layer="64")
    for batch in ref.batches(4):
        direct.update_real(batch)
    assert torch.allclose(direct.real_features(), fid.real_features(), rtol=1e-5, atol=1e-6)


def test_iter_images_streams_capped_resized_batches(tmp_path):
    _write_images(tmp_path / "imgs", n=5)
    from fpbench.data import iter_images

    batches = list(iter_images(tmp_path / "imgs", batch_size=2, resolution=16, max_images=3))
    assert [tuple(b.shape) for b in batches] == [(2, 3, 16, 16), (1, 3, 16, 16)]
    with pytest.raises(MissingFileError, match="do not exist"):
        next(iter_images(tmp_path / "missing"))

"""FID, KID, precision/recall, density/coverage: known answers, sharing, streaming, resume, bad input.

Feature extractors run with random weights (pretrained=False); the heavy networks are slow on a
CPU, so image-level tests use a handful of 32x32 images and the maths tests feed features through
`load_state_dict` / `set_real_features`.
"""

import weakref

import pytest
import torch

import fpbench.metrics as M
from fpbench.errors import ConfigError, MissingFileError
from fpbench.metrics.distribution import density_coverage


def _images(n, seed=0, size=32):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g) * 2 - 1


@pytest.fixture(scope="module")
def bank():
    return M.FeatureBank()


@pytest.fixture(scope="module")
def vgg_metrics(bank):
    return {"pr": M.create("pr", pretrained=False, bank=bank),
            "density_coverage": M.create("density_coverage", pretrained=False, bank=bank, k=3)}


@pytest.fixture(scope="module")
def inception_metrics(bank):
    # layer "192" (an early pool) keeps the CPU cost down: the full 2048-d path runs in the parity test
    return {"fid": M.create("fid", pretrained=False, bank=bank, layer="192"),
            "kid": M.create("kid", pretrained=False, bank=bank, layer="192", subsets=10, subset_size=2)}


def _feats(n, d=16, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


def test_interface_and_shared_extractors(vgg_metrics, inception_metrics, bank):
    for name, m in {**vgg_metrics, **inception_metrics}.items():
        assert m.name == name and m.kind == "distribution" and m.uncalibrated is True
    assert vgg_metrics["pr"].extractor is vgg_metrics["density_coverage"].extractor
    assert inception_metrics["fid"].extractor is inception_metrics["kid"].extractor
    assert vgg_metrics["pr"].extractor_key == "vgg16/fc2_relu/random-seed0"
    assert inception_metrics["fid"].extractor_key == "inception-v3-compat/192/random-seed0"


_X = _images(4)
_FEATURES = {}


def test_identical_sets_image_level(vgg_metrics, inception_metrics, bank, monkeypatch):
    x = _X
    calls = []
    for ex in {m.extractor for m in (*vgg_metrics.values(), *inception_metrics.values())}:
        orig = ex.net.forward
        monkeypatch.setattr(ex.net, "forward", lambda u, _o=orig: (calls.append(len(u)), _o(u))[1])
    x2 = x[:2]   # the 299x299 Inception is the slow one on a CPU: FID/KID need only two images
    for m, batch in [*((m, x) for m in vgg_metrics.values()), *((m, x2) for m in inception_metrics.values())]:
        m.reset(real=True)
        m.update_real(batch)
        m.update(batch, None)
    assert sorted(calls) == [2, 4]   # one pass per extractor although four metrics and two sets saw the batch
    pr = vgg_metrics["pr"].compute()
    assert pr == {"precision": 1.0, "recall": 1.0}
    assert vgg_metrics["density_coverage"].compute()["coverage"] == 1.0
    fid = inception_metrics["fid"].compute()["fid"]
    trace = float(torch.cov(inception_metrics["fid"].real_features().double().T).trace())
    assert abs(fid) < 1e-4 * trace
    # unbiased MMD over random subsets is only ~0 for equal sets (subsets drawn independently)
    assert abs(inception_metrics["kid"].compute()["kid"]) < 1e-2
    _FEATURES.update(vgg=vgg_metrics["pr"].fake_features(), inception=inception_metrics["fid"].fake_features())


def test_mode_collapse_high_precision_low_recall():
    m = M.create("pr", pretrained=False, bank=_NoBank(16))
    real = _feats(20)
    m.load_state_dict({"fake": real[:1].repeat(20, 1), "real": real})
    out = m.compute()
    assert out["precision"] == 1.0 and out["recall"] == pytest.approx(1 / 20)
    dc = M.create("density_coverage", pretrained=False, bank=_NoBank(16))
    dc.load_state_dict({"fake": real[:1].repeat(20, 1), "real": real})
    collapsed, full = dc.compute(), None
    dc.load_state_dict({"fake": _feats(20, seed=5), "real": real})
    full = dc.compute()
    assert collapsed["coverage"] < 0.5 * full["coverage"]


def test_density_coverage_known_answer():
    # real points on a line 0..5, k=1: radius of each = 1 (distance to the neighbour)
    real = torch.arange(6.0)[:, None]
    fake = torch.tensor([[0.5], [10.0]])
    density, coverage = density_coverage(fake, real, k=1)
    # 0.5 lies strictly inside the balls of 0 and 1 -> 2 hits / (k * 2 fakes)
    assert density == pytest.approx(2 / 2) and coverage == pytest.approx(2 / 6)
    d2, c2 = density_coverage(fake, real, k=1, row_batch=1)
    assert (d2, c2) == (density, coverage)


def test_fid_and_kid_grow_with_shift():
    fid = M.create("fid", pretrained=False, bank=_NoBank(64))
    kid = M.create("kid", pretrained=False, bank=_NoBank(64), subsets=5, subset_size=8)
    real = _feats(40, 64)
    values = []
    for shift in (0.0, 0.5, 1.0):
        fid.load_state_dict({"fake": real + shift, "real": real})
        kid.load_state_dict({"fake": real + shift, "real": real})
        values.append((fid.compute()["fid"], kid.compute()["kid"]))
    assert values[0][0] == pytest.approx(0, abs=1e-2)
    assert values[0][0] < values[1][0] < values[2][0] and values[1][0] == pytest.approx(64 * 0.25, rel=1e-3)
    assert values[0][1] < values[1][1] < values[2][1]


def test_kid_shrinks_subset_with_warning():
    kid = M.create("kid", pretrained=False, bank=_NoBank(64))
    kid.load_state_dict({"fake": _feats(5, 64, 1), "real": _feats(6, 64, 2)})
    with pytest.warns(UserWarning, match="using 5"):
        kid.compute()


@pytest.mark.parametrize("which", ["inception", pytest.param("vgg", marks=pytest.mark.slow)])
def test_batch_size_independence(which, vgg_metrics, inception_metrics):
    m = vgg_metrics["pr"] if which == "vgg" else inception_metrics["fid"]
    if which not in _FEATURES:   # normally left by test_identical_sets_image_level
        m.reset(real=True)
        m.update(_X[:4 if which == "vgg" else 2].clone())
        _FEATURES[which] = m.fake_features()
    m.reset(real=True)
    for i in range(len(_FEATURES[which])):
        m.update(_X[i:i + 1].clone())
    assert torch.allclose(m.fake_features(), _FEATURES[which], rtol=1e-4, atol=1e-5)


def test_resume_gives_identical_results():
    real, fake = _feats(30, seed=1), _feats(30, seed=2) + 0.3
    results = []
    for split in (None, 7, 19):
        m = M.create("pr", pretrained=False, bank=_NoBank(16))
        if split is None:
            m.load_state_dict({"fake": fake, "real": real})
        else:   # checkpoint after `split` rows, restore into a fresh metric, continue
            m.load_state_dict({"fake": fake[:split], "real": real})
            state = {k: v.clone() for k, v in m.state_dict().items()}
            m = M.create("pr", pretrained=False, bank=_NoBank(16))
            m.load_state_dict(state)
            m._fake.append(fake[split:])
        results.append(m.compute())
    assert results[0] == results[1] == results[2] and 0 < results[0]["recall"] < 1


def test_streaming_state_is_feature_rows_only(inception_metrics):
    m = inception_metrics["fid"]
    m.reset(real=True)
    batch = _images(2, seed=7)
    ref = weakref.ref(batch)
    m.update(batch)
    m.update(_images(1, seed=8))
    del batch
    assert ref() is None                 # neither metric nor bank keeps images alive
    state = m.state_dict()
    assert state["fake"].shape == (3, 192) and state["real"].shape == (0, 192)
    assert sum(t.numel() for t in m._fake) == 3 * 192


def test_reset_keeps_real_unless_asked():
    m = M.create("fid", pretrained=False, bank=_NoBank(64))
    m.load_state_dict({"fake": _feats(3, 64), "real": _feats(4, 64)})
    m.reset()
    assert len(m.fake_features()) == 0 and len(m.real_features()) == 4
    m.reset(real=True)
    assert len(m.real_features()) == 0


@pytest.mark.parametrize("name,n_real,msg", [
    ("pr", 3, "3 real images but needs at least 4"),
    ("density_coverage", 5, "5 real images but needs at least 6"),
    ("fid", 1, "1 real images but needs at least 2"),
])
def test_too_few_real_images(name, n_real, msg):
    m = M.create(name, pretrained=False, bank=_NoBank(_dim(name)))
    m.load_state_dict({"fake": _feats(8, _dim(name)), "real": _feats(n_real, _dim(name))})
    with pytest.raises(ConfigError, match=msg):
        m.compute()


def test_no_real_and_wrong_features():
    m = M.create("fid", pretrained=False, bank=_NoBank(64))
    m.load_state_dict({"fake": _feats(3, 64), "real": _feats(0, 64)})
    with pytest.raises(ConfigError, match="no real features"):
        m.compute()
    with pytest.raises(ConfigError, match=r"gives \[N, 64\]"):
        m.set_real_features(_feats(3, 4096))
    with pytest.raises(ConfigError, match="lacks 'fake'/'real'"):
        m.load_state_dict({"scores": torch.zeros(3)})


def test_bad_images(vgg_metrics):
    m = vgg_metrics["pr"]
    with pytest.raises(ConfigError, match="dtype torch.uint8"):
        m.update(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ConfigError, match=r"expected \[-1, 1\]"):
        m.update_real(torch.full((2, 3, 32, 32), 200.0))


def test_options_validated():
    with pytest.raises(ConfigError, match="unknown feature extractor"):
        M.create("fid", pretrained=False, extractor="clip")
    with pytest.raises(ConfigError, match="no layer 'fc9'"):
        M.create("pr", pretrained=False, layer="fc9")


def test_missing_weights(tmp_path, monkeypatch):
    with pytest.raises(MissingFileError, match="does not exist"):
        M.create("fid", weights=str(tmp_path / "nope.pth"))
    monkeypatch.setattr("torch.hub.get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(MissingFileError, match="weights-inception-2015-12-05-6726825d.pth.*place it at .*weights"):
        M.create("fid")
    with pytest.raises(MissingFileError, match="vgg16-397923af.pth"):
        M.create("pr")


def test_weights_file_by_path_is_keyed_by_content(tmp_path):
    from fpbench.metrics.features import random_state_dict

    path = tmp_path / "incep.pth"
    torch.save(random_state_dict("inception-v3-compat", seed=1), path)
    m = M.create("fid", weights=str(path), bank=M.FeatureBank())
    assert m.uncalibrated is False and m.extractor_key.startswith("inception-v3-compat/2048/sha256-")


# helpers ------------------------------------------------------------------------------------------
def _dim(name):
    return 64


class _NoBank(M.FeatureBank):
    """A bank whose extractor is never built: for tests that feed features directly."""

    def __init__(self, dim=4096):
        super().__init__()
        self.dim = dim

    def extractor(self, name, layer, **kw):
        return _StubExtractor(f"{name}/{layer}/stub", self.dim)


class _StubExtractor:
    def __init__(self, key, dim):
        self.key, self.dim, self.uncalibrated, self.device = key, dim, True, torch.device("cpu")


def test_pr_blockwise_equals_full():
    real, fake = _feats(30, seed=1), _feats(25, seed=2) + 0.3
    full = M.create("pr", pretrained=False, bank=_NoBank(16))
    blocks = M.create("pr", pretrained=False, bank=_NoBank(16), row_batch=8)   # > row_batch rows: blockwise
    for m in (full, blocks):
        m.load_state_dict({"fake": fake, "real": real})
    assert full.compute() == blocks.compute()


def test_random_weights_and_path_conflict(tmp_path):
    with pytest.raises(ConfigError, match="pretrained=False .* weights= was also given"):
        M.create("fid", pretrained=False, weights=str(tmp_path / "w.pth"))

"""PSNR, SSIM, LPIPS: known answers, scikit-image parity, batch independence, resume, bad input."""

import numpy as np
import pytest
import torch

import fpbench.metrics as M
from fpbench.errors import ConfigError, MissingFileError


def _pair(n=4, size=32, noise=0.1, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, size, size, generator=g) * 2 - 1
    y = (x + noise * torch.randn(x.shape, generator=g)).clamp(-1, 1)
    return x, y


_SHARED = {}


def _metric(name):
    """One random-weight instance per metric for the whole file (building LPIPS costs a second)."""
    if name not in _SHARED:
        _SHARED[name] = M.create(name, pretrained=False)
    _SHARED[name].reset()
    return _SHARED[name]


def _run(metric, x, y, batch):
    for i in range(0, len(x), batch):
        metric.update(x[i:i + batch], y[i:i + batch])
    return metric.compute()


def test_registry_names_and_kinds():
    assert set(M.REGISTRY) == {"psnr", "ssim", "lpips", "id", "fid", "pr", "kid", "density_coverage"}
    for name in ("psnr", "ssim", "lpips"):
        m = _metric(name)
        assert m.name == name and m.kind == "pairwise"
    assert M.create("psnr").uncalibrated is False
    assert _metric("lpips").uncalibrated is True


def test_unknown_metric_and_option():
    with pytest.raises(ConfigError, match="unknown metric 'fud'"):
        M.create("fud")
    with pytest.raises(ConfigError, match="no option 'foo'"):
        M.create("psnr", foo=1)


@pytest.mark.parametrize("name,expected", [("psnr", 100.0), ("ssim", 1.0), ("lpips", 0.0)])
def test_identical_images(name, expected):
    x, _ = _pair()
    m = _metric(name)
    m.update(x, x)
    assert m.compute()[name] == pytest.approx(expected, abs=1e-6)


def test_psnr_ssim_match_scikit_image():
    skm = pytest.importorskip("skimage.metrics")
    x, y = _pair(n=3, size=48, noise=0.2, seed=1)
    a = ((x + 1) / 2).permute(0, 2, 3, 1).double().numpy()
    b = ((y + 1) / 2).permute(0, 2, 3, 1).double().numpy()
    psnr = np.mean([skm.peak_signal_noise_ratio(b[i], a[i], data_range=1.0) for i in range(3)])
    ssim = np.mean([skm.structural_similarity(a[i], b[i], channel_axis=-1, data_range=1.0, gaussian_weights=True,
                                              sigma=1.5, use_sample_covariance=False) for i in range(3)])
    assert _run(M.create("psnr"), x, y, 3)["psnr"] == pytest.approx(psnr, rel=1e-5)
    assert _run(M.create("ssim"), x, y, 3)["ssim"] == pytest.approx(ssim, abs=1e-4)


def test_psnr_known_value():
    x = torch.zeros(1, 3, 16, 16)
    y = x + 0.2   # in [0,1] units the error is 0.1 everywhere -> 20 dB
    m = M.create("psnr")
    m.update(x, y)
    assert m.compute()["psnr"] == pytest.approx(20.0, abs=1e-4)


@pytest.mark.parametrize("name", ["psnr", "ssim", "lpips"])
def test_batch_size_independence_and_resume(name):
    x, y = _pair(n=8, size=32, noise=0.3, seed=2)
    results = [_run(_metric(name), x, y, b)[name] for b in (1, 3, 8)]
    assert results[0] == pytest.approx(results[1], rel=1e-6) and results[0] == pytest.approx(results[2], rel=1e-6)
    m = _metric(name)
    _run(m, x[:5], y[:5], 2)
    whole = _run(m, x[5:], y[5:], 2)
    m.reset()
    _run(m, x[:5], y[:5], 2)
    state = {k: v.clone() for k, v in m.state_dict().items()}
    m.reset()
    m.load_state_dict(state)
    assert _run(m, x[5:], y[5:], 2) == whole
    m.reset()
    with pytest.raises(ConfigError, match="no images"):
        m.compute()


def test_lpips_is_deterministic_per_seed_and_resizes():
    x, y = _pair(n=2, size=64, noise=0.3)
    a = _run(_metric("lpips"), x, y, 2)["lpips"]
    other = M.create("lpips", pretrained=False, resize=32)
    assert all(torch.equal(p, q) for p, q in zip(other.model.parameters(), _metric("lpips").model.parameters()))
    assert a > 0 and _run(other, x, y, 2)["lpips"] != a


def test_lpips_loads_backbone_from_path(tmp_path):
    import torchvision

    path = tmp_path / "alexnet.pth"
    net = torchvision.models.alexnet()
    torch.save(net.state_dict(), path)
    m = M.create("lpips", backbone_weights=str(path))
    assert m.uncalibrated is False
    assert torch.equal(m.model.net.slice1[0].weight, net.features[0].weight)
    x, y = _pair(n=2, size=32)
    assert _run(m, x, y, 2)["lpips"] > 0


def test_lpips_missing_weights_offline(tmp_path, monkeypatch):
    with pytest.raises(MissingFileError, match="does not exist"):
        M.create("lpips", backbone_weights=str(tmp_path / "nope.pth"))
    monkeypatch.setattr("torch.hub.get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(MissingFileError, match="alexnet-owt-7be5be79.pth.*place it at"):
        M.create("lpips")


@pytest.mark.parametrize("bad,msg", [
    (lambda x: x[:, :, :16], "differ in shape"),
    (lambda x: ((x + 1) * 127.5).to(torch.uint8), "dtype torch.uint8"),
    (lambda x: (x + 1) * 127.5, "expected \\[-1, 1\\]"),
    (lambda x: x[0], "expected a non-empty batch"),
    (lambda x: x * float("nan"), "NaN"),
])
def test_bad_inputs(bad, msg):
    x, y = _pair(n=2)
    for name in ("psnr", "ssim", "lpips"):
        with pytest.raises(ConfigError, match=msg):
            _metric(name).update(bad(x), y)


def test_ssim_too_small():
    x = torch.zeros(1, 3, 8, 8)
    with pytest.raises(ConfigError, match="at least 11x11"):
        M.create("ssim").update(x, x)


def test_state_is_one_float_per_image():
    m = _metric("psnr")
    for _ in range(3):
        x, y = _pair(n=4)
        m.update(x, y)
    state = m.state_dict()
    assert list(state) == ["scores"] and state["scores"].shape == (12,) and state["scores"].dtype == torch.float64


def test_random_weights_and_path_conflict(tmp_path):
    with pytest.raises(ConfigError, match="backbone_weights= was also given"):
        M.create("lpips", pretrained=False, backbone_weights=str(tmp_path / "a.pth"))


def test_random_weight_lpips_is_non_negative():
    """Random heads stay non-negative like trained ones, so the score remains a distance."""
    from fpbench.metrics.lpips_metric import build_lpips

    heads = list(build_lpips("alex", pretrained=False).lins.parameters())
    assert heads and all(float(w.min()) >= 0 for w in heads)
    g = torch.Generator().manual_seed(3)
    a = torch.rand(6, 3, 32, 32, generator=g) * 2 - 1
    b = (a + 0.3 * torch.randn(6, 3, 32, 32, generator=g)).clamp(-1, 1)
    m = M.create("lpips", pretrained=False)
    m.update(a, b)
    assert m.compute()["lpips"] > 0

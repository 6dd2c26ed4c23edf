"""Property-based tests (hypothesis) of the treatment math and the metric accumulators.

Tensors are built from hypothesis-drawn shapes, scales and seeds (drawing every element through
hypothesis would be slow and shrink no better); the structure that breaks maths -- constant
channels, saturated pixels, identical pairs, one-image batches, split points -- is drawn
explicitly. Runs are derandomized and keep no example database, so CI is reproducible.
"""

from types import SimpleNamespace

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fpbench.metrics.distribution import FID, PrecisionRecall, density_coverage
from fpbench.metrics.pairwise import PSNR, SSIM
from fpbench.stats import ChannelMoments
from fpbench.treatments import functional as F

PROPS = settings(max_examples=30, deadline=None, derandomize=True, database=None,
                 suppress_health_check=[HealthCheck.too_slow])
FEW = settings(PROPS, max_examples=10)


def _gen(seed):
    return torch.Generator().manual_seed(seed)


@st.composite
def feature_maps(draw, max_n=5, max_c=6, max_hw=5):
    """(x [N, C, H, W], mean [C], std [C]) with occasional constant channels and outliers."""
    n, c = draw(st.integers(1, max_n)), draw(st.integers(1, max_c))
    h, w = draw(st.integers(1, max_hw)), draw(st.integers(1, max_hw))
    scale = draw(st.sampled_from([1e-3, 1.0, 10.0, 1e3]))
    g = _gen(draw(st.integers(0, 2**31 - 1)))
    x = torch.randn(n, c, h, w, generator=g) * scale
    if draw(st.booleans()):                       # a constant channel (zero spatial variance)
        x[:, 0] = draw(st.floats(-5, 5, allow_nan=False))
    if draw(st.booleans()):                       # one image's channel far from the rest
        x[-1, -1] += scale * draw(st.floats(3, 50))
    mean = torch.randn(c, generator=g, dtype=torch.float64) * scale
    std = torch.rand(c, generator=g, dtype=torch.float64) * scale + draw(st.sampled_from([1e-6, 1e-2, 1.0]))
    return x, mean, std


@st.composite
def split_point(draw, n):
    return draw(st.integers(1, n - 1)) if n > 1 else None


# ---------------------------------------------------------------------------------------------
# Treatment math

@PROPS
@given(feature_maps(), st.floats(0.05, 5), st.floats(1.0, 5), st.sampled_from(F.RISK_RULES), st.floats(0, 1))
def test_rescale_never_increases_magnitude(xms, t, p_factor, rule, c):
    x, mean, std = xms
    p = p_factor / t            # p * t >= 1: a rescaled channel is divided by p * r > p * t >= 1
    y = F.rescale_by_risk(x, mean, std, t=t, p=p, rule=rule, c=c)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert torch.isfinite(y).all()
    assert (y.abs() <= x.abs()).all()


@PROPS
@given(feature_maps(), st.floats(0, 5), st.floats(0.1, 5), st.sampled_from(F.RISK_RULES))
def test_rescale_leaves_unselected_channels_bit_identical(xms, t, p, rule):
    x, mean, std = xms
    mask, r = F.risk_mask(x, mean, std, t, rule)
    y = F.rescale(x, r, t, p, mask=mask)
    keep = ~mask
    assert torch.equal(y[keep], x[keep])
    if mask.any():   # selected channels are exactly x / (p * r)
        torch.testing.assert_close(y[mask], x[mask] / (p * r[mask])[:, None, None], rtol=1e-6, atol=0)


@PROPS
@given(feature_maps(), st.floats(0, 4), st.floats(0, 1))
def test_risk_is_nonnegative_and_shift_invariant(xms, t, c):
    x, mean, std = xms
    r = F.risk(x, mean, std, c)
    assert r.shape == x.shape[:2] and (r >= 0).all()
    shift = 3.0
    r2 = F.risk(x.double() + shift, mean + shift, std, c)
    torch.testing.assert_close(r2.float(), r, rtol=1e-4, atol=1e-4 * (1 + float(x.abs().max()) / max(c, 1e-6)))


@PROPS
@given(feature_maps(), st.floats(0, 4))
def test_paper_and_official_rules_agree_where_the_paper_says(xms, t):
    x, mean, std = xms
    c = 0.1
    paper, r_paper = F.risk_mask(x, mean, std, t, "paper", c)
    official, _ = F.risk_mask(x, mean, std, t, "official", c)
    dev = (F.channel_mean(x) - mean.float()).abs()
    # for sigma >= c and d > c both rules give the same decision (module docstring); stay off the
    # decision boundary r == t, where the two float paths may round differently
    sure = (std.float() >= c)[None, :] & (dev > c) & ((r_paper - t).abs() > 1e-4 * (1 + t))
    assert torch.equal(paper[sure], official[sure])


@PROPS
@given(feature_maps(max_n=6), st.data())
def test_treatments_are_batch_split_invariant(xms, data):
    """Every image is judged on its own: treating a batch = treating its parts and concatenating."""
    x, mean, std = xms
    k = data.draw(split_point(x.shape[0]))
    if k is None:
        return
    fns = {
        "rescale": lambda v: F.rescale_by_risk(v, mean, std, t=1.0, p=2.0),
        "official": lambda v: F.rescale_by_risk(v, mean, std, t=1.0, p=2.0, rule="official"),
        "layerwise": lambda v: F.layerwise_rescale(v, mean, std, t=1.0, p=2.0, t_prime=0.2),
        "pixelnorm": F.pixel_norm,
    }
    for name, fn in fns.items():
        whole = fn(x)
        parts = torch.cat([fn(x[:k]), fn(x[k:])])
        assert torch.equal(whole, parts), name


@PROPS
@given(feature_maps(), st.floats(0, 5), st.floats(0, 1))
def test_layerwise_selects_a_subset_of_the_risky_channels(xms, t, t_prime):
    x, mean, std = xms
    lw, _ = F.layerwise_mask(x, mean, std, t, t_prime)
    risky, _ = F.risk_mask(x, mean, std, t, "paper")
    assert not (lw & ~risky).any()


@st.composite
def latents(draw):
    n, num_ws, w_dim = draw(st.integers(1, 4)), draw(st.integers(1, 8)), draw(st.integers(1, 16))
    g = _gen(draw(st.integers(0, 2**31 - 1)))
    scale = draw(st.sampled_from([1e-3, 1.0, 100.0]))
    return torch.randn(n, num_ws, w_dim, generator=g) * scale, torch.randn(w_dim, generator=g) * scale


@PROPS
@given(latents(), st.floats(0, 1), st.one_of(st.none(), st.integers(0, 9)))
def test_truncation_contracts_towards_w_avg(lat, psi, cutoff):
    ws, w_avg = lat
    out = F.truncate(ws, w_avg, psi, cutoff)
    before = (ws - w_avg).norm(dim=-1)
    after = (out - w_avg).norm(dim=-1)
    assert (after <= before * (1 + 1e-5) + 1e-5).all()
    if cutoff is not None:   # layers at or beyond the cutoff are untouched, bit for bit
        assert torch.equal(out[:, cutoff:], ws[:, cutoff:])
    assert torch.equal(F.truncate(ws, w_avg, 1.0), ws)
    torch.testing.assert_close(F.truncate(ws, w_avg, 0.0), w_avg.expand_as(ws))


@PROPS
@given(feature_maps(), st.floats(0.01, 100))
def test_pixel_norm_unit_rms_and_scale_invariant(xms, a):
    x = xms[0].double()
    y = F.pixel_norm(x)
    rms = y.square().mean(dim=1)
    big = x.square().mean(dim=1) > 1e-4           # eps only matters for near-zero pixels
    torch.testing.assert_close(rms[big], torch.ones_like(rms[big]), rtol=1e-4, atol=1e-4)
    big_both = big & ((a * x).square().mean(dim=1) > 1e-4)
    torch.testing.assert_close(F.pixel_norm(a * x).permute(0, 2, 3, 1)[big_both],
                               y.permute(0, 2, 3, 1)[big_both], rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------------------------
# Metric accumulators

@PROPS
@given(st.integers(2, 60), st.integers(1, 5), st.integers(0, 2**31 - 1), st.data())
def test_channel_moments_any_partition(n, c, seed, data):
    v = torch.randn(n, c, generator=_gen(seed), dtype=torch.float64) * 10 + 1e4
    cuts = sorted(set(data.draw(st.lists(st.integers(1, n - 1), max_size=5))))
    acc = ChannelMoments()
    for chunk in torch.tensor_split(v, cuts):
        acc.update(chunk)
    assert acc.count == n and acc.state_numel() == 2 * c
    torch.testing.assert_close(acc.mean, v.mean(0), rtol=0, atol=1e-9)
    torch.testing.assert_close(acc.std(), v.std(0, unbiased=False), rtol=1e-8, atol=1e-8)


@st.composite
def image_pairs(draw, min_hw=1):
    n = draw(st.integers(1, 5))
    hw = draw(st.integers(min_hw, min_hw + 6))
    g = _gen(draw(st.integers(0, 2**31 - 1)))
    a = (torch.rand(n, 3, hw, hw, generator=g) * 2 - 1)
    kind = draw(st.sampled_from(["noise", "identical", "saturated", "constant", "overshoot"]))
    if kind == "identical":
        b = a.clone()
    elif kind == "saturated":
        b = torch.sign(torch.rand(n, 3, hw, hw, generator=g) - 0.5)
    elif kind == "constant":
        b = torch.full_like(a, draw(st.floats(-1, 1)))
    elif kind == "overshoot":   # StyleGAN output overshoots [-1, 1] a little
        b = (a * 1.5).clamp(-1.9, 1.9)
    else:
        b = (a + torch.randn(a.shape, generator=g) * draw(st.floats(0.001, 1))).clamp(-1, 1)
    return a, b


def _stream(metric, a, b, cuts):
    for ta, tb in zip(torch.tensor_split(a, cuts), torch.tensor_split(b, cuts)):
        metric.update(ta, tb)
    return metric


@FEW
@given(image_pairs(min_hw=11), st.data())
def test_pairwise_metrics_split_invariant_symmetric_bounded(pair, data):
    a, b = pair
    n = a.shape[0]
    cuts = sorted(set(data.draw(st.lists(st.integers(1, max(1, n - 1)), max_size=3)))) if n > 1 else []
    for cls in (PSNR, SSIM):
        whole = _stream(cls(), a, b, [])
        parts = _stream(cls(), a, b, cuts)
        assert torch.equal(whole.values(), parts.values()), cls.name        # per-image, batch-free
        assert whole.compute() == parts.compute()
        swapped = _stream(cls(), b, a, [])
        torch.testing.assert_close(swapped.values(), whole.values(), rtol=1e-5, atol=1e-5)
    psnr = _stream(PSNR(), a, b, []).values()
    assert ((psnr > 0) & (psnr <= 100)).all()
    ssim = _stream(SSIM(), a, b, []).values()
    assert ((ssim >= -1 - 1e-6) & (ssim <= 1 + 1e-6)).all()
    same = _stream(PSNR(), a, a, []).values()
    assert (same == 100).all()
    torch.testing.assert_close(_stream(SSIM(), a, a, []).values(), torch.ones(n, dtype=torch.float64),
                               rtol=0, atol=1e-5)


@FEW
@given(image_pairs(min_hw=11), st.data())
def test_pairwise_state_dict_resume_is_exact(pair, data):
    a, b = pair
    n = a.shape[0]
    if n < 2:
        return
    k = data.draw(st.integers(1, n - 1))
    for cls in (PSNR, SSIM):
        first = _stream(cls(), a[:k], b[:k], [])
        resumed = cls()
        resumed.load_state_dict(first.state_dict())
        resumed.update(a[k:], b[k:])
        assert resumed.compute() == _stream(cls(), a, b, []).compute()


class _FeatureBank:
    """Stands in for the InceptionV3/VGG16 bank: the features of an image are its pixels."""

    def __init__(self, dim):
        self.dim = dim

    def extractor(self, name, layer, **kw):
        return SimpleNamespace(dim=self.dim, uncalibrated=True, key=f"pixels/{self.dim}", device=torch.device("cpu"))

    def features(self, extractor, images):
        return images.flatten(1).float()


def _feature_sets(draw, dim, shared=False):
    g = _gen(draw(st.integers(0, 2**31 - 1)))
    n_fake, n_real = draw(st.integers(4, 24)), draw(st.integers(4, 24))
    shift = draw(st.floats(0, 0.5))
    fake = (torch.rand(n_fake, dim, generator=g) * 1.2 - 0.6)
    real = fake.clone() if shared else (torch.rand(n_real, dim, generator=g) * 1.2 - 0.6 + shift).clamp(-1, 1)
    return fake, real


def _dist_metric(cls, dim, fake, real, cuts=(), **kw):
    m = cls(bank=_FeatureBank(dim), **kw)
    for part in torch.tensor_split(fake, list(cuts)):
        m.update(part[:, None, None, :])
    m.update_real(real[:, None, None, :])
    return m


@FEW
@given(st.integers(2, 12), st.data())
def test_fid_symmetric_nonnegative_zero_on_itself(dim, data):
    fake, real = _feature_sets(data.draw, dim)
    scale = float(fake.square().sum(1).mean() + real.square().sum(1).mean())
    ab = _dist_metric(FID, dim, fake, real).compute()["fid"]
    ba = _dist_metric(FID, dim, real, fake).compute()["fid"]
    assert ab >= -1e-9 * scale, ab
    assert ab == pytest.approx(ba, rel=1e-6, abs=1e-9 * scale)
    same = _dist_metric(FID, dim, fake, fake).compute()["fid"]
    assert abs(same) <= 1e-6 * scale, same


@FEW
@given(st.integers(2, 12), st.data())
def test_fid_batching_and_resume_do_not_change_the_number(dim, data):
    fake, real = _feature_sets(data.draw, dim)
    cuts = sorted(set(data.draw(st.lists(st.integers(1, len(fake) - 1), max_size=4))))
    whole = _dist_metric(FID, dim, fake, real).compute()
    assert _dist_metric(FID, dim, fake, real, cuts).compute() == whole
    k = cuts[0] if cuts else len(fake) // 2
    first = _dist_metric(FID, dim, fake[:k], real)
    resumed = FID(bank=_FeatureBank(dim))
    resumed.load_state_dict(first.state_dict())
    resumed.update(fake[k:, None, None, :])
    assert resumed.compute() == whole


@FEW
@given(st.integers(2, 8), st.integers(1, 3), st.data())
def test_precision_recall_bounded_and_swap(dim, k, data):
    fake, real = _feature_sets(data.draw, dim)
    pr = _dist_metric(PrecisionRecall, dim, fake, real, k=k).compute()
    rp = _dist_metric(PrecisionRecall, dim, real, fake, k=k).compute()
    assert 0 <= pr["precision"] <= 1 and 0 <= pr["recall"] <= 1
    # precision of fake against real is recall of real against fake
    assert pr["precision"] == pytest.approx(rp["recall"]) and pr["recall"] == pytest.approx(rp["precision"])
    same = _dist_metric(PrecisionRecall, dim, fake, fake, k=k).compute()
    assert same == {"precision": 1.0, "recall": 1.0}


@FEW
@given(st.integers(2, 8), st.integers(1, 4), st.integers(1, 7), st.data())
def test_density_coverage_bounded_and_block_size_free(dim, k, row_batch, data):
    fake, real = _feature_sets(data.draw, dim)
    if len(real) <= k:
        return
    d, c = density_coverage(fake, real, k, row_batch=4096)
    assert d >= 0 and 0 <= c <= 1
    assert density_coverage(fake, real, k, row_batch=row_batch) == (d, c)
    # the same set against itself: every sample sits inside its own ball
    assert density_coverage(real, real, k)[1] == 1.0

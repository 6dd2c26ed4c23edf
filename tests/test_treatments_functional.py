"""Known-answer tests of the treatment math on hand-built tensors."""

import math

import pytest
import torch

from fpbench.treatments import functional as F


def _maps(values):
    """[N, C] spatial means -> [N, C, 2, 2] maps with exactly those means (and non-flat content)."""
    v = torch.tensor(values, dtype=torch.float32)
    pattern = torch.tensor([[1.0, -1.0], [-0.5, 0.5]])
    return v[:, :, None, None] + pattern


MEAN = torch.tensor([0.0, 1.0, -2.0])
STD = torch.tensor([1.0, 0.05, 0.5])    # channel 1: sigma below the floor c = 0.1


def test_risk_known_answer_with_floor():
    x = _maps([[3.0, 1.3, -2.0], [-0.5, 0.9, 0.0]])
    r = F.risk(x, MEAN, STD, c=0.1)
    # channel 0: |3 - 0| / 1; channel 1: |1.3 - 1| / max(0.05, 0.1) = 3 (not 6); channel 2: 0 / 0.5
    expected = torch.tensor([[3.0, 3.0, 0.0], [0.5, 1.0, 4.0]])
    torch.testing.assert_close(r, expected, rtol=1e-6, atol=1e-6)
    assert r.shape == (2, 3) and r.dtype == torch.float32


def test_official_risk_has_no_floor():
    x = _maps([[3.0, 1.3, -2.0]])
    dev, r = F.official_risk(x, MEAN, STD)
    torch.testing.assert_close(dev, torch.tensor([[3.0, 0.3, 0.0]]), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(r, torch.tensor([[3.0, 6.0, 0.0]]), rtol=1e-6, atol=1e-6)


def test_rescale_known_answer_and_untouched_channels():
    x = _maps([[3.0, 1.3, -2.0], [-0.5, 0.9, 0.0]])
    r = F.risk(x, MEAN, STD, c=0.1)
    y = F.rescale(x, r, t=2.0, p=2.0)
    # image 0: channels 0 and 1 have r = 3 > 2 -> x / 6; image 1: channel 2 has r = 4 -> x / 8
    assert torch.equal(y[0, 0], x[0, 0] / 6.0)
    torch.testing.assert_close(y[0, 1], x[0, 1] / 6.0)     # r = 3 up to float rounding of 1.3 - 1
    assert torch.equal(y[0, 2], x[0, 2])
    assert torch.equal(y[1, :2], x[1, :2])
    assert torch.equal(y[1, 2], x[1, 2] / 8.0)


def test_rescale_is_strict_at_threshold():
    x = _maps([[2.0, 1.0, -2.0]])
    r = F.risk(x, MEAN, STD)
    assert r[0, 0].item() == 2.0
    assert torch.equal(F.rescale(x, r, t=2.0, p=2.0), x)
    assert torch.equal(F.rescale_by_risk(x, MEAN, STD, t=2.0, p=2.0), x)
    # just above t it is rescaled
    y = F.rescale(x, r, t=1.999, p=2.0)
    assert torch.equal(y[0, 0], x[0, 0] / 4.0)


def test_rescale_mask_overrides_threshold():
    x = _maps([[3.0, 1.3, -2.0]])
    r = torch.tensor([[3.0, 5.0, 0.5]])
    mask = torch.tensor([[False, True, True]])
    y = F.rescale(x, r, t=100.0, p=2.0, mask=mask)
    assert torch.equal(y[0, 0], x[0, 0])
    assert torch.equal(y[0, 1], x[0, 1] / 10.0)
    assert torch.equal(y[0, 2], x[0, 2] / 1.0)


def test_both_risk_rules_on_the_same_input():
    # channel 0: d = 3, sigma 1        -> both rules: r = 3 > 2 -> divisor p * 3
    # channel 1: d = 0.3, sigma 0.05   -> paper r = 3 (floor); official r = 6 (d > 0.1) -> p * 6
    # channel 2: d = 0.05, sigma 0.01 (set below) -> paper r = 0.5 (untouched); official: r = 5 but
    #            d = 0.05 <= 0.1 -> untouched
    mean = torch.tensor([0.0, 1.0, 0.0])
    std = torch.tensor([1.0, 0.05, 0.01])
    x = _maps([[3.0, 1.3, 0.05]])
    mp, rp = F.risk_mask(x, mean, std, t=2.0, rule="paper", c=0.1)
    mo, ro = F.risk_mask(x, mean, std, t=2.0, rule="official", c=0.1)
    assert mp.tolist() == [[True, True, False]]
    assert mo.tolist() == [[True, True, False]]
    torch.testing.assert_close(rp, torch.tensor([[3.0, 3.0, 0.5]]), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ro, torch.tensor([[3.0, 6.0, 5.0]]), rtol=1e-5, atol=1e-6)
    yp = F.rescale_by_risk(x, mean, std, t=2.0, p=2.0, rule="paper")
    yo = F.rescale_by_risk(x, mean, std, t=2.0, p=2.0, rule="official")
    torch.testing.assert_close(yp[0, 1], x[0, 1] / 6.0)
    torch.testing.assert_close(yo[0, 1], x[0, 1] / 12.0)
    torch.testing.assert_close(yp[0, 0], yo[0, 0])
    assert torch.equal(yp[0, 2], x[0, 2]) and torch.equal(yo[0, 2], x[0, 2])


def test_official_rule_absolute_gate_is_strict():
    mean, std = torch.zeros(1), torch.full((1,), 0.01)
    x = torch.full((1, 1, 2, 2), 0.125)          # exactly representable, d = 0.125
    assert F.risk_mask(x, mean, std, t=2.0, rule="official", c=0.125)[0].tolist() == [[False]]
    assert F.risk_mask(x, mean, std, t=2.0, rule="official", c=0.12)[0].tolist() == [[True]]


def test_unknown_rule():
    with pytest.raises(ValueError, match="unknown risk rule"):
        F.risk_mask(_maps([[0.0, 0.0, 0.0]]), MEAN, STD, t=2.0, rule="nope")


def test_float16_input_keeps_dtype():
    x = _maps([[3.0, 1.3, -2.0]]).half()
    y = F.rescale_by_risk(x, MEAN, STD, t=2.0, p=2.0)
    assert y.dtype == torch.float16
    torch.testing.assert_close(y.float()[0, 0], x.float()[0, 0] / 6.0, rtol=2e-3, atol=1e-3)


def test_batch_rows_are_independent():
    x = torch.randn(5, 4, 3, 3) * 3
    mean, std = torch.randn(4), torch.rand(4) + 0.05
    whole = F.rescale_by_risk(x, mean, std, t=1.0, p=2.0)
    for i in range(5):
        assert torch.equal(whole[i:i + 1], F.rescale_by_risk(x[i:i + 1], mean, std, t=1.0, p=2.0))


# --- truncation -------------------------------------------------------------------------------

def test_truncate_known_answer_and_cutoff():
    w_avg = torch.tensor([1.0, -1.0])
    ws = torch.tensor([[[3.0, 1.0], [5.0, -3.0], [1.0, -1.0]]])      # [1, 3, 2]
    full = F.truncate(ws, w_avg, psi=0.5)
    torch.testing.assert_close(full, torch.tensor([[[2.0, 0.0], [3.0, -2.0], [1.0, -1.0]]]))
    cut = F.truncate(ws, w_avg, psi=0.5, cutoff=1)
    torch.testing.assert_close(cut[:, 0], full[:, 0])
    assert torch.equal(cut[:, 1:], ws[:, 1:])
    assert torch.equal(F.truncate(ws, w_avg, psi=1.0), ws)
    torch.testing.assert_close(F.truncate(ws, w_avg, psi=0.0), w_avg.expand_as(ws))


def test_truncate_matches_fixture_ws_psi07(fixtures_dir):
    from safetensors.torch import load_file

    for name in ("sg2_a", "sg3_t"):
        exp = load_file(str(fixtures_dir / f"{name}_expected.safetensors"))
        w_avg = load_file(str(fixtures_dir / f"{name}.safetensors"))["mapping.w_avg"]
        torch.testing.assert_close(F.truncate(exp["ws"], w_avg, 0.7), exp["ws_psi07"], rtol=0, atol=1e-6)


# --- layer-wise variant -----------------------------------------------------------------------

def test_layerwise_map_and_correlation_known_answer():
    # two channels on a 1x4 "image"; only channel 0 is risky
    x = torch.tensor([[[[4.0, 0.0, 0.0, 0.0]], [[-1.0, 1.0, -1.0, 1.0]]]])   # [1, 2, 1, 4]
    mask = torch.tensor([[True, False]])
    x_bar = F.layerwise_map(x, mask)
    # x_hat = [4, 0, 0, 0]: mean 1, unbiased std sqrt(12/3) = 2 -> [1.5, -0.5, -0.5, -0.5]
    torch.testing.assert_close(x_bar, torch.tensor([[[1.5, -0.5, -0.5, -0.5]]]))
    c = F.layerwise_correlation(x, x_bar)
    # channel 0: (4 * 1.5) / 4 = 1.5; channel 1: (1.5 - 0.5 * 3) / 4 = 0
    torch.testing.assert_close(c, torch.tensor([[1.5, 0.0]]))


def test_layerwise_mask_keeps_only_correlated_risky_channels():
    blob = torch.zeros(4, 4)
    blob[0, 0] = 1.0
    noise = torch.tensor([[1.0, -1.0, 1.0, -1.0]] * 4)
    # ch0 and ch1 share a blob (risky, correlated); ch2 is risky but spread evenly; ch3 is normal
    x = torch.stack([blob * 40, blob * 30 + 0.01 * noise, torch.full((4, 4), 3.0), 0.1 * noise])[None]
    mean, std = torch.zeros(4), torch.ones(4)
    r = F.risk(x, mean, std)
    assert (r[0, :3] > 1.0).all() and r[0, 3] < 1.0
    mask, r2 = F.layerwise_mask(x, mean, std, t=1.0, t_prime=0.5)
    assert torch.equal(r, r2)
    assert mask.tolist() == [[True, True, False, False]]
    y = F.layerwise_rescale(x, mean, std, t=1.0, p=2.0, t_prime=0.5)
    torch.testing.assert_close(y[0, 0], x[0, 0] / (2 * r[0, 0]))
    assert torch.equal(y[0, 2:], x[0, 2:])


def test_layerwise_mask_without_risky_channels_is_empty():
    x = torch.randn(2, 3, 4, 4) * 0.01
    mask, _ = F.layerwise_mask(x, torch.zeros(3), torch.ones(3), t=2.0, t_prime=-10.0)
    assert not mask.any()


# --- pixel norm -------------------------------------------------------------------------------

def test_pixel_norm_known_answer():
    x = torch.tensor([[[[3.0]], [[4.0]]]])            # one pixel, feature vector (3, 4)
    y = F.pixel_norm(x, eps=0.0)
    s = math.sqrt((9 + 16) / 2)
    torch.testing.assert_close(y, x / s)
    z = F.pixel_norm(torch.randn(3, 8, 5, 5) * 7)
    torch.testing.assert_close(z.square().mean(dim=1), torch.ones(3, 5, 5), rtol=1e-5, atol=1e-5)

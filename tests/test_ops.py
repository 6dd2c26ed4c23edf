"""Known-answer and consistency tests for the plain-PyTorch StyleGAN ops."""

import math

import pytest
import torch

from fpbench.generators.layers import FullyConnectedLayer, normalize_2nd_moment
from fpbench.generators.ops import (bias_act, conv2d_resample, downsample2d, filter2d, modulated_conv2d,
                                    setup_filter, upfirdn2d, upsample2d)


def _naive_upfirdn2d(x, f, up, down, pad):
    """Loop-based definition: zero-insert, pad/crop, true 2D convolution, decimate."""
    n, c, h, w = x.shape
    px0, px1, py0, py1 = pad
    u = torch.zeros(n, c, h * up, w * up, dtype=x.dtype)
    u[:, :, ::up, ::up] = x
    p = torch.zeros(n, c, h * up + py0 + py1, w * up + px0 + px1, dtype=x.dtype)
    for i in range(p.shape[2]):
        for j in range(p.shape[3]):
            si, sj = i - py0, j - px0
            if 0 <= si < u.shape[2] and 0 <= sj < u.shape[3]:
                p[:, :, i, j] = u[:, :, si, sj]
    fh, fw = f.shape
    out = torch.zeros(n, c, p.shape[2] - fh + 1, p.shape[3] - fw + 1, dtype=x.dtype)
    for i in range(out.shape[2]):
        for j in range(out.shape[3]):
            out[:, :, i, j] = (p[:, :, i:i + fh, j:j + fw] * f.flip([0, 1])).sum((2, 3))
    return out[:, :, ::down, ::down]


def test_setup_filter_shapes_and_normalization():
    f = setup_filter([1, 3, 3, 1])
    assert f.shape == (4, 4) and f.dtype == torch.float32
    assert torch.allclose(f, torch.outer(torch.tensor([1., 3, 3, 1]), torch.tensor([1., 3, 3, 1])) / 64)
    assert setup_filter([1] * 8).shape == (8,)  # >= 8 taps: separable by default
    assert setup_filter([1, 3, 3, 1], gain=4).sum().item() == pytest.approx(4.0)
    assert setup_filter(None).tolist() == [[1.0]]
    assert torch.equal(setup_filter([[1., 2.]], normalize=False, flip_filter=True), torch.tensor([[2., 1.]]))


def test_upfirdn2d_hand_computed():
    x = torch.tensor([1., 2., 3.]).reshape(1, 1, 1, 3)
    f = setup_filter([[1., 2.]], normalize=False)
    # True convolution of [0, 1, 2, 3] with [1, 2]: out[i] = 2 p[i] + p[i+1].
    assert upfirdn2d(x, f, padding=[1, 0, 0, 0]).flatten().tolist() == [1., 4., 7.]
    assert upfirdn2d(x, f, padding=[1, 0, 0, 0], flip_filter=True).flatten().tolist() == [2., 5., 8.]
    # Zero insertion gives [1, 0, 2, 0, 3, 0].
    assert upfirdn2d(x, f, up=[2, 1]).flatten().tolist() == [2., 2., 4., 3., 6.]
    assert upfirdn2d(x, f, up=[2, 1], down=[2, 1]).flatten().tolist() == [2., 4., 6.]
    assert upfirdn2d(x, f, padding=[1, 0, 0, 0], gain=3).flatten().tolist() == [3., 12., 21.]
    assert upfirdn2d(x, None, padding=[-1, 1, 0, 0]).flatten().tolist() == [2., 3., 0.]


@pytest.mark.parametrize("up,down,pad", [(2, 1, (2, 1, 2, 1)), (1, 2, (1, 1, 1, 1)), (2, 2, (1, 2, 0, 3)),
                                         (1, 1, (-1, 2, 1, -1)), (3, 1, (0, 0, 1, 1))])
def test_upfirdn2d_matches_loop_definition(up, down, pad):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 5, 6, generator=g, dtype=torch.float64)
    f = torch.randn(4, 3, generator=g)
    got = upfirdn2d(x, f, up=up, down=down, padding=list(pad))
    assert torch.allclose(got, _naive_upfirdn2d(x, f.double(), up, down, pad), atol=1e-12)


def test_separable_filter_equals_outer_product():
    x = torch.randn(1, 2, 9, 9, generator=torch.Generator().manual_seed(1))
    taps = [1., 2., 4., 5., 5., 4., 2., 1.]
    fs, f2 = setup_filter(taps), setup_filter(taps, separable=False)
    assert fs.ndim == 1 and f2.ndim == 2
    assert torch.allclose(upsample2d(x, fs), upsample2d(x, f2), atol=1e-6)


def test_resampling_shapes_and_dc_gain():
    f = setup_filter([1, 3, 3, 1])
    x = torch.ones(1, 1, 8, 8)
    up, down, same = upsample2d(x, f), downsample2d(x, f), filter2d(x, f)
    assert up.shape[-2:] == (16, 16) and down.shape[-2:] == (4, 4) and same.shape[-2:] == (8, 8)
    # A constant image stays constant away from the zero-padded border.
    assert torch.allclose(up[..., 4:-4, 4:-4], torch.ones(1)) and torch.allclose(same[..., 2:-2, 2:-2], torch.ones(1))
    assert torch.allclose(down[..., 1:-1, 1:-1], torch.ones(1))


def test_bias_act_known_answers():
    x = torch.tensor([[-1., 0., 2.]])
    b = torch.tensor([0., -1., 1.])
    assert torch.allclose(bias_act(x, b, act="lrelu"), torch.tensor([[-0.2, -0.2, 3.]]) * math.sqrt(2))
    assert torch.allclose(bias_act(x, b, act="lrelu", alpha=0.5, gain=1), torch.tensor([[-0.5, -0.5, 3.]]))
    assert torch.allclose(bias_act(x, b, act="relu", clamp=2), torch.tensor([[0., 0., 2.]]))
    assert torch.allclose(bias_act(x, act="swish"), x * torch.sigmoid(x) * math.sqrt(2))
    assert torch.equal(bias_act(x), x)
    assert torch.allclose(bias_act(x, act="tanh", clamp=0.5), torch.tanh(x).clamp(-0.5, 0.5))
    y = bias_act(torch.zeros(2, 3, 4, 5), torch.tensor([1., 2., 3., 4.]), dim=2)
    assert y[1, 2, :, 0].tolist() == [1., 2., 3., 4.]
    with pytest.raises(ValueError, match="unknown activation"):
        bias_act(x, act="gelu")
    with pytest.raises(ValueError, match="does not match"):
        bias_act(x, torch.zeros(2))


@pytest.mark.parametrize("flip_weight", [True, False])
@pytest.mark.parametrize("k", [1, 3])
def test_conv2d_resample_paths_agree_with_definition(flip_weight, k):
    """Each fast path must equal 'resample with upfirdn2d, then plain conv' (NVIDIA's generic path)."""
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, 5, 6, generator=g, dtype=torch.float64)
    w = torch.randn(4, 3, k, k, generator=g, dtype=torch.float64)
    f = setup_filter([1, 3, 3, 1]).double()
    p = k // 2
    wc = w if flip_weight else w.flip([2, 3])
    up = conv2d_resample(x, w, f, up=2, padding=p, flip_weight=flip_weight)
    ref = upfirdn2d(x, f, up=2, padding=[p + 2, p + 1, p + 2, p + 1], gain=4)
    ref = torch.nn.functional.conv2d(ref, wc)
    assert up.shape == (2, 4, 10, 12) and torch.allclose(up, ref, atol=1e-10)
    down = conv2d_resample(x[..., :4, :6], w, f, down=2, padding=p, flip_weight=flip_weight)
    ref = torch.nn.functional.conv2d(upfirdn2d(x[..., :4, :6], None, padding=p + 1), wc)
    ref = upfirdn2d(ref, f, down=2)
    assert down.shape == (2, 4, 2, 3) and torch.allclose(down, ref, atol=1e-10)


def test_conv2d_resample_groups_equal_split_convs():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, 6, 5, 5, generator=g)
    w = torch.randn(8, 3, 3, 3, generator=g)
    f = setup_filter([1, 3, 3, 1])
    y = conv2d_resample(x, w, f, up=2, padding=1, groups=2, flip_weight=False)
    parts = [conv2d_resample(x[:, i * 3:(i + 1) * 3], w[i * 4:(i + 1) * 4], f, up=2, padding=1, flip_weight=False)
             for i in range(2)]
    assert torch.allclose(y, torch.cat(parts, 1), atol=1e-5)


@pytest.mark.parametrize("up", [1, 2])
@pytest.mark.parametrize("demodulate", [True, False])
def test_modulated_conv2d_fused_equals_unfused_and_definition(up, demodulate):
    g = torch.Generator().manual_seed(4)
    x = torch.randn(3, 4, 6, 6, generator=g)
    weight = torch.randn(5, 4, 3, 3, generator=g)
    styles = torch.randn(3, 4, generator=g)
    noise = torch.randn(1, 1, 6 * up, 6 * up, generator=g)
    f = setup_filter([1, 3, 3, 1])
    kw = dict(noise=noise, up=up, padding=1, resample_filter=f, demodulate=demodulate, flip_weight=(up == 1))
    fused = modulated_conv2d(x, weight, styles, fused_modconv=True, **kw)
    unfused = modulated_conv2d(x, weight, styles, fused_modconv=False, **kw)
    assert fused.shape == (3, 5, 6 * up, 6 * up)
    assert torch.allclose(fused, unfused, atol=1e-4)
    # Sample 0 from the definition: per-sample kernel, optional unit-norm output channels.
    w0 = weight * styles[0].reshape(1, -1, 1, 1)
    if demodulate:
        w0 = w0 / w0.square().sum([1, 2, 3], keepdim=True).add(1e-8).sqrt()
    ref = conv2d_resample(x[:1], w0, f, up=up, padding=1, flip_weight=(up == 1)) + noise
    assert torch.allclose(fused[:1], ref, atol=1e-4)


def test_fully_connected_layer_gains():
    fc = FullyConnectedLayer(4, 2, activation="lrelu", lr_multiplier=0.5, bias_init=1.0)
    with torch.no_grad():
        fc.weight.fill_(1.0)
        fc.bias.copy_(torch.tensor([2.0, -20.0]))
    y = fc(torch.ones(1, 4))
    # weight gain 0.5 / sqrt(4) = 0.25 -> 1.0; bias gain 0.5 -> [1, -10]; lrelu * sqrt(2).
    assert torch.allclose(y, torch.tensor([[2.0, 0.2 * -9.0]]) * math.sqrt(2))
    lin = FullyConnectedLayer(3, 2, bias_init=[1.0, 2.0])
    assert lin.bias.tolist() == [1.0, 2.0] and set(dict(lin.named_parameters())) == {"weight", "bias"}
    assert FullyConnectedLayer(3, 2, bias=False).bias is None


def test_normalize_2nd_moment():
    z = torch.tensor([[3.0, 4.0], [0.0, 2.0]])
    out = normalize_2nd_moment(z)
    assert torch.allclose(out.square().mean(1), torch.ones(2), atol=1e-6)
    assert torch.allclose(out[0], torch.tensor([3.0, 4.0]) / math.sqrt(12.5))


@pytest.mark.parametrize("up", [1, 2])
def test_modulated_conv2d_float16_prenormalization_keeps_the_result(up):
    """Large styles would overflow fp16 without the pre-normalization that demodulation makes free."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 8, 8, 8, generator=g)
    weight = torch.randn(8, 8, 3, 3, generator=g)
    styles = 1e3 * torch.randn(2, 8, generator=g)
    f = setup_filter([1, 3, 3, 1])
    kw = dict(up=up, padding=1, resample_filter=f, flip_weight=(up == 1))
    ref = modulated_conv2d(x, weight, styles, **kw)
    half = modulated_conv2d(x.half(), weight, styles, **kw)
    assert half.dtype == torch.float16 and torch.isfinite(half).all()
    assert torch.allclose(half.float(), ref, atol=1e-2)

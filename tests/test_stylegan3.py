"""StyleGAN3 generator: parity with NVIDIA's reference outputs, configs T/R, filtered lrelu, filters."""

import json
import math

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from fpbench.errors import ConfigError
from fpbench.generators import StyleGAN3Generator
from fpbench.generators.ops.filtered_lrelu import filtered_lrelu
from fpbench.generators.ops.lowpass import bessel_j1, design_lowpass_filter, radial_lowpass, separable_lowpass

ATOL = 1e-4
SMALL = dict(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3, channel_base=64, channel_max=8,
             num_layers=4, num_critical=1, mapping_kwargs={"num_layers": 1})


@pytest.fixture(scope="module")
def sg3_t(fixtures_dir):
    kwargs = json.loads((fixtures_dir / "sg3_t.json").read_text())["init_kwargs"]
    G = StyleGAN3Generator(**kwargs).eval()
    designed = {k: v.clone() for k, v in G.state_dict().items() if k.endswith("_filter")}
    G.load_state_dict(load_file(fixtures_dir / "sg3_t.safetensors"), strict=True)
    with safe_open(fixtures_dir / "sg3_t_expected.safetensors", "pt") as f:
        meta = f.metadata()
    return G, load_file(fixtures_dir / "sg3_t_expected.safetensors"), meta, designed


@pytest.fixture(scope="module")
def sg3_t_outputs(sg3_t):
    G, exp, _, _ = sg3_t
    acts = {}
    hooks = [G.get_submodule(name).register_forward_hook(lambda m, i, o, name=name: acts.__setitem__(name, o))
             for name in G.feature_layers]
    with torch.no_grad():
        img = G(exp["z"], exp["c"], truncation_psi=1, noise_mode="const")
        for h in hooks:
            h.remove()
        out = {
            "img": img,
            "img_psi07": G(exp["z"], exp["c"], truncation_psi=0.7, noise_mode="const"),
            "ws": G.mapping(exp["z"], exp["c"]),
            "ws_psi07": G.mapping(exp["z"], exp["c"], truncation_psi=0.7),
        }
    out.update({f"act.{k}": v[:2] for k, v in acts.items()})
    return out


# ---------------------------------------------------------------- parity with NVIDIA (config T)

@pytest.mark.parametrize("key", ["img", "img_psi07", "ws", "ws_psi07"])
def test_outputs_match_nvidia(sg3_t, sg3_t_outputs, key):
    expected = sg3_t[1][key]
    got = sg3_t_outputs[key]
    assert got.dtype == torch.float32 and got.shape == expected.shape
    assert (got - expected).abs().max() <= ATOL


def test_activations_match_nvidia(sg3_t, sg3_t_outputs):
    exp = sg3_t[1]
    act_keys = [k for k in exp if k.startswith("act.")]
    assert len(act_keys) == 8
    for key in act_keys:
        assert sg3_t_outputs[key].shape == exp[key].shape, key
        assert (sg3_t_outputs[key] - exp[key]).abs().max() <= ATOL, key


def test_feature_layers_are_fixture_act_order(sg3_t):
    G, _, meta, _ = sg3_t
    assert G.feature_layers == meta["act_order"].split(",")
    assert G.num_ws == 8 and (G.z_dim, G.c_dim, G.w_dim, G.img_resolution, G.img_channels) == (64, 0, 64, 32, 3)


def test_designed_filters_equal_checkpoint_filters(sg3_t, fixtures_dir):
    """Our Kaiser design reproduces the buffers NVIDIA stored (all 12 up/down filters)."""
    ckpt = load_file(fixtures_dir / "sg3_t.safetensors")
    designed = sg3_t[3]
    assert sorted(designed) == sorted(k for k in ckpt if k.endswith("_filter"))
    assert len(designed) == 12
    for key, f in designed.items():
        assert f.shape == ckpt[key].shape and (f - ckpt[key]).abs().max() <= 1e-7, key


def test_truncation_cutoff_only_truncates_first_ws(sg3_t):
    G, exp, _, _ = sg3_t
    with torch.no_grad():
        ws = G.mapping(exp["z"], exp["c"], truncation_psi=0.7, truncation_cutoff=3)
    assert (ws[:, :3] - exp["ws_psi07"][:, :3]).abs().max() <= ATOL
    assert (ws[:, 3:] - exp["ws"][:, 3:]).abs().max() <= ATOL


def test_hooks_see_torgb_before_output_scale(sg3_t):
    G, exp, _, _ = sg3_t
    last = G.get_submodule(G.feature_layers[-1])
    h = last.register_forward_hook(lambda m, i, o: torch.ones_like(o))
    try:
        with torch.no_grad():
            img = G(exp["z"][:2], exp["c"][:2])
    finally:
        h.remove()
    assert torch.equal(img, torch.full_like(img, 0.25))


def test_sample_independent_of_batch(sg3_t, sg3_t_outputs):
    G, exp, _, _ = sg3_t
    with torch.no_grad():
        one = G(exp["z"][3:4], exp["c"][3:4])
    assert (one - sg3_t_outputs["img"][3:4]).abs().max() <= 1e-5


# ---------------------------------------------------------------- construction, configs, kwargs

def test_nested_kwargs_equal_flat():
    flat = dict(SMALL, conv_clamp=256, magnitude_ema_beta=0.99)
    torch.manual_seed(0)
    G1 = StyleGAN3Generator(**flat)
    nested = {k: v for k, v in flat.items() if k in ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels",
                                                     "mapping_kwargs")}
    nested["synthesis_kwargs"] = {k: v for k, v in flat.items() if k not in nested}
    torch.manual_seed(0)
    G2 = StyleGAN3Generator(**nested)
    assert G1.init_kwargs == G2.init_kwargs == flat
    s1, s2 = G1.state_dict(), G2.state_dict()
    assert s1.keys() == s2.keys() and all(torch.equal(s1[k], s2[k]) for k in s1)
    z = torch.randn(2, 8)
    with torch.no_grad():
        assert torch.equal(G1(z, None), G2(z, None))


def test_config_r_constructs_and_runs():
    torch.manual_seed(1)
    G = StyleGAN3Generator(**SMALL, conv_kernel=1, use_radial_filters=True).eval()
    layers = [G.get_submodule(n) for n in G.feature_layers[1:]]
    assert all(layer.weight.shape[-2:] == (1, 1) for layer in layers)
    # Radial (2D) downsampling filters exactly in the non-critical layers that downsample.
    radial = [n for n, layer in zip(G.feature_layers[1:], layers)
              if layer.down_filter is not None and layer.down_filter.ndim == 2]
    expected = [n for n, layer in zip(G.feature_layers[1:], layers)
                if layer.down_taps > 1 and not layer.is_critically_sampled]
    assert radial == expected and radial
    for layer in layers:
        if layer.down_filter is not None and layer.down_filter.ndim == 2:
            assert abs(layer.down_filter.sum().item() - 1) < 1e-5
            assert torch.allclose(layer.down_filter, layer.down_filter.t())
    with torch.no_grad():
        img = G(torch.randn(3, 8), None, truncation_psi=0.5)
    assert img.shape == (3, 3, 16, 16) and img.dtype == torch.float32 and torch.isfinite(img).all()
    assert img.abs().max() > 0


def test_conditional_generator_and_label_check():
    torch.manual_seed(2)
    G = StyleGAN3Generator(**dict(SMALL, c_dim=4)).eval()
    c = torch.eye(4)[[0, 3]]
    with torch.no_grad():
        img = G(torch.randn(2, 8), c)
    assert img.shape == (2, 3, 16, 16) and torch.isfinite(img).all()
    assert "mapping.embed.weight" in G.state_dict()
    with pytest.raises(ValueError, match=r"c must be \[2, 4\]"):
        G(torch.randn(2, 8), None)


def test_fp16_setting_ignored_on_cpu():
    torch.manual_seed(3)
    G32 = StyleGAN3Generator(**dict(SMALL, num_fp16_res=0)).eval()
    G16 = StyleGAN3Generator(**dict(SMALL, num_fp16_res=4)).eval()
    G16.load_state_dict(G32.state_dict(), strict=True)
    assert any(G16.get_submodule(n).use_fp16 for n in G16.feature_layers[1:])
    z = torch.randn(2, 8)
    with torch.no_grad():
        a, b = G32(z, None), G16(z, None)
    assert b.dtype == torch.float32 and torch.equal(a, b)


def test_bad_kwargs_are_config_errors():
    with pytest.raises(ConfigError, match="unknown StyleGAN3 kwargs \\['channel_bse'\\]"):
        StyleGAN3Generator(8, 0, 8, 16, 3, channel_bse=64)
    with pytest.raises(ConfigError, match="unknown StyleGAN3 mapping_kwargs"):
        StyleGAN3Generator(8, 0, 8, 16, 3, mapping_kwargs={"layers": 2})
    with pytest.raises(ConfigError, match="given twice"):
        StyleGAN3Generator(8, 0, 8, 16, 3, synthesis_kwargs={"num_layers": 4}, num_layers=5)
    with pytest.raises(ConfigError, match="num_critical < num_layers"):
        StyleGAN3Generator(8, 0, 8, 16, 3, num_layers=2, num_critical=2)


def test_bad_forward_inputs_say_what_is_expected():
    G = StyleGAN3Generator(**SMALL)
    with pytest.raises(ValueError, match=r"z must be \[N, 8\]"):
        G(torch.randn(2, 7), None)
    with pytest.raises(ValueError, match=r"ws must be \[N, 6, 8\]"):
        G.synthesis(torch.randn(2, 5, 8))
    with pytest.raises(ValueError, match="noise_mode"):
        G.synthesis(torch.randn(2, 6, 8), noise_mode="fixed")


# ---------------------------------------------------------------- filtered_lrelu known answers

def _bias_lrelu(x, b, slope, gain):
    y = x + b[None, :, None, None]
    return torch.where(y >= 0, y, y * slope) * gain


def test_filtered_lrelu_identity_filters_is_bias_lrelu_gain():
    torch.manual_seed(4)
    x, b = torch.randn(2, 3, 5, 6), torch.randn(3)
    y = filtered_lrelu(x, b=b, gain=1.7, slope=0.3)
    assert y.shape == x.shape
    assert torch.allclose(y, _bias_lrelu(x, b, 0.3, 1.7), atol=1e-6)
    # Defaults: slope 0.2, gain sqrt(2), no bias.
    assert torch.allclose(filtered_lrelu(x), _bias_lrelu(x, torch.zeros(3), 0.2, math.sqrt(2)), atol=1e-6)


def test_filtered_lrelu_clamp():
    x = torch.linspace(-400, 400, 2 * 2 * 4 * 4).reshape(2, 2, 4, 4)
    y = filtered_lrelu(x, gain=1.0, slope=1.0, clamp=100.0)
    assert torch.allclose(y, x.clamp(-100, 100))
    y = filtered_lrelu(x, clamp=50.0)
    assert y.max() == 50 and y.min() == pytest.approx(-50)


def test_filtered_lrelu_up_down_identity_filters():
    """Zero insertion (scaled by up^2) then keeping every 2nd pixel returns the original grid."""
    torch.manual_seed(5)
    x, b = torch.randn(1, 2, 4, 4), torch.randn(2)
    y = filtered_lrelu(x, b=b, up=2, down=2)
    assert y.shape == x.shape
    assert torch.allclose(y, 4 * _bias_lrelu(x, b, 0.2, math.sqrt(2)), atol=1e-5)


def test_filtered_lrelu_constant_input_keeps_dc():
    """Unit-DC low-pass filters leave a positive constant as gain * (x + b) (valid region only)."""
    fu = design_lowpass_filter(12, cutoff=4, width=4, fs=32)
    fd = torch.as_tensor(radial_lowpass(12, 4, 4, 32), dtype=torch.float32)
    x = torch.full((1, 2, 40, 40), 0.5)
    b = torch.tensor([0.25, 1.0])
    y = filtered_lrelu(x, fu=fu, fd=fd, b=b, up=1, down=2, padding=0, gain=2.0)
    # Output size: (40 - 11 - 11 + 1) // 2 = 9.
    assert y.shape == (1, 2, 9, 9)
    assert torch.allclose(y[0, 0], torch.full((9, 9), 1.5), atol=1e-5)
    assert torch.allclose(y[0, 1], torch.full((9, 9), 3.0), atol=1e-5)


def test_filtered_lrelu_separable_equals_full_filter():
    torch.manual_seed(6)
    f = design_lowpass_filter(8, cutoff=3, width=3, fs=16)
    x, b = torch.randn(2, 3, 7, 9), torch.randn(3)
    a = filtered_lrelu(x, fu=f, fd=f, b=b, up=2, down=2, padding=[3, 4, 5, 6], clamp=1.0)
    full = torch.outer(f, f)
    c = filtered_lrelu(x, fu=full, fd=full, b=b, up=2, down=2, padding=[3, 4, 5, 6], clamp=1.0)
    assert a.shape == c.shape == (2, 3, (9 * 2 + 7 - 14 + 1) // 2, (7 * 2 + 11 - 14 + 1) // 2)
    assert torch.allclose(a, c, atol=1e-5)


def test_filtered_lrelu_bad_bias_message():
    with pytest.raises(ValueError, match=r"bias must have shape \[3\]"):
        filtered_lrelu(torch.zeros(1, 3, 4, 4), b=torch.zeros(4))


# ---------------------------------------------------------------- filter design

def test_bessel_j1_known_values():
    x = np.array([0.0, 1.0, 3.8317059702075125, 10.0, 50.0])
    expected = np.array([0.0, 0.44005058574493355, 0.0, 0.04347274616886144, -0.09751182812517113])
    assert np.allclose(bessel_j1(x), expected, atol=1e-13)


def test_lowpass_design_matches_scipy():
    signal = pytest.importorskip("scipy.signal")
    special = pytest.importorskip("scipy.special")
    for n, cutoff, width, fs in [(12, 2.0, 4.0, 16), (24, 3.2, 5.1, 32), (18, 5.0, 2.0, 24)]:
        ref = signal.firwin(numtaps=n, cutoff=cutoff, width=width, fs=fs)
        assert np.abs(separable_lowpass(n, cutoff, width, fs) - ref).max() < 1e-14
        x = (np.arange(n) - (n - 1) / 2) / fs
        r = np.hypot(*np.meshgrid(x, x))
        f = special.j1(2 * cutoff * np.pi * r) / (np.pi * r)
        w = np.kaiser(n, signal.kaiser_beta(signal.kaiser_atten(n, width / (fs / 2))))
        f = f * np.outer(w, w)
        assert np.abs(radial_lowpass(n, cutoff, width, fs) - f / f.sum()).max() < 1e-13
    assert design_lowpass_filter(1, 2.0, 4.0, 16) is None


@pytest.mark.parametrize("config, channels", [
    (dict(channel_base=32768, channel_max=512), [512] * 7 + [323, 203, 128, 81, 51, 32, 32, 3]),
    (dict(channel_base=65536, channel_max=1024, conv_kernel=1, use_radial_filters=True),
     [1024] * 7 + [645, 406, 256, 161, 102, 64, 64, 3]),
])
def test_ffhq_1024_layer_names(config, channels):
    """NVIDIA's published stylegan3-{t,r}-ffhq-1024x1024 layer names follow from the schedule."""
    with torch.device("meta"):  # structure only, no memory
        G = StyleGAN3Generator(512, 0, 512, 1024, 3, mapping_kwargs={"num_layers": 2}, num_fp16_res=4, **config)
    sizes = [36, 36, 52, 52, 84, 148, 148, 276, 276, 532, 1044, 1044, 1044, 1024, 1024]
    assert G.synthesis.layer_names == [f"L{i}_{s}_{c}" for i, (s, c) in enumerate(zip(sizes, channels))]
    assert G.num_ws == 16
    torgb = G.get_submodule(G.feature_layers[-1])
    assert torgb.up_filter is None and torgb.down_filter is None

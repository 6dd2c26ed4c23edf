"""StyleGAN2 generator: NVIDIA parity on the `sg2_a` fixture, constructor forms, features, tiny()."""

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from fpbench.errors import ConfigError
from fpbench.generators import StyleGAN2Generator, tiny

ATOL = 1e-4


@pytest.fixture(scope="module")
def sg2(fixtures_dir):
    init_kwargs = json.loads((fixtures_dir / "sg2_a.json").read_text())["init_kwargs"]
    state = load_file(str(fixtures_dir / "sg2_a.safetensors"))
    path = str(fixtures_dir / "sg2_a_expected.safetensors")
    with safe_open(path, "pt") as f:
        meta = f.metadata()
    return init_kwargs, state, load_file(path), meta


def _build(init_kwargs, state, **overrides):
    G = StyleGAN2Generator(**{**init_kwargs, **overrides}).eval()
    G.load_state_dict(state, strict=True)
    return G


def _run_with_hooks(G, names, *args, **kwargs):
    acts = {}
    handles = [G.get_submodule(n).register_forward_hook(lambda m, i, o, n=n: acts.__setitem__(n, o.clone()))
               for n in names]
    try:
        with torch.no_grad():
            img = G(*args, **kwargs)
    finally:
        for h in handles:
            h.remove()
    return img, acts


def test_parity_with_nvidia(sg2):
    init_kwargs, state, exp, meta = sg2
    G = _build(init_kwargs, state)
    assert G.num_ws == 8 and G.synthesis.block_resolutions == [4, 8, 16, 32]
    assert G.feature_layers == meta["act_order"].split(",")
    z, c = exp["z"], exp["c"]
    img, acts = _run_with_hooks(G, G.feature_layers, z, c, truncation_psi=1, noise_mode="const")
    torch.testing.assert_close(img, exp["img"], atol=ATOL, rtol=0)
    for name in G.feature_layers:
        torch.testing.assert_close(acts[name][:2], exp[f"act.{name}"], atol=ATOL, rtol=0, msg=name)
    with torch.no_grad():
        torch.testing.assert_close(G.mapping(z, c), exp["ws"], atol=ATOL, rtol=0)
        torch.testing.assert_close(G.mapping(z, c, truncation_psi=0.7), exp["ws_psi07"], atol=ATOL, rtol=0)
        torch.testing.assert_close(G(z, c, truncation_psi=0.7), exp["img_psi07"], atol=ATOL, rtol=0)
        # mapping + synthesis is the same as the full call; c may be omitted when c_dim == 0.
        torch.testing.assert_close(G.synthesis(G.mapping(z, None)), exp["img"], atol=ATOL, rtol=0)
        torch.testing.assert_close(G(z, c, fused_modconv=False), exp["img"], atol=ATOL, rtol=0)


def test_fp16_request_is_ignored_on_cpu(sg2):
    init_kwargs, state, exp, _ = sg2
    G = _build(init_kwargs, state, num_fp16_res=2)
    assert G.synthesis.b32.use_fp16 and G.synthesis.b16.use_fp16 and not G.synthesis.b8.use_fp16
    with torch.no_grad():
        img = G(exp["z"], exp["c"])
    assert img.dtype == torch.float32
    torch.testing.assert_close(img, exp["img"], atol=ATOL, rtol=0)


def test_torgb_hook_output_is_added_to_the_image(sg2):
    """Treatments replace layer outputs through hooks; the returned tensor must be what is used."""
    init_kwargs, state, exp, _ = sg2
    G = _build(init_kwargs, state)
    handle = G.synthesis.b32.torgb.register_forward_hook(lambda m, i, o: torch.zeros_like(o))
    with torch.no_grad():
        img = G(exp["z"][:2], exp["c"][:2])
    handle.remove()
    torch.testing.assert_close(img, exp["img"][:2] - exp["act.synthesis.b32.torgb"], atol=ATOL, rtol=0)


def test_nested_ada_kwargs_build_the_same_network(sg2):
    init_kwargs, state, exp, _ = sg2
    top = {k: init_kwargs[k] for k in ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "mapping_kwargs")}
    nested = {k: v for k, v in init_kwargs.items() if k not in top}
    G = _build(top, state, synthesis_kwargs=nested)
    assert G.init_kwargs == init_kwargs
    with torch.no_grad():
        torch.testing.assert_close(G(exp["z"], exp["c"]), exp["img"], atol=ATOL, rtol=0)
    # StyleGAN2-ADA's own defaults apply to what the nested form leaves out.
    ada = StyleGAN2Generator(**top, synthesis_kwargs={"channel_base": 512, "channel_max": 32})
    assert ada.init_kwargs["conv_clamp"] is None and ada.init_kwargs["num_fp16_res"] == 0
    flat = StyleGAN2Generator(**top, channel_base=512, channel_max=32)
    assert flat.synthesis.b32.conv1.conv_clamp == 256 and flat.synthesis.num_fp16_res == 4


def test_bad_kwargs_raise_one_line_config_errors(sg2):
    init_kwargs = sg2[0]
    with pytest.raises(ConfigError, match=r"unknown StyleGAN2 generator kwargs.*channel_bass"):
        StyleGAN2Generator(**init_kwargs, channel_bass=1)
    with pytest.raises(ConfigError, match="architecture must be one of"):
        StyleGAN2Generator(**init_kwargs, architecture="dense")
    with pytest.raises(ConfigError, match="power of two"):
        StyleGAN2Generator(**{**init_kwargs, "img_resolution": 48})
    with pytest.raises(ConfigError, match="given both flat and in synthesis_kwargs"):
        StyleGAN2Generator(**init_kwargs, synthesis_kwargs={"channel_base": 512})
    with pytest.raises(ConfigError) as info:
        StyleGAN2Generator(**init_kwargs, foo=1)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("arch", ["orig", "resnet"])
def test_other_architectures(arch):
    torch.manual_seed(0)
    G = StyleGAN2Generator(z_dim=16, c_dim=0, w_dim=16, img_resolution=16, img_channels=3,
                           mapping_kwargs={"num_layers": 1}, channel_base=128, channel_max=16, architecture=arch).eval()
    keys = set(G.state_dict())
    assert ("synthesis.b8.skip.weight" in keys) == (arch == "resnet")
    assert "synthesis.b8.torgb.weight" not in keys and "synthesis.b16.torgb.weight" in keys
    assert G.num_ws == 6
    assert G.feature_layers == ["synthesis.b4.conv1", "synthesis.b8.conv0", "synthesis.b8.conv1",
                                "synthesis.b16.conv0", "synthesis.b16.conv1", "synthesis.b16.torgb"]
    with torch.no_grad():
        img = G(torch.randn(3, 16), None)
    assert img.shape == (3, 3, 16, 16) and torch.isfinite(img).all()


def test_conditional_generator():
    torch.manual_seed(0)
    G = StyleGAN2Generator(z_dim=8, c_dim=3, w_dim=8, img_resolution=8, img_channels=3, channel_base=64,
                           channel_max=8).eval()
    assert G.mapping.embed.weight.shape == (8, 3) and G.mapping.fc0.weight.shape == (8, 16)
    z = torch.randn(1, 8).repeat(2, 1)
    c = torch.eye(3)[:2]
    with torch.no_grad():
        ws = G.mapping(z, c)
        assert not torch.allclose(ws[0], ws[1])
        assert G(z, c).shape == (2, 3, 8, 8)
        with pytest.raises(ValueError, match=r"c must have shape \[N, 3\]"):
            G(z, None)


def test_truncation_and_cutoff():
    G = tiny(0)
    z = torch.randn(4, G.z_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ws = G.mapping(z, None)
        assert torch.allclose(G.mapping(z, None, truncation_psi=0), G.mapping.w_avg.expand_as(ws))
        cut = G.mapping(z, None, truncation_psi=0.5, truncation_cutoff=3)
    torch.testing.assert_close(cut[:, :3], G.mapping.w_avg + 0.5 * (ws[:, :3] - G.mapping.w_avg))
    torch.testing.assert_close(cut[:, 3:], ws[:, 3:])


def test_noise_modes():
    G = tiny(0)
    z = torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        const, none = G(z, noise_mode="const"), G(z, noise_mode="none")
        torch.manual_seed(5)
        r1 = G(z, noise_mode="random")
        r2 = G(z, noise_mode="random")
        torch.manual_seed(5)
        r3 = G(z, noise_mode="random")
        assert torch.equal(G(z), const)  # const is the default
        assert not torch.allclose(const, none) and not torch.allclose(r1, r2) and not torch.allclose(r1, const)
        assert torch.equal(r1, r3)
        for layer in G.feature_layers:
            if hasattr(G.get_submodule(layer), "noise_strength"):
                G.get_submodule(layer).noise_strength.zero_()
        torch.testing.assert_close(G(z, noise_mode="const"), none)
        with pytest.raises(ValueError, match="noise_mode must be one of"):
            G(z, noise_mode="fixed")


def test_tiny_is_deterministic_and_nontrivial():
    before = torch.random.get_rng_state()
    a, b, c = tiny(0), tiny(0), tiny(1)
    assert torch.equal(torch.random.get_rng_state(), before)  # global RNG untouched
    assert not a.training
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["synthesis.b8.conv0.weight"], sc["synthesis.b8.conv0.weight"])
    assert sa["synthesis.b8.conv0.bias"].abs().min() > 0 and sa["synthesis.b8.conv0.noise_strength"] != 0
    assert sa["mapping.w_avg"].abs().sum() > 0
    z = torch.randn(16, a.z_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        img = a(z)
        assert torch.equal(img, b(z))
    assert img.shape == (16, 3, 32, 32) and torch.isfinite(img).all()
    assert a.feature_layers[:3] == ["synthesis.b4.conv1", "synthesis.b4.torgb", "synthesis.b8.conv0"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="fp16 blocks run only on CUDA")
def test_fp16_blocks_on_cuda(sg2):
    init_kwargs, state, exp, _ = sg2
    G = _build(init_kwargs, state, num_fp16_res=2).to("cuda")
    names = ["synthesis.b8.conv1", "synthesis.b16.conv1", "synthesis.b32.torgb"]
    img, acts = _run_with_hooks(G, names, exp["z"].cuda(), exp["c"].cuda())
    assert acts["synthesis.b8.conv1"].dtype == torch.float32 and acts["synthesis.b16.conv1"].dtype == torch.float16
    assert img.dtype == torch.float32
    torch.testing.assert_close(img.cpu(), exp["img"], atol=5e-2, rtol=0)
    with torch.no_grad():
        # cuDNN may use TF32 for float32 convolutions, hence the loose tolerance.
        torch.testing.assert_close(G(exp["z"].cuda(), exp["c"].cuda(), force_fp32=True).cpu(), exp["img"],
                                   atol=2e-2, rtol=0)

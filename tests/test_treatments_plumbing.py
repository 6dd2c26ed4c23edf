"""Treatment classes on real generators: equality with hand-written hooks, batch independence,
hook removal, truncation parity with NVIDIA's fixtures, and bad input refused before generation."""

import json

import pytest
import torch

from fpbench.errors import ConfigError, StatsMismatchError
from fpbench.generators import StyleGAN2Generator, StyleGAN3Generator, seeds_to_z, tiny, weights_fingerprint
from fpbench.stats import FeatureStats
from fpbench.treatments import (FeatureRescaling, LayerwiseRescaling, NoTreatment, PixelNorm, Truncation, build,
                                default_layers)
from fpbench.treatments import functional as F

SG2_DEFAULT = ["synthesis.b4.conv1", "synthesis.b8.conv0", "synthesis.b8.conv1", "synthesis.b16.conv0",
               "synthesis.b16.conv1", "synthesis.b32.conv0", "synthesis.b32.conv1"]


def _fixture_generator(fixtures_dir, name):
    from safetensors.torch import load_file

    info = json.loads((fixtures_dir / f"{name}.json").read_text())
    cls = StyleGAN2Generator if info["class"] == "stylegan2" else StyleGAN3Generator
    G = cls(**info["init_kwargs"])
    G.load_state_dict(load_file(str(fixtures_dir / f"{name}.safetensors")))
    return G.eval()


@pytest.fixture(scope="module")
def G():
    return tiny(seed=0)


@pytest.fixture(scope="module")
def stats(G):
    """Synthetic but realistic statistics: per-channel means/stds of a few untreated samples."""
    feats = {}
    hooks = [G.get_submodule(l).register_forward_hook(
        lambda m, i, o, l=l: feats.setdefault(l, []).append(o.mean(dim=(2, 3)))) for l in G.feature_layers]
    with torch.no_grad():
        G(seeds_to_z(range(100, 116), G.z_dim))
    for h in hooks:
        h.remove()
    mean = {l: torch.cat(v).mean(0).double() for l, v in feats.items()}
    std = {l: torch.cat(v).std(0).double() for l, v in feats.items()}
    return FeatureStats(mean=mean, std=std, meta={"fingerprint": weights_fingerprint(G)})


@pytest.fixture(scope="module")
def z(G):
    return seeds_to_z(range(4), G.z_dim)


def _no_hooks_left(G):
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in G.modules())


def _count_calls(G):
    calls = []
    handle = G.register_forward_pre_hook(lambda m, a: calls.append(1))
    return calls, handle


@torch.no_grad()
def test_default_layers_follow_the_authors_code(G, fixtures_dir):
    assert default_layers(G) == SG2_DEFAULT
    G3 = _fixture_generator(fixtures_dir, "sg3_t")
    layers = default_layers(G3)
    assert "synthesis.input" not in layers and layers[0] == "synthesis.L0_36_16"
    assert all(G3.get_submodule(l).out_sampling_rate <= 32 and not G3.get_submodule(l).is_torgb for l in layers)
    assert "synthesis.L6_32_3" not in layers


@torch.no_grad()
def test_feature_rescaling_equals_hand_written_hooks(G, stats, z):
    t, p, c = 1.0, 2.0, 0.1
    treated_channels = []

    def reference(layer):
        mu, sigma = stats.mean[layer].float(), stats.std[layer].float()

        def hook(module, inputs, x):
            r = (x.mean(dim=(2, 3)) - mu).abs() / torch.clamp(sigma, min=c)
            treated_channels.append(int((r > t).sum()))
            return torch.where((r > t)[:, :, None, None], x / (p * r)[:, :, None, None], x)
        return hook

    handles = [G.get_submodule(l).register_forward_hook(reference(l)) for l in SG2_DEFAULT]
    expected = G(z)
    for h in handles:
        h.remove()
    assert sum(treated_channels) > 0, "the test needs some treated channels"
    plain = G(z)
    with FeatureRescaling(stats, t=t, p=p).applied(G) as tr:
        got = G(z)
    assert tr.params == {"t": 1.0, "p": 2.0, "risk_rule": "paper", "c": 0.1, "layers": "default"}
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    assert (got - plain).abs().max() > 1e-3
    assert _no_hooks_left(G)
    torch.testing.assert_close(G(z), plain, rtol=0, atol=0)


@torch.no_grad()
def test_official_rule_on_generator(G, stats, z):
    def reference(layer):
        mu, sigma = stats.mean[layer].float(), stats.std[layer].float()

        def hook(module, inputs, x):
            d = (x.mean(dim=(2, 3)) - mu).abs()
            ratio = d / sigma
            m = (d > 0.1) & (ratio > 1.0)
            return torch.where(m[:, :, None, None], x / (2.0 * ratio)[:, :, None, None], x)
        return hook

    handles = [G.get_submodule(l).register_forward_hook(reference(l)) for l in SG2_DEFAULT]
    expected = G(z)
    for h in handles:
        h.remove()
    with FeatureRescaling(stats, t=1.0, p=2.0, risk_rule="official").applied(G):
        got = G(z)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    assert (got - G(z)).abs().max() > 1e-3
    with FeatureRescaling(stats, t=1.0, p=2.0, risk_rule="paper").applied(G):
        assert (got - G(z)).abs().max() > 1e-4     # the two rules differ on this generator


@torch.no_grad()
def test_treating_a_batch_equals_treating_each_image(G, stats, z):
    for tr in (FeatureRescaling(stats, t=1.0, p=2.0), LayerwiseRescaling(stats, t=1.0, p=2.0, t_prime=0.0),
               PixelNorm(["synthesis.b8.conv1"])):
        with tr.applied(G):
            batch = G(z)
            single = torch.cat([G(z[i:i + 1]) for i in range(len(z))])
        torch.testing.assert_close(batch, single, rtol=0, atol=1e-5)


@torch.no_grad()
def test_hooks_removed_after_exception(G, stats, z):
    with pytest.raises(RuntimeError, match="boom"):
        with FeatureRescaling(stats).applied(G):
            assert not _no_hooks_left(G)
            raise RuntimeError("boom")
    assert _no_hooks_left(G)
    with pytest.raises(RuntimeError, match="boom"):
        with Truncation(0.5).applied(G):
            raise RuntimeError("boom")
    assert _no_hooks_left(G)


@torch.no_grad()
def test_truncation_equals_nvidia_psi07(fixtures_dir):
    from safetensors.torch import load_file

    for name in ("sg2_a", "sg3_t"):
        G = _fixture_generator(fixtures_dir, name)
        exp = load_file(str(fixtures_dir / f"{name}_expected.safetensors"))
        with Truncation(psi=0.7).applied(G):
            ws = G.mapping(exp["z"], exp["c"])
            img = G(exp["z"], exp["c"], noise_mode="const")
        torch.testing.assert_close(ws, exp["ws_psi07"], rtol=0, atol=1e-5)
        torch.testing.assert_close(img, exp["img_psi07"], rtol=0, atol=1e-4)
        torch.testing.assert_close(img, G(exp["z"], exp["c"], truncation_psi=0.7), rtol=0, atol=1e-6)
        assert _no_hooks_left(G)


@torch.no_grad()
def test_truncation_cutoff_matches_generator_argument(G, z):
    with Truncation(psi=0.5, cutoff=3).applied(G):
        got = G(z)
    torch.testing.assert_close(got, G(z, truncation_psi=0.5, truncation_cutoff=3), rtol=0, atol=1e-6)


@torch.no_grad()
def test_layerwise_and_pixelnorm_on_generator(G, stats, z):
    layer = "synthesis.b8.conv1"
    mu, sigma = stats.mean[layer].float(), stats.std[layer].float()

    def grab(store):
        return lambda m, i, o: store.append(o)

    before = []
    h = G.get_submodule(layer).register_forward_hook(grab(before))
    G(z)
    h.remove()
    x = before[0]
    mask, r = F.layerwise_mask(x, mu, sigma, t=1.0, t_prime=0.0)
    assert mask.any()
    after = []
    with LayerwiseRescaling(stats, t=1.0, p=2.0, t_prime=0.0, layers=[layer]).applied(G):
        h = G.get_submodule(layer).register_forward_hook(grab(after))
        G(z)
        h.remove()
    torch.testing.assert_close(after[0], F.rescale(x, r, 1.0, 2.0, mask=mask))
    after.clear()
    with PixelNorm([layer]).applied(G):
        h = G.get_submodule(layer).register_forward_hook(grab(after))
        G(z)
        h.remove()
    torch.testing.assert_close(after[0].square().mean(1), torch.ones_like(after[0][:, 0]), rtol=1e-4, atol=1e-4)


def test_hook_math_has_no_host_sync():
    """On the meta device any .item() / data-dependent branch raises: the hook math must not need one."""
    x = torch.empty(4, 8, 16, 16, device="meta")
    mean, std = torch.empty(8, device="meta"), torch.empty(8, device="meta")
    for rule in ("paper", "official"):
        assert F.rescale_by_risk(x, mean, std, 2.0, 2.0, rule).shape == x.shape
    assert F.layerwise_rescale(x, mean, std, 2.0, 2.0, 0.5).shape == x.shape
    assert F.pixel_norm(x).shape == x.shape
    ws = torch.empty(4, 8, 16, device="meta")
    assert F.truncate(ws, torch.empty(16, device="meta"), 0.7, cutoff=4).shape == ws.shape


# --- bad input ---------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, match", [
    (dict(t=-0.5), r"t must be >= 0, got -0.5"),
    (dict(p=0), r"p must be > 0, got 0"),
    (dict(p=-1.0), r"p must be > 0, got -1.0"),
    (dict(t=float("nan")), r"t must be a finite number, got nan"),
    (dict(risk_rule="nvidia"), r"risk_rule must be one of .*'nvidia'"),
    (dict(layers=[]), r"layers must be a non-empty list of layer names, got \[\]"),
])
def test_rescaling_bad_params(stats, kwargs, match):
    with pytest.raises((ConfigError, StatsMismatchError), match=match):
        FeatureRescaling(stats, **kwargs)


@pytest.mark.parametrize("kwargs, match", [
    (dict(psi=1.2), r"psi must be <= 1, got 1.2 \(psi > 1 needs allow_extrapolation=True\)"),
    (dict(psi=-0.1), r"psi must be >= 0, got -0.1"),
    (dict(psi=1.2, allow_extrapolation=True, cutoff=-1), r"cutoff must be None or an integer >= 0, got -1"),
    (dict(psi="0.7"), r"psi must be a finite number, got '0.7'"),
])
def test_truncation_bad_params(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        Truncation(**kwargs)


def test_truncation_extrapolation_allowed_with_flag():
    assert Truncation(psi=1.5, allow_extrapolation=True).psi == 1.5


@torch.no_grad()
def test_bad_input_refused_before_generation(G, stats, z):
    calls, handle = _count_calls(G)
    try:
        with pytest.raises(ConfigError, match=r"layer 'synthesis.b64.conv0' is not one of G.feature_layers"):
            with FeatureRescaling(stats, layers=["synthesis.b64.conv0"]).applied(G):
                G(z)
        with pytest.raises(ConfigError, match=r"layer 'synthesis.b9.conv1' is not one of G.feature_layers"):
            with PixelNorm(["synthesis.b9.conv1"]).applied(G):
                G(z)
        other = tiny(seed=1)
        with pytest.raises(StatsMismatchError, match=r"not for this generator"):
            with FeatureRescaling(stats).applied(other):
                other(z)
        partial = FeatureStats({k: v for k, v in stats.mean.items() if k != "synthesis.b16.conv0"},
                               {k: v for k, v in stats.std.items() if k != "synthesis.b16.conv0"}, dict(stats.meta))
        tr = FeatureRescaling(partial)           # fine until the default layers are known
        with pytest.raises(StatsMismatchError, match=r"lack layer 'synthesis.b16.conv0'"):
            with tr.applied(G):
                G(z)
    finally:
        handle.remove()
    assert calls == [] and _no_hooks_left(G)


@pytest.mark.parametrize("value, match", [(float("nan"), "std=nan"), (0.0, "std=0.0"), (-1.0, "std=-1.0")])
def test_invalid_sigma_refused(G, stats, value, match):
    std = dict(stats.std)
    bad = std["synthesis.b8.conv0"].clone()
    bad[3] = value
    std["synthesis.b8.conv0"] = bad
    broken = FeatureStats(dict(stats.mean), std, dict(stats.meta))
    with pytest.raises(StatsMismatchError, match=rf"layer 'synthesis.b8.conv0' channel 3 .*{match}"):
        FeatureRescaling(broken, layers=["synthesis.b8.conv0"])
    tr = LayerwiseRescaling(broken)
    with pytest.raises(StatsMismatchError, match=rf"channel 3 .*{match}"):
        with tr.applied(G):
            pass
    assert _no_hooks_left(G)


def test_channel_count_mismatch_is_a_stats_error(G, stats, z):
    mean = dict(stats.mean)
    std = dict(stats.std)
    mean["synthesis.b8.conv0"] = mean["synthesis.b8.conv0"][:5]
    std["synthesis.b8.conv0"] = std["synthesis.b8.conv0"][:5]
    tr = FeatureRescaling(FeatureStats(mean, std, dict(stats.meta)), layers=["synthesis.b8.conv0"])
    with pytest.raises(StatsMismatchError, match=r"statistics have 5 channels"):
        with torch.no_grad(), tr.applied(G):
            G(z[:1])
    assert _no_hooks_left(G)


# --- factory -----------------------------------------------------------------------------------

def test_build_factory(G, stats, tmp_path):
    assert isinstance(build("none"), NoTreatment)
    tr = build("truncation", psi=0.6, cutoff=4)
    assert isinstance(tr, Truncation) and tr.params == {"psi": 0.6, "cutoff": 4} and tr.name == "truncation"
    r = build("rescale", stats=stats, t=3, p=1.5, risk_rule="official")
    assert isinstance(r, FeatureRescaling) and r.params["risk_rule"] == "official" and r.name == "rescale"
    path = stats.save(tmp_path / "s.safetensors")
    lw = build("layerwise", stats=str(path), t_prime=0.3)
    assert isinstance(lw, LayerwiseRescaling) and lw.params["t_prime"] == 0.3
    assert build("pixelnorm", layers=["synthesis.b4.conv1"]).params["layers"] == ["synthesis.b4.conv1"]
    with pytest.raises(ConfigError, match=r"unknown treatment 'cure'; choose one of none, truncation, rescale"):
        build("cure")
    with pytest.raises(ConfigError, match=r"treatment 'truncation' has no parameter\(s\) t;"):
        build("truncation", t=2)
    with pytest.raises(ConfigError, match=r"treatment 'rescale' needs feature statistics"):
        build("rescale")


@torch.no_grad()
def test_weights_changed_in_place_are_noticed(stats, z):
    G2 = tiny(seed=0)
    tr = FeatureRescaling(stats)
    with tr.applied(G2):
        pass
    with tr.applied(G2):                   # verified once: no re-hash needed, still fine
        pass
    G2.synthesis.b8.conv0.bias.add_(1.0)
    with pytest.raises(StatsMismatchError, match=r"not for this generator"):
        with tr.applied(G2):
            pass


@torch.no_grad()
def test_stylegan3_rescaling_plumbing(fixtures_dir):
    G3 = _fixture_generator(fixtures_dir, "sg3_t")
    z3 = seeds_to_z(range(3), G3.z_dim)
    layers = default_layers(G3)
    feats = {}
    hooks = [G3.get_submodule(l).register_forward_hook(lambda m, i, o, l=l: feats.__setitem__(l, o)) for l in layers]
    plain = G3(z3)
    for h in hooks:
        h.remove()
    # statistics that make every channel of the first treated layer risky (mean far below its value)
    mean = {l: feats[l].mean(dim=(0, 2, 3)).double() for l in layers}
    std = {l: torch.full_like(mean[l], 0.5) for l in layers}
    first = layers[0]
    mean[first] = mean[first] - 10.0
    stats3 = FeatureStats(mean, std, {"fingerprint": weights_fingerprint(G3)})
    with FeatureRescaling(stats3, t=2.0, p=2.0, layers=[first]).applied(G3):
        got = G3(z3)
    x = feats[first]
    y = F.rescale_by_risk(x, mean[first], std[first], 2.0, 2.0)

    def replace(module, inputs, output):
        return y
    h = G3.get_submodule(first).register_forward_hook(replace)
    expected = G3(z3)
    h.remove()
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    assert (got - plain).abs().max() > 1e-4
    assert _no_hooks_left(G3)

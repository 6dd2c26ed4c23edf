"""Feature statistics: streamed moments, known answer against a direct computation, caching,
fingerprint checks and bad arguments."""

import pytest
import torch

import fpbench.stats as stats_mod
from fpbench.cache import cache_dir
from fpbench.errors import ConfigError, MissingFileError, StatsMismatchError
from fpbench.generators import seeds_to_z, tiny
from fpbench.stats import ChannelMoments, FeatureStats, estimate_feature_stats, stats_cache_key

LAYERS = ["synthesis.b4.conv1", "synthesis.b8.conv1", "synthesis.b16.conv0"]


@pytest.fixture(scope="module")
def G():
    return tiny(seed=0)


def _count_calls(G):
    calls = []
    return calls, G.register_forward_pre_hook(lambda m, a: calls.append(1))


def test_channel_moments_match_direct_computation():
    torch.manual_seed(0)
    data = torch.randn(1000, 7, dtype=torch.float64) * 3 + 100      # large offset: naive sums would lose bits
    acc = ChannelMoments()
    sizes = []
    for chunk in torch.split(data, [1, 13, 400, 7, 579]):
        acc.update(chunk)
        sizes.append(acc.state_numel())
    assert acc.count == 1000
    torch.testing.assert_close(acc.mean, data.mean(0), rtol=0, atol=1e-12)
    torch.testing.assert_close(acc.std(), data.std(0, unbiased=False), rtol=1e-12, atol=1e-12)
    assert set(sizes) == {14}                 # 2 x C, whatever the number of rows seen


def test_estimate_matches_direct_computation(G, tmp_path):
    n = 20
    s = estimate_feature_stats(G, n=n, batch_size=8, seed=3, layers=LAYERS, progress=False, cache_dir=tmp_path)
    feats = {l: [] for l in LAYERS}
    hooks = [G.get_submodule(l).register_forward_hook(lambda m, i, o, l=l: feats[l].append(o.double().mean((2, 3))))
             for l in LAYERS]
    with torch.no_grad():
        G(seeds_to_z(range(3, 3 + n), G.z_dim), noise_mode="const")
    for h in hooks:
        h.remove()
    assert s.layers == LAYERS
    for l in LAYERS:
        v = torch.cat(feats[l])
        torch.testing.assert_close(s.mean[l], v.mean(0), rtol=0, atol=1e-6)
        torch.testing.assert_close(s.std[l], v.std(0, unbiased=False), rtol=1e-5, atol=1e-6)
        assert s.mean[l].dtype == torch.float64 and s.mean[l].shape == (G.get_submodule(l).weight.shape[0],)
    assert s.meta["n"] == n and s.meta["seed"] == 3 and s.meta["noise_mode"] == "const"
    s.check(G, LAYERS)


def test_accumulator_state_is_constant_in_n(G, monkeypatch):
    sizes = []

    class Spy(ChannelMoments):
        def update(self, values):
            super().update(values)
            sizes.append(self.state_numel())

    monkeypatch.setattr(stats_mod, "ChannelMoments", Spy)
    estimate_feature_stats(G, n=24, batch_size=4, layers=["synthesis.b8.conv0"], progress=False, use_cache=False)
    assert len(sizes) == 6 and set(sizes) == {64}       # 2 x 32 channels after every one of 6 batches


def test_cache_hit_runs_no_generation(G):
    kw = dict(n=8, batch_size=8, seed=11, layers=LAYERS, progress=False)
    first = estimate_feature_stats(G, **kw)
    files = list((cache_dir() / "stats").glob("*.safetensors"))
    key = stats_cache_key(first.fingerprint, 8, 11, LAYERS, "const", None)
    assert (cache_dir() / "stats" / f"{key}.safetensors") in files
    assert not list((cache_dir() / "stats").glob("*.part"))
    calls, handle = _count_calls(G)
    try:
        second = estimate_feature_stats(G, **kw)
        assert calls == []
        estimate_feature_stats(G, **{**kw, "seed": 12})          # another setting: a miss
        assert calls == [1]
    finally:
        handle.remove()
    for l in LAYERS:
        assert torch.equal(first.mean[l], second.mean[l]) and torch.equal(first.std[l], second.std[l])


def test_cache_key_depends_on_every_setting():
    base = dict(fingerprint="f" * 16, n=10, seed=0, layers=LAYERS, noise_mode="const", c=None)
    keys = {stats_cache_key(**base)}
    for change in (dict(fingerprint="e" * 16), dict(n=11), dict(seed=1), dict(layers=LAYERS[:2]),
                   dict(noise_mode="none"), dict(c=1)):
        keys.add(stats_cache_key(**{**base, **change}))
    assert len(keys) == 7


def test_save_load_roundtrip_and_mismatch(G, tmp_path):
    s = estimate_feature_stats(G, n=4, batch_size=4, layers=LAYERS[:1], progress=False, use_cache=False)
    path = s.save(tmp_path / "sub" / "stats.safetensors")
    back = FeatureStats.load(path)
    assert back.meta == s.meta and back.fingerprint == s.fingerprint and back.layers == s.layers
    assert torch.equal(back.mean[LAYERS[0]], s.mean[LAYERS[0]])
    back.check(G, LAYERS[:1])
    with pytest.raises(StatsMismatchError, match=rf"estimated for weights {s.fingerprint}, not for this generator"):
        back.check(tiny(seed=5))
    with pytest.raises(StatsMismatchError, match=r"lack layer 'synthesis.b8.conv1'"):
        back.check(G, ["synthesis.b8.conv1"])
    with pytest.raises(MissingFileError, match=r"does not exist"):
        FeatureStats.load(tmp_path / "nope.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file")
    with pytest.raises(StatsMismatchError, match=r"cannot read feature statistics"):
        FeatureStats.load(junk)


@pytest.mark.parametrize("kwargs, match", [
    (dict(n=1), r"n must be an integer >= 2, got 1"),
    (dict(batch_size=0), r"batch_size must be an integer >= 1, got 0"),
    (dict(seed=-1), r"seed must be an integer >= 0, got -1"),
    (dict(noise_mode="fixed"), r"noise_mode must be one of .*'fixed'"),
    (dict(layers=["synthesis.b4.conv0"]), r"layer 'synthesis.b4.conv0' is not one of G.feature_layers"),
])
def test_bad_arguments_refused_before_generation(G, kwargs, match):
    calls, handle = _count_calls(G)
    try:
        with pytest.raises(ConfigError, match=match):
            estimate_feature_stats(G, **{"n": 4, "progress": False, **kwargs})
    finally:
        handle.remove()
    assert calls == []


def test_conditional_labels(tmp_path):
    from fpbench.generators import StyleGAN2Generator
    from fpbench.generators.tiny import TINY_KWARGS

    torch.manual_seed(0)
    Gc = StyleGAN2Generator(**{**TINY_KWARGS, "c_dim": 3}).eval()
    kw = dict(n=6, batch_size=4, layers=["synthesis.b4.conv1"], progress=False, use_cache=False)
    default = estimate_feature_stats(Gc, **kw)                       # class = seed % 3
    explicit = estimate_feature_stats(Gc, c=torch.eye(3)[torch.arange(6) % 3], **kw)
    single = estimate_feature_stats(Gc, c=1, **kw)
    torch.testing.assert_close(default.mean["synthesis.b4.conv1"], explicit.mean["synthesis.b4.conv1"])
    assert not torch.allclose(default.mean["synthesis.b4.conv1"], single.mean["synthesis.b4.conv1"])
    with pytest.raises(ConfigError, match=r"labels c must have shape \(3,\) or \(6, 3\), got \(5, 3\)"):
        estimate_feature_stats(Gc, c=torch.zeros(5, 3), **kw)
    with pytest.raises(ConfigError, match=r"class index c=3 is out of range for c_dim=3"):
        estimate_feature_stats(Gc, c=3, **kw)

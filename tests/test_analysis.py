"""Proliferation measurement: known answers on hand-built maps, and the Fig. 4 experiments on the
tiny generator (an abnormal channel inserted early raises eta downstream; rescaling removes it)."""

import pytest
import torch

from fpbench.analysis import (count_high_risk, cure_experiment, feature_histograms, high_risk_counts,
                              insert_experiment, map_correlation, proliferation_ratio, record_features)
from fpbench.errors import ConfigError
from fpbench.generators import seeds_to_z, tiny
from fpbench.stats import FeatureStats, estimate_feature_stats
from fpbench.treatments import FeatureRescaling

LAYER = "synthesis.b8.conv0"
DOWNSTREAM = ["synthesis.b8.conv1", "synthesis.b16.conv0", "synthesis.b16.conv1", "synthesis.b32.conv0",
              "synthesis.b32.conv1"]


def _blob(size=8, cy=2.0, cx=5.0, width=3.0):
    yy, xx = torch.meshgrid(torch.arange(float(size)), torch.arange(float(size)), indexing="ij")
    return torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / width)


# --- pure functions ----------------------------------------------------------------------------

def test_map_correlation_known_answers():
    s = _blob()[None]                                       # [1, 8, 8]
    x = torch.stack([s[0], 3 - 2 * s[0], torch.full((8, 8), 5.0), torch.randn(8, 8)])[None]
    corr = map_correlation(x, s)
    torch.testing.assert_close(corr[0, :3], torch.tensor([1.0, -1.0, 0.0]), rtol=0, atol=1e-5)
    # a coarser source is resized to the layer: a linear ramp stays a (perfectly correlated) ramp
    ramp4 = torch.arange(4.0)[None, None, :].expand(1, 4, 4)
    ramp8 = torch.nn.functional.interpolate(ramp4[:, None], size=(8, 8), mode="bilinear", align_corners=False)[:, 0]
    assert map_correlation(ramp8[:, None], ramp4)[0, 0] > 0.999


def test_proliferation_ratio_known_answer():
    s = _blob()[None]
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(8, 8, generator=g)
    noise = noise - (noise * (s[0] - s[0].mean())).sum() / ((s[0] - s[0].mean()).square().sum()) * (s[0] - s[0].mean())
    x = torch.stack([s[0], 2 * s[0] + 1, -s[0], noise])[None]     # 3 of 4 channels follow s (one negatively)
    assert abs(map_correlation(x, s)[0, 3]) < 1e-5
    eta = proliferation_ratio({"a": x, "b": x[:, 3:]}, s, tau=0.5)
    torch.testing.assert_close(eta["a"], torch.tensor([0.75]))
    torch.testing.assert_close(eta["b"], torch.tensor([0.0]))


def test_high_risk_counts_known_answer():
    x = torch.zeros(2, 3, 2, 2)
    x[0, 0] += 5.0                      # r = 5 > 2
    x[1, 1] += 0.25                     # sigma 0.05 floored to 0.1: r = 2.5 > 2 (official: 5 > 2, d > 0.1)
    x[1, 2] += 0.05                     # paper r = 0.5; official r = 5 but d = 0.05 <= 0.1
    stats = FeatureStats({"l": torch.zeros(3)}, {"l": torch.tensor([1.0, 0.05, 0.01])})
    assert high_risk_counts({"l": x}, stats, t=2.0)["l"].tolist() == [1, 1]
    assert high_risk_counts({"l": x}, stats, t=2.0, risk_rule="official")["l"].tolist() == [1, 1]
    assert high_risk_counts({"l": x}, stats, t=3.0)["l"].tolist() == [1, 0]


# --- experiments on the tiny generator ---------------------------------------------------------

@pytest.fixture(scope="module")
def G():
    return tiny(seed=0)


@pytest.fixture(scope="module")
def stats(G):
    return estimate_feature_stats(G, n=64, batch_size=32, progress=False, use_cache=False)


@pytest.fixture(scope="module")
def z(G):
    return seeds_to_z(range(1000, 1004), G.z_dim)


def _cancer(stats):
    """A spatially concentrated map on channel 0, far above that channel's usual mean."""
    return (float(stats.mean[LAYER][0]) + 20 * _blob())[None]


def test_inserted_cancer_proliferates_and_rescaling_removes_it(G, stats, z):
    res = insert_experiment(G, z, LAYER, 0, _cancer(stats), treatment=FeatureRescaling(stats), tau=0.5)
    assert res.layers == DOWNSTREAM
    original, inserted, treated = (res.mean_eta(k) for k in ("original", "inserted", "treated"))
    # the inserted map is followed by many more channels in every later layer
    assert (inserted > original + 0.05).all(), (original, inserted)
    assert (inserted - original).mean() > 0.15
    # the paper's treatment flags the inserted channel (huge risk) and the rise disappears
    assert (treated < inserted - 0.05).all(), (inserted, treated)
    assert treated.mean() <= original.mean() + 0.02, (original, treated)
    assert set(res.images) == {"original", "inserted", "treated"}
    assert (res.images["inserted"] - res.images["original"]).abs().max() > 1e-2


def test_cure_experiment_zero_and_rescale(G, stats, z):
    cancer = _cancer(stats)

    def insert(module, inputs, x):
        x = x.clone()
        x[:, 0] = cancer
        return x

    handle = G.get_submodule(LAYER).register_forward_hook(insert)       # a generator with "cancer"
    try:
        counts = count_high_risk(G, stats, z, t=2.0, layers=[LAYER])
        assert (counts[LAYER] >= 1).all()
        for mode in ("zero", "rescale"):
            res = cure_experiment(G, z, LAYER, 0, mode=mode, stats=stats, tau=0.5)
            before, after = res.mean_eta("original"), res.mean_eta("cured")
            assert (after < before - 0.05).all(), (mode, before, after)
            torch.testing.assert_close(res.source, cancer.expand(4, 8, 8))
    finally:
        handle.remove()


def test_record_features_and_bad_input(G, z):
    rec = record_features(G, z[:2], [LAYER])
    assert rec.features[LAYER].shape == (2, 32, 8, 8) and rec.images.shape == (2, 3, 32, 32)
    with pytest.raises(ConfigError, match=r"cure mode must be 'zero' or 'rescale', got 'cut'"):
        cure_experiment(G, z, LAYER, 0, mode="cut")
    with pytest.raises(ConfigError, match=r"channel 99 out of range"):
        cure_experiment(G, z[:1], LAYER, 99)
    with pytest.raises(ConfigError, match=r"layer 'synthesis.b8.conv2' is not one of G.feature_layers"):
        insert_experiment(G, z, "synthesis.b8.conv2", 0, torch.zeros(1, 8, 8))
    with pytest.raises(ConfigError, match=r"tau must be <= 1, got 1.5"):
        insert_experiment(G, z, LAYER, 0, torch.zeros(1, 8, 8), tau=1.5)


def test_feature_histograms_counts_and_moments(G):
    layers = ["synthesis.b4.conv1", "synthesis.b16.conv0"]
    h = feature_histograms(G, n=6, batch_size=4, seed=7, layers=layers, bins=20, progress=False)
    rec = record_features(G, seeds_to_z(range(7, 13), G.z_dim), layers)
    for l in layers:
        x = rec.features[l]
        assert int(h.mean_counts[l].sum()) == int(h.std_counts[l].sum()) == 6 * x.shape[1]
        m, s = x.mean(dim=(2, 3)), x.std(dim=(2, 3), unbiased=False)
        assert abs(h.moments[l]["mean_of_means"] - m.mean().item()) < 1e-5
        assert abs(h.moments[l]["mean_of_stds"] - s.mean().item()) < 1e-5
        expected = torch.histogram(m.clamp(-3, 3 - 1e-6).flatten(), bins=20, range=(-3.0, 3.0)).hist
        assert h.mean_counts[l].tolist() == expected.long().tolist()
    assert h.mean_edges.shape == (21,) and h.pooled()[0].sum() == 6 * (32 + 32)

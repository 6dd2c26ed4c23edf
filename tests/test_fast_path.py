"""The fast path against the plain-PyTorch reference path.

On CPU: the treated forward has no host sync (traced with fullgraph=True), the compiled forward
(eager backend; inductor is @slow) matches the reference and keeps treatments apart, fp16/bf16
layer math and channels_last layouts match float32 within stated tolerances. On CUDA (skipped
here): fp16 + channels_last + compile + CUDA graphs against the float32 reference.
"""

from __future__ import annotations

import pytest
import torch

from fpbench.errors import ConfigError
from fpbench.generators import seeds_to_z, tiny
from fpbench.generators.fast import FastGenerator, FastOptions, no_host_sync_check, set_channels_last
from fpbench.stats import estimate_feature_stats
from fpbench.treatments import FeatureRescaling, LayerwiseRescaling, Truncation

# fp16 layer output vs float32, relative to the layer's output range (float16 has an 11-bit
# mantissa; one modulated conv + lrelu + clamp stays well inside 1e-2 of the range).
FP16_LAYER_RTOL = 1e-2
BF16_LAYER_RTOL = 3e-2   # bfloat16: 8-bit mantissa
COMPILE_ATOL = 1e-4      # inductor reorders float32 sums


@pytest.fixture(scope="module")
def setup():
    G = tiny()
    stats = estimate_feature_stats(G, n=16, batch_size=16, progress=False, use_cache=False)
    z = seeds_to_z(list(range(4)), G.z_dim)
    return G, stats, z


@pytest.fixture(scope="module")
def small():
    """tiny() cut to 8x8 (blocks b4, b8): tracing cost grows with the layer count."""
    from fpbench.generators import StyleGAN2Generator
    from fpbench.generators.tiny import TINY_KWARGS

    torch.manual_seed(0)
    G = StyleGAN2Generator(**{**TINY_KWARGS, "img_resolution": 8}).eval()
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("bias") and not name.endswith("affine.bias"):
                p.copy_(0.5 * torch.randn(p.shape))
    stats = estimate_feature_stats(G, n=16, batch_size=16, progress=False, use_cache=False)
    return G, stats, seeds_to_z(list(range(4)), G.z_dim)


def _ref(G, z, treatment=None):
    with torch.no_grad():
        if treatment is None:
            return G(z)
        with treatment.applied(G):
            return G(z)


@pytest.mark.parametrize("make", [
    lambda s: FeatureRescaling(s, t=0.5),
    pytest.param(lambda s: FeatureRescaling(s, t=0.5, risk_rule="official", c=0.0), marks=pytest.mark.slow),
    lambda s: LayerwiseRescaling(s, t=0.5, t_prime=-1.0),
    pytest.param(lambda s: Truncation(psi=0.7), marks=pytest.mark.slow),
], ids=["rescale", "rescale-official", "layerwise", "truncation"])
def test_treated_forward_has_no_host_sync(small, make):
    G, stats, z = small
    tr = make(stats)
    ref = _ref(G, z, tr)
    assert (ref - _ref(G, z)).abs().max() > 1e-3   # the treatment changes something
    out = no_host_sync_check(G, z, treatment=tr)
    torch.testing.assert_close(out, ref, rtol=0, atol=0)


def test_host_sync_check_catches_item(small):
    G, _, z = small

    class Syncing(Truncation):
        def _prepare(self, G):
            def hook(module, inputs, ws):
                if ws.abs().max().item() > 0:    # a host read of a device value
                    return ws * 0.5
                return ws
            return [("mapping", hook)]

    with pytest.raises(Exception, match="(?i)graph break|item|unsupported|data-dependent"):
        no_host_sync_check(G, z, treatment=Syncing())


def test_compiled_forward_keeps_treatments_apart(small):
    G, stats, z = small
    tr = FeatureRescaling(stats, t=0.5)
    torch._dynamo.reset()
    fast = FastGenerator(G, FastOptions(compile=True, backend="eager"))
    plain, treated = _ref(G, z), _ref(G, z, tr)
    torch.testing.assert_close(fast(z), plain, rtol=0, atol=0)
    torch.testing.assert_close(fast(z, treatment=tr), treated, rtol=0, atol=0)
    torch.testing.assert_close(fast(z), plain, rtol=0, atol=0)   # hooks gone: the plain graph again
    torch._dynamo.reset()


@pytest.mark.slow
def test_inductor_compile_matches_reference(setup):
    G, stats, z = setup
    tr = FeatureRescaling(stats, t=1.0)
    torch._dynamo.reset()
    fast = FastGenerator(G, FastOptions(compile=True))
    torch.testing.assert_close(fast(z), _ref(G, z), rtol=0, atol=COMPILE_ATOL)
    torch.testing.assert_close(fast(z, treatment=tr), _ref(G, z, tr), rtol=0, atol=COMPILE_ATOL)
    torch._dynamo.reset()


@pytest.mark.parametrize("dtype,rtol", [(torch.float16, FP16_LAYER_RTOL), (torch.bfloat16, BF16_LAYER_RTOL)])
@pytest.mark.parametrize("layer", ["b8.conv0", "b16.conv1", "b32.torgb"])
def test_half_precision_layer_matches_float32(setup, dtype, rtol, layer):
    """What an fp16 block does on CUDA, one layer at a time on the CPU: float32 weights and styles,
    half activations, conv_clamp applied in half."""
    G, _, _ = setup
    L = G.synthesis.get_submodule(layer)
    g = torch.Generator().manual_seed(0)
    res = L.resolution // 2 if getattr(L, "up", 1) == 2 else getattr(L, "resolution", 32)
    x = torch.randn([4, L.in_channels, res, res], generator=g)
    w = torch.randn([4, G.w_dim], generator=g)
    with torch.no_grad():
        ref = L(x, w)
        out = L(x.to(dtype), w)
    assert out.dtype == dtype
    scale = ref.abs().max()
    assert (out.float() - ref).abs().max() <= rtol * scale


def test_fp16_clamp_bounds_output():
    from fpbench.generators.ops.bias_act import bias_act

    x = torch.linspace(-600, 600, 1001).reshape(1, 1, 1, -1)
    ref = bias_act(x, act="lrelu", clamp=256)
    out = bias_act(x.half(), act="lrelu", clamp=256)
    assert out.abs().max() <= 256
    torch.testing.assert_close(out.float(), ref, rtol=1e-3, atol=1e-2)


def test_channels_last_layout_gives_same_result(setup):
    G, _, _ = setup
    L = G.synthesis.b16.conv0
    g = torch.Generator().manual_seed(1)
    x = torch.randn([4, L.in_channels, 8, 8], generator=g)
    w = torch.randn([4, G.w_dim], generator=g)
    with torch.no_grad():
        ref = L(x, w)
        out = L(x.to(memory_format=torch.channels_last), w)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_set_channels_last_touches_fp16_blocks_only():
    from fpbench.generators import StyleGAN2Generator
    from fpbench.generators.tiny import TINY_KWARGS

    G = StyleGAN2Generator(**{**TINY_KWARGS, "num_fp16_res": 2})
    assert set_channels_last(G) == 2
    assert G.synthesis.b32.channels_last and G.synthesis.b16.channels_last and not G.synthesis.b8.channels_last
    assert set_channels_last(G, False) == 2 and not G.synthesis.b32.channels_last
    assert set_channels_last(tiny()) == 0


def test_cuda_graphs_need_cuda(setup):
    G, _, _ = setup
    with pytest.raises(ConfigError, match="cuda_graphs=True needs the generator on a CUDA device"):
        FastGenerator(G, FastOptions(cuda_graphs=True))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA fast path")
@pytest.mark.parametrize("opts", [FastOptions(), FastOptions(cuda_graphs=True),
                                  FastOptions(compile=True, cuda_graphs=True)], ids=["fp16", "graphs", "compiled"])
def test_cuda_fast_path_matches_fp32_reference(opts):
    from fpbench.generators import StyleGAN2Generator
    from fpbench.generators.tiny import TINY_KWARGS

    torch.manual_seed(0)
    G = StyleGAN2Generator(**{**TINY_KWARGS, "num_fp16_res": 2}).eval().cuda()
    stats = estimate_feature_stats(G, n=16, batch_size=16, progress=False, use_cache=False)
    tr = FeatureRescaling(stats, t=1.0)
    z = seeds_to_z(list(range(8)), G.z_dim, device="cuda")
    with torch.no_grad():
        ref = G(z, force_fp32=True)
        with tr.applied(G):
            ref_t = G(z, force_fp32=True)
    fast = FastGenerator(G, opts)
    for _ in range(2):   # capture, then replay
        assert (fast(z) - ref).abs().max() < 0.05
        assert (fast(z, treatment=tr) - ref_t).abs().max() < 0.05


@pytest.mark.parametrize("n", [50, 300])   # rank-deficient (n < d) and full-rank covariances
def test_fid_eigh_matches_torch_fidelity(n):
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

    from fpbench.metrics.distribution import frechet_distance_eigh

    g = torch.Generator().manual_seed(n)
    a = torch.randn(n, 128, generator=g)
    b = torch.randn(n, 128, generator=g) * 1.2 + 0.1
    ref = fid_statistics_to_metric(fid_features_to_statistics(a), fid_features_to_statistics(b),
                                   verbose=False)["frechet_inception_distance"]
    assert frechet_distance_eigh(a, b) == pytest.approx(ref, rel=1e-7)


def test_fid_metric_sqrtm_option():
    from fpbench import metrics as M

    g = torch.Generator().manual_seed(0)
    real, fake = torch.randn(100, 64, generator=g), torch.randn(100, 64, generator=g) + 0.05
    values = {}
    for sqrtm in ("torch-fidelity", "eigh"):
        m = M.create("fid", pretrained=False, layer="64", sqrtm=sqrtm)   # 64-d features: fast
        m.set_real_features(real)
        m._fake = [fake]
        values[sqrtm] = m.compute()["fid"]
    assert values["eigh"] == pytest.approx(values["torch-fidelity"], rel=1e-7)
    with pytest.raises(ConfigError, match="fid sqrtm='svd' is unknown"):
        M.create("fid", pretrained=False, sqrtm="svd")

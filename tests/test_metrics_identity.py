"""ArcFace identity: known answer, insightface parity, crops, batch independence, weights errors.

The network is a tiny random-weight ONNX model with the buffalo_l signature (written by the metric
itself for pretrained=False), run through insightface's model loader and onnxruntime session.
"""

import numpy as np
import pytest
import torch

import fpbench.metrics as M
from fpbench.errors import ConfigError, MissingFileError
from fpbench.metrics.identity import tiny_arcface_onnx


def _images(n, size=112, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g) * 2 - 1


@pytest.fixture(scope="module")
def metric():
    return M.create("id", pretrained=False, crop="whole")


def test_interface(metric):
    assert metric.name == "id" and metric.kind == "pairwise" and metric.uncalibrated is True
    assert metric.model.input_size == (112, 112) and metric.mean == 127.5 and metric.std == 127.5


def test_identical_is_one_and_different_is_less(metric):
    metric.reset()
    x = _images(3)
    metric.update(x, x)
    assert metric.compute()["id"] == pytest.approx(1.0, abs=1e-6)
    metric.update(x, x.flip(-1))
    assert metric.values()[3:].max() < 0.999


def test_matches_insightface_get_feat(metric):
    x = _images(3, seed=1)
    bgr = (x * 127.5 + 128).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()[..., ::-1]
    ref = metric.model.get_feat([np.ascontiguousarray(im) for im in bgr])
    assert np.allclose(metric.embed(x).numpy(), ref, rtol=1e-5, atol=1e-5)


def test_crops_and_resize():
    x = _images(2, size=256, seed=2)
    whole = M.create("id", pretrained=False, crop="whole")
    ffhq = M.create("id", pretrained=False)
    a = whole.preprocess(x)
    b = ffhq.preprocess(x)
    assert a.shape == b.shape == (2, 3, 112, 112) and not np.allclose(a, b)
    # the ffhq box of a 256 image is rows 35..223, cols 32..220
    box = M.create("id", pretrained=False, crop=(35 / 256, 32 / 256, 223 / 256, 220 / 256))
    assert np.array_equal(box.preprocess(x), b)
    with pytest.raises(ConfigError, match="crop 'face' is unknown"):
        M.create("id", pretrained=False, crop="face")
    with pytest.raises(ConfigError, match="fractions"):
        M.create("id", pretrained=False, crop=(0.5, 0, 0.2, 1))


def test_batch_size_independence_and_resume(metric):
    x, y = _images(8, seed=3), _images(8, seed=4)
    out = []
    for b in (1, 3, 8):
        metric.reset()
        for i in range(0, 8, b):
            metric.update(x[i:i + b], y[i:i + b])
        out.append(metric.compute()["id"])
    assert out[0] == pytest.approx(out[1], rel=1e-6) and out[0] == pytest.approx(out[2], rel=1e-6)
    metric.reset()
    metric.update(x[:5], y[:5])
    state = metric.state_dict()
    metric.reset()
    metric.load_state_dict(state)
    metric.update(x[5:], y[5:])
    assert metric.compute()["id"] == pytest.approx(out[2], rel=1e-12)


def test_explicit_weights_path_is_calibrated(tmp_path):
    path = tiny_arcface_onnx(seed=3, dest=tmp_path / "w600k_r50.onnx")
    m = M.create("id", weights=str(path))
    assert m.uncalibrated is False and m.weights_path == path


def test_insightface_cache_dir_is_used(tmp_path):
    tiny_arcface_onnx(seed=4, dest=tmp_path / "models" / "buffalo_l" / "w600k_r50.onnx")
    m = M.create("id", insightface_root=str(tmp_path))
    assert m.weights_path == tmp_path / "models" / "buffalo_l" / "w600k_r50.onnx"


def test_missing_weights(tmp_path):
    with pytest.raises(MissingFileError, match="does not exist"):
        M.create("id", weights=str(tmp_path / "nope.onnx"))
    with pytest.raises(MissingFileError, match=r"w600k_r50.onnx .*buffalo_l.zip.*models/buffalo_l/w600k_r50.onnx"):
        M.create("id", insightface_root=str(tmp_path))


def test_not_a_recognition_model(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx file")
    with pytest.raises(ConfigError, match="cannot load ArcFace model"):
        M.create("id", weights=str(bad))


def test_bad_inputs(metric):
    x = _images(2)
    with pytest.raises(ConfigError, match="differ in shape"):
        metric.update(x, x[:1])
    with pytest.raises(ConfigError, match="expected \\[-1, 1\\]"):
        metric.update((x + 1) * 127.5, x)

"""The ONNX graph runner in torch against onnxruntime on the same graphs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fpbench.errors import ConfigError
from fpbench.metrics.onnx_torch import OnnxModule


def _ort(model_bytes: bytes, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def _resnet_like_bytes() -> bytes:
    """Conv (asymmetric pads) -> BN -> PRelu -> residual Add -> Sub/Mul -> Flatten -> Gemm -> BN."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.RandomState(0)
    f = lambda *s: rng.randn(*s).astype(np.float32)  # noqa: E731
    inits = [numpy_helper.from_array(v, k) for k, v in {
        "w": f(8, 3, 3, 3) * 0.3, "b": f(8), "s": f(8) * 0.1 + 1, "bb": f(8) * 0.1, "m": f(8) * 0.1,
        "v": np.abs(f(8)) + 0.5, "slope": f(8, 1, 1) * 0.1 + 0.25, "w2": f(8, 8, 3, 3) * 0.2,
        "half": np.array(0.5, np.float32), "fc": f(16, 8 * 4 * 4) * 0.05, "fcb": f(16),
        "s1": f(16) * 0.1 + 1, "b1": f(16) * 0.1, "m1": f(16) * 0.1, "v1": np.abs(f(16)) + 0.5}.items()]
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c0"], kernel_shape=[3, 3], strides=[2, 2], pads=[0, 0, 1, 1]),
        helper.make_node("BatchNormalization", ["c0", "s", "bb", "m", "v"], ["n0"], epsilon=1e-5),
        helper.make_node("PRelu", ["n0", "slope"], ["p0"]),
        helper.make_node("Conv", ["p0", "w2"], ["c1"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["c1", "p0"], ["r0"]),
        helper.make_node("Sub", ["r0", "half"], ["r1"]),
        helper.make_node("Mul", ["r1", "half"], ["r2"]),
        helper.make_node("Flatten", ["r2"], ["fl"], axis=1),
        helper.make_node("Gemm", ["fl", "fc", "fcb"], ["g"], transB=1),
        helper.make_node("BatchNormalization", ["g", "s1", "b1", "m1", "v1"], ["out"], epsilon=1e-5),
    ]
    graph = helper.make_graph(nodes, "resnet_like", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 16])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


@pytest.mark.parametrize("which", ["tiny_arcface", "resnet_like"])
def test_matches_onnxruntime(which):
    import onnx

    from fpbench.metrics.identity import tiny_arcface_bytes

    data = tiny_arcface_bytes(0) if which == "tiny_arcface" else _resnet_like_bytes()
    size = 112 if which == "tiny_arcface" else 8
    x = np.random.RandomState(1).randn(3, 3, size, size).astype(np.float32)
    net = OnnxModule(onnx.load_from_string(data))
    with torch.no_grad():
        out = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(out, _ort(data, x), rtol=1e-4, atol=1e-4)


def test_unknown_operator_is_refused_by_name():
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("Softmax", ["x"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    with pytest.raises(ConfigError, match=r"operators \['Softmax'\]"):
        OnnxModule(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]))
    del onnx


def test_identity_torch_runtime_matches_onnxruntime():
    from fpbench import metrics as M

    g = torch.Generator().manual_seed(0)
    a = torch.rand(4, 3, 64, 64, generator=g) * 2 - 1
    b = (a + 0.2 * torch.randn(4, 3, 64, 64, generator=g)).clamp(-1, 1)
    ref = M.create("id", pretrained=False)
    fast = M.create("id", pretrained=False, runtime="torch")
    torch.testing.assert_close(fast.embed(a), ref.embed(a), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(fast.scores(a, b), ref.scores(a, b), rtol=1e-5, atol=1e-5)
    with pytest.raises(ConfigError, match="id runtime 'trt' is unknown"):
        M.create("id", pretrained=False, runtime="trt")

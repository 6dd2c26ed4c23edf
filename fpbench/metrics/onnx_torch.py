"""Run a small ONNX inference graph (ArcFace-style CNNs) as a torch module, on any device and dtype.

insightface ships its recognition networks as ONNX; onnxruntime runs them on the CPU unless its
CUDA build is installed, which would force every face crop through host memory. Here the graph's
initializers become buffers and its nodes are replayed with torch ops, so embeddings are computed
where the images already are. Only the operators such networks use are supported (convolution,
batch norm, (P)ReLU, elementwise arithmetic, flatten/reshape, Gemm/MatMul and shape plumbing);
anything else is refused by name when the graph is loaded.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ConfigError

__all__ = ["OnnxModule", "SUPPORTED_OPS"]


def _attrs(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _conv(a, x, w, b=None):
    pads = list(a.get("pads", [0, 0, 0, 0]))
    stride, dil, groups = a.get("strides", [1, 1]), a.get("dilations", [1, 1]), a.get("group", 1)
    if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise ConfigError("ONNX Conv auto_pad is not supported; export with explicit pads")
    if pads[0] == pads[2] and pads[1] == pads[3]:
        return F.conv2d(x, w, b, stride, (pads[0], pads[1]), dil, groups)
    x = F.pad(x, [pads[1], pads[3], pads[0], pads[2]])   # ONNX: [top, left, bottom, right]
    return F.conv2d(x, w, b, stride, 0, dil, groups)


def _gemm(a, x, w, c=None):
    x = x.t() if a.get("transA", 0) else x
    w = w.t() if a.get("transB", 0) else w
    y = a.get("alpha", 1.0) * (x @ w)
    return y if c is None else y + a.get("beta", 1.0) * c


def _reshape(a, x, shape):
    dims = [int(v) for v in shape.tolist()]
    dims = [x.shape[i] if d == 0 and not a.get("allowzero", 0) else d for i, d in enumerate(dims)]
    return x.reshape(dims)


def _unsqueeze(a, x, axes=None):
    axes = [int(v) for v in (axes.tolist() if axes is not None else a["axes"])]
    for ax in sorted(axes):
        x = x.unsqueeze(ax)
    return x


SUPPORTED_OPS = {
    "Conv": _conv,
    "BatchNormalization": lambda a, x, s, b, m, v: F.batch_norm(x, m, v, s, b, False, 0.0, a.get("epsilon", 1e-5)),
    "Relu": lambda a, x: F.relu(x),
    "PRelu": lambda a, x, slope: torch.where(x >= 0, x, x * slope),
    "LeakyRelu": lambda a, x: F.leaky_relu(x, a.get("alpha", 0.01)),
    "Sigmoid": lambda a, x: torch.sigmoid(x),
    "Add": lambda a, x, y: x + y,
    "Sub": lambda a, x, y: x - y,
    "Mul": lambda a, x, y: x * y,
    "Div": lambda a, x, y: x / y,
    "Flatten": lambda a, x: x.flatten(a.get("axis", 1)) if a.get("axis", 1) > 0 else x.reshape(1, -1),
    "Gemm": _gemm,
    "MatMul": lambda a, x, y: x @ y,
    "Reshape": _reshape,
    "Identity": lambda a, x: x,
    "Dropout": lambda a, x, *rest: x,
    "Shape": lambda a, x: torch.tensor(x.shape, dtype=torch.int64),
    "Gather": lambda a, x, i: torch.index_select(x, a.get("axis", 0), i.reshape(-1).long()).reshape(
        x.shape[:a.get("axis", 0)] + i.shape + x.shape[a.get("axis", 0) + 1:]),
    "Unsqueeze": _unsqueeze,
    "Concat": lambda a, *xs: torch.cat(xs, dim=a.get("axis", 0)),
    "GlobalAveragePool": lambda a, x: x.mean(dim=(2, 3), keepdim=True),
}


class OnnxModule(torch.nn.Module):
    """An ONNX graph (one input, first output) as a torch module; `.to(device, dtype)` moves it."""

    def __init__(self, model):
        super().__init__()
        from onnx import numpy_helper

        graph = model.graph
        unknown = sorted({n.op_type for n in graph.node} - set(SUPPORTED_OPS))
        if unknown:
            raise ConfigError(f"ONNX graph uses operators {unknown} that fpbench's torch runner lacks; "
                              f"use the onnxruntime backend for this model")
        self._names: dict[str, str] = {}
        for i, init in enumerate(graph.initializer):
            arr = numpy_helper.to_array(init)
            t = torch.from_numpy(np.array(arr, copy=True))
            key = f"w{i}"
            self.register_buffer(key, t)
            self._names[init.name] = key
        self._consts: dict[str, torch.Tensor] = {}
        self.nodes = []
        for node in graph.node:
            a = _attrs(node)
            if node.op_type == "Constant":
                self._consts[node.output[0]] = torch.from_numpy(np.array(numpy_helper.to_array(a["value"]), copy=True))
                continue
            self.nodes.append((node.op_type, list(node.input), list(node.output), a))
        inits = {i.name for i in graph.initializer}
        self.input_name = next(i.name for i in graph.input if i.name not in inits)
        self.output_name = graph.output[0].name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        env: dict[str, torch.Tensor] = {self.input_name: x}
        for name, key in self._names.items():
            t = getattr(self, key)
            env[name] = t.to(x.dtype) if t.is_floating_point() else t
        for name, t in self._consts.items():
            env[name] = t.to(x.device, x.dtype) if t.is_floating_point() else t
        for op, inputs, outputs, a in self.nodes:
            args = [env[i] if i else None for i in inputs]
            while args and args[-1] is None:
                args.pop()
            env[outputs[0]] = SUPPORTED_OPS[op](a, *args)
        return env[self.output_name]

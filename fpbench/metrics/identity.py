"""Identity preservation: cosine similarity of ArcFace embeddings of treated vs. original images.

The recognition network is an insightface ONNX model (`w600k_r50.onnx` of `buffalo_l`) loaded with
`insightface.model_zoo.get_model` and run through its onnxruntime session. Preprocessing follows
insightface's `get_feat` (BGR uint8 images in, swapped to RGB, (x - 127.5) / 127.5 at 112x112) but
is done batched in torch: the image is quantised to uint8 values, cropped, resized with antialiasing
to the network's input size and rounded, then normalised with the model's own mean/std.

Crops: "ffhq" (default) takes the box rows 35..223, cols 32..220 of a 256x256 FFHQ-aligned image
(scaled to the actual size), the usual face crop for ArcFace on FFHQ-aligned images; "whole" feeds
the whole image; a tuple (top, left, bottom, right) of fractions gives any other box.

`pretrained=False` writes (once, into the cache) a tiny random-weight ONNX network with the same
input/output signature and runs the identical code path; results are uncalibrated.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..cache import atomic_write_bytes, cache_dir
from ..errors import ConfigError
from . import weights as W
from .base import PairwiseMetric, check_weights_choice, to_uint8

FFHQ_CROP = (35 / 256, 32 / 256, 223 / 256, 220 / 256)
_CROPS = {"ffhq": FFHQ_CROP, "whole": (0.0, 0.0, 1.0, 1.0)}


class Identity(PairwiseMetric):
    name = "id"

    def __init__(self, *, device="cpu", pretrained: bool = True, weights=None, crop="ffhq",
                 insightface_root=None, providers=None, seed: int = 0, max_batch: int = 64,
                 runtime: str = "onnxruntime"):
        check_weights_choice(pretrained, weights=weights)
        if runtime not in ("onnxruntime", "torch"):
            raise ConfigError(f"id runtime {runtime!r} is unknown; use 'onnxruntime' or 'torch'")
        super().__init__(device=device, uncalibrated=not pretrained)
        self.runtime = runtime
        self.box = _crop_box(crop)
        self.max_batch = int(max_batch)
        if pretrained:
            path = W.resolve(W.ARCFACE_R50, weights, local_dir=W.insightface_dir(insightface_root),
                             what="ArcFace weights")
        else:
            path = tiny_arcface_onnx(seed)
        self.weights_path = path
        self.model = _load(path, providers)
        self.input_w, self.input_h = (int(v) for v in self.model.input_size)
        self.mean, self.std = float(self.model.input_mean), float(self.model.input_std)
        self.net = None
        if runtime == "torch":   # the same graph replayed with torch ops where the images are (no host copy)
            import onnx

            from .onnx_torch import OnnxModule

            self.net = OnnxModule(onnx.load(str(path))).to(self.device).eval()

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """ArcFace embeddings [N, D] (float32, CPU) of float [-1, 1] RGB images."""
        out = []
        for chunk in images.split(self.max_batch):
            if self.net is not None:
                with torch.no_grad():
                    feats = self.net(self.prepare(chunk.to(self.device)))
                out.append(feats.to("cpu", torch.float32).reshape(len(chunk), -1))
                continue
            blob = self.preprocess(chunk)
            feats = self.model.session.run(self.model.output_names, {self.model.input_name: blob})[0]
            out.append(torch.from_numpy(np.asarray(feats, dtype=np.float32)).reshape(len(chunk), -1))
        return torch.cat(out)

    def preprocess(self, images: torch.Tensor) -> np.ndarray:
        """float [-1, 1] RGB NCHW -> the network's float32 NCHW input (RGB, normalised), as NumPy."""
        return self.prepare(images).cpu().numpy()

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """`preprocess` on the images' device, as a contiguous float32 tensor."""
        x = to_uint8(images).to(torch.float32)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        h, w = x.shape[-2:]
        top, left, bottom, right = (round(f * n) for f, n in zip(self.box, (h, w, h, w)))
        x = x[..., top:bottom, left:right]
        if tuple(x.shape[-2:]) != (self.input_h, self.input_w):
            x = F.interpolate(x, size=(self.input_h, self.input_w), mode="bilinear", align_corners=False,
                              antialias=True).round().clamp(0, 255)
        return ((x - self.mean) / self.std).contiguous()

    def scores(self, treated, original):
        a, b = self.embed(treated).double(), self.embed(original).double()
        return F.cosine_similarity(a, b, dim=1, eps=1e-12).clamp(-1, 1)


def _crop_box(crop) -> tuple[float, float, float, float]:
    if isinstance(crop, str):
        if crop not in _CROPS:
            raise ConfigError(f"id crop {crop!r} is unknown; use 'ffhq', 'whole' or (top, left, bottom, right)")
        return _CROPS[crop]
    box = tuple(float(v) for v in crop)
    if len(box) != 4 or not (0 <= box[0] < box[2] <= 1 and 0 <= box[1] < box[3] <= 1):
        raise ConfigError(f"id crop {crop!r} must be (top, left, bottom, right) fractions with top<bottom, left<right")
    return box


def _load(path, providers):
    import contextlib
    import io

    from insightface.model_zoo import get_model
    from insightface.model_zoo.arcface_onnx import ArcFaceONNX

    try:
        with contextlib.redirect_stdout(io.StringIO()):
            model = get_model(str(path), providers=list(providers or ["CPUExecutionProvider"]))
    except Exception as err:   # onnxruntime raises its own types for corrupt files
        raise ConfigError(f"cannot load ArcFace model {path}: {str(err).splitlines()[0][:200]}; "
                          f"pass an insightface recognition .onnx (e.g. buffalo_l/w600k_r50.onnx)") from None
    if not isinstance(model, ArcFaceONNX):
        raise ConfigError(f"{path} is not an insightface recognition model (got {type(model).__name__}); "
                          f"pass e.g. buffalo_l/w600k_r50.onnx")
    return model


def tiny_arcface_onnx(seed: int = 0, dest=None):
    """Write (once) a small random ArcFace-like ONNX model: 'input.1' [N,3,112,112] -> [N,512]."""
    dest = dest or cache_dir() / "weights" / "random" / f"arcface-tiny-seed{seed}.onnx"
    if not dest.exists():
        atomic_write_bytes(dest, tiny_arcface_bytes(seed))
    return dest


def tiny_arcface_bytes(seed: int = 0, embedding: int = 512) -> bytes:
    """Four stride-2 conv+ReLU layers, flatten, linear; He-initialised from `seed`. Built directly with
    onnx.helper so it needs no exporter."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.RandomState(seed)
    chans = [3, 16, 32, 64, 64]
    nodes, inits, prev = [], [], "input.1"
    for i, (cin, cout) in enumerate(zip(chans[:-1], chans[1:])):
        w = (rng.randn(cout, cin, 3, 3) * np.sqrt(2.0 / (cin * 9))).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"conv{i}.weight"),
                  numpy_helper.from_array(np.zeros(cout, np.float32), f"conv{i}.bias")]
        nodes.append(helper.make_node("Conv", [prev, f"conv{i}.weight", f"conv{i}.bias"], [f"c{i}"], name=f"conv{i}",
                                      kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]))
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"r{i}"], name=f"relu{i}"))
        prev = f"r{i}"
    flat = chans[-1] * 7 * 7
    fc = (rng.randn(embedding, flat) / np.sqrt(flat)).astype(np.float32)
    inits += [numpy_helper.from_array(fc, "fc.weight"), numpy_helper.from_array(np.zeros(embedding, np.float32), "fc.bias")]
    nodes.append(helper.make_node("Flatten", [prev], ["flat"], name="flatten", axis=1))
    nodes.append(helper.make_node("Gemm", ["flat", "fc.weight", "fc.bias"], ["embedding"], name="fc", transB=1))
    graph = helper.make_graph(
        nodes, "arcface_tiny",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, ["None", 3, 112, 112])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["None", embedding])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="fpbench")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()

"""Feature extractors for the distribution metrics, and a bank that shares them.

We use torch-fidelity's own extractors (InceptionV3 "inception-v3-compat", VGG16) so the resize to
299 / 224 and the normalisation are exactly torch-fidelity's. They take uint8 images, so float
[-1, 1] batches are quantised first the way NVIDIA saves generator images.

An extractor is identified by `key` = name/layer/weights-identity/device; metrics created with the
same `FeatureBank` and the same key share one network, and a batch passed to several of them
(fid and kid, or pr and density_coverage) goes through that network once.
"""

from __future__ import annotations

import contextlib
import io
import math
import weakref
from pathlib import Path
from unittest import mock

import torch

from ..errors import ConfigError
from . import weights as W
from .base import check_images, check_weights_choice, to_uint8

# name -> (weights file, provided layers, feature dims, default layer)
EXTRACTORS = {
    "inception-v3-compat": (W.INCEPTION_V3, {"64": 64, "192": 192, "768": 768, "2048": 2048,
                                             "logits_unbiased": 1008, "logits": 1008}, "2048"),
    "vgg16": (W.VGG16, {"fc2": 4096, "fc2_relu": 4096}, "fc2_relu"),
}


class FeatureExtractor:
    """float [-1, 1] NCHW batch -> float32 features [N, dim] on the CPU, in chunks of `max_batch`."""

    def __init__(self, name: str, layer: str, *, device="cpu", pretrained: bool = True, weights=None,
                 seed: int = 0, max_batch: int = 64):
        if name not in EXTRACTORS:
            raise ConfigError(f"unknown feature extractor {name!r}; choose from {', '.join(EXTRACTORS)}")
        check_weights_choice(pretrained, weights=weights)
        spec, layers, _ = EXTRACTORS[name]
        if layer not in layers:
            raise ConfigError(f"extractor {name!r} has no layer {layer!r}; choose from {', '.join(layers)}")
        self.name, self.layer, self.dim = name, layer, layers[layer]
        self.device = torch.device(device)
        self.max_batch = int(max_batch)
        self.uncalibrated = not pretrained
        if pretrained:
            path = W.resolve(spec, weights, what=f"{name} weights")
            self.weights_id = _file_id(path)
        else:
            path = None
            self.weights_id = f"random-seed{seed}"
        self.key = f"{name}/{layer}/{self.weights_id}"
        self.net = _build(name, layer, path, seed).to(self.device)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        out = []
        for chunk in images.split(self.max_batch):
            x = to_uint8(chunk.to(self.device))
            if x.shape[1] == 1:
                x = x.expand(-1, 3, -1, -1)
            out.append(self.net(x)[0].to("cpu", torch.float32))
        return torch.cat(out)

    def __repr__(self) -> str:
        return f"FeatureExtractor({self.key!r}, device={str(self.device)!r})"


class FeatureBank:
    """Extractors built once per key; the features of the latest batch remembered per key."""

    def __init__(self):
        self._extractors: dict[tuple, FeatureExtractor] = {}
        self._last: dict[str, tuple] = {}

    def extractor(self, name: str, layer: str, *, device="cpu", pretrained: bool = True, weights=None,
                  seed: int = 0, max_batch: int = 64) -> FeatureExtractor:
        ident = (name, layer, str(torch.device(device)), bool(pretrained),
                 None if weights is None else str(Path(weights).expanduser().resolve()), seed if not pretrained else 0)
        if ident not in self._extractors:
            self._extractors[ident] = FeatureExtractor(name, layer, device=device, pretrained=pretrained,
                                                       weights=weights, seed=seed, max_batch=max_batch)
        return self._extractors[ident]

    def features(self, extractor: FeatureExtractor, images: torch.Tensor) -> torch.Tensor:
        """Features of `images`; the same (unmodified) tensor asked twice is computed once."""
        check_images(images)
        slot = (extractor.key, str(extractor.device))
        last = self._last.get(slot)
        if last is not None and last[0]() is images and last[1] == images._version:
            return last[2]
        feats = extractor(images)
        self._last[slot] = (weakref.ref(images), images._version, feats)
        return feats


def _file_id(path: Path) -> str:
    return f"sha256-{W.file_digest(path)[:16]}"


def _build(name: str, layer: str, path: Path | None, seed: int) -> torch.nn.Module:
    with contextlib.redirect_stdout(io.StringIO()):
        if name == "inception-v3-compat":
            return _inception(layer, path, seed)
        return _vgg16(layer, path, seed)


def _inception(layer: str, path: Path | None, seed: int) -> torch.nn.Module:
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    if path is not None:
        return FeatureExtractorInceptionV3(name="inception-v3-compat", features_list=[layer],
                                           feature_extractor_weights_path=str(path))

    class _Unloaded(FeatureExtractorInceptionV3):
        # torch-fidelity always loads a state dict in __init__; an empty one means "keep random init"
        def load_state_dict(self, state_dict, *args, **kwargs):
            if state_dict:
                return super().load_state_dict(state_dict, *args, **kwargs)
            return None

    empty = io.BytesIO()
    torch.save({}, empty)
    empty.seek(0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = _Unloaded(name="inception-v3-compat", features_list=[layer], feature_extractor_weights_path=empty)
        _scale_preserving_init(net)
    return net


def _vgg16(layer: str, path: Path | None, seed: int) -> torch.nn.Module:
    import torchvision
    from torch_fidelity import feature_extractor_vgg16 as tf_vgg

    if path is not None:
        return tf_vgg.FeatureExtractorVGG16(name="vgg16", features_list=[layer],
                                            feature_extractor_weights_path=str(path))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        # the only way to stop torch-fidelity from downloading ImageNet weights is to replace its loader
        with mock.patch.object(tf_vgg, "torchvision_load_pretrained_vgg16",
                               lambda **kw: torchvision.models.vgg16(weights=None)):
            return tf_vgg.FeatureExtractorVGG16(name="vgg16", features_list=[layer])


def _scale_preserving_init(net: torch.nn.Module) -> None:
    """Random weights whose activations keep their scale through ~50 layers (He init, identity BN)."""
    for m in net.modules():
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
        elif isinstance(m, torch.nn.BatchNorm2d):
            m.reset_parameters()
        elif isinstance(m, torch.nn.Linear):
            torch.nn.init.normal_(m.weight, std=1 / math.sqrt(m.in_features))
            torch.nn.init.zeros_(m.bias)


def random_state_dict(name: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """The random weights `pretrained=False` uses, in the format the extractor's weights file has
    (for passing the same network to torch-fidelity by path)."""
    if name not in EXTRACTORS:
        raise ConfigError(f"unknown feature extractor {name!r}; choose from {', '.join(EXTRACTORS)}")
    net = _build(name, EXTRACTORS[name][2], None, seed)
    if name == "vgg16":
        import torchvision

        full = torchvision.models.vgg16(weights=None)
        full.load_state_dict(net.model.state_dict(), strict=False)   # classifier tail was dropped
        return full.state_dict()
    return net.state_dict()

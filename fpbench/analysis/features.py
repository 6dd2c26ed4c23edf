"""Run a generator once and keep the feature maps of some layers (optionally edited / treated)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import torch

from ..treatments.hooks import feature_layers, forward_hooks, resolve_layers

Edit = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class FeatureRecord:
    """``images [N, C, H, W]`` and ``features[layer] [N, C_l, H_l, W_l]`` (after edits and treatment)."""

    images: torch.Tensor
    features: dict[str, torch.Tensor]


def labels_for(G, n: int, c=None, device=None) -> torch.Tensor:
    if c is not None:
        return c
    return torch.zeros([n, int(getattr(G, "c_dim", 0) or 0)], device=device)


@torch.no_grad()
def record_features(G, z: torch.Tensor, layers: Sequence[str] | None = None, c=None, noise_mode: str = "const",
                    edits: Mapping[str, Edit] | None = None, treatment=None) -> FeatureRecord:
    """``G(z, c)`` with ``edits[layer](x)`` applied to those layers' outputs first, then ``treatment``
    (a `fpbench.treatments.Treatment`), and the resulting outputs of ``layers`` recorded.

    ``layers=None`` records every layer in ``G.feature_layers``.
    """
    layers = feature_layers(G) if layers is None else resolve_layers(G, layers)
    edits = dict(edits or {})
    if edits:
        resolve_layers(G, list(edits))
    store: dict[str, torch.Tensor] = {}

    def edit_hook(fn):
        return lambda module, inputs, output: fn(output)

    def keep(layer):
        def hook(module, inputs, output):
            store[layer] = output.detach()
        return hook

    # Hooks run in registration order: edits, then the treatment, then the recorders.
    with forward_hooks(G, [(l, edit_hook(fn)) for l, fn in edits.items()]), \
            (treatment.applied(G) if treatment is not None else contextlib.nullcontext()), \
            forward_hooks(G, [(l, keep(l)) for l in layers]):
        images = G(z, labels_for(G, z.shape[0], c, z.device), noise_mode=noise_mode)
    return FeatureRecord(images=images, features={l: store[l] for l in layers})

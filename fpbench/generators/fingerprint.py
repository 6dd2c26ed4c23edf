"""A content hash of a generator's weights, used to key caches (feature stats, features)."""

from __future__ import annotations

import hashlib

import torch


def weights_fingerprint(module: torch.nn.Module, length: int = 16) -> str:
    """Hex digest over every parameter and persistent buffer (name, dtype, shape, bytes).

    Independent of device; two generators with equal state dicts get equal fingerprints.
    """
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:length]

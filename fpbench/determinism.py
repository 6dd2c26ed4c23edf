"""Opt-in deterministic GPU execution (`deterministic=true`).

On the CPU fpbench is bit-reproducible as it is. On CUDA, cuDNN autotuning, TF32 matmuls and
atomics-based kernels make repeated runs differ slightly; these switches remove those sources at
some cost in speed. They are process-wide torch settings, so they are applied once per job.
"""

from __future__ import annotations

import os

import torch


def enable_deterministic() -> None:
    # cuBLAS needs a fixed workspace to be deterministic; it must be set before the first cuBLAS call.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    # warn_only: an op without a deterministic kernel warns (naming itself) rather than failing a long run.
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False

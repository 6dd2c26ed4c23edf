#!/usr/bin/env bash
# GPU check for the fast path (see benchmarks/gpu_check.py): < 8 minutes on one H200, no network.
#   bash benchmarks/gpu_check.sh                          full size (StyleGAN2 1024, StyleGAN3-R 512, 2,000 images)
#   FPBENCH_GPU_CHECK_TINY=1 bash benchmarks/gpu_check.sh dry-run of the same logic at toy size (CPU is fine)
# Knobs: GPU_CHECK_COMPILE=0 skips torch.compile; GPU_CHECK_N sets the end-to-end images; $OUT receives
# gpu_check.md/.json (else results/bench/). Exit status 0 only if every section passed its checks.
set -euo pipefail
cd "$(dirname "$0")/.."
export FPBENCH_OFFLINE=1 WANDB_MODE=disabled PYTHONUNBUFFERED=1
export FPBENCH_CACHE="${FPBENCH_CACHE:-$(mktemp -d)}"   # random-weight networks only: nothing to download
if [ -n "${FPBENCH_GPU_CHECK_TINY:-}" ] && [ "${FPBENCH_GPU_CHECK_TINY}" != 0 ]; then
  export GPU_CHECK_DEVICE="${GPU_CHECK_DEVICE:-cpu}" OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
  export GPU_CHECK_TIMEOUT="${GPU_CHECK_TIMEOUT:-1800}"   # a shared CPU is slow; the 470 s budget is for the GPU
fi
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm --format=csv || true
exec timeout "${GPU_CHECK_TIMEOUT:-470}" python3 benchmarks/gpu_check.py

"""A fast path around an fpbench generator: fp16 blocks, channels_last, torch.compile, CUDA graphs.

    fast = FastGenerator(G, FastOptions(compile=True, cuda_graphs=True))
    img = fast(z)                               # plain
    img = fast(z, treatment=FeatureRescaling(stats))   # treated; hooks baked into its own graph

Every option computes the same function as the plain-PyTorch reference path `G(z)`:
- fp16: the blocks NVIDIA marks `use_fp16` run in float16 with their `conv_clamp` (already what
  the generators do on CUDA; `fp16=False` passes `force_fp32=True`). Tolerance vs. float32 on
  random config-F weights: see `benchmarks/gpu_check.sh` (|diff| of images, [-1, 1] range).
- channels_last: the fp16 blocks of a StyleGAN2 keep activations in channels_last (NHWC), which
  cuDNN's tensor-core convolutions prefer. Layout only: results equal to float rounding.
- compile: `torch.compile` of the whole forward (mapping, synthesis and any treatment hooks);
  inductor fuses bias + activation + gain + clamp, the noise add, demodulation and the treatment's
  per-channel math into a few kernels. Module hooks are guarded (dynamo's
  `skip_nnmodule_hook_guards=False`), so entering or leaving a treatment recompiles instead of
  silently reusing the other graph.
- cuda_graphs: one CUDA graph per (batch size, labels, noise mode, treatment), captured after a
  warm-up and replayed with the new z copied into its static input; no Python or launch overhead
  per layer. Needs a forward without host syncs, which the generators and treatments guarantee
  (tested by compiling the treated forward with `fullgraph=True`).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from ..errors import ConfigError

__all__ = ["FastOptions", "FastGenerator", "set_channels_last", "no_host_sync_check"]


@dataclass(frozen=True)
class FastOptions:
    fp16: bool = True                  # NVIDIA's use_fp16 blocks in float16 (CUDA only, as the reference)
    channels_last: bool = True         # fp16 blocks in NHWC (StyleGAN2)
    compile: bool = False              # torch.compile the forward
    compile_mode: str | None = None    # torch.compile mode, e.g. "max-autotune-no-cudagraphs"
    backend: str = "inductor"          # torch.compile backend ("eager" traces only: tests)
    cuda_graphs: bool = False          # capture and replay CUDA graphs (CUDA only)


def set_channels_last(G, enabled: bool = True) -> int:
    """Put the fp16 blocks of a StyleGAN2 `G` in channels_last (or back); returns how many blocks.

    Only the activation layout changes (the block converts its input with `memory_format`), so the
    result equals the reference up to float rounding. StyleGAN3 layers have no layout switch.
    """
    count = 0
    synthesis = getattr(G, "synthesis", None)
    for res in getattr(synthesis, "block_resolutions", []):
        block = getattr(synthesis, f"b{res}")
        if block.use_fp16:
            block.channels_last = bool(enabled)
            count += 1
    return count


def _device_of(G) -> torch.device:
    for t in G.parameters():
        return t.device
    return torch.device("cpu")


class FastGenerator:
    """Callable like `G` (`fast(z, c)`), with the options of `FastOptions`.

    The treatment is an argument rather than an outer `applied(G)` block so that each compiled
    graph or CUDA graph belongs to one treatment. Gradients are never recorded.
    """

    def __init__(self, G, options: FastOptions | None = None):
        self.G = G.eval()
        self.options = options or FastOptions()
        self.device = _device_of(G)
        if self.options.cuda_graphs and self.device.type != "cuda":
            raise ConfigError(f"cuda_graphs=True needs the generator on a CUDA device, not {self.device}; "
                              f"set cuda_graphs=False")
        if self.options.channels_last:
            set_channels_last(G, True)
        self._forward = self._plain_forward
        if self.options.compile:
            self._forward = torch.compile(self._plain_forward, mode=self.options.compile_mode,
                                          backend=self.options.backend, dynamic=False)
        self._graphs: dict = {}

    def _plain_forward(self, z, c, noise_mode: str, truncation_psi: float):
        return self.G(z, c, truncation_psi=truncation_psi, noise_mode=noise_mode,
                      force_fp32=not self.options.fp16)

    def _call(self, z, c, noise_mode, truncation_psi):
        if not self.options.compile:
            return self._forward(z, c, noise_mode, truncation_psi)
        # Guard on module hooks: a treatment's hooks must select (or build) their own graph.
        with torch._dynamo.config.patch(skip_nnmodule_hook_guards=False):
            return self._forward(z, c, noise_mode, truncation_psi)

    @torch.no_grad()
    def __call__(self, z: torch.Tensor, c: torch.Tensor | None = None, treatment=None, noise_mode: str = "const",
                 truncation_psi: float = 1) -> torch.Tensor:
        if noise_mode == "random" and self.options.cuda_graphs:
            raise ConfigError("noise_mode='random' cannot be replayed from a CUDA graph (same noise each time); "
                              "use noise_mode='const' or cuda_graphs=False")
        if self.options.cuda_graphs:
            return self._replay(z, c, treatment, noise_mode, truncation_psi)
        ctx = treatment.applied(self.G) if treatment is not None else contextlib.nullcontext()
        with ctx:
            return self._call(z, c, noise_mode, truncation_psi)

    def _replay(self, z, c, treatment, noise_mode, truncation_psi):
        key = (tuple(z.shape), z.dtype, None if c is None else tuple(c.shape), noise_mode, float(truncation_psi),
               id(treatment))
        entry = self._graphs.get(key)
        if entry is None:
            entry = self._capture(z, c, treatment, noise_mode, truncation_psi)
            self._graphs[key] = entry
        graph, static_z, static_c, static_out, _ = entry
        static_z.copy_(z)
        if c is not None:
            static_c.copy_(c)
        graph.replay()
        return static_out.clone()   # the next replay overwrites static_out

    def _capture(self, z, c, treatment, noise_mode, truncation_psi):
        static_z = z.clone()
        static_c = None if c is None else c.clone()
        ctx = treatment.applied(self.G) if treatment is not None else contextlib.nullcontext()
        with ctx:
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                for _ in range(3):   # warm-up: cuDNN autotuning and compilation happen outside capture
                    self._call(static_z, static_c, noise_mode, truncation_psi)
            torch.cuda.current_stream(self.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_out = self._call(static_z, static_c, noise_mode, truncation_psi)
        # keep the treatment alive: its id() is part of the key
        return graph, static_z, static_c, static_out, treatment


def no_host_sync_check(G, z: torch.Tensor, c: torch.Tensor | None = None, treatment=None,
                       noise_mode: str = "const") -> torch.Tensor:
    """Trace the (treated) forward with `fullgraph=True`: raises if anything in it reads a tensor
    value on the host (`.item()`, `bool(tensor)`, data-dependent Python branches, `.cpu()`), since
    each of those is a graph break. Runs the traced graph eagerly and returns its images.
    """
    torch._dynamo.reset()
    fn = torch.compile(lambda z, c: G(z, c, noise_mode=noise_mode), backend="eager", fullgraph=True)
    ctx = treatment.applied(G) if treatment is not None else contextlib.nullcontext()
    try:
        with torch.no_grad(), ctx, torch._dynamo.config.patch(skip_nnmodule_hook_guards=False):
            return fn(z, c)
    finally:
        torch._dynamo.reset()

"""A small random-init StyleGAN2 generator for demos, tests and CPU smoke runs."""

from __future__ import annotations

import torch

from .stylegan2 import StyleGAN2Generator

__all__ = ["tiny", "TINY_KWARGS"]

# Same shape as the `sg2_a` parity fixture: 32x32, channels 32/32/32/16, 8 ws, 2 mapping layers.
TINY_KWARGS = dict(z_dim=64, c_dim=0, w_dim=64, img_resolution=32, img_channels=3, mapping_kwargs={"num_layers": 2},
                   channel_base=512, channel_max=32, num_fp16_res=0, conv_clamp=256,
                   fused_modconv_default="inference_only")


@torch.no_grad()
def tiny(seed: int = 0, device: torch.device | str = "cpu") -> StyleGAN2Generator:
    """Deterministic (given `seed`) random StyleGAN2 in eval mode on `device`.

    Values that start at constants in a fresh network (biases, noise strengths, w_avg) are made
    random, so per-channel statistics and treatments have something to act on.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        G = StyleGAN2Generator(**TINY_KWARGS)
        g = torch.Generator().manual_seed(seed + 1)
        for name, p in G.named_parameters():
            if name.endswith("affine.bias"):
                p.add_(0.2 * torch.randn(p.shape, generator=g))  # stays near its init of 1
            elif name.endswith("bias"):
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
            elif name.endswith("noise_strength"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
        # w_avg as training would leave it: the mean w of many latents.
        z = torch.randn([1024, G.z_dim], generator=g)
        G.mapping.w_avg.copy_(G.mapping(z, None)[:, 0].mean(0))
    return G.eval().to(device)

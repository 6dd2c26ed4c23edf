"""StyleGAN2/3 generators written in plain PyTorch, safe checkpoint loading and the model zoo."""

from .fingerprint import weights_fingerprint
from .loading import load_generator
from .seeds import seeds_to_z
from .stylegan2 import StyleGAN2Generator
from .stylegan3 import StyleGAN3Generator
from .tiny import tiny
from .zoo import ZOO

__all__ = [
    "StyleGAN2Generator", "StyleGAN3Generator", "ZOO", "load_generator", "seeds_to_z", "tiny",
    "weights_fingerprint",
]

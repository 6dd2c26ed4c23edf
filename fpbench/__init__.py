"""fpbench: a benchmark suite for StyleGAN artifact treatments.

Reproduces and extends "Feature Proliferation -- the 'Cancer' in StyleGAN and its Treatments"
(Song et al., ICCV 2023).
"""

__version__ = "0.1.0"

"""Plain-PyTorch reference implementations of the StyleGAN ops (NVIDIA semantics)."""

from .bias_act import activation_funcs, bias_act
from .conv2d_resample import conv2d_resample
from .modulated_conv import modulated_conv2d
from .upfirdn2d import downsample2d, filter2d, setup_filter, upfirdn2d, upsample2d

__all__ = ["activation_funcs", "bias_act", "conv2d_resample", "downsample2d", "filter2d", "modulated_conv2d",
           "setup_filter", "upfirdn2d", "upsample2d"]

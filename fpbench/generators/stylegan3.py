"""StyleGAN3 generator (configs T and R) in plain PyTorch.

Module, parameter and buffer names follow NVIDIA's networks_stylegan3.py so their state dicts load
with `strict=True`. Config T: 3x3 convs, separable Kaiser filters. Config R: `conv_kernel=1,
use_radial_filters=True` (1x1 convs, jinc downsampling filters in the non-critical layers).

Every layer's cutoff, stopband, sampling rate, size and channel count comes from the geometric
schedule of the paper (Alias-Free GAN, Sec. 3 / App. F), computed in float64 exactly as the
reference does, so the layer names (`L{idx}_{size}_{channels}`) and filters agree with checkpoints.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import ConfigError
from .layers import FullyConnectedLayer, normalize_2nd_moment
from .ops.filtered_lrelu import filtered_lrelu
from .ops.lowpass import design_lowpass_filter

MAPPING_DEFAULTS = dict(num_layers=2, lr_multiplier=0.01, w_avg_beta=0.998, freeze_layers=0, freeze_embed=False)
NETWORK_DEFAULTS = dict(channel_base=32768, channel_max=512, num_layers=14, num_critical=2, first_cutoff=2,
                        first_stopband=2 ** 2.1, last_stopband_rel=2 ** 0.3, margin_size=10, output_scale=0.25,
                        num_fp16_res=4)
LAYER_DEFAULTS = dict(conv_kernel=3, filter_size=6, lrelu_upsampling=2, use_radial_filters=False, conv_clamp=256,
                      magnitude_ema_beta=0.999)
NOISE_MODES = ("const", "random", "none")


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, demodulate: bool = True,
                     padding: int = 0, input_gain: torch.Tensor | None = None) -> torch.Tensor:
    """StyleGAN3's modulated convolution: x [N,I,H,W], weight [O,I,k,k], styles [N,I] -> [N,O,H',W'].

    Weights and styles are pre-normalised (weight per output channel, styles over the whole batch)
    before demodulation; this keeps fp16 in range and, because demodulation cancels any common
    scale, only moves results within the 1e-8 epsilon.
    """
    n = x.shape[0]
    out_ch, in_ch, kh, kw = weight.shape
    if demodulate:
        weight = weight * weight.square().mean([1, 2, 3], keepdim=True).rsqrt()
        styles = styles * styles.square().mean().rsqrt()
    w = weight.unsqueeze(0) * styles[:, None, :, None, None]  # [N,O,I,k,k]
    if demodulate:
        w = w * (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()[:, :, None, None, None]
    if input_gain is not None:
        w = w * input_gain.expand(n, in_ch)[:, None, :, None, None]
    # One grouped convolution runs every sample with its own weights.
    x = x.reshape(1, n * in_ch, *x.shape[2:])
    x = torch.nn.functional.conv2d(x, w.reshape(n * out_ch, in_ch, kh, kw).to(x.dtype), padding=padding, groups=n)
    return x.reshape(n, out_ch, *x.shape[2:])


class MappingNetwork(torch.nn.Module):
    """z (+ embedded c) -> w, broadcast to num_ws, with truncation towards `w_avg`."""

    def __init__(self, z_dim, c_dim, w_dim, num_ws, num_layers=2, lr_multiplier=0.01, w_avg_beta=0.998,
                 freeze_layers=0, freeze_embed=False):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = z_dim, c_dim, w_dim, num_ws
        self.num_layers = num_layers
        self.w_avg_beta = w_avg_beta
        # freeze_* only matter for fine-tuning; accepted so NVIDIA kwargs construct unchanged.
        self.embed = FullyConnectedLayer(c_dim, w_dim) if c_dim > 0 else None
        features = [z_dim + (w_dim if c_dim > 0 else 0)] + [w_dim] * num_layers
        for idx in range(num_layers):
            setattr(self, f"fc{idx}", FullyConnectedLayer(features[idx], features[idx + 1], activation="lrelu",
                                                          lr_multiplier=lr_multiplier))
        self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(self, z, c=None, truncation_psi=1, truncation_cutoff=None, update_emas=False):
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must be [N, {self.z_dim}], got {tuple(z.shape)}")
        x = normalize_2nd_moment(z.to(torch.float32))
        if self.c_dim > 0:
            if c is None or c.ndim != 2 or c.shape != (z.shape[0], self.c_dim):
                got = None if c is None else tuple(c.shape)
                raise ValueError(f"c must be [{z.shape[0]}, {self.c_dim}] one-hot labels, got {got}")
            y = normalize_2nd_moment(self.embed(c.to(torch.float32)))
            x = torch.cat([x, y], dim=1)
        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)
        if update_emas:
            self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        x = x.unsqueeze(1).repeat([1, self.num_ws, 1])
        if truncation_psi != 1:
            cut = self.num_ws if truncation_cutoff is None else truncation_cutoff
            x = torch.cat([self.w_avg.lerp(x[:, :cut], truncation_psi), x[:, cut:]], dim=1)
        return x

    def extra_repr(self):
        return f"z_dim={self.z_dim}, c_dim={self.c_dim}, w_dim={self.w_dim}, num_ws={self.num_ws}"


class SynthesisInput(torch.nn.Module):
    """Fourier features: sinusoids of fixed random frequencies, rotated/translated per sample by an
    affine of w, then by the user `transform` (an inverse transform of the output image)."""

    def __init__(self, w_dim, channels, size, sampling_rate, bandwidth):
        super().__init__()
        self.w_dim, self.channels, self.size = w_dim, channels, int(size)
        self.sampling_rate, self.bandwidth = float(sampling_rate), float(bandwidth)

        # Frequencies uniform in the disc of radius `bandwidth`, random phases.
        freqs = torch.randn([channels, 2])
        radii = freqs.square().sum(dim=1, keepdim=True).sqrt()
        freqs = freqs / (radii * radii.square().exp().pow(0.25)) * bandwidth
        phases = torch.rand([channels]) - 0.5

        self.weight = torch.nn.Parameter(torch.randn([channels, channels]))
        # Starts at the identity transform: (cos, sin, tx, ty) = (1, 0, 0, 0) for every w.
        self.affine = FullyConnectedLayer(w_dim, 4, weight_init=0, bias_init=[1, 0, 0, 0])
        self.register_buffer("transform", torch.eye(3, 3))
        self.register_buffer("freqs", freqs)
        self.register_buffer("phases", phases)

    def forward(self, w):
        n = w.shape[0]
        t = self.affine(w)
        t = t / t[:, :2].norm(dim=1, keepdim=True)  # unit rotation (cos, sin), translation (tx, ty)
        cos, sin, tx, ty = t.unbind(dim=1)
        zero, one = torch.zeros_like(cos), torch.ones_like(cos)
        rot = torch.stack([cos, -sin, zero, sin, cos, zero, zero, zero, one], dim=1).reshape(n, 3, 3)
        shift = torch.stack([one, zero, -tx, zero, one, -ty, zero, zero, one], dim=1).reshape(n, 3, 3)
        transforms = rot @ shift @ self.transform.unsqueeze(0)

        freqs = self.freqs.unsqueeze(0)
        phases = self.phases.unsqueeze(0) + (freqs @ transforms[:, :2, 2:]).squeeze(2)
        freqs = freqs @ transforms[:, :2, :2]  # [N, C, 2]
        # A user transform can push frequencies beyond the band: fade them out towards Nyquist.
        amplitudes = (1 - (freqs.norm(dim=2) - self.bandwidth) / (self.sampling_rate / 2 - self.bandwidth)).clamp(0, 1)

        theta = torch.zeros(1, 2, 3, device=w.device, dtype=w.dtype)
        theta[0, 0, 0] = theta[0, 1, 1] = 0.5 * self.size / self.sampling_rate
        grid = torch.nn.functional.affine_grid(theta, [1, 1, self.size, self.size], align_corners=False)
        x = (grid.unsqueeze(3) @ freqs.permute(0, 2, 1)[:, None, None]).squeeze(3)  # [N, H, W, C]
        x = torch.sin((x + phases[:, None, None]) * (2 * math.pi)) * amplitudes[:, None, None]
        x = x @ (self.weight / math.sqrt(self.channels)).t()
        return x.permute(0, 3, 1, 2)

    def extra_repr(self):
        return (f"w_dim={self.w_dim}, channels={self.channels}, size={self.size}, "
                f"sampling_rate={self.sampling_rate:g}, bandwidth={self.bandwidth:g}")


class SynthesisLayer(torch.nn.Module):
    """Modulated conv followed by filtered lrelu (bias, upsample, lrelu, downsample).

    The last layer (ToRGB) is a 1x1 non-demodulated conv with linear activation and no filters.
    """

    def __init__(self, w_dim, is_torgb, is_critically_sampled, use_fp16, in_channels, out_channels,
                 in_size, out_size, in_sampling_rate, out_sampling_rate, in_cutoff, out_cutoff,
                 in_half_width, out_half_width, conv_kernel=3, filter_size=6, lrelu_upsampling=2,
                 use_radial_filters=False, conv_clamp=256, magnitude_ema_beta=0.999):
        super().__init__()
        self.w_dim, self.is_torgb = w_dim, is_torgb
        self.is_critically_sampled, self.use_fp16 = is_critically_sampled, use_fp16
        self.in_channels, self.out_channels = in_channels, out_channels
        self.in_size, self.out_size = int(in_size), int(out_size)
        self.in_sampling_rate, self.out_sampling_rate = in_sampling_rate, out_sampling_rate
        self.tmp_sampling_rate = max(in_sampling_rate, out_sampling_rate) * (1 if is_torgb else lrelu_upsampling)
        self.in_cutoff, self.out_cutoff = in_cutoff, out_cutoff
        self.in_half_width, self.out_half_width = in_half_width, out_half_width
        self.conv_kernel = 1 if is_torgb else conv_kernel
        self.conv_clamp = conv_clamp
        self.magnitude_ema_beta = magnitude_ema_beta

        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = torch.nn.Parameter(torch.randn([out_channels, in_channels, self.conv_kernel, self.conv_kernel]))
        self.bias = torch.nn.Parameter(torch.zeros([out_channels]))
        self.register_buffer("magnitude_ema", torch.ones([]))

        self.up_factor = self._resample_factor(self.tmp_sampling_rate, in_sampling_rate)
        self.down_factor = self._resample_factor(self.tmp_sampling_rate, out_sampling_rate)
        self.up_taps = filter_size * self.up_factor if self.up_factor > 1 and not is_torgb else 1
        self.down_taps = filter_size * self.down_factor if self.down_factor > 1 and not is_torgb else 1
        self.down_radial = use_radial_filters and not is_critically_sampled
        self.register_buffer("up_filter", design_lowpass_filter(
            self.up_taps, in_cutoff, in_half_width * 2, self.tmp_sampling_rate))
        self.register_buffer("down_filter", design_lowpass_filter(
            self.down_taps, out_cutoff, out_half_width * 2, self.tmp_sampling_rate, radial=self.down_radial))

        # Pad so the output has out_size pixels; the split follows the symmetric sample-position
        # convention (pixel centres at half-integers, Alias-Free GAN App. C.3).
        pad_total = (self.out_size - 1) * self.down_factor + 1
        pad_total -= (self.in_size + self.conv_kernel - 1) * self.up_factor
        pad_total += self.up_taps + self.down_taps - 2
        pad_lo = (pad_total + self.up_factor) // 2
        self.padding = [pad_lo, pad_total - pad_lo, pad_lo, pad_total - pad_lo]

    @staticmethod
    def _resample_factor(tmp_rate, rate) -> int:
        factor = int(np.rint(tmp_rate / rate))
        if rate * factor != tmp_rate:
            raise ConfigError(f"sampling rate {tmp_rate:g} is not an integer multiple of {rate:g}; "
                              f"use an integer lrelu_upsampling")
        return factor

    def forward(self, x, w, noise_mode="const", force_fp32=False, update_emas=False):
        if update_emas:
            cur = x.detach().to(torch.float32).square().mean()
            self.magnitude_ema.copy_(cur.lerp(self.magnitude_ema, self.magnitude_ema_beta))
        input_gain = self.magnitude_ema.rsqrt()

        styles = self.affine(w)
        if self.is_torgb:
            styles = styles * (1 / math.sqrt(self.in_channels * self.conv_kernel ** 2))

        use_half = self.use_fp16 and not force_fp32 and x.device.type == "cuda"
        dtype = torch.float16 if use_half else torch.float32
        x = modulated_conv2d(x.to(dtype), self.weight, styles, demodulate=not self.is_torgb,
                             padding=self.conv_kernel - 1, input_gain=input_gain)
        return filtered_lrelu(x, fu=self.up_filter, fd=self.down_filter, b=self.bias.to(x.dtype),
                              up=self.up_factor, down=self.down_factor, padding=self.padding,
                              gain=1 if self.is_torgb else math.sqrt(2), slope=1 if self.is_torgb else 0.2,
                              clamp=self.conv_clamp)

    def extra_repr(self):
        return (f"is_torgb={self.is_torgb}, critical={self.is_critically_sampled}, fp16={self.use_fp16}, "
                f"channels={self.in_channels}->{self.out_channels}, size={self.in_size}->{self.out_size}, "
                f"rate={self.in_sampling_rate:g}->{self.out_sampling_rate:g}, "
                f"cutoff={self.in_cutoff:g}->{self.out_cutoff:g}")


def layer_schedule(img_resolution, img_channels, channel_base=32768, channel_max=512, num_layers=14,
                   num_critical=2, first_cutoff=2, first_stopband=2 ** 2.1, last_stopband_rel=2 ** 0.3,
                   margin_size=10):
    """Per-layer (cutoffs, sampling rates, transition half-widths, sizes, channels) of the synthesis network.

    Index i is layer L{i}; index 0 also describes the Fourier-feature input. Shared with checkpoint
    kwargs inference, which searches for the kwargs whose layer names match a state dict's.
    """
    # Cutoffs and stopbands grow geometrically until the critically sampled layers at the end.
    last_cutoff = img_resolution / 2
    last_stopband = last_cutoff * last_stopband_rel
    exponents = np.minimum(np.arange(num_layers + 1) / (num_layers - num_critical), 1)
    cutoffs = first_cutoff * (last_cutoff / first_cutoff) ** exponents
    stopbands = first_stopband * (last_stopband / first_stopband) ** exponents
    rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, img_resolution))))
    half_widths = np.maximum(stopbands, rates / 2) - cutoffs
    sizes = rates + margin_size * 2
    sizes[-2:] = img_resolution
    channels = np.rint(np.minimum((channel_base / 2) / cutoffs, channel_max))
    channels[-1] = img_channels
    return cutoffs, rates, half_widths, sizes, channels


class SynthesisNetwork(torch.nn.Module):
    """ws [N, num_ws, w_dim] -> image; `input` then layers L0..L{num_layers} (the last is ToRGB)."""

    def __init__(self, w_dim, img_resolution, img_channels, channel_base=32768, channel_max=512, num_layers=14,
                 num_critical=2, first_cutoff=2, first_stopband=2 ** 2.1, last_stopband_rel=2 ** 0.3,
                 margin_size=10, output_scale=0.25, num_fp16_res=4, **layer_kwargs):
        super().__init__()
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        self.num_ws = num_layers + 2
        self.num_layers, self.num_critical = num_layers, num_critical
        self.margin_size, self.output_scale, self.num_fp16_res = margin_size, output_scale, num_fp16_res

        cutoffs, rates, half_widths, sizes, channels = layer_schedule(
            img_resolution, img_channels, channel_base, channel_max, num_layers, num_critical, first_cutoff,
            first_stopband, last_stopband_rel, margin_size)

        self.input = SynthesisInput(w_dim, int(channels[0]), int(sizes[0]), rates[0], cutoffs[0])
        self.layer_names = []
        for idx in range(num_layers + 1):
            prev = max(idx - 1, 0)
            layer = SynthesisLayer(
                w_dim=w_dim, is_torgb=idx == num_layers, is_critically_sampled=idx >= num_layers - num_critical,
                use_fp16=bool(rates[idx] * 2 ** num_fp16_res > img_resolution),
                in_channels=int(channels[prev]), out_channels=int(channels[idx]),
                in_size=int(sizes[prev]), out_size=int(sizes[idx]),
                in_sampling_rate=int(rates[prev]), out_sampling_rate=int(rates[idx]),
                in_cutoff=cutoffs[prev], out_cutoff=cutoffs[idx],
                in_half_width=half_widths[prev], out_half_width=half_widths[idx], **layer_kwargs)
            name = f"L{idx}_{layer.out_size}_{layer.out_channels}"
            setattr(self, name, layer)
            self.layer_names.append(name)

    def forward(self, ws, noise_mode="const", force_fp32=False, update_emas=False):
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(f"ws must be [N, {self.num_ws}, {self.w_dim}], got {tuple(ws.shape)}")
        ws = ws.to(torch.float32).unbind(dim=1)
        x = self.input(ws[0])
        for name, w in zip(self.layer_names, ws[1:]):
            x = getattr(self, name)(x, w, force_fp32=force_fp32, update_emas=update_emas)
        if self.output_scale != 1:
            x = x * self.output_scale
        return x.to(torch.float32)

    def extra_repr(self):
        return (f"w_dim={self.w_dim}, num_ws={self.num_ws}, img_resolution={self.img_resolution}, "
                f"img_channels={self.img_channels}, num_layers={self.num_layers}, num_critical={self.num_critical}")


def _merge_kwargs(flat: dict, nested: dict | None) -> dict:
    merged = dict(nested or {})
    for key, value in flat.items():
        if key in merged and merged[key] != value:
            raise ConfigError(f"StyleGAN3 kwarg {key!r} given twice ({merged[key]!r} and {value!r}); give it once")
        merged[key] = value
    return merged


def _validate(z_dim, c_dim, w_dim, img_resolution, img_channels, mapping_kwargs, synthesis_kwargs):
    bad = sorted(set(mapping_kwargs) - set(MAPPING_DEFAULTS))
    if bad:
        raise ConfigError(f"unknown StyleGAN3 mapping_kwargs {bad}; allowed: {sorted(MAPPING_DEFAULTS)}")
    bad = sorted(set(synthesis_kwargs) - set(NETWORK_DEFAULTS) - set(LAYER_DEFAULTS))
    if bad:
        raise ConfigError(f"unknown StyleGAN3 kwargs {bad}; allowed: {sorted({**NETWORK_DEFAULTS, **LAYER_DEFAULTS})}")
    for name, value, low in [("z_dim", z_dim, 1), ("c_dim", c_dim, 0), ("w_dim", w_dim, 1),
                             ("img_resolution", img_resolution, 4), ("img_channels", img_channels, 1)]:
        if not isinstance(value, (int, np.integer)) or value < low:
            raise ConfigError(f"StyleGAN3 {name} must be an integer >= {low}, got {value!r}")
    s = {**NETWORK_DEFAULTS, **LAYER_DEFAULTS, **synthesis_kwargs}
    if not 0 <= s["num_critical"] < s["num_layers"]:
        raise ConfigError(f"StyleGAN3 needs 0 <= num_critical < num_layers, got num_critical={s['num_critical']}, "
                          f"num_layers={s['num_layers']}")
    if int(s["conv_kernel"]) < 1 or int(s["filter_size"]) < 1 or int(s["lrelu_upsampling"]) < 1:
        raise ConfigError("StyleGAN3 conv_kernel, filter_size and lrelu_upsampling must be integers >= 1")


class StyleGAN3Generator(torch.nn.Module):
    """StyleGAN3 generator: `G(z, c)` -> images [N, img_channels, R, R] in about [-1, 1].

    Accepts NVIDIA's constructor kwargs either flat (`channel_base=..., num_layers=...`, as stored
    in their pickles) or nested (`synthesis_kwargs={...}`); `init_kwargs` always holds the flat form.
    """

    def __init__(self, z_dim, c_dim, w_dim, img_resolution, img_channels, mapping_kwargs=None,
                 synthesis_kwargs=None, **kwargs):
        super().__init__()
        mapping_kwargs = dict(mapping_kwargs or {})
        synthesis_kwargs = _merge_kwargs(kwargs, synthesis_kwargs)
        _validate(z_dim, c_dim, w_dim, img_resolution, img_channels, mapping_kwargs, synthesis_kwargs)
        self.init_kwargs = dict(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, img_resolution=img_resolution,
                                img_channels=img_channels, mapping_kwargs=dict(mapping_kwargs), **synthesis_kwargs)
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.synthesis = SynthesisNetwork(w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels,
                                          **synthesis_kwargs)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=self.num_ws, **mapping_kwargs)

    @property
    def feature_layers(self) -> list[str]:
        """Hookable synthesis modules in forward order: the Fourier input, then every SynthesisLayer
        (the last one is ToRGB; hooks see it before `output_scale`)."""
        return ["synthesis.input"] + [f"synthesis.{name}" for name in self.synthesis.layer_names]

    def forward(self, z, c=None, truncation_psi=1, truncation_cutoff=None, noise_mode="const",
                update_emas=False, **synthesis_kwargs):
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                          update_emas=update_emas)
        return self.synthesis(ws, noise_mode=noise_mode, update_emas=update_emas, **synthesis_kwargs)

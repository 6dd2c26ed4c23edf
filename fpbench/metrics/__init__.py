"""The metric suite: pairwise (psnr, ssim, lpips, id) and distribution (fid, kid, pr, density_coverage).

    m = fpbench.metrics.create("lpips", device="cuda")
    for treated, original in batches:          # float [-1, 1] NCHW, as the generator makes them
        m.update(treated, original)
    m.compute()                                 # {"lpips": 0.14}

Distribution metrics compare the treated set with real images: feed those with `update_real`, or
reuse cached reference features with `set_real_features` (see `fpbench.data`). Metrics that share a
feature extractor share its computation when created with the same `bank=FeatureBank(...)`.
`pretrained=False` builds every network with random weights (tests, demos); such a metric has
`uncalibrated=True`.
"""

from __future__ import annotations

import re
from typing import Callable

from ..errors import ConfigError
from .base import Metric, PairwiseMetric


def _psnr(**kw):
    from .pairwise import PSNR

    kw.pop("pretrained", None)
    return PSNR(**kw)


def _ssim(**kw):
    from .pairwise import SSIM

    kw.pop("pretrained", None)
    return SSIM(**kw)


def _lpips(**kw):
    from .lpips_metric import LPIPS

    return LPIPS(**kw)


def _identity(**kw):
    from .identity import Identity

    return Identity(**kw)


def _distribution(cls_name: str) -> Callable[..., Metric]:
    def factory(**kw):
        from . import distribution

        return getattr(distribution, cls_name)(**kw)

    factory.__name__ = f"create_{cls_name.lower()}"
    return factory


REGISTRY: dict[str, Callable[..., Metric]] = {
    "psnr": _psnr,
    "ssim": _ssim,
    "lpips": _lpips,
    "id": _identity,
    "fid": _distribution("FID"),
    "pr": _distribution("PrecisionRecall"),
    "kid": _distribution("KID"),
    "density_coverage": _distribution("DensityCoverage"),
}


def create(name: str, *, device="cpu", pretrained: bool = True, **options) -> Metric:
    """Build the metric `name` on `device`; `options` are the metric's own keyword arguments."""
    if name not in REGISTRY:
        raise ConfigError(f"unknown metric {name!r}; choose from {', '.join(REGISTRY)}")
    try:
        return REGISTRY[name](device=device, pretrained=pretrained, **options)
    except TypeError as err:
        bad = re.search(r"unexpected keyword argument '(\w+)'", str(err))
        if bad:
            raise ConfigError(f"metric {name!r} has no option {bad.group(1)!r}; see its class docstring") from None
        raise


def __getattr__(attr):
    # FeatureBank lives with the heavy extractors; import it only when asked for.
    if attr == "FeatureBank":
        from .features import FeatureBank

        return FeatureBank
    raise AttributeError(f"module 'fpbench.metrics' has no attribute {attr!r}")


__all__ = ["REGISTRY", "create", "Metric", "PairwiseMetric", "FeatureBank"]

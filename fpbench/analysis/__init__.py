"""Measurements behind the paper's Section 3: high-risk channel counts, the proliferation ratio eta
(Definition 3.2, made operational), the Fig. 4 cure / insert experiments and the Fig. 3 histograms.

Every function returns data (dataclasses / dicts of tensors); plotting lives elsewhere.
"""

from .features import FeatureRecord, record_features
from .histograms import FeatureHistograms, feature_histograms
from .proliferation import (ProliferationResult, count_high_risk, cure_experiment, high_risk_counts,
                            insert_experiment, map_correlation, proliferation_ratio, resize_map)

__all__ = [
    "FeatureHistograms", "FeatureRecord", "ProliferationResult", "count_high_risk", "cure_experiment",
    "feature_histograms", "high_risk_counts", "insert_experiment", "map_correlation", "proliferation_ratio",
    "record_features", "resize_map",
]

"""Metrics: how good a saliency map is.

Fixation metrics (:mod:`salmap.metrics.fixation`) score a map against where people
looked, as the MIT/Tübingen saliency benchmarks do.
"""

from salmap.metrics.fixation import (
    EPS,
    auc_borji,
    auc_judd,
    auc_shuffled,
    cc,
    center_bias,
    fixation_density,
    fixation_map,
    fixation_metrics,
    information_gain,
    kl_divergence,
    nss,
    sim,
)

__all__ = [
    "EPS",
    "auc_borji",
    "auc_judd",
    "auc_shuffled",
    "cc",
    "center_bias",
    "fixation_density",
    "fixation_map",
    "fixation_metrics",
    "information_gain",
    "kl_divergence",
    "nss",
    "sim",
]

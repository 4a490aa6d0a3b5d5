"""Metrics: how good a saliency map is.

Fixation metrics (:mod:`salmap.metrics.fixation`) score a map against where people
looked, as the MIT/Tübingen saliency benchmarks do. Faithfulness metrics
(:mod:`salmap.metrics.faithfulness`) ask the model whether a map ranks pixels by
what it uses; sanity checks (:mod:`salmap.metrics.sanity`) whether a map depends on
the model at all.
"""

from salmap.metrics.faithfulness import (
    ROAD_FRACTIONS,
    PerturbationCurve,
    RoadResult,
    centre_map,
    curve_area,
    deletion,
    energy_pointing_game,
    insertion,
    make_composite,
    mufidelity,
    noisy_linear_imputation,
    pointing_game,
    random_map,
    reference_image,
    road,
)
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
from salmap.metrics.sanity import (
    CascadeResult,
    cascade_length,
    cascading_randomization,
    map_ssim,
    rank_correlation,
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
    "PerturbationCurve",
    "RoadResult",
    "ROAD_FRACTIONS",
    "deletion",
    "insertion",
    "road",
    "mufidelity",
    "pointing_game",
    "energy_pointing_game",
    "make_composite",
    "random_map",
    "centre_map",
    "reference_image",
    "noisy_linear_imputation",
    "curve_area",
    "CascadeResult",
    "cascading_randomization",
    "cascade_length",
    "rank_correlation",
    "map_ssim",
]

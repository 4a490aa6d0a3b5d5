"""Backward-rule attributions: DeepLIFT, DeepLIFT-SHAP and layer-wise relevance propagation.

The rules live in the adapter (:mod:`salmap.models.torch_rules` for PyTorch); a
method here only pairs each image with its references, asks for the multipliers in
full batches, and multiplies by ``x - reference``. An adapter without the rule fails
with one line (:func:`salmap.models.base.require_backward`), never falls back.
"""

from __future__ import annotations

import numpy as np

from salmap.errors import UsageError
from salmap.methods.engine import chunk_size, map_batches, unit_rng
from salmap.methods.path import make_baselines
from salmap.methods.registry import method
from salmap.models.base import BACKWARD_RULES, require_backward
from salmap.targets import as_targets

__all__ = ["LRP_RULES", "deeplift", "deeplift_shap", "lrp", "reference_attributions"]

#: LRP rules and composites by their short names (``rule=`` of :func:`lrp`).
LRP_RULES = tuple(name.removeprefix("lrp-") for name in BACKWARD_RULES if name.startswith("lrp-"))


def reference_attributions(
    adapter, images, targets, baseline, rule: str, score: str, batch_size, seed: int
) -> np.ndarray:
    """``mean_b (x - b) * m(x; b)`` over the baselines ``b`` of each image, the
    multipliers ``m`` under ``rule``; every (image, baseline) pair in full batches (a
    call holds ``batch_size`` model rows: half images, half references)."""
    require_backward(adapter, rule)
    images = np.asarray(images, np.float32)
    targets = as_targets(targets, len(images), score)
    references = np.stack(
        [np.stack(make_baselines(image, baseline, unit_rng(seed, 0xD1F))) for image in images]
    )  # N×B×H×W×3: every image draws the same way, whatever the batch
    count = references.shape[1]

    def call(start, stop):
        rows = np.arange(start, stop)
        which, reference = np.divmod(rows, count)
        inputs, chosen = images[which], references[which, reference]
        grads, _ = adapter.gradients(inputs, targets[which], rule, references=chosen)
        return grads * (inputs - chosen)

    size = max(1, chunk_size(adapter, batch_size) // 2)
    pairs = map_batches(call, len(images) * count, size)
    return pairs.reshape(len(images), count, *images.shape[1:]).mean(axis=1, dtype=np.float64)


@method(
    "deeplift",
    "differences from a reference, propagated by the rescale rule (Shrikumar et al. 2017)",
    family="rules",
    aliases=("deep-lift",),
)
def deeplift(
    adapter,
    images: np.ndarray,
    targets: np.ndarray,
    *,
    score: str = "logit",
    baseline="black",
    batch_size: int | None = None,
    seed: int = 0,
) -> np.ndarray:
    """DeepLIFT (rescale rule): contributions of ``x - reference`` that add up to
    ``f(x) - f(reference)``.

    Every nonlinearity's derivative becomes the ratio of its output and input
    differences from the reference (see :mod:`salmap.models.torch_rules`); the
    attribution is the multiplier times ``x - reference``. PyTorch models; elsewhere a
    clear error.

    Parameters
    ----------
    baseline : str, number or array
        The reference (see :func:`salmap.methods.path.make_baselines`; the paper: black,
        all zeros). Several baselines are averaged (that is DeepLIFT-SHAP).
    batch_size : int, optional
        Model rows per call (half images, half references).
    seed : int
        For random baselines (``uniform``).

    Returns
    -------
    N×H×W×3 float32, signed, in score units; sums to ``f(x) - f(reference)``.

    References
    ----------
    A. Shrikumar, P. Greenside, A. Kundaje. Learning Important Features Through
    Propagating Activation Differences. ICML 2017, Sec. 3.3 (rescale rule), Eq. 1-3.
    """
    return reference_attributions(
        adapter, images, targets, baseline, "deeplift", score, batch_size, seed
    ).astype(np.float32)


@method(
    "deeplift-shap",
    "DeepLIFT averaged over a distribution of references (Lundberg & Lee 2017)",
    family="rules",
    aliases=("deepshap", "deep-shap"),
)
def deeplift_shap(
    adapter,
    images: np.ndarray,
    targets: np.ndarray,
    *,
    score: str = "logit",
    baseline="black,white,grey,uniform,uniform,uniform",
    batch_size: int | None = None,
    seed: int = 0,
) -> np.ndarray:
    """DeepLIFT-SHAP (DeepSHAP): DeepLIFT against each reference of a distribution,
    averaged — an approximation of the SHAP values with that background (Captum's
    ``DeepLiftShap``).

    Parameters
    ----------
    baseline : str, array, or a list of them
        The references, each used once: names (default black, white, grey and three
        uniform-noise images, seeded) or a K×H×W×3 array of background images (the
        paper: samples of the training data).

    Returns
    -------
    N×H×W×3 float32, signed; sums to ``f(x) - mean_b f(b)``.

    References
    ----------
    S. M. Lundberg, S.-I. Lee. A Unified Approach to Interpreting Model Predictions.
    NeurIPS 2017, Sec. 4.2 (Deep SHAP). A. Shrikumar et al. ICML 2017 (DeepLIFT).
    """
    return reference_attributions(
        adapter, images, targets, baseline, "deeplift", score, batch_size, seed
    ).astype(np.float32)


@method(
    "lrp",
    "layer-wise relevance propagation: epsilon, gamma, z+, z^B rules and composites",
    family="rules",
    aliases=("layer-wise-relevance-propagation",),
)
def lrp(
    adapter,
    images: np.ndarray,
    targets: np.ndarray,
    *,
    score: str = "logit",
    rule: str = "epsilon-plus",
    batch_size: int | None = None,
) -> np.ndarray:
    """Layer-wise relevance propagation: the score redistributed layer by layer onto
    the input, each layer by its rule.

    Rules (every convolution and linear layer): ``epsilon`` (LRP-epsilon, epsilon
    1e-6), ``gamma`` (LRP-gamma, gamma 0.25), ``alpha1beta0`` (z+); composites:
    ``epsilon-plus`` (z+ on convolutions, epsilon on linear layers) and
    ``epsilon-gamma-box`` (z^B on the first convolution, bounded by the preprocessed
    black and white images, gamma on the others, epsilon on linear layers). A batch
    normalisation right after a convolution is folded into it first (canonisation);
    rectifiers, pooling and additions pass relevance as LRP-0. PyTorch models;
    elsewhere a clear error.

    Returns
    -------
    N×H×W×3 float32, signed relevance in score units (with LRP-epsilon on a bias-free
    ReLU network it sums to the score, and equals gradient × input as epsilon -> 0).

    References
    ----------
    S. Bach, A. Binder, G. Montavon, F. Klauschen, K.-R. Müller, W. Samek. On Pixel-Wise
    Explanations for Non-Linear Classifier Decisions by Layer-Wise Relevance Propagation.
    PLoS ONE 10(7), 2015. G. Montavon, A. Binder, S. Lapuschkin, W. Samek, K.-R. Müller.
    Layer-Wise Relevance Propagation: An Overview. In Explainable AI, LNCS 11700, 2019,
    Sec. 10.2-10.3 (rules, Eq. 10.2-10.6, and composites).
    """
    if rule not in LRP_RULES:
        raise UsageError(f"unknown LRP rule {rule!r}; use {', '.join(LRP_RULES)}")
    backward = f"lrp-{rule}"
    require_backward(adapter, backward)
    images = np.asarray(images, np.float32)
    targets = as_targets(targets, len(images), score)
    relevance = map_batches(
        lambda a, b: adapter.gradients(images[a:b], targets[a:b], backward)[0],
        len(images),
        chunk_size(adapter, batch_size),
    )
    return np.asarray(relevance, np.float32)

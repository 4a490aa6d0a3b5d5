"""Backward-rule attributions: DeepLIFT and DeepLIFT-SHAP.

The rules live in the adapter (:mod:`salmap.models.torch_rules` for PyTorch); a
method here only pairs each image with its references, asks for the multipliers in
full batches, and multiplies by ``x - reference``. An adapter without the rule fails
with one line (:func:`salmap.models.base.require_backward`), never falls back.
"""

from __future__ import annotations

import numpy as np

from salmap.methods.engine import chunk_size, map_batches, unit_rng
from salmap.methods.path import make_baselines
from salmap.methods.registry import method
from salmap.models.base import require_backward
from salmap.targets import as_targets

__all__ = ["deeplift", "deeplift_shap", "reference_attributions"]


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

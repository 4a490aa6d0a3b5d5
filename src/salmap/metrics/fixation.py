"""Fixation metrics: how well a saliency map predicts where people look.

The definitions follow the MIT saliency benchmark's reference code (Bylinskii, Judd,
Oliva, Torralba & Durand, "What do different evaluation metrics tell us about
saliency models?", IEEE TPAMI 2019; the MATLAB ``code_forMetrics``): the same
normalisations, the same ε (MATLAB's ``eps`` = 2.2204e-16), the same KL direction,
the same thresholds and random splits. Where pysaliency (Kümmerer et al.), which the
Tübingen benchmark uses, differs, the function's Notes say how.

Fixations are given either as **points**, an N×2 array of (x, y) pixel coordinates
(x to the right, y down; a point at (x, y) falls in pixel column ⌊x⌋, row ⌊y⌋), or
as a **fixation map**, an H×W array whose non-zero pixels are fixated. Points are
turned into a binary map first, as the MIT code does, so two fixations on one pixel
count once. A saliency map whose shape differs from the fixation map's is resized
to it (bilinear; MATLAB's ``imresize`` is bicubic).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from salmap.errors import InputError, UsageError
from salmap.maps import resize_map

__all__ = [
    "EPS",
    "fixation_map",
    "fixation_density",
    "center_bias",
    "auc_judd",
    "auc_borji",
    "auc_shuffled",
    "nss",
    "cc",
    "sim",
    "kl_divergence",
    "information_gain",
    "fixation_metrics",
]

#: MATLAB's ``eps``, the regulariser of the MIT benchmark's KL and information gain.
EPS = 2.220446049250313e-16


# --------------------------------------------------------------------------- inputs


def _as_map(saliency) -> np.ndarray:
    values = np.asarray(saliency, dtype=np.float64)
    if values.ndim != 2:
        raise InputError(f"a saliency map must be 2-D (H×W), got shape {values.shape}")
    if values.size == 0:
        raise InputError("the saliency map is empty")
    if not np.all(np.isfinite(values)):
        raise InputError("the saliency map contains NaN or infinite values")
    return values


def _is_points(fixations, shape: tuple[int, int] | None) -> bool:
    array = np.asarray(fixations)
    if array.ndim == 1 and array.size == 2:
        return True
    if array.ndim != 2 or array.shape[1] != 2:
        return False
    return shape is None or array.shape != tuple(shape)


def fixation_map(fixations, shape: tuple[int, int] | None = None) -> np.ndarray:
    """A binary fixation map from points or from a (count or binary) map.

    Parameters
    ----------
    fixations : array-like
        N×2 (x, y) points, or an H×W map (non-zero = fixated).
    shape : (height, width), optional
        Map shape; needed for points. A map given with a different ``shape`` is an
        error (resize the saliency map instead).

    Returns
    -------
    numpy.ndarray
        H×W bool.

    Raises
    ------
    InputError
        For points outside the map, NaN coordinates or an empty fixation set.
    """
    if _is_points(fixations, shape):
        if shape is None:
            raise UsageError("fixation points need the map's shape (height, width)")
        points = np.asarray(fixations, dtype=np.float64).reshape(-1, 2)
        if points.shape[0] == 0:
            raise InputError("no fixations given")
        if not np.all(np.isfinite(points)):
            raise InputError("fixation coordinates contain NaN or infinite values")
        height, width = shape
        columns = np.floor(points[:, 0]).astype(np.int64)
        rows = np.floor(points[:, 1]).astype(np.int64)
        outside = (columns < 0) | (columns >= width) | (rows < 0) | (rows >= height)
        if outside.any():
            x, y = points[np.argmax(outside)]
            raise InputError(
                f"{int(outside.sum())} fixation(s) fall outside the {width}×{height} map, "
                f"e.g. (x={x:g}, y={y:g}); coordinates are pixels with 0 <= x < {width}, "
                f"0 <= y < {height}"
            )
        binary = np.zeros(shape, dtype=bool)
        binary[rows, columns] = True
        return binary
    array = np.asarray(fixations)
    if array.ndim != 2:
        raise InputError(
            f"fixations must be N×2 (x, y) points or an H×W map, got shape {array.shape}"
        )
    if shape is not None and array.shape != tuple(shape):
        raise InputError(f"fixation map is {array.shape}, expected {tuple(shape)}")
    if not np.all(np.isfinite(array.astype(np.float64))):
        raise InputError("the fixation map contains NaN or infinite values")
    return array != 0


def _fixations_and_map(saliency, fixations) -> tuple[np.ndarray, np.ndarray]:
    """Saliency map (resized to the fixation map if needed) and binary fixations."""
    values = _as_map(saliency)
    if _is_points(fixations, values.shape):
        binary = fixation_map(fixations, values.shape)
    else:
        binary = fixation_map(fixations)
        if binary.shape != values.shape:
            values = resize_map(values.astype(np.float32), *binary.shape).astype(np.float64)
    return values, binary


def fixation_density(
    fixations, shape: tuple[int, int] | None = None, sigma: float | None = None
) -> np.ndarray:
    """Continuous fixation map: fixation counts blurred by a Gaussian.

    The MIT benchmark blurs its fixation maps by about one degree of visual angle
    (σ ≈ 35 pixels on its 1024-pixel-wide images) to compare them with CC, SIM and
    KL.

    Parameters
    ----------
    fixations : array-like
        N×2 (x, y) points (every fixation counts, also repeated ones) or an H×W
        count or binary map.
    shape : (height, width), optional
        Needed for points.
    sigma : float, optional
        Gaussian standard deviation in pixels; default 1/30 of the larger side
        (about one degree in the MIT data set's geometry). 0 for no blur.

    Returns
    -------
    numpy.ndarray
        H×W float64, non-negative, summing to 1.
    """
    if _is_points(fixations, shape):
        binary = fixation_map(fixations, shape)  # validates the points
        points = np.asarray(fixations, dtype=np.float64).reshape(-1, 2)
        counts = np.zeros(binary.shape, np.float64)
        np.add.at(
            counts, (np.floor(points[:, 1]).astype(int), np.floor(points[:, 0]).astype(int)), 1
        )
    else:
        counts = np.asarray(fixations, dtype=np.float64)
        if counts.ndim != 2:
            raise InputError(f"a fixation map must be 2-D, got shape {counts.shape}")
        if np.any(counts < 0) or not np.all(np.isfinite(counts)):
            raise InputError("a fixation map must be finite and non-negative")
    if sigma is None:
        sigma = max(counts.shape) / 30.0
    if sigma > 0:
        counts = cv2.GaussianBlur(counts, (0, 0), sigma, borderType=cv2.BORDER_CONSTANT)
    total = float(counts.sum())
    if total <= 0:
        raise InputError("no fixations given")
    return counts / total


def center_bias(shape: tuple[int, int], sigma: float = 0.25) -> np.ndarray:
    """Centre-bias baseline: a Gaussian blob in the middle of the image.

    People look near the centre of photos whatever they show (Tatler 2007); a map
    that only knows this is the baseline every model should beat, and the usual
    reference for information gain. As in the MIT benchmark's "center" model the
    blob stretches with the image: its standard deviations are ``sigma`` times the
    width and times the height.

    Parameters
    ----------
    shape : (height, width)
    sigma : float
        Standard deviation as a fraction of each side.

    Returns
    -------
    numpy.ndarray
        H×W float64 with maximum 1 at the centre.
    """
    height, width = (int(shape[0]), int(shape[1]))
    if height < 1 or width < 1 or sigma <= 0:
        raise UsageError("center_bias needs a positive shape and sigma")
    ys = (np.arange(height) - (height - 1) / 2.0) / (sigma * height)
    xs = (np.arange(width) - (width - 1) / 2.0) / (sigma * width)
    return np.exp(-0.5 * (ys[:, None] ** 2 + xs[None, :] ** 2))


def _rng(rng) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _range_normalise(values: np.ndarray) -> np.ndarray | None:
    low, high = float(values.min()), float(values.max())
    if not high > low:
        return None
    return (values - low) / (high - low)


# ----------------------------------------------------------------------- location based


def auc_judd(saliency, fixations, *, jitter: bool = True, rng=0) -> float:
    """AUC-Judd: area under the ROC curve of the map as a fixation classifier.

    Thresholds are the saliency values at the fixated pixels. At the i-th highest of
    the N fixated values, the true-positive rate is i/N and the false-positive rate
    the fraction of the other pixels at or above that threshold. The map is first
    jittered by uniform noise in [0, 10⁻⁷) to break ties (as the MIT code does with
    ``rand/10000000``) and scaled to [0, 1].

    Parameters
    ----------
    saliency : array-like
        H×W saliency map.
    fixations : array-like
        N×2 (x, y) points or an H×W fixation map.
    jitter : bool
        Add the tie-breaking noise.
    rng : int or numpy.random.Generator
        Seed or generator for the jitter (results are reproducible for a seed).

    Returns
    -------
    float
        In [0, 1]; 0.5 is chance. NaN when there is no fixation, or for a constant
        map without jitter.

    Notes
    -----
    pysaliency's ``AUC_Judd`` jitters with Gaussian noise of σ = 10⁻⁷ (seed 42) and
    counts a fixation per recorded point (repeats included); on maps without ties and
    fixations on distinct pixels the two give the same value.

    References
    ----------
    T. Judd, F. Durand, A. Torralba. A benchmark of computational models of saliency
    to predict human fixations. MIT-CSAIL-TR-2012-001. Bylinskii et al., TPAMI 2019.
    """
    values, binary = _fixations_and_map(saliency, fixations)
    if jitter:
        values = values + _rng(rng).random(values.shape) / 10_000_000.0
    scaled = _range_normalise(values)
    if scaled is None or not binary.any():
        return math.nan
    flat = scaled.ravel()
    fixated = np.sort(flat[binary.ravel()])[::-1]
    count, pixels = fixated.size, flat.size
    if count == pixels:
        return math.nan
    ordered = np.sort(flat)
    above = pixels - np.searchsorted(ordered, fixated, side="left")
    ranks = np.arange(1, count + 1)
    tp = np.concatenate([[0.0], ranks / count, [1.0]])
    fp = np.concatenate([[0.0], (above - ranks) / (pixels - count), [1.0]])
    return float(np.trapezoid(tp, fp))


def _thresholds(highest: float, step: float | None, values: np.ndarray) -> np.ndarray:
    """Descending thresholds: 0, step, 2·step … up to ``highest`` (MATLAB's
    ``fliplr(0:step:highest)``), or every distinct value when ``step`` is None."""
    if step is None:
        return np.unique(values)[::-1]
    count = int(math.floor(highest / step + 1e-10))
    return (np.arange(count + 1) * step)[::-1]


def _sampled_auc(positives: np.ndarray, negatives: np.ndarray, step: float | None) -> float:
    highest = float(max(positives.max(), negatives.max()))
    thresholds = _thresholds(highest, step, np.concatenate([positives, negatives]))
    tp = (positives[None, :] >= thresholds[:, None]).mean(axis=1)
    fp = (negatives[None, :] >= thresholds[:, None]).mean(axis=1)
    tp = np.concatenate([[0.0], tp, [1.0]])
    fp = np.concatenate([[0.0], fp, [1.0]])
    return float(np.trapezoid(tp, fp))


def auc_borji(saliency, fixations, *, splits: int = 100, step: float | None = 0.1, rng=0) -> float:
    """AUC-Borji: fixated values against as many uniformly random pixels.

    The map is scaled to [0, 1]. For each of ``splits`` random draws, as many pixels
    as there are fixations are sampled uniformly (with replacement) as negatives; the
    ROC is swept at thresholds 0, 0.1, 0.2, … and its area averaged over the splits.

    Parameters
    ----------
    saliency, fixations :
        As for :func:`auc_judd`.
    splits : int
        Number of random negative sets (MIT: 100).
    step : float or None
        Threshold step (MIT: 0.1); None sweeps every distinct value (the exact
        area of each split's ROC).
    rng : int or numpy.random.Generator
        Seed or generator for the negatives.

    Returns
    -------
    float
        In [0, 1]; NaN for a constant map or no fixation.

    Notes
    -----
    pysaliency's ``AUC`` with ``nonfixations='uniform'`` uses *every* pixel as a
    negative and every value as a threshold, the limit this estimate tends to.

    References
    ----------
    A. Borji, H. R. Tavakoli, D. N. Sihite, L. Itti. Analysis of scores, datasets and
    models in visual saliency prediction. ICCV 2013. Bylinskii et al., TPAMI 2019.
    """
    values, binary = _fixations_and_map(saliency, fixations)
    scaled = _range_normalise(values)
    if scaled is None or not binary.any():
        return math.nan
    flat = scaled.ravel()
    positives = flat[binary.ravel()]
    draws = _rng(rng).integers(0, flat.size, size=(positives.size, splits))
    negatives = flat[draws]
    return float(np.mean([_sampled_auc(positives, negatives[:, s], step) for s in range(splits)]))


def auc_shuffled(
    saliency,
    fixations,
    other_fixations,
    *,
    splits: int = 100,
    step: float | None = 0.1,
    rng=0,
) -> float:
    """Shuffled AUC: fixated values against fixated locations *of other images*.

    Negatives drawn from other images' fixations share their centre bias, so a map
    gains nothing from merely favouring the centre. For each split, min(N, M) of the
    M other fixated pixels are drawn without replacement (N: this image's fixations).

    Parameters
    ----------
    saliency, fixations :
        As for :func:`auc_judd`.
    other_fixations : array-like
        Fixations pooled from other images (Borji et al.: 10 random images), as
        points in this map's pixels or a fixation map of this map's shape.
    splits, step, rng :
        As for :func:`auc_borji`.

    Returns
    -------
    float
        In [0, 1]; 0.5 is chance, and a pure centre-bias map scores about 0.5.

    Notes
    -----
    pysaliency's ``sAUC`` uses every fixation of every other image as a negative
    and every value as a threshold (no random splits).

    References
    ----------
    L. Zhang, M. H. Tong, T. K. Marks, H. Shan, G. W. Cottrell. SUN: a Bayesian
    framework for saliency using natural statistics. Journal of Vision 8(7), 2008.
    Bylinskii et al., TPAMI 2019.
    """
    values, binary = _fixations_and_map(saliency, fixations)
    other = fixation_map(other_fixations, binary.shape)
    scaled = _range_normalise(values)
    if scaled is None or not binary.any() or not other.any():
        return math.nan
    flat = scaled.ravel()
    positives = flat[binary.ravel()]
    candidates = np.flatnonzero(other.ravel())
    take = min(positives.size, candidates.size)
    generator = _rng(rng)
    scores = []
    for _ in range(splits):
        chosen = generator.permutation(candidates)[:take]
        scores.append(_sampled_auc(positives, flat[chosen], step))
    return float(np.mean(scores))


def nss(saliency, fixations, *, ddof: int = 1) -> float:
    """Normalized Scanpath Saliency: mean of the standardised map at fixations.

    The map is shifted to mean 0 and divided by its standard deviation, then
    averaged over the fixated pixels: how many standard deviations above average
    the map is where people looked.

    Parameters
    ----------
    saliency, fixations :
        As for :func:`auc_judd`.
    ddof : int
        Delta degrees of freedom of the standard deviation: 1 as MATLAB's ``std``
        in the MIT code, 0 as pysaliency's ``NSS``.

    Returns
    -------
    float
        0 is chance; NaN for a constant map or no fixation.

    Notes
    -----
    pysaliency averages per recorded fixation (repeats included) and divides by the
    standard deviation with N; its value is this one's times √(N/(N−1)) for
    fixations on distinct pixels.

    References
    ----------
    R. J. Peters, A. Iyer, L. Itti, C. Koch. Components of bottom-up gaze allocation
    in natural images. Vision Research 45(18), 2005. Bylinskii et al., TPAMI 2019.
    """
    values, binary = _fixations_and_map(saliency, fixations)
    # A constant map has no spread; compare extremes, as the computed standard
    # deviation of a constant is rounding noise, not zero.
    if not binary.any() or values.size <= ddof or values.max() == values.min():
        return math.nan
    spread = float(values.std(ddof=ddof))
    if not spread > 0:
        return math.nan
    standard = (values - values.mean()) / spread
    return float(standard[binary].mean())


def information_gain(saliency, fixations, baseline, *, probabilistic: bool = False) -> float:
    """Information gain over a baseline, in bits per fixation.

    IG = mean over fixated pixels of log₂(ε + P(x)) − log₂(ε + B(x)), with P and B
    the saliency and baseline maps made into distributions.

    Parameters
    ----------
    saliency, fixations :
        As for :func:`auc_judd`.
    baseline : array-like
        H×W baseline map, e.g. :func:`center_bias` or other images' fixations.
    probabilistic : bool
        False (the MIT code): each map is scaled to [0, 1] and then divided by its
        sum. True: the maps already are probability maps (densities over pixels)
        and are only divided by their sums, as in Kümmerer et al. — scaling to
        [0, 1] first would change the probabilities.

    Returns
    -------
    float
        Bits per fixation; positive when the map predicts fixations better than the
        baseline. NaN for a constant map (MIT normalisation) or no fixation.

    References
    ----------
    M. Kümmerer, T. Wallis, M. Bethge. Information-theoretic model comparison unifies
    saliency metrics. PNAS 112(52), 2015. Bylinskii et al., TPAMI 2019.
    """
    values, binary = _fixations_and_map(saliency, fixations)
    base = _as_map(baseline)
    if base.shape != binary.shape:
        base = resize_map(base.astype(np.float32), *binary.shape).astype(np.float64)
    if not binary.any():
        return math.nan
    maps = []
    for values_ in (values, base):
        if probabilistic:
            if np.any(values_ < 0):
                raise InputError("a probability map cannot be negative")
            distribution = values_
        else:
            distribution = _range_normalise(values_)
            if distribution is None:
                return math.nan
        total = float(distribution.sum())
        if not total > 0:
            return math.nan
        maps.append(distribution / total)
    predicted, reference = maps
    gain = np.log2(EPS + predicted[binary]) - np.log2(EPS + reference[binary])
    return float(gain.mean())


# ----------------------------------------------------------------------- distribution based


def _pair(saliency, ground_truth) -> tuple[np.ndarray, np.ndarray]:
    values = _as_map(saliency)
    if _is_points(ground_truth, values.shape):
        truth = fixation_density(ground_truth, values.shape, sigma=0)
    else:
        truth = _as_map(ground_truth)
        if truth.shape != values.shape:
            values = resize_map(values.astype(np.float32), *truth.shape).astype(np.float64)
    return values, truth


def cc(saliency, ground_truth) -> float:
    """Pearson's linear correlation coefficient between two maps.

    Parameters
    ----------
    saliency : array-like
        H×W saliency map (resized to ``ground_truth``'s shape if needed).
    ground_truth : array-like
        H×W fixation density (see :func:`fixation_density`) or another saliency
        map; N×2 points are used as a count map without blur.

    Returns
    -------
    float
        In [−1, 1]; NaN when either map is constant (the MIT code divides by a zero
        standard deviation).

    Notes
    -----
    pysaliency's ``CC`` returns 0 instead of NaN when only the first map is
    constant; otherwise the two agree.

    References
    ----------
    O. Le Meur, P. Le Callet, D. Barba. Predicting visual fixations on video based on
    low-level visual features. Vision Research 47(19), 2007. Bylinskii et al., TPAMI
    2019.
    """
    values, truth = _pair(saliency, ground_truth)
    if values.max() == values.min() or truth.max() == truth.min():
        return math.nan
    a = values - values.mean()
    b = truth - truth.mean()
    denominator = math.sqrt(float((a * a).sum()) * float((b * b).sum()))
    if not denominator > 0:
        return math.nan
    return float((a * b).sum() / denominator)


def sim(saliency, ground_truth) -> float:
    """Similarity (histogram intersection) of two maps as distributions.

    Each map that is not all zeros is scaled to [0, 1] and divided by its sum; SIM
    is Σ min(P, Q).

    Parameters
    ----------
    saliency, ground_truth :
        As for :func:`cc`.

    Returns
    -------
    float
        In [0, 1]: 1 for identical distributions, 0 for disjoint ones. NaN for a
        constant non-zero map (its range is zero).

    Notes
    -----
    pysaliency's ``SIM`` divides by the sum without scaling to [0, 1] first (it only
    shifts maps with negative values), so the two agree only when both maps have
    minimum 0; a map with a positive floor scores higher there.

    References
    ----------
    M. J. Swain, D. H. Ballard. Color indexing. IJCV 7(1), 1991. Bylinskii et al.,
    TPAMI 2019.
    """
    values, truth = _pair(saliency, ground_truth)
    distributions = []
    for values_ in (values, truth):
        if values_.any():
            scaled = _range_normalise(values_)
            if scaled is None:
                return math.nan
            values_ = scaled / scaled.sum()
        distributions.append(values_)
    return float(np.minimum(*distributions).sum())


def kl_divergence(saliency, ground_truth) -> float:
    """Kullback–Leibler divergence KL(fixations ‖ saliency), in nats.

    Both maps are divided by their sums (if not all zero); then
    KL = Σ Q · log(ε + Q / (P + ε)) with Q the fixation density, P the saliency
    map and ε = 2.2204e-16. The direction penalises a map that misses where people
    looked (Q > 0, P ≈ 0) heavily, and one that is salient where nobody looked only
    mildly.

    Parameters
    ----------
    saliency, ground_truth :
        As for :func:`cc`; both must be non-negative.

    Returns
    -------
    float
        >= 0 (up to ε), 0 for identical distributions; lower is better.

    Notes
    -----
    pysaliency's ``MIT_KLDiv(saliency, fixation_density)`` computes the same value
    for non-negative maps; its default ``image_based_kl_divergence`` instead adds
    10⁻²⁰ to the maps rather than ε inside the logarithm. An all-zero map stays zero
    here (MIT) where pysaliency makes it uniform.

    References
    ----------
    Bylinskii et al., TPAMI 2019, Section 3.
    """
    values, truth = _pair(saliency, ground_truth)
    if np.any(values < 0) or np.any(truth < 0):
        raise InputError("KL divergence needs non-negative maps")
    if values.any():
        values = values / values.sum()
    if truth.any():
        truth = truth / truth.sum()
    return float((truth * np.log(EPS + truth / (values + EPS))).sum())


# ---------------------------------------------------------------------------- all together


def fixation_metrics(
    saliency,
    fixations,
    *,
    other_fixations=None,
    baseline=None,
    sigma: float | None = None,
    rng=0,
) -> dict[str, float]:
    """Every metric of this module for one map.

    Parameters
    ----------
    saliency : array-like
        H×W saliency map.
    fixations : array-like
        N×2 (x, y) points or an H×W fixation map (binary or counts).
    other_fixations : array-like, optional
        Fixations of other images for the shuffled AUC (omitted without them).
    baseline : array-like, optional
        Baseline map for the information gain; default :func:`center_bias`.
    sigma : float, optional
        Blur of the fixation density for CC, SIM and KL (see
        :func:`fixation_density`).
    rng : int or numpy.random.Generator
        Seed for the jitter and random splits.

    Returns
    -------
    dict
        ``auc_judd``, ``auc_borji``, (``auc_shuffled``), ``nss``, ``cc``, ``sim``,
        ``kl``, ``information_gain`` as floats.
    """
    values = _as_map(saliency)
    if _is_points(fixations, values.shape):
        shape = values.shape
    else:
        shape = np.asarray(fixations).shape
    density = fixation_density(fixations, shape, sigma)
    if baseline is None:
        baseline = center_bias(shape)
    generator = _rng(rng)
    results = {
        "auc_judd": auc_judd(values, fixations, rng=generator),
        "auc_borji": auc_borji(values, fixations, rng=generator),
    }
    if other_fixations is not None:
        results["auc_shuffled"] = auc_shuffled(values, fixations, other_fixations, rng=generator)
    results.update(
        nss=nss(values, fixations),
        cc=cc(values, density),
        sim=sim(values, density),
        kl=kl_divergence(values, density),
        information_gain=information_gain(values, fixations, baseline),
    )
    return results

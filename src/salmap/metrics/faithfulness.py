"""Is a saliency map faithful to the model? Perturbation metrics and baseline maps.

Every metric here asks the model, not a person: pixels are removed or inserted in the
order a map gives, and the model's score for the explained class is read back. All the
perturbed images of one metric are built in chunks of the adapter's ``batch_size`` and
sent through ``adapter.predict`` chunk by chunk — one model call per chunk, never one
per step — so a 224-step deletion curve costs 225 forward passes in ``ceil(225 / batch)``
calls.

Perturbations happen in image space (the [0, 1] RGB image at its own resolution): a
black reference is black whatever the model's normalisation.

- :func:`deletion`, :func:`insertion` — Petsiuk et al. 2018 (RISE), area under the
  class-probability curve.
- :func:`road` — Rong et al. 2022, MoRF and LeRF with noisy linear imputation
  (:func:`noisy_linear_imputation`).
- :func:`mufidelity` — Bhatt et al. 2020.
- :func:`pointing_game`, :func:`energy_pointing_game` — Zhang et al. 2016 and Wang et
  al. 2020, on composites made by :func:`make_composite`.
- :func:`random_map`, :func:`centre_map` — baselines, so that every number has
  something to be compared to.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from salmap.errors import UsageError
from salmap.maps import SaliencyMap, resize_map

__all__ = [
    "PerturbationCurve",
    "RoadResult",
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
    "ROAD_FRACTIONS",
]

#: The removal fractions of the ROAD paper's curves (Rong et al. 2022, Fig. 4).
ROAD_FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)

#: Neighbour weights of ROAD's noisy linear imputation (Rong et al. 2022, §4): direct
#: neighbours 1/6, diagonal neighbours 1/12.
_NEIGHBOURS = (
    (-1, -1, 1 / 12),
    (-1, 0, 1 / 6),
    (-1, 1, 1 / 12),
    (0, -1, 1 / 6),
    (0, 1, 1 / 6),
    (1, -1, 1 / 12),
    (1, 0, 1 / 6),
    (1, 1, 1 / 12),
)


# -- results --------------------------------------------------------------------------
@dataclass
class PerturbationCurve:
    """The model's score for one class as more and more pixels are perturbed.

    Attributes
    ----------
    metric : str
        ``deletion``, ``insertion``, ``road-morf`` or ``road-lerf``.
    fractions : numpy.ndarray
        Fraction of the image's pixels perturbed at each point, in [0, 1].
    scores : numpy.ndarray
        The target's score (probability or logit, see ``score``) at each point.
    value : float
        The metric: the area under the curve over the fractions (deletion, insertion),
        or the mean score over the fractions (ROAD, as the paper averages).
    higher_is_better : bool
        Insertion and ROAD-LeRF: higher is better; deletion and ROAD-MoRF: lower.
    target : int
        The class whose score was read.
    score : str
        ``probability`` (softmax, the papers' choice) or ``logit``.
    """

    metric: str
    fractions: np.ndarray
    scores: np.ndarray
    value: float
    higher_is_better: bool
    target: int
    score: str

    def to_dict(self) -> dict:
        return {
            "metric": self.metric,
            "value": float(self.value),
            "higher_is_better": self.higher_is_better,
            "target": int(self.target),
            "score": self.score,
            "fractions": [round(float(f), 6) for f in self.fractions],
            "scores": [float(s) for s in self.scores],
        }


@dataclass
class RoadResult:
    """ROAD's two curves. ``combined`` = (LeRF − MoRF) / 2: higher is better, 0 means the
    map orders pixels no better than its reverse."""

    morf: PerturbationCurve
    lerf: PerturbationCurve

    @property
    def combined(self) -> float:
        return float((self.lerf.value - self.morf.value) / 2)

    def to_dict(self) -> dict:
        return {"morf": self.morf.to_dict(), "lerf": self.lerf.to_dict(), "combined": self.combined}


# -- shared plumbing ------------------------------------------------------------------
def _adapter(model):
    from salmap.models.zoo import load_model

    return load_model(model)


def _inputs(image, saliency) -> tuple[np.ndarray, np.ndarray, int | None]:
    """The image (H×W×3 float32), the map resized to it (H×W float64) and the
    result's target, from arrays or a :class:`SaliencyMap`."""
    from salmap.io.image import load_image

    target = None
    if isinstance(saliency, SaliencyMap):
        target = saliency.target
        if image is None:
            image = saliency.image
        saliency = saliency.map
    if image is None:
        raise UsageError("no image given: pass image= or a SaliencyMap that carries one")
    # Metrics accept any image size (the checks of small cases are 2×2 pixels).
    image = load_image(image, min_side=1)
    saliency = np.asarray(saliency, dtype=np.float32)
    if saliency.ndim == 3 and saliency.shape[-1] == 1:
        saliency = saliency[..., 0]
    if saliency.ndim != 2:
        raise UsageError(
            f"a saliency map must be H×W, got shape {saliency.shape} "
            "(reduce a per-channel attribution first, e.g. salmap.reduce_channels)"
        )
    if not np.all(np.isfinite(saliency)):
        raise UsageError("the saliency map contains NaN or infinite values")
    height, width = image.shape[:2]
    return image, resize_map(saliency, height, width).astype(np.float64), target


def _batched_logits(adapter, count: int, build: Callable[[int, int], np.ndarray]) -> np.ndarray:
    """Logits of ``count`` perturbed images, built ``build(start, stop)`` one model
    batch at a time by the engine's loop (memory stays bounded: a batch, not all
    steps), one ``predict`` call per batch."""
    from salmap.methods.engine import chunk_size, map_batches

    return map_batches(
        lambda a, b: np.asarray(adapter.predict(build(a, b)), dtype=np.float64),
        count,
        chunk_size(adapter, None),
    )


def _class_scores(logits: np.ndarray, score: str) -> np.ndarray:
    if score == "logit":
        return logits
    if score == "probability":
        shifted = logits - logits.max(axis=1, keepdims=True)
        exps = np.exp(shifted)
        return exps / exps.sum(axis=1, keepdims=True)
    raise UsageError(f"unknown score {score!r}; use 'probability' or 'logit'")


def _pick_target(target, adapter, logits_of_original: np.ndarray) -> int:
    """``None`` -> the model's top-1 class on the unperturbed image (read from the
    metric's own first forward pass, so choosing it costs nothing)."""
    if target is None:
        return int(np.argmax(logits_of_original))
    from salmap.models.classes import resolve_target

    return resolve_target(target, adapter.num_classes, adapter.class_names, adapter.synonyms)


def _ranks(saliency: np.ndarray) -> np.ndarray:
    """Each pixel's position (0 = most salient) in descending saliency; ties keep raster
    order (a stable sort), so results are reproducible."""
    order = np.argsort(-saliency.ravel(), kind="stable")
    ranks = np.empty(order.size, dtype=np.int64)
    ranks[order] = np.arange(order.size)
    return ranks.reshape(saliency.shape)


def curve_area(fractions: np.ndarray, scores: np.ndarray) -> float:
    """Trapezoidal area under ``scores`` over ``fractions`` (the RISE AUC when the
    fractions are evenly spaced from 0 to 1)."""
    fractions = np.asarray(fractions, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    return float(np.sum((scores[1:] + scores[:-1]) / 2 * np.diff(fractions)))


def reference_image(image: np.ndarray, reference="black") -> np.ndarray:
    """What removed pixels become: H×W×3 float32 in image space.

    Parameters
    ----------
    image : H×W×3 float32 in [0, 1]
    reference : str, float or array
        ``"black"`` (0), ``"gray"`` (0.5), ``"mean"`` (the image's mean colour),
        ``"blur"`` (RISE's insertion canvas: a Gaussian blur with σ = 5 px and an 11 px
        kernel at 224 px, scaled with the image's shorter side), a constant in [0, 1],
        or an H×W×3 image.
    """
    image = np.asarray(image, dtype=np.float32)
    if isinstance(reference, str):
        if reference == "black":
            return np.zeros_like(image)
        if reference == "gray":
            return np.full_like(image, 0.5)
        if reference == "mean":
            return np.broadcast_to(image.mean(axis=(0, 1)), image.shape).astype(np.float32)
        if reference == "blur":
            scale = min(image.shape[:2]) / 224.0
            sigma = 5.0 * scale
            kernel = 2 * int(round(5 * scale)) + 1
            return cv2.GaussianBlur(image, (kernel, kernel), sigma, borderType=cv2.BORDER_REFLECT)
        raise UsageError(
            f"unknown reference {reference!r}; use black, gray, mean, blur, a number or an image"
        )
    values = np.asarray(reference, dtype=np.float32)
    if values.ndim == 0:
        return np.full_like(image, float(values))
    if values.shape != image.shape:
        raise UsageError(f"reference image has shape {values.shape}, the image {image.shape}")
    return values


# -- deletion and insertion -------------------------------------------------------------
def _perturbation_curve(
    metric, model, image, saliency, target, steps, reference, score
) -> PerturbationCurve:
    adapter = _adapter(model)
    image, saliency, map_target = _inputs(image, saliency)
    target = map_target if target is None else target
    if int(steps) < 1:
        raise UsageError(f"steps must be >= 1, got {steps}")
    ranks = _ranks(saliency)
    pixels = ranks.size
    counts = np.round(np.linspace(0, pixels, int(steps) + 1)).astype(np.int64)
    canvas = reference_image(image, reference)
    deleting = metric == "deletion"

    def build(start: int, stop: int) -> np.ndarray:
        # Pixels whose rank is below the count are the first ``count`` in the map's order.
        chosen = (ranks[None] < counts[start:stop, None, None])[..., None]
        return np.where(chosen, canvas, image) if deleting else np.where(chosen, image, canvas)

    logits = _batched_logits(adapter, len(counts), build)
    # Deletion's first image is the original, insertion's last one.
    klass = _pick_target(target, adapter, logits[0 if deleting else -1])
    scores = _class_scores(logits, score)[:, klass]
    fractions = counts / pixels
    return PerturbationCurve(
        metric=metric,
        fractions=fractions,
        scores=scores,
        value=curve_area(fractions, scores),
        higher_is_better=not deleting,
        target=klass,
        score=score,
    )


def deletion(
    model,
    image,
    saliency,
    target: int | str | None = None,
    *,
    steps: int = 224,
    reference="black",
    score: str = "probability",
) -> PerturbationCurve:
    """Deletion metric: remove pixels from most to least salient; lower area is better.

    Parameters
    ----------
    model : adapter, keras.Model or name
        Anything :func:`salmap.load_model` accepts.
    image : path or H×W×3 float32 in [0, 1], or None
        The explained image (``None``: the one ``saliency`` carries).
    saliency : H×W array or SaliencyMap
        The map; resized to the image if needed. Higher = more important.
    target : int or str, optional
        Class to score; default the map's target, else the model's top-1 class.
    steps : int
        Number of removal steps; the curve has ``steps + 1`` points, evenly spaced in the
        fraction of pixels removed (224 steps of 224 pixels on a 224×224 image, as RISE).
    reference : str, float or array
        What a removed pixel becomes (see :func:`reference_image`; default black).
    score : {"probability", "logit"}
        The class probability (RISE) or the pre-softmax logit.

    Returns
    -------
    PerturbationCurve
        ``value`` is the area under the score curve over the fraction removed, in
        [0, 1] for probabilities.

    References
    ----------
    V. Petsiuk, A. Das, K. Saenko. RISE: Randomized Input Sampling for Explanation of
    Black-box Models. BMVC 2018, §4.1 ("causal metrics").
    """
    return _perturbation_curve("deletion", model, image, saliency, target, steps, reference, score)


def insertion(
    model,
    image,
    saliency,
    target: int | str | None = None,
    *,
    steps: int = 224,
    reference="blur",
    score: str = "probability",
) -> PerturbationCurve:
    """Insertion metric: start from a blurred image and put pixels back from most to
    least salient; higher area is better.

    Parameters are those of :func:`deletion`; the default ``reference`` is RISE's
    blurred canvas.

    References
    ----------
    V. Petsiuk, A. Das, K. Saenko. RISE. BMVC 2018, §4.1.
    """
    return _perturbation_curve("insertion", model, image, saliency, target, steps, reference, score)


# -- ROAD ----------------------------------------------------------------------------------
def noisy_linear_imputation(
    image: np.ndarray,
    removed: np.ndarray,
    *,
    noise: float = 0.01,
    rng: np.random.Generator | int | None = 0,
) -> np.ndarray:
    """Fill removed pixels from their neighbours (ROAD's noisy linear imputation).

    Each removed pixel equals the weighted mean of its in-image 8-neighbours (direct
    neighbours weight 1/6, diagonal 1/12), removed neighbours being unknowns too: one
    sparse symmetric positive-definite system for all removed pixels, solved per
    channel; then Gaussian noise of standard deviation ``noise`` is added to the filled
    values, so the removal leaves no exact trace of the mask's shape.

    Parameters
    ----------
    image : H×W×3 float32 in [0, 1]
    removed : H×W bool
        True where a pixel is removed. At least one pixel must be kept.
    noise : float
        Standard deviation of the added noise, in image units (0 for none).
    rng : numpy Generator or seed

    Returns
    -------
    H×W×3 float32 in [0, 1] (clipped after the noise).

    References
    ----------
    Y. Rong, T. Leemann, V. Borisov, G. Kasneci, E. Kasneci. A Consistent and Efficient
    Evaluation Strategy for Attribution Methods. ICML 2022, §4 (noisy linear imputation).
    """
    import scipy.sparse
    import scipy.sparse.linalg

    image = np.asarray(image, dtype=np.float32)
    removed = np.asarray(removed, dtype=bool)
    height, width = removed.shape
    if image.shape[:2] != removed.shape:
        raise UsageError(f"mask shape {removed.shape} does not match the image {image.shape}")
    unknown = np.flatnonzero(removed.ravel())
    if unknown.size == 0:
        return image.copy()
    if unknown.size == removed.size:
        raise UsageError("cannot impute an image with every pixel removed")
    channels = image.shape[-1]
    flat = image.reshape(-1, channels).astype(np.float64)
    variable = np.full(removed.size, -1, dtype=np.int64)
    variable[unknown] = np.arange(unknown.size)
    ys, xs = np.divmod(unknown, width)
    diagonal = np.zeros(unknown.size)
    rhs = np.zeros((unknown.size, channels))
    rows, cols, values = [], [], []
    for dy, dx, weight in _NEIGHBOURS:
        ny, nx = ys + dy, xs + dx
        inside = (ny >= 0) & (ny < height) & (nx >= 0) & (nx < width)
        # Only neighbours inside the image count, so border pixels average fewer.
        diagonal[inside] += weight
        source = np.flatnonzero(inside)
        neighbour = ny[inside] * width + nx[inside]
        unknown_neighbour = variable[neighbour] >= 0
        rows.append(source[unknown_neighbour])
        cols.append(variable[neighbour[unknown_neighbour]])
        values.append(np.full(int(unknown_neighbour.sum()), -weight))
        known = ~unknown_neighbour
        np.add.at(rhs, source[known], weight * flat[neighbour[known]])
    rows.append(np.arange(unknown.size))
    cols.append(np.arange(unknown.size))
    values.append(diagonal)
    system = scipy.sparse.csc_matrix(
        (np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))),
        shape=(unknown.size, unknown.size),
    )
    solution = scipy.sparse.linalg.spsolve(system, rhs).reshape(unknown.size, channels)
    if noise > 0:
        solution = solution + np.random.default_rng(rng).normal(0.0, noise, solution.shape)
    filled = flat.copy()
    filled[unknown] = solution
    return np.clip(filled.reshape(image.shape), 0.0, 1.0).astype(np.float32)


def road(
    model,
    image,
    saliency,
    target: int | str | None = None,
    *,
    fractions: Sequence[float] = ROAD_FRACTIONS,
    noise: float = 0.01,
    seed: int = 0,
    score: str = "probability",
) -> RoadResult:
    """ROAD: remove the most (MoRF) or least (LeRF) relevant pixels, impute them, score.

    Parameters
    ----------
    model, image, saliency, target, score :
        As for :func:`deletion`.
    fractions : sequence of float
        Fractions of pixels removed (default 10 %, 20 %, …, 90 %, the paper's).
    noise : float
        Imputation noise standard deviation in image units (see
        :func:`noisy_linear_imputation`; the paper's 0.01).
    seed : int
        Seed of the imputation noise.

    Returns
    -------
    RoadResult
        ``morf.value`` (lower is better) and ``lerf.value`` (higher is better) are the
        mean scores over the fractions; ``combined`` = (LeRF − MoRF) / 2.

    References
    ----------
    Y. Rong, T. Leemann, V. Borisov, G. Kasneci, E. Kasneci. A Consistent and Efficient
    Evaluation Strategy for Attribution Methods. ICML 2022.
    """
    adapter = _adapter(model)
    image, saliency, map_target = _inputs(image, saliency)
    target = map_target if target is None else target
    fractions = np.asarray(fractions, dtype=np.float64)
    if fractions.size == 0 or np.any((fractions <= 0) | (fractions >= 1)):
        raise UsageError("ROAD fractions must lie strictly between 0 and 1")
    ranks = _ranks(saliency)
    pixels = ranks.size
    counts = np.round(fractions * pixels).astype(np.int64)
    rng = np.random.default_rng(seed)
    # Job 0 is the unperturbed image (it names the top-1 class when no target is given);
    # then MoRF removes the first ``count`` pixels in the map's order, LeRF the last.
    jobs = [None] + [("morf", c) for c in counts] + [("lerf", c) for c in counts]

    def build(start: int, stop: int) -> np.ndarray:
        batch = []
        for job in jobs[start:stop]:
            if job is None:
                batch.append(image)
                continue
            order, count = job
            removed = ranks < count if order == "morf" else ranks >= pixels - count
            batch.append(noisy_linear_imputation(image, removed, noise=noise, rng=rng))
        return np.stack(batch)

    logits = _batched_logits(adapter, len(jobs), build)
    klass = _pick_target(target, adapter, logits[0])
    scores = _class_scores(logits, score)[1:, klass]
    curves = {}
    for index, order in enumerate(("morf", "lerf")):
        values = scores[index * len(counts) : (index + 1) * len(counts)]
        curves[order] = PerturbationCurve(
            metric=f"road-{order}",
            fractions=counts / pixels,
            scores=values,
            value=float(values.mean()),
            higher_is_better=order == "lerf",
            target=klass,
            score=score,
        )
    return RoadResult(morf=curves["morf"], lerf=curves["lerf"])


# -- MuFidelity --------------------------------------------------------------------------
def _features(height: int, width: int, grid_size: int | None) -> tuple[np.ndarray, int]:
    """Each pixel's feature index: a grid cell (grid_size × grid_size cells), or itself."""
    if grid_size is None:
        return np.arange(height * width).reshape(height, width), height * width
    grid_size = int(grid_size)
    if grid_size < 2:
        raise UsageError(f"grid_size must be >= 2 (or None for single pixels), got {grid_size}")
    rows = np.minimum(np.arange(height) * grid_size // height, grid_size - 1)
    cols = np.minimum(np.arange(width) * grid_size // width, grid_size - 1)
    return rows[:, None] * grid_size + cols[None, :], grid_size * grid_size


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    denominator = np.sqrt(np.sum(a * a) * np.sum(b * b))
    if not denominator > 0:
        return float("nan")
    return float(np.sum(a * b) / denominator)


def mufidelity(
    model,
    image,
    saliency,
    target: int | str | None = None,
    *,
    grid_size: int | None = 9,
    subset_fraction: float = 0.2,
    samples: int = 200,
    reference="black",
    seed: int = 0,
    score: str = "probability",
) -> float:
    """MuFidelity: correlation between a subset's total attribution and the score drop
    when that subset is removed, over random subsets.

    .. math:: \\mu_F = \\operatorname{corr}_{S}\\Big(\\sum_{i \\in S} g_i,\\;
              f(x) - f(x_{[x_S = \\bar{x}_S]})\\Big)

    Parameters
    ----------
    model, image, saliency, target, score :
        As for :func:`deletion`. The map is used as given (a signed map keeps its
        signs; a magnitude map such as max-abs gradients is all positive).
    grid_size : int or None
        Features are the cells of a ``grid_size`` × ``grid_size`` grid (9, as Xplique);
        ``None`` makes every pixel a feature (as Quantus).
    subset_fraction : float
        Fraction of the features in each random subset ``S`` (0.2).
    samples : int
        Number of random subsets (200, as Quantus and Xplique).
    reference : str, float or array
        What removed features become (:func:`reference_image`; black by default).
    seed : int

    Returns
    -------
    float
        Pearson correlation in [-1, 1] (higher is better); NaN when the attribution sums
        or the score drops do not vary.

    References
    ----------
    U. Bhatt, A. Weller, J. M. F. Moura. Evaluating and Aggregating Feature-based Model
    Explanations. IJCAI 2020, §3 (faithfulness, eq. 2).
    """
    adapter = _adapter(model)
    image, saliency, map_target = _inputs(image, saliency)
    target = map_target if target is None else target
    if not 0 < subset_fraction < 1:
        raise UsageError(f"subset_fraction must lie in (0, 1), got {subset_fraction}")
    if int(samples) < 2:
        raise UsageError(f"samples must be >= 2, got {samples}")
    height, width = image.shape[:2]
    features, count = _features(height, width, grid_size)
    size = max(1, int(round(subset_fraction * count)))
    rng = np.random.default_rng(seed)
    # Each row: which features the subset removes (``size`` distinct ones).
    subsets = np.zeros((int(samples), count), dtype=bool)
    picks = np.argsort(rng.random((int(samples), count)), axis=1)[:, :size]
    np.put_along_axis(subsets, picks, True, axis=1)
    attribution_per_feature = np.bincount(
        features.ravel(), weights=saliency.ravel(), minlength=count
    )
    attribution_sums = subsets.astype(np.float64) @ attribution_per_feature
    canvas = reference_image(image, reference)

    def build(start: int, stop: int) -> np.ndarray:
        # Row 0 is the original image; row k removes subset k - 1.
        batch = []
        for row in range(start, stop):
            if row == 0:
                batch.append(image)
            else:
                removed = subsets[row - 1][features][..., None]
                batch.append(np.where(removed, canvas, image))
        return np.stack(batch)

    logits = _batched_logits(adapter, int(samples) + 1, build)
    klass = _pick_target(target, adapter, logits[0])
    scores = _class_scores(logits, score)[:, klass]
    drops = scores[0] - scores[1:]
    return _pearson(attribution_sums, drops)


# -- pointing game -----------------------------------------------------------------------
def _check_box(box, shape) -> tuple[int, int, int, int]:
    top, left, bottom, right = (int(v) for v in box)
    height, width = shape
    if not (0 <= top < bottom <= height and 0 <= left < right <= width):
        raise UsageError(
            f"box {box} (top, left, bottom, right) does not lie inside the {height}×{width} map"
        )
    return top, left, bottom, right


def pointing_game(saliency, box: Sequence[int], *, tolerance: float = 15.0) -> bool:
    """Pointing game: does the map's maximum fall on the object?

    Parameters
    ----------
    saliency : H×W array or SaliencyMap
    box : (top, left, bottom, right)
        The object's box in map pixels; ``bottom`` and ``right`` exclusive.
    tolerance : float
        A maximum within this many pixels of the box still counts as a hit (15 px, the
        paper's, at its input resolution).

    Returns
    -------
    bool
        A hit. With several equal maxima, the first in raster order is taken.

    References
    ----------
    J. Zhang, Z. Lin, J. Brandt, X. Shen, S. Sclaroff. Top-down Neural Attention by
    Excitation Backprop. ECCV 2016, §5.1.
    """
    values = np.asarray(saliency.map if isinstance(saliency, SaliencyMap) else saliency)
    top, left, bottom, right = _check_box(box, values.shape)
    y, x = np.unravel_index(int(np.argmax(values)), values.shape)
    # Distance from the point to the nearest pixel of the box (0 inside).
    dy = max(top - y, 0, y - (bottom - 1))
    dx = max(left - x, 0, x - (right - 1))
    return bool(np.hypot(dy, dx) <= tolerance)


def energy_pointing_game(saliency, box: Sequence[int]) -> float:
    """Energy-based pointing game: the share of the map's positive mass inside the box.

    Returns
    -------
    float in [0, 1] (higher is better); NaN for a map with no positive value. A uniform
    map scores the box's share of the image.

    References
    ----------
    H. Wang, Z. Wang, M. Du, F. Yang, Z. Zhang, S. Ding, P. Mardziel, X. Hu. Score-CAM:
    Score-Weighted Visual Explanations for Convolutional Neural Networks. CVPR
    workshops 2020, §5.2.
    """
    values = np.asarray(saliency.map if isinstance(saliency, SaliencyMap) else saliency)
    top, left, bottom, right = _check_box(box, values.shape)
    positive = np.clip(values.astype(np.float64), 0.0, None)
    total = positive.sum()
    if not total > 0:
        return float("nan")
    return float(positive[top:bottom, left:right].sum() / total)


def _dead_leaves(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A cluttered canvas: the dead-leaves model (Matheron; Lee, Mumford & Huang 2001),
    occluding discs of random colour with power-law radii — the statistics of natural
    clutter without any nameable object."""
    canvas = np.empty((height, width, 3), dtype=np.float32)
    canvas[:] = rng.random(3)
    smallest, largest = 2.0, max(height, width) / 4
    for _ in range(int(3 * height * width / smallest**2) // 40 + 200):
        # Radius density ~ r^-3 (scale invariance), drawn by inverse transform sampling.
        u = rng.random()
        radius = 1 / np.sqrt(u / largest**2 + (1 - u) / smallest**2)
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        colour = tuple(float(c) for c in rng.random(3))
        cv2.circle(canvas, centre, int(round(radius)), colour, -1, lineType=cv2.LINE_AA)
    return canvas


def make_composite(
    image,
    *,
    size: tuple[int, int] = (224, 224),
    scale: float = 0.5,
    background: str = "neutral",
    position: tuple[int, int] | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Paste an object photo into a known box of a larger canvas (for the pointing game).

    Parameters
    ----------
    image : path or H×W×3 float32 in [0, 1]
        The object photo (e.g. a bundled photo the model recognises).
    size : (height, width)
        Canvas size in pixels.
    scale : float
        The photo's longer side as a fraction of the canvas's matching side, in (0, 1].
    background : {"neutral", "cluttered"}
        Mid-gray, or a dead-leaves clutter of random discs.
    position : (top, left), optional
        Where the photo goes; default a random place (from ``seed``) away from the
        centre when room allows, so that a centre-bias map does not win by default.
    seed : int

    Returns
    -------
    (composite H×W×3 float32 in [0, 1], box (top, left, bottom, right))
    """
    from salmap.io.image import load_image

    photo = load_image(image)
    height, width = int(size[0]), int(size[1])
    if not 0 < scale <= 1:
        raise UsageError(f"scale must lie in (0, 1], got {scale}")
    rng = np.random.default_rng(seed)
    if background == "neutral":
        canvas = np.full((height, width, 3), 0.5, dtype=np.float32)
    elif background == "cluttered":
        canvas = _dead_leaves(height, width, rng)
    else:
        raise UsageError(f"unknown background {background!r}; use 'neutral' or 'cluttered'")
    factor = scale * min(height / photo.shape[0], width / photo.shape[1])
    box_height = max(1, int(round(photo.shape[0] * factor)))
    box_width = max(1, int(round(photo.shape[1] * factor)))
    object_image = cv2.resize(photo, (box_width, box_height), interpolation=cv2.INTER_AREA)
    if position is None:
        # A corner-ish place: one of the four quadrant positions, picked by the seed.
        top = [0, height - box_height][int(rng.integers(2))]
        left = [0, width - box_width][int(rng.integers(2))]
        margin_y = (height - box_height) // 8
        margin_x = (width - box_width) // 8
        top = top + margin_y if top == 0 else top - margin_y
        left = left + margin_x if left == 0 else left - margin_x
    else:
        top, left = int(position[0]), int(position[1])
    box = _check_box((top, left, top + box_height, left + box_width), (height, width))
    canvas[top : top + box_height, left : left + box_width] = object_image
    return np.clip(canvas, 0, 1).astype(np.float32), box


# -- baselines -----------------------------------------------------------------------------
def random_map(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """A baseline map of independent uniform [0, 1) values (H×W float32): any ordering
    of pixels it gives is a random one."""
    height, width = int(shape[0]), int(shape[1])
    return np.random.default_rng(seed).random((height, width), dtype=np.float32)


def centre_map(shape: tuple[int, int], sigma: float = 0.25) -> np.ndarray:
    """A centre-bias baseline map: a Gaussian at the image centre (H×W float32 in
    (0, 1]), with standard deviations ``sigma`` × height and ``sigma`` × width.

    Photographers centre their subject (Tatler 2007), so this map is a strong baseline
    on ordinary photos and a weak one on the off-centre composites of the pointing game.
    """
    height, width = int(shape[0]), int(shape[1])
    ys = (np.arange(height) - (height - 1) / 2) / (sigma * height)
    xs = (np.arange(width) - (width - 1) / 2) / (sigma * width)
    return np.exp(-0.5 * (ys[:, None] ** 2 + xs[None, :] ** 2)).astype(np.float32)

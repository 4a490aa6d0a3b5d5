"""Surrogate and Shapley methods on superpixel features: LIME, KernelSHAP, Shapley value
sampling, feature ablation.

Each image is cut into ``M`` features (superpixels, or a grid); a *coalition* ``z`` in
``{0, 1}^M`` keeps the features where ``z`` is 1 and replaces the others by a baseline.
The four methods differ only in which coalitions they evaluate and how the scores
become one number per feature:

- **LIME** draws uniform coalitions and fits a ridge regression weighted by an
  exponential kernel of the distance to the full image (Ribeiro et al. 2016);
- **KernelSHAP** draws coalitions from the Shapley kernel and fits a weighted least
  squares constrained to sum to ``f(x) - f(baseline)``; with enough samples it
  enumerates all ``2^M`` coalitions and is exact (Lundberg & Lee 2017);
- **Shapley value sampling** averages marginal contributions along random feature
  orders (Castro et al. 2009; Štrumbelj & Kononenko 2014);
- **feature ablation** removes one feature at a time.

All coalitions of all images are one forward stream through
:func:`salmap.methods.engine.accumulate_scores`: the perturbed images are built chunk
by chunk from the coalition matrix, evaluated in full batches, and only their scores
are kept; the fits are a few NumPy lines per image. Each method returns an N×H×W
float32 map whose every pixel carries its feature's attribution, in score units.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from math import comb

import numpy as np
from skimage.segmentation import quickshift, slic

from salmap.errors import UsageError
from salmap.methods.engine import accumulate_scores, unit_rng
from salmap.methods.registry import method

__all__ = [
    "SEGMENTATIONS",
    "image_features",
    "grid_cells",
    "FeatureMasks",
    "FeaturePlan",
    "coalition_scores",
    "spread",
    "feature_baseline",
    "shapley_kernel_coalitions",
    "lime",
    "kernel_shap",
    "shapley_sampling",
    "feature_ablation",
]

#: How an image is cut into features.
SEGMENTATIONS = ("quickshift", "slic", "grid")


def _grid_shape(features: int, height: int, width: int) -> tuple[int, int]:
    """Rows × columns with exactly ``features`` cells, cells as square as possible."""
    pairs = [(r, features // r) for r in range(1, features + 1) if features % r == 0]
    return min(pairs, key=lambda rc: abs(np.log((height / rc[0]) / (width / rc[1]))))


def grid_cells(height: int, width: int, rows: int, columns: int) -> np.ndarray:
    """H×W labels of a rows×columns grid (cell ``r * columns + c``), as a nearest-neighbour
    upsampling of the grid would assign them."""
    row_of = np.arange(height) * rows // height
    column_of = np.arange(width) * columns // width
    return row_of[:, None] * columns + column_of[None, :]


def image_features(image: np.ndarray, segmentation: str = "slic", features: int = 50) -> np.ndarray:
    """An H×W int array of feature labels ``0 .. M - 1``.

    Parameters
    ----------
    image : H×W×3 float32 in [0, 1]
    segmentation : {"quickshift", "slic", "grid"}
        ``quickshift`` with LIME's parameters (kernel size 4, max distance 200, ratio
        0.2), ``slic`` with about ``features`` superpixels (compactness 10), or a grid of
        exactly ``features`` cells as square as the image allows.
    features : int
        Superpixels for ``slic``, cells for ``grid`` (quickshift finds its own number).
    """
    height, width = image.shape[:2]
    if int(features) < 1:
        raise UsageError(f"features must be >= 1, got {features}")
    if segmentation == "quickshift":
        labels = quickshift(image, kernel_size=4, max_dist=200, ratio=0.2, rng=0)
    elif segmentation == "slic":
        labels = slic(image, n_segments=int(features), compactness=10, start_label=0)
    elif segmentation == "grid":
        labels = grid_cells(height, width, *_grid_shape(int(features), height, width))
    else:
        raise UsageError(f"unknown segmentation {segmentation!r}; use {', '.join(SEGMENTATIONS)}")
    return np.unique(labels, return_inverse=True)[1].reshape(height, width)


def feature_baseline(
    image: np.ndarray, segments: np.ndarray, baseline, seed: int = 0
) -> np.ndarray:
    """What a removed feature shows, H×W×3 float32: ``"black"``, ``"white"``, ``"grey"``,
    a value in [0, 1], ``"mean"`` (each superpixel's mean colour, LIME's choice) or
    ``"uniform"`` (uniform noise in [0, 1], drawn from ``seed``)."""
    named = {"black": 0.0, "white": 1.0, "grey": 0.5, "gray": 0.5}
    if isinstance(baseline, str) and baseline in named:
        baseline = named[baseline]
    if baseline == "uniform":
        return unit_rng(seed, 0xBA5).random(image.shape, dtype=np.float32)
    if isinstance(baseline, str):
        if baseline != "mean":
            raise UsageError(
                f"unknown baseline {baseline!r}; use black, white, grey, mean, uniform or a number"
            )
        counts = np.bincount(segments.ravel())[:, None]
        sums = np.stack(
            [np.bincount(segments.ravel(), image[..., c].ravel()) for c in range(3)], axis=1
        )
        return (sums / counts)[segments].astype(np.float32)
    return np.full(image.shape, float(baseline), np.float32)


@dataclass
class FeaturePlan:
    """One image's features, replacement and coalitions (count×M bool, rows past the
    image's own coalitions repeat the full image with fit weight 0)."""

    segments: np.ndarray
    background: np.ndarray
    coalitions: np.ndarray
    weights: np.ndarray | None = None
    extra: dict = field(default_factory=dict)


@dataclass
class FeatureMasks:
    """The perturbation stream: point ``k`` of image ``i`` is image ``i`` with the
    features of row ``k`` of its coalition matrix kept and the others replaced by the
    background; real-valued rows (Sobol masks) blend, ``b + m (x - b)``. The pixel
    masks are built chunk by chunk from the small coalition matrix."""

    plans: list
    #: ``points`` writes into the engine's batch (``out=``)
    fills = True

    @property
    def count(self) -> int:
        return len(self.plans[0].coalitions)

    def prepare_at(self, index, image, rng, target):
        plan = self.plans[index]
        # Each pixel value's feature (the segments repeated over the colour channels):
        # masks are read straight at H×W×3, so no arithmetic broadcasts over a 3-long
        # last axis (slow in NumPy); the blend's difference is made once.
        pixels = np.repeat(plan.segments[..., None], image.shape[-1], axis=-1).ravel()
        return image, plan, pixels, image - plan.background

    def points(self, state, indices, out=None):
        image, plan, pixels, difference = state
        rows = plan.coalitions[indices]
        if out is None:
            out = np.empty((len(rows), *image.shape), np.float32)
        if rows.dtype == bool:
            keep = rows[:, pixels].reshape(out.shape)
            np.copyto(out, plan.background)
            np.copyto(out, image, where=keep)
            return out, None
        flat = out.reshape(len(rows), -1)  # a view: the batch is contiguous
        np.take(rows.astype(np.float32, copy=False), pixels, axis=1, out=flat)
        out *= difference
        out += plan.background
        return out, None


def _padded(coalitions: np.ndarray, weights: np.ndarray | None, count: int, features: int):
    """Coalitions padded to ``count`` rows and ``features`` columns (extra features are
    empty segments, extra rows the full image with weight 0)."""
    rows, columns = coalitions.shape
    if (rows, columns) == (count, features):
        return coalitions, weights
    out = np.ones((count, features), coalitions.dtype)
    out[:rows, :columns] = coalitions
    if weights is None:
        return out, None
    return out, np.concatenate([weights, np.zeros(count - rows)])


def coalition_scores(adapter, images, targets, plans, score, batch_size) -> np.ndarray:
    """Scores of every coalition of every image, N×count float64, in one stream."""
    count = max(len(plan.coalitions) for plan in plans)
    features = max(plan.coalitions.shape[1] for plan in plans)
    for plan in plans:
        plan.coalitions, plan.weights = _padded(plan.coalitions, plan.weights, count, features)
    sums = accumulate_scores(
        adapter,
        images,
        targets,
        FeatureMasks(plans),
        score=score,
        batch_size=batch_size,
        keep_scores=True,
    )
    return sums.scores


def spread(values: list[np.ndarray], plans: list[FeaturePlan]) -> np.ndarray:
    """Each feature's value painted on its pixels: N×H×W float32."""
    return np.stack([v[p.segments] for v, p in zip(values, plans, strict=True)]).astype(np.float32)


def _check_samples(samples: int, least: int = 1) -> int:
    if int(samples) < least:
        raise UsageError(f"samples must be >= {least}, got {samples}")
    return int(samples)


def _plans(images, segmentation, features, baseline, draw, seed: int = 0) -> list[FeaturePlan]:
    """Each image's features, background and ``draw(M, rng) -> (coalitions, weights)``;
    every image draws from the same seeded generator (its map does not depend on the
    other images of the batch)."""
    plans = []
    for image in images:
        segments = image_features(image, segmentation, features)
        count = int(segments.max()) + 1
        coalitions, weights = draw(count)
        background = feature_baseline(image, segments, baseline, seed)
        plan = FeaturePlan(segments, background, coalitions, weights)
        plan.extra["features"] = count
        plans.append(plan)
    return plans


def _lime_fit(coalitions, scores, weights, kernel_width: float, alpha: float) -> np.ndarray:
    """Ribeiro et al. 2016, Eq. 1-2 as the ``lime`` package solves it for images: ridge
    regression (intercept, penalty ``alpha``) weighted by ``sqrt(exp(-d^2 / width^2))``,
    ``d`` the cosine distance of the coalition to the full image."""
    features = coalitions.shape[1]
    present = coalitions.sum(axis=1)
    distance = 1.0 - np.sqrt(present / features)
    weights = weights * np.sqrt(np.exp(-(distance**2) / kernel_width**2))
    design = coalitions.astype(np.float64)
    total = weights.sum()
    centred_x = design - weights @ design / total
    centred_y = scores - weights @ scores / total
    gram = centred_x.T @ (weights[:, None] * centred_x) + alpha * np.eye(features)
    return np.linalg.solve(gram, centred_x.T @ (weights * centred_y))


@method(
    "lime",
    "ridge surrogate on superpixels, weighted by proximity (Ribeiro et al. 2016)",
    family="surrogate",
    output="map",
)
def lime(
    adapter,
    images: np.ndarray,
    targets: np.ndarray,
    *,
    score: str = "logit",
    samples: int = 1000,
    segmentation: str = "quickshift",
    features: int = 50,
    baseline: str | float = "mean",
    kernel_width: float = 0.25,
    alpha: float = 1.0,
    batch_size: int | None = None,
    seed: int = 0,
) -> np.ndarray:
    """LIME: the weights of a local linear surrogate over superpixel features.

    Coalitions are uniform on ``{0, 1}^M`` (the first one the full image, the second the
    image with every feature removed, so that even a tiny budget sees both ends), scored
    by the model, and a ridge regression of the scores on the coalitions, weighted by an
    exponential kernel of their cosine distance to the full image, gives each feature's
    weight. For a model linear in the features the weights are its coefficients (up to
    the ridge shrinkage; ``alpha=0`` removes it).

    Parameters
    ----------
    samples : int
        Coalitions per image (the ``lime`` package: 1000).
    segmentation, features :
        See :func:`image_features` (LIME: quickshift).
    baseline :
        What a removed feature shows (LIME: each superpixel's mean colour); see
        :func:`feature_baseline`.
    kernel_width : float
        Width of the exponential kernel on the cosine distance (``lime``: 0.25).
    alpha : float
        Ridge penalty (``lime``: scikit-learn's ``Ridge(alpha=1)``).
    seed : int
        Same seed, same coalitions, same map.

    Returns
    -------
    N×H×W float32, signed: each pixel carries its feature's weight, in score units.

    References
    ----------
    M. T. Ribeiro, S. Singh, C. Guestrin. "Why Should I Trust You?": Explaining the
    Predictions of Any Classifier. KDD 2016, Sec. 3.3-3.4 (sparse linear explanations,
    superpixels, pi_x(z) = exp(-D(x, z)^2 / sigma^2)).
    """
    samples = _check_samples(samples, 2)
    if kernel_width <= 0 or alpha < 0:
        raise UsageError("lime needs kernel_width > 0 and alpha >= 0")

    def draw(count):
        coalitions = unit_rng(seed, 0x11E).random((samples, count)) < 0.5
        coalitions[0], coalitions[1] = True, False
        return coalitions, np.ones(samples)

    images = np.asarray(images, np.float32)
    plans = _plans(images, segmentation, features, baseline, draw, seed)
    scores = coalition_scores(adapter, images, targets, plans, score, batch_size)
    values = [
        _lime_fit(*_own(plan, row), kernel_width=float(kernel_width), alpha=float(alpha))
        for plan, row in zip(plans, scores, strict=True)
    ]
    return spread(values, plans)


def _own(plan: FeaturePlan, scores: np.ndarray):
    """The image's own coalition columns, its scores and fit weights."""
    return plan.coalitions[:, : plan.extra["features"]], scores, plan.weights


def _subsets(features: int, size: int) -> np.ndarray:
    """Every coalition of ``size`` features, C(M, size)×M bool."""
    rows = list(itertools.combinations(range(features), size))
    out = np.zeros((len(rows), features), bool)
    out[np.repeat(np.arange(len(rows)), size), np.asarray(rows, int).ravel()] = True
    return out


def shapley_kernel_coalitions(
    features: int, samples: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """KernelSHAP's coalitions and regression weights for ``samples`` evaluations.

    Rows 0 and 1 are the empty and the full coalition. Sizes are then taken in pairs
    ``(s, M - s)`` from the outside in (``s = 1, 2, ...``): while the budget holds all
    their coalitions, they are enumerated with their Shapley kernel weights
    ``(M - 1) / (C(M, s) s (M - s))``; the rest of the budget is drawn from the kernel
    over the remaining sizes (a size with probability proportional to
    ``(M - 1) / (s (M - s))``, a uniform subset of it) in complementary pairs, sharing
    the remaining kernel mass equally. With ``samples >= 2^M`` every coalition is
    enumerated and the fit is exact (Lundberg & Lee 2017, Theorem 2; the ``shap``
    package's enumeration of complete sizes; Covert & Lee 2021, paired sampling).
    """
    ends = np.array([np.zeros(features, bool), np.ones(features, bool)])
    if features < 2:
        return ends, np.zeros(2)
    parts, weights = [ends], [np.zeros(2)]
    budget, sizes = samples - 2, list(range(1, features // 2 + 1))
    while sizes:
        pair = sorted({sizes[0], features - sizes[0]})
        block = np.concatenate([_subsets(features, s) for s in pair])
        if len(block) > budget:
            break
        size = block.sum(axis=1)
        parts.append(block)
        weights.append((features - 1) / (_combinations(features, size) * size * (features - size)))
        budget -= len(block)
        sizes.pop(0)
    remaining = np.array([s for s in range(1, features) if min(s, features - s) in sizes])
    pairs = budget // 2
    if pairs and len(remaining):
        mass = (features - 1) / (remaining * (features - remaining))
        drawn = rng.choice(remaining, size=pairs, p=mass / mass.sum())
        ranks = rng.random((pairs, features)).argsort(axis=1).argsort(axis=1)
        half = ranks < drawn[:, None]
        parts.append(np.stack([half, ~half], axis=1).reshape(-1, features))
        weights.append(np.full(2 * pairs, mass.sum() / (2 * pairs)))
    return np.concatenate(parts), np.concatenate(weights)


def _combinations(features: int, sizes: np.ndarray) -> np.ndarray:
    return np.array([comb(features, int(s)) for s in sizes], np.float64)


def _kernel_shap_fit(coalitions, scores, weights) -> np.ndarray:
    """Weighted least squares under the efficiency constraint ``sum phi = f(x) - f(b)``,
    solved by eliminating the last feature (Lundberg & Lee 2017, Eq. 8-9)."""
    features = coalitions.shape[1]
    empty, full = scores[0], scores[1]
    total = full - empty
    if features == 1:
        return np.array([total])
    rows = weights > 0
    if not rows.any():  # a budget of the two ends only: no coalition tells features apart
        return np.full(features, total / features)
    z = coalitions[rows].astype(np.float64)
    target = scores[rows] - empty - z[:, -1] * total
    design = z[:, :-1] - z[:, -1:]
    root = np.sqrt(weights[rows])[:, None]
    head = np.linalg.lstsq(design * root, target * root[:, 0], rcond=None)[0]
    return np.append(head, total - head.sum())


@method(
    "kernel-shap",
    "Shapley values of superpixels by kernel-weighted regression (Lundberg & Lee 2017)",
    family="surrogate",
    output="map",
    aliases=("kernelshap",),
)
def kernel_shap(
    adapter,
    images: np.ndarray,
    targets: np.ndarray,
    *,
    score: str = "logit",
    samples: int = 2048,
    segmentation: str = "slic",
    features: int = 50,
    baseline: str | float = "black",
    batch_size: int | None = None,
    seed: int = 0,
) -> np.ndarray:
    """KernelSHAP: Shapley values of superpixel features, by weighted regression.

    The empty and the full coalition fix ``f(baseline)`` and ``f(x)``; ``samples - 2``
    more coalitions (see :func:`shapley_kernel_coalitions`) give a weighted
    least-squares fit whose coefficients sum to ``f(x) - f(baseline)``. With
    ``samples >= 2^M`` every coalition is enumerated and the result is the exact
    Shapley values of the features.

    Parameters
    ----------
    samples : int
        Model evaluations per image (``shap``: 2 M + 2048).
    segmentation, features, baseline :
        See :func:`image_features` and :func:`feature_baseline` (SLIC superpixels, a
        black baseline).
    seed : int
        Same seed, same coalitions, same map.

    Returns
    -------
    N×H×W float32, signed, in score units; the features' values sum to
    ``f(x) - f(baseline)``.

    References
    ----------
    S. M. Lundberg, S.-I. Lee. A Unified Approach to Interpreting Model Predictions.
    NeurIPS 2017, Theorem 2 (the Shapley kernel) and Sec. 4.1. I. Covert, S.-I. Lee.
    Improving KernelSHAP. AISTATS 2021 (paired sampling).
    """
    samples = _check_samples(samples, 2)
    images = np.asarray(images, np.float32)

    def draw(count):
        return shapley_kernel_coalitions(count, samples, unit_rng(seed, 0x5A4))

    plans = _plans(images, segmentation, features, baseline, draw, seed)
    scores = coalition_scores(adapter, images, targets, plans, score, batch_size)
    values = [_kernel_shap_fit(*_own(p, s)) for p, s in zip(plans, scores, strict=True)]
    return spread(values, plans)


def _permutation_coalitions(features: int, permutations: int, rng) -> tuple[np.ndarray, None]:
    """Row 0 the empty coalition, then for each random order the ``M`` growing prefixes."""
    ranks = rng.random((permutations, features)).argsort(axis=1).argsort(axis=1)
    prefixes = ranks[:, None, :] < np.arange(1, features + 1)[None, :, None]
    return np.concatenate([np.zeros((1, features), bool), prefixes.reshape(-1, features)]), None


def _permutation_fit(coalitions, scores, permutations: int) -> np.ndarray:
    """Mean marginal contributions: along each order, the score change at each step is
    credited to the feature that joins there."""
    features = coalitions.shape[1]
    used = 1 + permutations * features
    grown = scores[1:used].reshape(permutations, features)
    before = np.concatenate([np.full((permutations, 1), scores[0]), grown[:, :-1]], axis=1)
    prefixes = coalitions[1:used].reshape(permutations, features, features).astype(np.int8)
    joined = np.diff(prefixes, axis=1, prepend=0)  # one-hot of the feature joining at step j
    return np.einsum("pj,pjm->m", grown - before, joined) / permutations


@method(
    "shapley-sampling",
    "Shapley values of superpixels from random feature orders (Castro et al. 2009)",
    family="surrogate",
    output="map",
    aliases=("shapley-value-sampling",),
)
def shapley_sampling(
    adapter,
    images: np.ndarray,
    targets: np.ndarray,
    *,
    score: str = "logit",
    permutations: int = 25,
    segmentation: str = "slic",
    features: int = 50,
    baseline: str | float = "black",
    batch_size: int | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Shapley value sampling: marginal contributions averaged over random feature orders.

    Along each random order the features are added one by one to the baseline image;
    each feature's score change is its marginal contribution, and the mean over
    ``permutations`` orders is an unbiased estimate of its Shapley value
    (``1 + permutations × M`` evaluations per image, the baseline image shared). Along
    every order the contributions sum to ``f(x) - f(baseline)`` exactly.

    Parameters
    ----------
    permutations : int
        Random feature orders (Captum's ``ShapleyValueSampling``: 25).
    segmentation, features, baseline :
        See :func:`image_features` and :func:`feature_baseline`.

    Returns
    -------
    N×H×W float32, signed, in score units.

    References
    ----------
    J. Castro, D. Gómez, J. Tejada. Polynomial calculation of the Shapley value based on
    sampling. Computers & Operations Research 36(5), 2009, Sec. 3. E. Štrumbelj,
    I. Kononenko. Explaining prediction models and individual predictions with feature
    contributions. Knowledge and Information Systems 41, 2014.
    """
    permutations = _check_samples(permutations)
    images = np.asarray(images, np.float32)

    def draw(count):
        return _permutation_coalitions(count, permutations, unit_rng(seed, 0x5B5))

    plans = _plans(images, segmentation, features, baseline, draw, seed)
    scores = coalition_scores(adapter, images, targets, plans, score, batch_size)
    values = [
        _permutation_fit(plan.coalitions[:, : plan.extra["features"]], row, permutations)
        for plan, row in zip(plans, scores, strict=True)
    ]
    return spread(values, plans)


@method(
    "feature-ablation",
    "score drop when one superpixel is replaced by the baseline",
    family="surrogate",
    output="map",
    aliases=("ablation",),
)
def feature_ablation(
    adapter,
    images: np.ndarray,
    targets: np.ndarray,
    *,
    score: str = "logit",
    segmentation: str = "slic",
    features: int = 50,
    baseline: str | float = "black",
    batch_size: int | None = None,
) -> np.ndarray:
    """Feature ablation: ``f(x) - f(x with feature j replaced by the baseline)``.

    ``1 + M`` evaluations per image (the image itself in the same batches). Occlusion
    (:func:`salmap.methods.occlusion`) is the same idea on sliding squares.

    Returns
    -------
    N×H×W float32, signed (positive: removing the feature lowers the score).

    References
    ----------
    M. D. Zeiler, R. Fergus. Visualizing and Understanding Convolutional Networks. ECCV
    2014, Sec. 4.2; as Captum's ``FeatureAblation`` with a superpixel feature mask.
    """
    images = np.asarray(images, np.float32)

    def draw(count):
        return np.concatenate([np.ones((1, count), bool), ~np.eye(count, dtype=bool)]), None

    plans = _plans(images, segmentation, features, baseline, draw)
    scores = coalition_scores(adapter, images, targets, plans, score, batch_size)
    values = [
        row[0] - row[1 : 1 + plan.extra["features"]]
        for plan, row in zip(plans, scores, strict=True)
    ]
    return spread(values, plans)

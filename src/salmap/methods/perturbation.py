"""Perturbation methods: occlusion and RISE (forward passes only, fully batched)."""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace

import cv2
import numpy as np

from salmap.errors import UsageError
from salmap.methods.engine import accumulate_scores, correlations, unit_rng
from salmap.methods.registry import method
from salmap.targets import as_targets

__all__ = [
    "occlusion",
    "rise",
    "occlusion_windows",
    "rise_masks",
    "bilinear_matrix",
    "times_image",
]


def occlusion_windows(height: int, width: int, window: int, stride: int) -> list[tuple[int, int]]:
    """Top-left corners of the ``window``-pixel squares, every ``stride`` pixels."""
    window_h, window_w = min(window, height), min(window, width)
    rows = range(0, height - window_h + 1, stride)
    columns = range(0, width - window_w + 1, stride)
    return [(r, c) for r in rows for c in columns]


@dataclass(frozen=True)
class _Windows:
    """Occlusion's points: point 0 is the image itself (its score is the reference of
    every drop, evaluated in the same batches), point ``1 + r * columns + c`` the image
    with the window at row position ``r``, column position ``c`` filled with ``value``.

    The windows form a separable grid, so the per-pixel sums of the drops are
    ``rows.T @ drops @ columns`` with the 0/1 row and column indicator matrices (see
    :meth:`sums`): no window map is ever built."""

    window: int
    stride: int
    value: float
    height: int
    width: int

    @property
    def size(self) -> tuple[int, int]:
        return min(self.window, self.height), min(self.window, self.width)

    @property
    def tops(self) -> np.ndarray:
        return np.arange(0, self.height - self.size[0] + 1, self.stride)

    @property
    def lefts(self) -> np.ndarray:
        return np.arange(0, self.width - self.size[1] + 1, self.stride)

    @property
    def count(self) -> int:
        return 1 + len(self.tops) * len(self.lefts)

    def prepare(self, image, rng, target):
        return image

    def points(self, image, indices):
        inputs = np.empty((len(indices), *image.shape), np.float32)
        inputs[...] = image
        (rows,) = np.nonzero(indices > 0)  # point 0 stays the plain image
        top, left = np.divmod(indices[rows] - 1, len(self.lefts))
        window_h, window_w = self.size
        # One fancy-indexed assignment fills every window of the chunk.
        inputs[
            rows[:, None, None],
            (self.tops[top][:, None] + np.arange(window_h))[:, :, None],
            (self.lefts[left][:, None] + np.arange(window_w))[:, None, :],
        ] = self.value
        return inputs, None

    def sums(self, drops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-pixel sums of the window drops (N×windows) and how many windows cover
        each pixel: ``(N×H×W, H×W)`` float64."""
        window_h, window_w = self.size
        rows = _indicators(self.tops, window_h, self.height)
        columns = _indicators(self.lefts, window_w, self.width)
        grid = drops.reshape(len(drops), len(self.tops), len(self.lefts))
        summed = rows.T @ grid @ columns
        coverage = np.outer(rows.sum(axis=0), columns.sum(axis=0))
        return summed, coverage


def _indicators(starts: np.ndarray, length: int, size: int) -> np.ndarray:
    """len(starts)×size float64: 1 where ``start <= i < start + length``."""
    positions = np.arange(size)
    return ((positions >= starts[:, None]) & (positions < starts[:, None] + length)).astype(
        np.float64
    )


@method(
    "occlusion",
    "score drop when a square window is covered (Zeiler & Fergus 2014)",
    family="perturbation",
    output="map",
)
def occlusion(
    adapter,
    images: np.ndarray,
    targets: np.ndarray,
    *,
    score: str = "logit",
    window: int = 32,
    stride: int = 16,
    value: float = 0.5,
    aggregate: str = "mean",
    batch_size: int | None = None,
) -> np.ndarray:
    """Occlusion: the score drop when a square of the image is covered.

    Every window position (stride ``stride``) is one forward pass, and so is the
    image itself (the reference score), all in full batches. Each pixel gets the mean
    (``aggregate="mean"``, as Captum) or the sum (``"sum"``, as PAIR) of the drops of
    the windows covering it; pixels no window covers get 0.

    Parameters
    ----------
    window : int
        Side of the square, in pixels of the original image (clipped to the image).
    stride : int
        Step between window positions, in pixels.
    value : float
        What the square is filled with, in [0, 1] image space (0.5: grey, as the grey
        squares of Zeiler & Fergus).
    aggregate : {"mean", "sum"}

    Returns
    -------
    N×H×W float32, signed (positive: covering it lowers the score), in score units.

    References
    ----------
    M. D. Zeiler, R. Fergus. Visualizing and Understanding Convolutional Networks.
    ECCV 2014, Sec. 4.2 (occlusion sensitivity).
    """
    images = np.asarray(images, np.float32)
    targets = as_targets(targets, len(images), score)
    if window < 1 or stride < 1:
        raise UsageError("occlusion needs window >= 1 and stride >= 1 (pixels)")
    if aggregate not in ("mean", "sum"):
        raise UsageError(f"unknown aggregate {aggregate!r}; use 'mean' or 'sum'")
    height, width = images.shape[1:3]
    rule = _Windows(int(window), int(stride), float(value), height, width)
    scores = accumulate_scores(
        adapter, images, targets, rule, score=score, batch_size=batch_size, keep_scores=True
    ).scores
    drops, coverage = rule.sums(scores[:, :1] - scores[:, 1:])
    if aggregate == "mean":
        drops = np.where(coverage > 0, drops / np.maximum(coverage, 1), 0.0)
    return drops.astype(np.float32)


def rise_masks(
    count: int,
    height: int,
    width: int,
    *,
    cells: int = 7,
    probability: float = 0.5,
    seed: int = 0,
    start: int = 0,
    stop: int | None = None,
) -> np.ndarray:
    """RISE masks ``start..stop`` of ``count``: random ``cells``×``cells`` binary grids
    upsampled bilinearly to ``(cells + 1) * cell size`` and shifted by a random offset
    of up to one cell (Petsiuk et al. 2018, Sec. 3.2). Mask k depends only on
    ``(seed, k)``. Returns (stop - start)×H×W float32 in [0, 1].

    Bilinear upsampling is separable, ``up = Y @ grid @ X.T`` with the interpolation
    matrices ``Y`` (up_h×cells) and ``X`` (up_w×cells), and the crop at ``(dy, dx)``
    keeps rows ``dy..dy+H`` of ``Y`` and ``dx..dx+W`` of ``X``: a whole chunk of masks is
    two batched matrix products, with no upsampled grid larger than the mask.
    """
    stop = count if stop is None else stop
    return _masks_at(np.arange(start, stop), height, width, cells, probability, seed)


def _masks_at(indices, height, width, cells, probability, seed) -> np.ndarray:
    """The RISE masks of the given indices, K×H×W float32."""
    cell_h, cell_w = -(-height // cells), -(-width // cells)
    grids = np.empty((len(indices), cells, cells), np.float32)
    offsets = np.empty((len(indices), 2), np.intp)
    for row, k in enumerate(indices):
        # One generator per mask: the masks do not depend on how they are chunked.
        rng = unit_rng(seed, int(k), 1)
        grids[row] = rng.random((cells, cells)) < probability
        offsets[row] = int(rng.integers(0, cell_h)), int(rng.integers(0, cell_w))
    rows = _crops(bilinear_matrix(cells, (cells + 1) * cell_h), height)
    columns = _crops(bilinear_matrix(cells, (cells + 1) * cell_w), width)
    return (rows[offsets[:, 0]] @ grids) @ columns[offsets[:, 1]].transpose(0, 2, 1)


@functools.lru_cache(maxsize=16)
def bilinear_matrix(samples: int, size: int) -> np.ndarray:
    """size×samples: OpenCV's bilinear upsampling of ``samples`` values to ``size``, as
    a matrix (the resize of the identity along one axis, the other kept as it is)."""
    identity = np.eye(samples, dtype=np.float32)
    matrix = cv2.resize(identity, (samples, size), interpolation=cv2.INTER_LINEAR)
    matrix.setflags(write=False)
    return matrix


def _crops(matrix: np.ndarray, length: int) -> np.ndarray:
    """Every ``length``-row window of ``matrix``: (rows - length + 1)×length×cells view."""
    return np.lib.stride_tricks.sliding_window_view(matrix, length, axis=0).transpose(0, 2, 1)


@dataclass(frozen=True)
class _RiseMasks:
    masks: int
    cells: int
    probability: float
    seed: int
    height: int
    width: int
    #: index of the first mask (rounds of the converging loop continue the sequence)
    first: int = 0

    @property
    def count(self) -> int:
        return self.masks

    def prepare(self, image, rng, target):
        return image

    def points(self, image, indices):
        # Masks are indexed by k alone, so every image sees the same set (as the paper).
        indices = np.asarray(indices) + self.first
        masks = _masks_at(indices, self.height, self.width, self.cells, self.probability, self.seed)
        return times_image(masks, image), masks


def times_image(masks: np.ndarray, image: np.ndarray) -> np.ndarray:
    """``masks[..., None] * image`` (K×H×W and H×W×C float32 -> K×H×W×C), bit for bit.

    Broadcasting a mask over the channel axis runs NumPy's inner loop three elements
    at a time; OpenCV interleaves the channel copies instead, and the product with the
    image is then one contiguous pass in place (about half the time)."""
    count, height, width = masks.shape
    planes = masks.reshape(count * height, width)
    inputs = cv2.merge([planes] * image.shape[-1]).reshape(count, height, -1)
    inputs *= image.reshape(height, -1)
    return inputs.reshape(count, *image.shape)


@method(
    "rise",
    "score-weighted average of random masks (Petsiuk et al. 2018)",
    family="perturbation",
    output="map",
    signed=False,
    reports=True,
)
def rise(
    adapter,
    images: np.ndarray,
    targets: np.ndarray,
    *,
    score: str = "logit",
    masks: int = 1000,
    cells: int = 7,
    probability: float = 0.5,
    tolerance: float | None = 0.01,
    centered: bool = True,
    batch_size: int | None = None,
    seed: int = 0,
    info: dict | None = None,
) -> np.ndarray:
    """RISE: the expected score under random masks, per pixel.

    ``S(x) = sum_k score(I * M_k) M_k(x) / (masks * probability)`` (Eq. 6); masks are
    generated just in time, chunk by chunk, and reduced into running sums.

    Two things make the default fast without changing the map. ``centered``: the
    scores enter as ``score - mean score`` and the mean is added back, which is the
    same estimate in expectation (``E[M] = p``) but removes the noise a large score
    offset spreads over the map (a logit near 10 varying by 0.3 otherwise needs
    thousands of masks to show its structure). ``tolerance``: masks come in rounds
    (250, then doubling), and an image stops when its map correlates at least ``1 -
    tolerance`` with the map of the first half of its masks; ``masks`` is the cap.
    Masks are numbered, so a stopped run equals a fixed run with that many masks.

    Parameters
    ----------
    masks : int
        The number of masks, or with ``tolerance`` the most: 1000 by default (centred,
        1000 masks give the 4000-mask map to a correlation of 0.95–0.98 on
        EfficientNet-Lite0; the paper's 4000 for ResNet50, uncentred, are noisier).
    cells : int
        Grid size ``s`` of the small masks (the paper: 7).
    probability : float
        Probability that a cell is kept (the paper: 0.5).
    tolerance : float or None
        Stop when the split-half correlation reaches ``1 - tolerance`` (0.01); ``None``
        runs all ``masks``.
    centered : bool
        Centre the scores on their mean (True), or Eq. 6 as written (False).
    seed : int
        Same seed, same masks, same map.
    info : dict, optional
        Filled with per-image ``masks`` (used) and ``convergence`` (the split-half
        correlation at the end).

    Returns
    -------
    N×H×W float32, in score units (the paper uses probabilities: ``score="probability"``).

    References
    ----------
    V. Petsiuk, A. Das, K. Saenko. RISE: Randomized Input Sampling for Explanation of
    Black-box Models. BMVC 2018, Eq. 6 and Sec. 3.2.
    """
    images = np.asarray(images, np.float32)
    targets = as_targets(targets, len(images), score)
    if masks < 1 or cells < 1 or not 0 < probability <= 1:
        raise UsageError("RISE needs masks >= 1, cells >= 1 and 0 < probability <= 1")
    if tolerance is not None and not 0 < tolerance < 1:
        raise UsageError(f"tolerance must be between 0 and 1 (0.01), got {tolerance}")
    height, width = images.shape[1:3]
    sums = _RiseSums(len(images), height, width)
    active = np.arange(len(images))
    done = 0
    for stop in _rounds(int(masks), tolerance):
        rule = _RiseMasks(stop - done, int(cells), float(probability), int(seed), height, width)
        rule = replace(rule, first=done)
        part = accumulate_scores(
            adapter, images[active], targets[active], rule, batch_size=batch_size, keep_scores=True
        )
        halves = sums.maps(active, probability, centered)
        sums.add(active, part, stop)
        previous, done = done, stop
        if tolerance is not None and previous > 0 and done < masks:
            agreement = correlations(halves, sums.maps(active, probability, centered))
            sums.convergence[active] = agreement
            active = active[agreement < 1 - tolerance]
            if not len(active):
                break
    if info is not None:
        info["masks"] = sums.count.tolist()
        info["convergence"] = sums.convergence.tolist()
    return sums.maps(np.arange(len(images)), probability, centered).astype(np.float32)


def _rounds(masks: int, tolerance: float | None):
    """Cumulative mask counts of the converging loop: 250, 500, 1000, … up to ``masks``."""
    if tolerance is None:
        yield masks
        return
    stop = min(masks, 250)
    while True:
        yield stop
        if stop >= masks:
            return
        stop = min(masks, 2 * stop)


class _RiseSums:
    """Per image: ``sum_k s_k M_k``, ``sum_k M_k``, ``sum_k s_k`` and the count."""

    def __init__(self, images: int, height: int, width: int):
        self.weighted = np.zeros((images, height, width))
        self.coverage = np.zeros((images, height, width))
        self.scores = np.zeros(images)
        self.count = np.zeros(images, int)
        self.convergence = np.full(images, np.nan)

    def add(self, rows: np.ndarray, part, total: int) -> None:
        self.weighted[rows] += part.weighted
        self.coverage[rows] += part.coverage
        self.scores[rows] += part.scores.sum(axis=1)
        self.count[rows] = total

    def maps(self, rows: np.ndarray, probability: float, centered: bool) -> np.ndarray:
        count = np.maximum(self.count[rows], 1)[:, None, None]
        if not centered:
            return self.weighted[rows] / (count * probability)
        mean = (self.scores[rows] / np.maximum(self.count[rows], 1))[:, None, None]
        return (self.weighted[rows] - mean * self.coverage[rows]) / (count * probability) + mean

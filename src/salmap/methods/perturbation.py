"""Perturbation methods: occlusion and RISE (forward passes only, fully batched)."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from salmap.errors import UsageError
from salmap.methods.engine import accumulate_scores, target_scores, unit_rng

__all__ = ["occlusion", "rise", "occlusion_windows", "rise_masks"]


def occlusion_windows(height: int, width: int, window: int, stride: int) -> list[tuple[int, int]]:
    """Top-left corners of the ``window``-pixel squares, every ``stride`` pixels."""
    window_h, window_w = min(window, height), min(window, width)
    rows = range(0, height - window_h + 1, stride)
    columns = range(0, width - window_w + 1, stride)
    return [(r, c) for r in rows for c in columns]


@dataclass(frozen=True)
class _Windows:
    window: int
    stride: int
    value: float
    height: int
    width: int

    @property
    def corners(self):
        return occlusion_windows(self.height, self.width, self.window, self.stride)

    @property
    def count(self) -> int:
        return len(self.corners)

    def prepare(self, image, rng, target):
        return image

    def points(self, image, indices):
        corners = self.corners
        window_h, window_w = min(self.window, self.height), min(self.window, self.width)
        inputs = np.repeat(image[None], len(indices), axis=0)
        weights = np.zeros((len(indices), self.height, self.width), np.float32)
        for row, k in enumerate(indices):
            top, left = corners[k]
            inputs[row, top : top + window_h, left : left + window_w] = self.value
            weights[row, top : top + window_h, left : left + window_w] = 1.0
        return inputs, weights


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

    Every window position (stride ``stride``) is one forward pass, all in full
    batches. Each pixel gets the mean (``aggregate="mean"``, as Captum) or the sum
    (``"sum"``, as PAIR) of the drops of the windows covering it; pixels no window
    covers get 0.

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
    targets = np.broadcast_to(np.asarray(targets, np.int32), (len(images),))
    if window < 1 or stride < 1:
        raise UsageError("occlusion needs window >= 1 and stride >= 1 (pixels)")
    if aggregate not in ("mean", "sum"):
        raise UsageError(f"unknown aggregate {aggregate!r}; use 'mean' or 'sum'")
    height, width = images.shape[1:3]
    rule = _Windows(int(window), int(stride), float(value), height, width)
    original = target_scores(adapter, images, targets, score)
    sums = accumulate_scores(adapter, images, targets, rule, score=score, batch_size=batch_size)
    drops = original[:, None, None] * sums.coverage - sums.weighted
    if aggregate == "mean":
        drops = np.where(sums.coverage > 0, drops / np.maximum(sums.coverage, 1), 0.0)
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
    ``(seed, k)``. Returns (stop - start)×H×W float32 in [0, 1]."""
    stop = count if stop is None else stop
    cell_h, cell_w = -(-height // cells), -(-width // cells)
    up_h, up_w = (cells + 1) * cell_h, (cells + 1) * cell_w
    masks = np.empty((stop - start, height, width), np.float32)
    for row, k in enumerate(range(start, stop)):
        rng = unit_rng(seed, k, 1)
        grid = (rng.random((cells, cells)) < probability).astype(np.float32)
        dy, dx = int(rng.integers(0, cell_h)), int(rng.integers(0, cell_w))
        upsampled = cv2.resize(grid, (up_w, up_h), interpolation=cv2.INTER_LINEAR)
        masks[row] = upsampled[dy : dy + height, dx : dx + width]
    return masks


@dataclass(frozen=True)
class _RiseMasks:
    masks: int
    cells: int
    probability: float
    seed: int
    height: int
    width: int

    @property
    def count(self) -> int:
        return self.masks

    def prepare(self, image, rng, target):
        return image

    def points(self, image, indices):
        # Masks are indexed by k alone, so every image sees the same set (as the paper).
        masks = np.stack(
            [
                rise_masks(
                    self.masks,
                    self.height,
                    self.width,
                    cells=self.cells,
                    probability=self.probability,
                    seed=self.seed,
                    start=int(k),
                    stop=int(k) + 1,
                )[0]
                for k in indices
            ]
        )
        return image[None] * masks[..., None], masks


def rise(
    adapter,
    images: np.ndarray,
    targets: np.ndarray,
    *,
    score: str = "logit",
    masks: int = 4000,
    cells: int = 7,
    probability: float = 0.5,
    batch_size: int | None = None,
    seed: int = 0,
) -> np.ndarray:
    """RISE: the expected score under random masks, per pixel.

    ``S(x) = sum_k score(I * M_k) M_k(x) / (masks * probability)`` (Eq. 6); masks are
    generated just in time, chunk by chunk, and reduced into a running sum.

    Parameters
    ----------
    masks : int
        Number of masks (the paper: 4000 for ResNet50).
    cells : int
        Grid size ``s`` of the small masks (the paper: 7).
    probability : float
        Probability that a cell is kept (the paper: 0.5).
    seed : int
        Same seed, same masks, same map.

    Returns
    -------
    N×H×W float32, in score units (the paper uses probabilities: ``score="probability"``).

    References
    ----------
    V. Petsiuk, A. Das, K. Saenko. RISE: Randomized Input Sampling for Explanation of
    Black-box Models. BMVC 2018, Eq. 6 and Sec. 3.2.
    """
    images = np.asarray(images, np.float32)
    targets = np.broadcast_to(np.asarray(targets, np.int32), (len(images),))
    if masks < 1 or cells < 1 or not 0 < probability <= 1:
        raise UsageError("RISE needs masks >= 1, cells >= 1 and 0 < probability <= 1")
    height, width = images.shape[1:3]
    rule = _RiseMasks(int(masks), int(cells), float(probability), int(seed), height, width)
    sums = accumulate_scores(adapter, images, targets, rule, score=score, batch_size=batch_size)
    return (sums.weighted / (masks * probability)).astype(np.float32)

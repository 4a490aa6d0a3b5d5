"""XRAI: Integrated Gradients summarised over image regions."""

from __future__ import annotations

import numpy as np
from scipy import sparse
from skimage import segmentation
from skimage.morphology import dilation, disk
from skimage.transform import resize

from salmap.methods.path import integrated_gradients
from salmap.methods.registry import method

__all__ = ["xrai", "xrai_segments", "xrai_regions"]

#: Felzenszwalb scales, sigma and minimum size of the XRAI paper's code
_SCALES = (50, 100, 150, 250, 500, 1200)
_SIGMA = 0.8
_MIN_SIZE = 150
_SEGMENTATION_SIZE = (224, 224)


def xrai_segments(image: np.ndarray, dilation_radius: int = 5) -> list[np.ndarray]:
    """Overlapping candidate regions: Felzenszwalb segmentations at six scales.

    The image is scaled to [-1, 1] and resized to 224×224 for segmenting (so the
    scales mean the same for every image size), each segmentation is resized back
    (nearest), and each segment is dilated by a disk of ``dilation_radius`` pixels.
    Returns a list of H×W boolean masks.
    """
    low, high = float(image.min()), float(image.max())
    scaled = (image - low) / (high - low) if high > low else np.zeros_like(image)
    scaled = resize(
        scaled * 2.0 - 1.0,
        _SEGMENTATION_SIZE,
        order=3,
        mode="constant",
        preserve_range=True,
        anti_aliasing=True,
    )
    masks = []
    for scale in _SCALES:
        labels = segmentation.felzenszwalb(scaled, scale=scale, sigma=_SIGMA, min_size=_MIN_SIZE)
        labels = resize(
            labels,
            image.shape[:2],
            order=0,
            preserve_range=True,
            mode="constant",
            anti_aliasing=False,
        ).astype(int)
        masks.extend(labels == value for value in range(labels.min(), labels.max() + 1))
    if dilation_radius:
        footprint = disk(dilation_radius)
        masks = [dilation(mask, footprint=footprint) for mask in masks]
    return masks


def xrai_regions(
    attribution: np.ndarray,
    masks: list[np.ndarray],
    *,
    area_threshold: float = 1.0,
    min_pixel_difference: int = 50,
) -> np.ndarray:
    """The greedy region ranking of XRAI ("full" algorithm).

    Repeatedly adds the candidate region whose *not yet covered* pixels have the
    highest mean attribution, skipping regions that add fewer than
    ``min_pixel_difference`` pixels, until ``area_threshold`` of the image is
    covered; each pixel takes the gain of the region that first covered it, the
    rest the mean attribution of the rest. Counts and sums of uncovered attribution
    are kept per region and updated only for newly covered pixels (a sparse
    region × pixel matrix), so the whole ranking costs one pass over the regions'
    pixels.

    Returns H×W float64.
    """
    height, width = attribution.shape
    values = attribution.astype(np.float64).ravel()
    pixels = height * width
    rows = [np.flatnonzero(mask.ravel()) for mask in masks]
    membership = sparse.csc_matrix(
        (
            np.ones(sum(len(r) for r in rows)),
            (np.repeat(np.arange(len(rows)), [len(r) for r in rows]), np.concatenate(rows)),
        ),
        shape=(len(rows), pixels),
    )
    remaining_count = np.asarray(membership.sum(axis=1)).ravel()
    remaining_sum = membership @ values
    alive = np.ones(len(rows), bool)
    covered = np.zeros(pixels, bool)
    output = np.full(pixels, -np.inf)
    while covered.mean() <= area_threshold:
        alive &= remaining_count >= min_pixel_difference
        if not alive.any():
            break
        gains = np.where(alive, remaining_sum / np.maximum(remaining_count, 1), -np.inf)
        best = int(np.argmax(gains))  # the first of equal gains, as the reference
        new = rows[best][~covered[rows[best]]]
        output[new] = gains[best]
        covered[new] = True
        alive[best] = False
        touched = membership[:, new]
        remaining_count -= np.asarray(touched.sum(axis=1)).ravel()
        remaining_sum -= touched @ values[new]
    rest = output == -np.inf
    if rest.any():
        output[rest] = values[rest].mean()
    return output.reshape(height, width)


@method(
    "xrai",
    "regions ranked by IG attribution density (Kapishnikov et al. 2019)",
    family="regions",
    output="map",
    signed=False,
)
def xrai(
    adapter,
    images: np.ndarray,
    targets: np.ndarray,
    *,
    score: str = "logit",
    baseline="black,white",
    steps: int = 100,
    rule: str = "adaptive",
    area_threshold: float = 1.0,
    attribution: np.ndarray | None = None,
    batch_size: int | None = None,
) -> np.ndarray:
    """XRAI: rank image regions by their density of Integrated Gradients attribution.

    Parameters
    ----------
    baseline : str
        IG baselines; the paper uses black and white (averaged).
    steps : int
        IG points per baseline (100, as the paper's code).
    rule : str
        IG quadrature (see :func:`salmap.methods.path.quadrature`).
    area_threshold : float
        Fraction of the image to rank (1.0: all of it).
    attribution : N×H×W×3 array, optional
        A precomputed attribution to summarise instead of IG.

    Returns
    -------
    N×H×W float32: each pixel holds the gain (mean attribution density) of the region
    that covered it; higher is more important.

    References
    ----------
    A. Kapishnikov, T. Bolukbasi, F. Viégas, M. Terry. XRAI: Better Attributions
    Through Regions. ICCV 2019, Sec. 3 (Algorithm 1).
    """
    images = np.asarray(images, np.float32)
    if attribution is None:
        attribution = integrated_gradients(
            adapter,
            images,
            targets,
            score=score,
            baseline=baseline,
            steps=steps,
            rule=rule,
            batch_size=batch_size,
        )
    attribution = np.asarray(attribution)
    if attribution.ndim == 3:
        attribution = attribution[None]
    maps = []
    for image, attr in zip(images, attribution, strict=True):
        channel_max = attr.max(axis=-1) if attr.ndim == 3 else attr
        maps.append(xrai_regions(channel_max, xrai_segments(image), area_threshold=area_threshold))
    return np.stack(maps).astype(np.float32)

"""Variance- and dependence-based attribution: Sobol indices and HSIC of grid masks.

Both methods perturb the image with masks over a coarse ``grid × grid`` grid (each
cell one input variable), score every masked image, and measure how much of the
score's variation each cell explains: the total Sobol index (Fel et al. 2021) or the
Hilbert-Schmidt independence criterion between the cell and the score (Novello et al.
2022). Masked images stream through :func:`salmap.methods.engine.accumulate_scores`
in full batches, built chunk by chunk from the small design matrix; the estimators
are a few NumPy lines on the kept scores.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.stats import qmc

from salmap.errors import UsageError
from salmap.maps import resize_maps
from salmap.methods.registry import method
from salmap.methods.surrogate import FeaturePlan, coalition_scores, feature_baseline, grid_cells

__all__ = [
    "sobol_design",
    "jansen_total_indices",
    "hsic_design",
    "hsic_scores",
    "sobol",
    "hsic",
]


def sobol_design(cells: int, designs: int, seed: int = 0) -> np.ndarray:
    """The masks of the Jansen estimator: ``designs × (cells + 2)`` rows of ``cells``
    values in [0, 1] — matrices ``A``, ``B`` (the two halves of a scrambled Sobol'
    sequence of dimension ``2 cells``), then for each cell ``i`` the matrix ``C_i``, ``A``
    with column ``i`` taken from ``B`` (Saltelli 2002; Fel et al. 2021, Sec. 3.2)."""
    with warnings.catch_warnings():  # a design count that is no power of two is fine
        warnings.simplefilter("ignore", UserWarning)
        both = qmc.Sobol(2 * cells, scramble=True, seed=seed).random(designs).astype(np.float32)
    a, b = both[:, :cells], both[:, cells:]
    c = np.repeat(a[None], cells, axis=0)
    c[np.arange(cells), :, np.arange(cells)] = b.T
    return np.concatenate([a, b, c.reshape(-1, cells)])


def jansen_total_indices(scores: np.ndarray, cells: int, designs: int) -> np.ndarray:
    """Total Sobol indices from the scores of :func:`sobol_design`'s masks:
    ``S_Ti = mean_j (f(A_j) - f(C_ij))^2 / (2 Var f)``, the variance over ``A`` and ``B``
    (Jansen 1999; Fel et al. 2021, Eq. 5). Xplique 2.0.2 divides by the unbiased
    variance of ``f(A)`` alone: one factor per image, the same map up to scale."""
    f_a, f_b = scores[:designs], scores[designs : 2 * designs]
    f_c = scores[2 * designs : 2 * designs + cells * designs].reshape(cells, designs)
    variance = np.var(np.concatenate([f_a, f_b]))
    if variance == 0:
        return np.zeros(cells)
    return np.mean((f_a[None] - f_c) ** 2, axis=1) / (2 * variance)


def hsic_design(cells: int, designs: int, seed: int = 0) -> np.ndarray:
    """Binary masks: a Latin hypercube of ``designs`` points in ``[0, 1]^cells``, each
    coordinate kept (True) above 0.5 (Novello et al. 2022, Sec. 4)."""
    return qmc.LatinHypercube(cells, seed=seed).random(designs) > 0.5


def hsic_scores(
    masks: np.ndarray, scores: np.ndarray, bandwidth: float | None = None
) -> np.ndarray:
    """HSIC between each binary cell and the score, one value per cell.

    ``HSIC_i = tr(K_i H L H) / (n - 1)^2`` with the binary kernel ``K_i = [m_i = m_i']``
    on the cell, a Gaussian kernel ``L = exp(-(y - y')^2 / (2 bandwidth^2))`` on the
    scores, and ``H = I - 11^T / n`` (Gretton et al. 2005; Novello et al. 2022, Eq.
    4-5). For 0/1 masks ``tr(K_i M) = m^T M m + (1 - m)^T M (1 - m)``.

    ``bandwidth`` defaults to the median distance between two scores (Gretton et al.'s
    heuristic), which a constant added to every score leaves unchanged. Xplique 2.0.2
    (and the paper's code) take the median of the scores themselves instead; pass
    ``abs(np.median(scores))`` to reproduce it (``benchmarks/compare_xplique.py``).
    """
    count = len(scores)
    gaps = np.abs(scores[:, None] - scores[None, :])
    if bandwidth is None:
        bandwidth = np.median(gaps[np.triu_indices(count, 1)])
    kernel = np.exp(-(gaps**2) / (2 * (bandwidth if bandwidth > 0 else 1.0) ** 2))
    centred = kernel - kernel.mean(axis=0) - kernel.mean(axis=1)[:, None] + kernel.mean()
    on = masks.astype(np.float64)
    off = 1.0 - on
    quadratic = (on * (centred @ on)).sum(axis=0) + (off * (centred @ off)).sum(axis=0)
    return quadratic / (count - 1) ** 2


def _check_grid(grid) -> int:
    if int(grid) < 1:
        raise UsageError(f"grid must be >= 1, got {grid}")
    return int(grid)


def _given_design(method: str, design, cells: int, least_rows: int) -> np.ndarray:
    """A user's design matrix as float32 rows × ``cells``, values in [0, 1]."""
    try:
        design = np.asarray(design, np.float32)
    except (TypeError, ValueError):
        raise UsageError(f"{method}: design must be an array of mask values") from None
    if design.ndim != 2 or design.shape[1] != cells or len(design) < least_rows:
        raise UsageError(
            f"{method}: design must be rows × grid² = rows × {cells} (at least {least_rows} "
            f"rows), got shape {design.shape}"
        )
    if not np.all((design >= 0) & (design <= 1)):
        raise UsageError(f"{method}: design values must lie in [0, 1]")
    return design


def _grid_stream(adapter, images, targets, design, grid, baseline, score, batch_size):
    """Scores of every image under every design row (N×rows) in one stream."""
    images = np.asarray(images, np.float32)
    if images.ndim != 4:
        raise UsageError(f"expected N×H×W×3 images, got shape {images.shape}")
    cells = grid_cells(*images.shape[1:3], int(grid), int(grid))
    plans = [FeaturePlan(cells, feature_baseline(im, cells, baseline), design) for im in images]
    return images, coalition_scores(adapter, images, targets, plans, score, batch_size)


def _as_maps(values: list[np.ndarray], grid: int, images: np.ndarray) -> np.ndarray:
    return resize_maps([v.reshape(grid, grid) for v in values], *images.shape[1:3])


@method(
    "sobol",
    "total Sobol indices of grid masks, quasi-Monte-Carlo (Fel et al. 2021)",
    family="variance",
    output="map",
    signed=False,
)
def sobol(
    adapter,
    images: np.ndarray,
    targets: np.ndarray,
    *,
    score: str = "logit",
    grid: int = 8,
    designs: int = 32,
    baseline: str | float = "black",
    batch_size: int | None = None,
    seed: int = 0,
    design: np.ndarray | None = None,
) -> np.ndarray:
    """Sobol attribution: each grid cell's total Sobol index for the score.

    Real-valued masks over a ``grid × grid`` grid (a scrambled Sobol' design, nearest
    upsampling) blend the image with the baseline, ``b + m (x - b)`` (black: the paper's
    inpainting, ``x m``); ``designs × (grid² + 2)`` forward passes per image. The total
    index of a cell is the share of the score's variance that involves it, interactions
    included. The grid of indices is resized to the image (bilinear).

    Parameters
    ----------
    grid : int
        Cells per side (Xplique: 8).
    designs : int
        Rows of each design matrix (Xplique: 32; a power of two keeps the Sobol'
        sequence balanced).
    baseline :
        What a masked-out cell shows (see :func:`salmap.methods.surrogate.feature_baseline`).
    seed : int
        Scrambles the Sobol' sequence: same seed, same masks, same map.
    design : ndarray, optional
        Masks to use instead of drawing them: ``designs × (grid² + 2)`` rows of
        ``grid²`` values in [0, 1] (cell ``r * grid + c``), laid out as
        :func:`sobol_design` returns them — ``A``, ``B``, then ``C_i`` for each cell;
        ``designs`` is then the row count ÷ (grid² + 2) and ``seed`` is not used. For
        instance Xplique's unscrambled Sobol' masks, to compare the two on the same
        masks (``benchmarks/compare_xplique.py``).

    Returns
    -------
    N×H×W float32, non-negative (indices, unitless; they sum to at least 1 over cells
    when the score's variance is explained).

    References
    ----------
    T. Fel, R. Cadène, M. Chalvidal, M. Cord, D. Vigouroux, T. Serre. Look at the
    Variance! Efficient Black-box Explanations with Sobol-based Sensitivity Analysis.
    NeurIPS 2021, Sec. 3 and Eq. 5 (Jansen estimator). M. J. W. Jansen. Analysis of
    variance designs for model output. Computer Physics Communications 117, 1999.
    """
    grid = _check_grid(grid)
    cells = grid**2
    if design is None:
        if int(designs) < 2:
            raise UsageError(f"designs must be >= 2, got {designs}")
        designs = int(designs)
        design = sobol_design(cells, designs, int(seed))
    else:
        design = _given_design("sobol", design, cells, 2 * (cells + 2))
        designs, remainder = divmod(len(design), cells + 2)
        if remainder:
            raise UsageError(
                f"sobol: a design has designs × (grid² + 2) rows, got {len(design)} "
                f"for grid² = {cells}"
            )
    images, scores = _grid_stream(
        adapter, images, targets, design, grid, baseline, score, batch_size
    )
    indices = [jansen_total_indices(row, cells, designs) for row in scores]
    return _as_maps(indices, grid, images)


@method(
    "hsic",
    "Hilbert-Schmidt independence of binary grid masks and the score (Novello et al. 2022)",
    family="variance",
    output="map",
    signed=False,
)
def hsic(
    adapter,
    images: np.ndarray,
    targets: np.ndarray,
    *,
    score: str = "logit",
    grid: int = 8,
    designs: int = 1500,
    baseline: str | float = "black",
    batch_size: int | None = None,
    seed: int = 0,
    design: np.ndarray | None = None,
) -> np.ndarray:
    """HSIC attribution: the dependence between each grid cell being kept and the score.

    Binary masks over a ``grid × grid`` grid (a Latin hypercube thresholded at 0.5)
    keep or remove each cell; ``designs`` forward passes per image. Each cell's value is
    the HSIC estimate between its mask and the scores (:func:`hsic_scores`), which
    captures any dependence, not only the variance a cell explains. The grid is
    resized to the image (bilinear).

    Parameters
    ----------
    grid : int
        Cells per side (Xplique: 8).
    designs : int
        Masks per image: the paper's high budget (Xplique recommends 1500 and 750 for a
        lower budget; its default is 500).
    baseline :
        What a removed cell shows (black: the paper's inpainting).
    seed : int
        Seeds the Latin hypercube: same seed, same masks, same map.
    design : ndarray, optional
        Binary masks to use instead of drawing them: rows × ``grid²`` of 0/1 or bool
        (1 keeps cell ``r * grid + c``); ``designs`` is then the row count and ``seed``
        is not used. For instance Xplique's default masks (a binarised unscrambled
        Sobol' sequence), to compare the two on the same masks.

    Returns
    -------
    N×H×W float32, non-negative.

    References
    ----------
    P. Novello, T. Fel, D. Vigouroux. Making Sense of Dependence: Efficient Black-box
    Explanations Using Dependence Measure. NeurIPS 2022, Sec. 3-4 and Eq. 4-5.
    A. Gretton, O. Bousquet, A. Smola, B. Schölkopf. Measuring Statistical Dependence
    with Hilbert-Schmidt Norms. ALT 2005.
    """
    grid = _check_grid(grid)
    cells = grid**2
    if design is None:
        if int(designs) < 3:
            raise UsageError(f"designs must be >= 3, got {designs}")
        design = hsic_design(cells, int(designs), int(seed))
    else:
        design = _given_design("hsic", design, cells, 3)
        if not np.all((design == 0) | (design == 1)):
            raise UsageError("hsic: design values must be 0 or 1 (the masks are binary)")
        design = design.astype(bool)
    images, scores = _grid_stream(
        adapter, images, targets, design, grid, baseline, score, batch_size
    )
    return _as_maps([hsic_scores(design, row) for row in scores], grid, images)

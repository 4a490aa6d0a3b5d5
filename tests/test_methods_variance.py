"""Sobol and HSIC attribution: the estimators written out by hand on the same masks
(Xplique's estimators, re-derived from the papers), and analytic answers on linear
models."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from salmap.methods import hsic, sobol
from salmap.methods.variance import hsic_design, hsic_scores, sobol_design
from salmap.models.analytic import AnalyticAdapter

GRID = 4


def _linear(seed, size=GRID):
    rng = np.random.default_rng(seed)
    return AnalyticAdapter(rng.normal(size=(3, size, size, 3)), rng.normal(size=3))


def _cell_contributions(adapter, image, target):
    """With one pixel per cell and a black baseline, cell i contributes c_i m_i."""
    return (adapter.weights[target] * image).sum(axis=-1).ravel()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sobol_equals_the_jansen_estimator_written_out(seed):
    adapter, image = _linear(seed), np.random.default_rng(seed).random((1, GRID, GRID, 3))
    image = image.astype(np.float32)
    designs, cells = 16, GRID * GRID
    result = sobol(adapter, image, [1], grid=GRID, designs=designs, seed=seed)[0]
    masks = sobol_design(cells, designs, seed)
    assert masks.shape == (designs * (cells + 2), cells)
    scores = adapter._logits(image * masks.reshape(-1, GRID, GRID, 1))[:, 1]
    f_a, f_b = scores[:designs], scores[designs : 2 * designs]
    variance = np.var(np.concatenate([f_a, f_b]))
    expected = np.empty(cells)
    for i in range(cells):
        f_c = scores[(2 + i) * designs : (3 + i) * designs]
        expected[i] = sum((f_a[j] - f_c[j]) ** 2 for j in range(designs)) / designs / 2 / variance
    np.testing.assert_allclose(result.ravel(), expected, rtol=1e-4)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sobol_indices_of_a_linear_model_are_its_variance_shares(seed):
    # f = sum_i c_i m_i with m_i independent U(0, 1): S_Ti = c_i^2 / sum_j c_j^2.
    adapter = _linear(seed)
    image = np.random.default_rng(seed + 5).random((1, GRID, GRID, 3)).astype(np.float32)
    c = _cell_contributions(adapter, image[0], 2)
    result = sobol(adapter, image, [2], grid=GRID, designs=1024, seed=seed)[0].ravel()
    np.testing.assert_allclose(result, c**2 / (c**2).sum(), atol=0.02)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hsic_equals_the_kernel_trace_written_out(seed):
    rng = np.random.default_rng(seed)
    adapter = AnalyticAdapter(
        rng.normal(size=(3, GRID, GRID, 3)), quadratic=rng.normal(size=(3, GRID, GRID, 3))
    )
    image = rng.random((1, GRID, GRID, 3)).astype(np.float32)
    designs, cells = 60, GRID * GRID
    result = hsic(adapter, image, [0], grid=GRID, designs=designs, seed=seed)[0].ravel()
    masks = hsic_design(cells, designs, seed)
    scores = adapter._logits(image * masks.reshape(-1, GRID, GRID, 1))[:, 0]
    distances = np.abs(np.subtract.outer(scores, scores))
    sigma = np.median([distances[j, k] for j in range(designs) for k in range(j + 1, designs)])
    outputs = np.exp(-(distances**2) / (2 * sigma**2))
    centring = np.eye(designs) - np.ones((designs, designs)) / designs
    for i in range(cells):
        inputs = (masks[:, i, None] == masks[None, :, i]).astype(float)
        value = np.trace(inputs @ centring @ outputs @ centring) / (designs - 1) ** 2
        assert result[i] == pytest.approx(value, rel=1e-4, abs=1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hsic_ranks_the_cells_of_a_linear_model_by_their_weight(seed):
    adapter = _linear(seed)
    image = np.random.default_rng(seed + 7).random((1, GRID, GRID, 3)).astype(np.float32)
    c = _cell_contributions(adapter, image[0], 0)
    result = hsic(adapter, image, [0], grid=GRID, seed=seed)[0].ravel()
    assert spearmanr(result, np.abs(c)).statistic > 0.9


@pytest.mark.parametrize("function", [sobol, hsic])
def test_masks_are_shared_and_batches_do_not_matter(function):
    adapter = _linear(3, size=24)
    images = np.random.default_rng(8).random((3, 24, 24, 3)).astype(np.float32)
    params = {"designs": 16 if function is sobol else 50, "grid": 4}
    together = function(adapter, images, [0, 1, 2], batch_size=13, **params)
    alone = function(adapter, images[2:], [2], batch_size=64, **params)
    np.testing.assert_allclose(together[2], alone[0], rtol=1e-5, atol=1e-7)
    assert together.shape == (3, 24, 24) and together.min() >= 0


@pytest.mark.parametrize("function", [sobol, hsic])
def test_a_given_design_is_used_as_it_is(function):
    # The drawn masks passed back as ``design`` give the same map; other masks another.
    adapter = _linear(4, size=24)
    images = np.random.default_rng(9).random((2, 24, 24, 3)).astype(np.float32)
    cells = GRID * GRID
    if function is sobol:
        drawn, other = sobol_design(cells, 8, seed=3), sobol_design(cells, 8, seed=4)
        params = {"designs": 8}
    else:
        drawn, other = hsic_design(cells, 40, seed=3), hsic_design(cells, 40, seed=4)
        params = {"designs": 40}
    expected = function(adapter, images, [0, 1], grid=GRID, seed=3, **params)
    given = function(adapter, images, [0, 1], grid=GRID, design=drawn.astype(np.float64))
    np.testing.assert_allclose(given, expected, rtol=1e-6, atol=1e-9)
    assert not np.allclose(function(adapter, images, [0, 1], grid=GRID, design=other), expected)


@pytest.mark.parametrize(
    ("function", "design", "message"),
    [
        (sobol, np.full((8 * 18 + 1, 16), 0.5), "designs × \\(grid² \\+ 2\\)"),
        (sobol, np.full((36, 9), 0.5), "rows × grid²"),
        (sobol, np.full((36, 16), 1.5), "in \\[0, 1\\]"),
        (hsic, np.full((20, 16), 0.5), "0 or 1"),
        (hsic, "abc", "array of mask values"),
    ],
)
def test_a_wrong_design_is_a_usage_error(function, design, message):
    from salmap.errors import UsageError

    image = np.zeros((1, GRID, GRID, 3), np.float32)
    with pytest.raises(UsageError, match=message):
        function(_linear(0), image, [0], grid=GRID, design=design)


def test_hsic_bandwidth_is_the_median_distance_unless_given():
    rng = np.random.default_rng(5)
    masks = rng.random((80, 6)) > 0.5
    scores = masks @ rng.normal(size=6) + 0.1 * rng.normal(size=80)
    distances = np.abs(np.subtract.outer(scores, scores))[np.triu_indices(80, 1)]
    np.testing.assert_allclose(
        hsic_scores(masks, scores), hsic_scores(masks, scores, bandwidth=np.median(distances))
    )
    # A constant added to the scores changes nothing with the default width.
    np.testing.assert_allclose(hsic_scores(masks, scores + 7.0), hsic_scores(masks, scores))
    assert not np.allclose(hsic_scores(masks, scores, bandwidth=0.05), hsic_scores(masks, scores))

"""Fewer model calls for the same map: IG quadrature and its tolerance loop, and the
noise samplings of SmoothGrad, on analytic models where the exact answer is known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from salmap.errors import UsageError
from salmap.methods import completeness_error, integrated_gradients, smoothgrad
from salmap.methods.noise import MAX_STRATA, stratified_uniform
from salmap.models.analytic import AnalyticAdapter

H, W, CLASSES = 8, 6, 3
TARGETS = np.array([0, 2], np.int32)


def _polynomial(degree: int, seed: int = 0) -> AnalyticAdapter:
    """Diagonal polynomial scores of the given degree (every power from 1 to it)."""
    rng = np.random.default_rng(seed)
    shape = (CLASSES, H, W, 3)
    powers = {p: rng.normal(size=shape) for p in range(3, degree + 1)}
    return AnalyticAdapter(
        rng.normal(size=shape), rng.normal(size=CLASSES), rng.normal(size=shape), powers=powers
    )


@pytest.fixture
def images():
    return np.random.default_rng(1).random((2, H, W, 3), dtype=np.float32)


def _exact_ig(adapter, images, targets):
    """IG from black of a diagonal polynomial: every term a x^p integrates to a x^p."""
    x = images.astype(np.float64)
    exact = adapter.weights[targets] * x + adapter.quadratic[targets] * x**2
    for p, c in adapter.powers.items():
        exact = exact + c[targets] * x**p
    return exact


def test_gauss_legendre_is_exact_with_the_expected_number_of_points(images):
    # Along the path from black the gradient term of x^7 is a polynomial of degree 6 in
    # alpha: n Gauss-Legendre points integrate degree 2n - 1 exactly, so 4 suffice and 3
    # do not; the trapezoid rule is not exact with 64.
    adapter = _polynomial(7)
    exact = _exact_ig(adapter, images, TARGETS)
    scale = np.abs(exact).max()

    def error(rule, steps):
        info = {}
        found = integrated_gradients(adapter, images, TARGETS, rule=rule, steps=steps, info=info)
        return np.abs(found - exact).max() / scale, info

    four, info = error("gauss-legendre", 4)
    assert four < 1e-6
    assert max(info["completeness_error"]) < 1e-5
    assert info["evaluations"] == [4, 4] and info["forward_evaluations"] == [2, 2]
    assert error("gauss-legendre", 3)[0] > 1e-4
    assert error("trapezoid", 64)[0] > 1e-5


def test_tolerance_loop_stops_below_the_tolerance_and_counts_its_evaluations(images):
    adapter = _polynomial(9, seed=2)
    exact = _exact_ig(adapter, images, TARGETS)
    for tolerance in (1e-2, 1e-4):
        info = {}
        before = adapter.evaluations
        found = integrated_gradients(adapter, images, TARGETS, tolerance=tolerance, info=info)
        assert adapter.evaluations - before == sum(info["evaluations"])
        assert all(e < tolerance for e in info["completeness_error"])
        # The reported error is the one of the returned attributions.
        measured = completeness_error(adapter, images, TARGETS, found)
        np.testing.assert_allclose(info["completeness_error"], measured, rtol=1e-4, atol=1e-7)
        assert all(9 <= n <= 1024 for n in info["evaluations"])
    # The tighter tolerance needed more points, and its attributions are closer.
    assert np.abs(found - exact).max() < 1e-3 * np.abs(exact).max()


def test_tolerance_loop_is_cheap_where_the_path_is_easy(images):
    # A linear model: 9 starting points already integrate it exactly, no refinement.
    adapter = _polynomial(1)
    info = {}
    found = integrated_gradients(adapter, images, TARGETS, tolerance=1e-3, info=info)
    assert info["evaluations"] == [9, 9]
    np.testing.assert_allclose(found, _exact_ig(adapter, images, TARGETS), rtol=1e-4, atol=1e-6)


def test_tolerance_loop_respects_its_cap(images):
    adapter = _polynomial(9, seed=2)
    info = {}
    integrated_gradients(
        adapter, images, TARGETS, tolerance=1e-12, steps=3, max_steps=20, info=info
    )
    assert info["evaluations"] == [20, 20]
    assert min(info["completeness_error"]) > 0
    with pytest.raises(UsageError, match="tolerance must be > 0"):
        integrated_gradients(adapter, images, TARGETS, tolerance=0)
    # Inside a noise wrapper, ``tolerance`` is the wrapper's (over noisy copies); IG's
    # own loop does not nest in it.
    wrapped = smoothgrad(adapter, images, TARGETS, base="ig", steps=4, tolerance=0.01, samples=2)
    assert np.all(np.isfinite(wrapped))


def test_stratified_draws_cover_every_stratum_once_per_pixel():
    size, strata = 5000, 16
    draws = np.stack([stratified_uniform(k, size, strata, seed=3) for k in range(2 * strata)])
    assert ((draws > 0) & (draws < 1)).all()
    for block in (draws[:strata], draws[strata:]):
        cells = np.sort(np.floor(block * strata).astype(int), axis=0)
        assert (cells == np.arange(strata)[:, None]).all()
    # Each draw on its own is uniform over the pixels, and pixels are independent: the
    # correlation of two pixels over the draws is that of independent ones.
    assert abs(draws[0].mean() - 0.5) < 0.02 and abs(draws[0].std() - np.sqrt(1 / 12)) < 0.01
    pairs = np.corrcoef(draws[:, :400].T)[np.triu_indices(400, 1)]
    assert abs(pairs.mean()) < 0.01 and np.abs(pairs).mean() < 1.2 / np.sqrt(2 * strata)
    assert MAX_STRATA >= 32


@pytest.mark.parametrize("degree", [2, 3])
def test_quasi_random_smoothgrad_beats_monte_carlo(images, degree):
    # SmoothGrad's exact value for a diagonal polynomial: E[grad f(x + sigma z)], with
    # E z = 0, E z^2 = 1, E z^3 = 0, E z^4 = 3 per pixel.
    adapter = _polynomial(degree, seed=5)
    sigma, x = 0.3, images.astype(np.float64)
    moments = {0: 1.0, 1: 0.0, 2: sigma**2, 3: 0.0}
    exact = adapter.weights[TARGETS] + 2 * adapter.quadratic[TARGETS] * x
    for p, c in adapter.powers.items():  # d/dx c (x + s z)^p = p c (x + s z)^(p - 1)
        expanded = sum(math.comb(p - 1, k) * x ** (p - 1 - k) * moments[k] for k in range(p))
        exact = exact + p * c[TARGETS] * expanded

    def error(sampling):
        errors = []
        for seed in range(4):
            found = smoothgrad(
                adapter, images, TARGETS, samples=32, sigma=sigma, sampling=sampling, seed=seed
            )
            errors.append(np.sqrt(np.mean((found - exact) ** 2)))
        return np.mean(errors)

    mc, antithetic, qmc = error("mc"), error("antithetic"), error("qmc")
    if degree == 2:  # the gradient is linear in the noise: pairs cancel it exactly
        assert antithetic < 1e-5 * mc and qmc < 1e-5 * mc
    else:  # the z^2 term is left: stratification averages it far better
        assert antithetic < 0.8 * mc
        assert qmc < 0.5 * antithetic


def test_convergence_is_the_correlation_with_the_half_sample_map(images):
    adapter = _polynomial(3, seed=6)
    info = {}
    full = smoothgrad(adapter, images, TARGETS, samples=16, sigma=0.3, seed=2, info=info)
    # Monte-Carlo draws are keyed by the sample index: the first half is the 8-sample run.
    half = smoothgrad(adapter, images, TARGETS, samples=8, sigma=0.3, seed=2)
    expected = [np.corrcoef(a.ravel(), b.ravel())[0, 1] for a, b in zip(full, half, strict=True)]
    np.testing.assert_allclose(info["convergence"], expected, rtol=1e-9)
    assert info["evaluations"] == [16, 16]
    assert all(0.5 < c < 1 for c in info["convergence"])
    with pytest.raises(UsageError, match="unknown sampling"):
        smoothgrad(adapter, images, TARGETS, samples=4, sampling="sobol")


@pytest.mark.parametrize("reduce", ["smoothgrad", "squaregrad", "vargrad"])
@pytest.mark.parametrize("sampling", ["mc", "antithetic"])
def test_noise_wrappers_stop_when_the_map_stops_moving(images, reduce, sampling):
    from salmap.methods import METHODS

    adapter = _polynomial(3, seed=5)
    method = METHODS[reduce].function
    info: dict = {}
    stopped = method(
        adapter, images, TARGETS, samples=256, tolerance=0.02, sampling=sampling, seed=2, info=info
    )
    used = info["samples"]
    assert all(count in (16, 32, 64, 128, 256) for count in used)
    assert all(c >= 0.98 for c, n in zip(info["convergence"], used, strict=True) if n < 256)
    assert info["evaluations"] == used
    for row, count in enumerate(used):  # a stopped run is the fixed run of that length
        fixed = method(
            adapter, images[row : row + 1], TARGETS[row], samples=count, sampling=sampling, seed=2
        )
        np.testing.assert_allclose(stopped[row], fixed[0], rtol=1e-4, atol=1e-6)


def test_noise_tolerance_counts_model_calls_and_refuses_what_it_cannot_nest(images):
    adapter = _polynomial(3, seed=6)
    before = adapter.evaluations
    info: dict = {}
    smoothgrad(adapter, images, TARGETS, samples=64, tolerance=0.5, info=info)
    assert adapter.evaluations - before == sum(info["samples"])
    assert min(info["samples"]) == 16  # a loose tolerance stops at the first comparison
    with pytest.raises(UsageError, match="tolerance needs mc or antithetic"):
        smoothgrad(adapter, images, TARGETS, sampling="qmc", tolerance=0.01)
    with pytest.raises(UsageError, match="tolerance must be between"):
        smoothgrad(adapter, images, TARGETS, tolerance=2.0)

"""Exact answers on an analytic (pure-NumPy) model: every number here can be derived by hand."""

from __future__ import annotations

import numpy as np
import pytest

from salmap.methods import (
    METHODS,
    blur_integrated_gradients,
    gradient_x_input,
    guided_integrated_gradients,
    integrated_gradients,
    occlusion,
    rise,
    smoothgrad,
    squaregrad,
    vanilla_gradients,
    vargrad,
)
from salmap.methods.cam import grad_cam, hires_cam, layer_cam
from salmap.methods.engine import GaussianNoise, unit_rng
from salmap.methods.path import adaptive_nodes, quadrature
from salmap.methods.perturbation import occlusion_windows, rise_masks
from salmap.models.analytic import AnalyticAdapter
from salmap.targets import Class

H, W, CLASSES = 12, 10, 4


@pytest.fixture
def linear():
    rng = np.random.default_rng(3)
    return AnalyticAdapter(rng.normal(size=(CLASSES, H, W, 3)), rng.normal(size=CLASSES))


@pytest.fixture
def quadratic():
    rng = np.random.default_rng(4)
    return AnalyticAdapter(
        rng.normal(size=(CLASSES, H, W, 3)),
        rng.normal(size=CLASSES),
        rng.normal(size=(CLASSES, H, W, 3)),
    )


@pytest.fixture
def images():
    return np.random.default_rng(5).random((3, H, W, 3), dtype=np.float32)


TARGETS = np.array([0, 2, 3], np.int32)


def _f(adapter, images, targets):
    logits = adapter._logits(np.asarray(images, np.float64))
    return logits[np.arange(len(images)), targets]


def test_vanilla_and_gradient_x_input_are_exact(quadratic, images):
    w, q = quadratic.weights[TARGETS], quadratic.quadratic[TARGETS]
    expected = w + 2 * q * images
    np.testing.assert_allclose(vanilla_gradients(quadratic, images, TARGETS), expected, rtol=1e-5)
    np.testing.assert_allclose(
        gradient_x_input(quadratic, images, TARGETS), expected * images, rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("rule", ["trapezoid", "gauss-legendre", "riemann-right", "riemann-middle"])
def test_ig_of_a_linear_model_is_input_minus_baseline_times_weights(linear, images, rule):
    w = linear.weights[TARGETS]
    for baseline, value in (("black", 0.0), ("white", 1.0), (0.25, 0.25)):
        attribution = integrated_gradients(
            linear, images, TARGETS, baseline=baseline, steps=7, rule=rule
        )
        np.testing.assert_allclose(attribution, (images - value) * w, rtol=1e-5, atol=1e-6)


def test_several_baselines_are_averaged(linear, images):
    w = linear.weights[TARGETS]
    attribution = integrated_gradients(linear, images, TARGETS, baseline="black,white", steps=3)
    expected = ((images - 0) * w + (images - 1) * w) / 2
    np.testing.assert_allclose(attribution, expected, rtol=1e-5, atol=1e-6)
    array_baseline = np.full(images.shape[1:], 0.3, np.float32)
    attribution = integrated_gradients(linear, images, TARGETS, baseline=[array_baseline, "black"])
    np.testing.assert_allclose(
        attribution, ((images - 0.3) * w + images * w) / 2, rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize(
    "rule, steps", [("trapezoid", 2), ("gauss-legendre", 1), ("adaptive", 2), ("adaptive", 9)]
)
def test_ig_is_exact_on_a_quadratic_model_with_the_right_quadrature(quadratic, images, rule, steps):
    # Along a straight path the gradient of a quadratic is linear in alpha: the
    # trapezoid rule with 2 points and Gauss-Legendre with 1 point are exact.
    w, q = quadratic.weights[TARGETS], quadratic.quadratic[TARGETS]
    expected = images * (w + q * images)  # integral_0^1 (w + 2 q a x) x da, black baseline
    attribution = integrated_gradients(quadratic, images, TARGETS, steps=steps, rule=rule)
    np.testing.assert_allclose(attribution, expected, rtol=1e-4, atol=1e-6)
    total = attribution.reshape(3, -1).sum(axis=1)
    difference = _f(quadratic, images, TARGETS) - _f(quadratic, np.zeros_like(images), TARGETS)
    np.testing.assert_allclose(total, difference, rtol=1e-5)


def test_riemann_sum_converges_at_first_order(quadratic, images):
    exact = integrated_gradients(quadratic, images, TARGETS, steps=2, rule="trapezoid")
    errors = [
        np.abs(
            integrated_gradients(quadratic, images, TARGETS, steps=m, rule="riemann-right") - exact
        ).max()
        for m in (10, 20)
    ]
    assert errors[0] > 1e-3
    assert errors[1] == pytest.approx(errors[0] / 2, rel=0.01)


def test_adaptive_nodes_follow_the_score():
    # The score moves only on the second of four probe pieces: half the nodes go there.
    alphas, weights = adaptive_nodes(np.array([0.0, 0.0, 10.0, 10.0, 10.0]), 41)
    assert alphas[0] == 0 and alphas[-1] == 1 and np.all(np.diff(alphas) > 0)
    assert weights.sum() == pytest.approx(1.0)
    inside = np.sum((alphas > 0.25) & (alphas < 0.5))
    assert inside == 24  # 5/8 of the 40 gaps (1/2 by change + 1/8 uniform): 25 gaps


def test_quadrature_rules():
    for rule in ("trapezoid", "gauss-legendre", "riemann-left", "riemann-right", "riemann-middle"):
        alphas, weights = quadrature(rule, 9)
        assert len(alphas) == 9 and weights.sum() == pytest.approx(1.0)
        assert alphas.min() >= 0 and alphas.max() <= 1
    # Gauss-Legendre with n points integrates degree 2n-1 exactly: int_0^1 a^9 = 0.1
    alphas, weights = quadrature("gauss-legendre", 5)
    assert np.sum(weights * alphas**9) == pytest.approx(0.1, abs=1e-14)


def test_smoothgrad_of_a_linear_model_is_its_gradient(linear, images):
    w = linear.weights[TARGETS]
    np.testing.assert_allclose(smoothgrad(linear, images, TARGETS, samples=7), w, rtol=1e-5)
    np.testing.assert_allclose(squaregrad(linear, images, TARGETS, samples=7), w**2, rtol=1e-5)
    np.testing.assert_allclose(vargrad(linear, images, TARGETS, samples=7), 0, atol=1e-6)


def test_smoothgrad_over_ig_is_the_mean_of_ig_over_the_same_noisy_copies(quadratic, images):
    samples, sigma, seed = 5, 0.2, 11
    result = smoothgrad(
        quadratic,
        images,
        TARGETS,
        base="integrated-gradients",
        samples=samples,
        sigma=sigma,
        seed=seed,
        steps=4,
        rule="gauss-legendre",
        batch_size=6,
    )
    noise = GaussianNoise(sigma)
    expected = np.zeros(images.shape)
    for i in range(len(images)):
        for u in range(samples):
            noisy = noise(images[i], unit_rng(seed, u))
            expected[i] += integrated_gradients(
                quadratic, noisy[None], TARGETS[i], steps=4, rule="gauss-legendre"
            )[0]
    np.testing.assert_allclose(result, expected / samples, rtol=1e-4, atol=1e-6)
    squares = squaregrad(
        quadratic, images, TARGETS, base="ig", samples=samples, sigma=sigma, seed=seed, steps=4
    )
    assert squares.min() >= 0


def test_smoothgrad_of_a_quadratic_model_approaches_the_gradient(quadratic, images):
    # E[w + 2 q (x + e)] = w + 2 q x: Monte-Carlo error shrinks like 1/sqrt(samples).
    w, q = quadratic.weights[TARGETS], quadratic.quadratic[TARGETS]
    result = smoothgrad(quadratic, images, TARGETS, samples=400, sigma=0.1)
    expected = w + 2 * q * images
    assert np.abs(result - expected).max() < 6 * 2 * np.abs(q).max() * 0.1 / np.sqrt(400)


def test_model_calls_are_batched(linear, images):
    linear.calls = linear.evaluations = 0
    integrated_gradients(
        linear, images, TARGETS, baseline="black,white", steps=10, batch_size=8, rule="trapezoid"
    )
    assert linear.evaluations == 3 * 2 * 10
    assert linear.calls == 8  # ceil(60 / 8): no call is made per sample
    linear.calls = linear.evaluations = 0
    integrated_gradients(linear, images, TARGETS, steps=10, probe=4, batch_size=8)
    assert linear.evaluations == 3 * (10 + 5)  # adaptive: 5 forward probes per path
    linear.calls = linear.evaluations = 0
    smoothgrad(linear, images, TARGETS, samples=50, batch_size=32)
    assert (linear.calls, linear.evaluations) == (5, 150)


@pytest.mark.parametrize("name", ["smoothgrad", "vargrad", "integrated-gradients", "rise"])
def test_batch_size_does_not_change_the_result_and_seeds_reproduce(quadratic, images, name):
    function = METHODS[name].function
    params = {"rise": {"masks": 30}, "integrated-gradients": {"baseline": "uniform"}}.get(
        name, {"samples": 9}
    )
    one = function(quadratic, images, TARGETS, batch_size=1, seed=3, **params)
    many = function(quadratic, images, TARGETS, batch_size=13, seed=3, **params)
    again = function(quadratic, images, TARGETS, batch_size=13, seed=3, **params)
    other = function(quadratic, images, TARGETS, batch_size=13, seed=4, **params)
    np.testing.assert_allclose(one, many, rtol=1e-5, atol=1e-6)
    assert np.array_equal(many, again)
    assert not np.allclose(many, other)


def test_guided_ig_on_a_linear_model_is_exact(linear, images):
    # Whatever the path, each feature travels from its baseline to its value, and
    # the gradient is constant: attribution = w (x - b), feature by feature.
    attribution = guided_integrated_gradients(linear, images, TARGETS, steps=20)
    np.testing.assert_allclose(attribution, images * linear.weights[TARGETS], rtol=1e-4, atol=1e-6)


def test_blur_ig_of_a_linear_model_sums_to_the_score_change(linear, images):
    from salmap.methods.path import gaussian_blur

    attribution = blur_integrated_gradients(linear, images, TARGETS, max_sigma=3.0, steps=200)
    blurred = np.stack([gaussian_blur(image, 3.0) for image in images])
    expected = (images - blurred) * linear.weights[TARGETS]
    np.testing.assert_allclose(attribution, expected, atol=0.02 * np.abs(expected).max())


@pytest.mark.parametrize("aggregate", ["sum", "mean"])
def test_occlusion_equals_hand_computed_score_drops(linear, images, aggregate):
    window, stride, value = 4, 3, 0.5
    result = occlusion(
        linear, images, TARGETS, window=window, stride=stride, value=value, aggregate=aggregate
    )
    w = linear.weights[TARGETS]
    expected = np.zeros((3, H, W))
    counts = np.zeros((H, W))
    for top, left in occlusion_windows(H, W, window, stride):
        region = (slice(None), slice(top, top + window), slice(left, left + window))
        drop = ((images[region] - value) * w[region]).sum(axis=(1, 2, 3))
        expected[region] += drop[:, None, None]
        counts[region[1:]] += 1
    if aggregate == "mean":
        expected = np.where(counts > 0, expected / np.maximum(counts, 1), 0)
    np.testing.assert_allclose(result, expected, rtol=1e-4, atol=1e-5)


def test_rise_equals_its_definition(linear, images):
    count, p = 40, 0.5
    result = rise(
        linear, images, TARGETS, masks=count, probability=p, seed=2, batch_size=7, centered=False
    )
    masks = rise_masks(count, H, W, probability=p, seed=2)
    assert masks.min() >= 0 and masks.max() <= 1 and abs(masks.mean() - p) < 0.1
    for i in range(3):
        scores = _f(linear, images[i][None] * masks[..., None], np.full(count, TARGETS[i]))
        expected = np.tensordot(scores, masks, axes=1) / (count * p)
        np.testing.assert_allclose(result[i], expected, rtol=1e-4, atol=1e-5)


def test_cam_variants_on_the_input_layer(linear, images):
    # Layer = the image (3 channels); gradients = w. Each variant's weighting by hand.
    w = linear.weights[TARGETS]
    channel_weights = w.mean(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(
        grad_cam(linear, images, TARGETS),
        np.maximum((channel_weights * images).sum(-1), 0),
        rtol=1e-5,
        atol=1e-6,
    )
    np.testing.assert_allclose(
        layer_cam(linear, images, TARGETS),
        np.maximum((np.maximum(w, 0) * images).sum(-1), 0),
        rtol=1e-5,
        atol=1e-6,
    )
    np.testing.assert_allclose(
        hires_cam(linear, images, TARGETS),
        np.maximum((w * images).sum(-1), 0),
        rtol=1e-5,
        atol=1e-6,
    )


def test_probability_score_gradient_matches_finite_differences(images):
    rng = np.random.default_rng(8)
    small = AnalyticAdapter(0.01 * rng.normal(size=(CLASSES, H, W, 3)))  # p not saturated
    grads, _ = small.gradients(images[:1], Class(TARGETS[:1], "probability"))

    def probability(x):
        logits = small._logits(x)
        return (np.exp(logits) / np.exp(logits).sum())[0, TARGETS[0]]

    eps = 1e-6
    index = (0, 3, 4, 1)
    bumped = images[:1].astype(np.float64)
    bumped[index] += eps
    numeric = (probability(bumped) - probability(images[:1].astype(np.float64))) / eps
    assert numeric == pytest.approx(grads[index], rel=1e-3)

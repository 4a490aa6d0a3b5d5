"""Faithfulness metrics: hand-computed values, an analytic model whose true relevance is
known, batching (model calls counted), and the embedded model on the bundled photos.

Quantus is not used as the reference: it pulls ``opencv-python``, which must not be
installed beside ``opencv-contrib-python-headless``. The small cases below are
computed by hand from the papers' definitions instead.
"""

from __future__ import annotations

import numpy as np
import pytest

import salmap
from salmap.errors import UsageError
from salmap.metrics import (
    centre_map,
    curve_area,
    deletion,
    energy_pointing_game,
    insertion,
    make_composite,
    mufidelity,
    noisy_linear_imputation,
    pointing_game,
    random_map,
    reference_image,
    road,
)
from salmap.models.analytic import AnalyticAdapter


def _linear_adapter(per_pixel: np.ndarray, *, bias=(0.0, 0.0), batch_size: int = 32):
    """Class 0's logit is sum over pixels of per_pixel * (mean of the pixel's channels);
    class 1's logit is 0."""
    height, width = per_pixel.shape
    weights = np.zeros((2, height, width, 3))
    weights[0] = per_pixel[..., None] / 3
    return AnalyticAdapter(weights, bias=np.asarray(bias), batch_size=batch_size)


# -- hand-computed small cases ------------------------------------------------------------
def test_deletion_and_insertion_equal_hand_computed_curves_on_a_2x2_linear_model():
    adapter = _linear_adapter(np.array([[0.4, 0.3], [0.2, 0.1]]))
    image = np.ones((2, 2, 3), np.float32)
    saliency = np.array([[4.0, 3.0], [2.0, 1.0]])
    # Removing pixels 0.4, 0.3, 0.2, 0.1 in turn (black reference): logits 1, .6, .3, .1, 0.
    removed = deletion(adapter, image, saliency, 0, steps=4, score="logit")
    np.testing.assert_allclose(removed.fractions, [0, 0.25, 0.5, 0.75, 1])
    np.testing.assert_allclose(removed.scores, [1.0, 0.6, 0.3, 0.1, 0.0], atol=1e-6)
    # Trapezoids: 0.25 * (0.8 + 0.45 + 0.2 + 0.05) = 0.375
    assert removed.value == pytest.approx(0.375, abs=1e-6)
    assert not removed.higher_is_better
    inserted = insertion(adapter, image, saliency, 0, steps=4, reference="black", score="logit")
    np.testing.assert_allclose(inserted.scores, [0.0, 0.4, 0.7, 0.9, 1.0], atol=1e-6)
    assert inserted.value == pytest.approx(0.625, abs=1e-6)
    # The probability of class 0 against a class-1 logit of 0 is the logistic function.
    probability = deletion(adapter, image, saliency, 0, steps=4)
    expected = 1 / (1 + np.exp(-np.array([1.0, 0.6, 0.3, 0.1, 0.0])))
    np.testing.assert_allclose(probability.scores, expected, rtol=1e-5)
    assert probability.value == pytest.approx(curve_area(probability.fractions, expected))


def test_reversed_map_deletes_in_reverse_order():
    adapter = _linear_adapter(np.array([[0.4, 0.3], [0.2, 0.1]]))
    image = np.ones((2, 2, 3), np.float32)
    saliency = np.array([[4.0, 3.0], [2.0, 1.0]])
    reverse = deletion(adapter, image, -saliency, 0, steps=4, score="logit")
    np.testing.assert_allclose(reverse.scores, [1.0, 0.9, 0.7, 0.4, 0.0], atol=1e-6)
    assert reverse.value == pytest.approx(0.625, abs=1e-6)


def test_curve_area_is_the_rise_auc_for_even_steps():
    scores = np.array([0.9, 0.5, 0.2, 0.1, 0.05])
    rise = (scores.sum() - scores[0] / 2 - scores[-1] / 2) / (len(scores) - 1)
    assert curve_area(np.linspace(0, 1, 5), scores) == pytest.approx(rise)


def test_target_defaults_to_the_top_class_and_the_map_result():
    adapter = _linear_adapter(np.full((4, 4), -1.0))  # class 1 wins on a white image
    image = np.ones((4, 4, 3), np.float32)
    assert deletion(adapter, image, random_map((4, 4)), steps=4).target == 1
    result = salmap.SaliencyMap(map=random_map((4, 4)), image=image, target=0)
    assert deletion(adapter, None, result, steps=4).target == 0


def test_reference_images():
    image = np.random.default_rng(0).random((224, 224, 3), dtype=np.float32)
    assert np.all(reference_image(image, "black") == 0)
    assert np.all(reference_image(image, 0.25) == 0.25)
    np.testing.assert_allclose(reference_image(image, "mean")[5, 7], image.mean(axis=(0, 1)))
    blurred = reference_image(image, "blur")
    assert blurred.shape == image.shape
    assert blurred.std() < 0.2 * image.std()  # σ = 5 px removes most pixel noise
    with pytest.raises(UsageError):
        reference_image(image, "plaid")


def test_noisy_linear_imputation_fills_a_linear_ramp_exactly():
    # The weighted neighbour mean of a linear function is its value at the centre, so
    # noise-free imputation recovers any plane exactly (where all 8 neighbours exist).
    ys, xs = np.mgrid[0:12, 0:16]
    plane = (0.1 + 0.03 * ys + 0.02 * xs)[..., None] * np.array([1.0, 0.5, 0.25])
    image = plane.astype(np.float32)
    removed = np.zeros((12, 16), bool)
    removed[3:9, 4:12] = True
    filled = noisy_linear_imputation(image, removed, noise=0)
    np.testing.assert_allclose(filled, image, atol=1e-5)


def test_noisy_linear_imputation_of_one_pixel_is_the_weighted_neighbour_mean():
    image = np.zeros((3, 3, 3), np.float32)
    image[0, 1] = 0.6  # a direct neighbour, weight 1/6
    image[0, 0] = 0.9  # a diagonal neighbour, weight 1/12
    removed = np.zeros((3, 3), bool)
    removed[1, 1] = True
    filled = noisy_linear_imputation(image, removed, noise=0)
    # Weights of the 8 neighbours sum to 4/6 + 4/12 = 1.
    assert filled[1, 1, 0] == pytest.approx(0.6 / 6 + 0.9 / 12, abs=1e-6)
    unchanged = ~removed
    np.testing.assert_array_equal(filled[unchanged], image[unchanged])
    noisy = noisy_linear_imputation(image, removed, noise=0.01, rng=1)
    assert 0 < abs(noisy[1, 1, 0] - filled[1, 1, 0]) < 0.05
    np.testing.assert_array_equal(noisy[unchanged], image[unchanged])


def test_mufidelity_is_one_for_the_exact_attribution_of_a_linear_model():
    rng = np.random.default_rng(3)
    per_pixel = rng.normal(size=(18, 18))
    adapter = _linear_adapter(per_pixel)
    image = rng.random((18, 18, 3), dtype=np.float32)
    # With a black reference, removing a set S changes the logit by sum_S w_i x_i.
    exact = per_pixel * image.mean(axis=-1)
    for grid in (9, None):
        assert mufidelity(adapter, image, exact, 0, grid_size=grid, score="logit") == (
            pytest.approx(1.0, abs=1e-6)
        )
        assert mufidelity(adapter, image, -exact, 0, grid_size=grid, score="logit") == (
            pytest.approx(-1.0, abs=1e-6)
        )
    assert np.isnan(mufidelity(adapter, image, np.ones((18, 18)), 0, grid_size=None))


def test_pointing_game_hand_cases():
    saliency = np.zeros((100, 100))
    box = (40, 40, 60, 60)  # rows 40..59, columns 40..59
    saliency[50, 50] = 1
    assert pointing_game(saliency, box)
    saliency[:] = 0
    saliency[50, 70] = 1  # 11 px right of the last column: within 15 px
    assert pointing_game(saliency, box)
    assert not pointing_game(saliency, box, tolerance=10)
    saliency[:] = 0
    saliency[75, 75] = 1  # 16 px down and right: sqrt(2) * 16 > 15
    assert not pointing_game(saliency, box)
    energy = np.zeros((10, 10))
    energy[2:4, 2:4] = 1.0  # 4 inside
    energy[8, 8] = 2.0  # 2 outside
    energy[0, 0] = -5.0  # negative evidence does not count
    assert energy_pointing_game(energy, (2, 2, 4, 4)) == pytest.approx(4 / 6)
    assert energy_pointing_game(np.ones((10, 10)), (0, 0, 5, 10)) == pytest.approx(0.5)
    with pytest.raises(UsageError):
        pointing_game(energy, (0, 0, 11, 4))


def test_composites_place_the_photo_in_its_box(chelsea):
    for background in ("neutral", "cluttered"):
        composite, (top, left, bottom, right) = make_composite(
            chelsea, background=background, seed=2
        )
        assert composite.shape == (224, 224, 3)
        assert max(bottom - top, right - left) == 112  # scale 0.5 of the canvas
        assert abs((right - left) / (bottom - top) - 451 / 300) < 0.02
        outside = composite.copy()
        outside[top:bottom, left:right] = np.nan
        if background == "neutral":
            assert np.nanmax(np.abs(outside - 0.5)) == 0
        else:
            assert np.nanstd(outside) > 0.15  # clutter, not a flat canvas
        # Off centre: the box does not contain the canvas centre.
        assert not (top <= 112 < bottom and left <= 112 < right)


def test_baseline_maps():
    centre = centre_map((31, 41))
    assert np.unravel_index(np.argmax(centre), centre.shape) == (15, 20)
    np.testing.assert_allclose(centre, centre[::-1, ::-1], atol=1e-7)
    first, second = random_map((8, 9), seed=1), random_map((8, 9), seed=1)
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, random_map((8, 9), seed=2))


# -- an analytic model whose true relevance is known ------------------------------------------
SIZE = 32
REGION = (slice(6, 18), slice(4, 16))  # off centre, overlapping the centre a little
REGION_VALUES = 12 * 12 * 3


@pytest.fixture(scope="module")
def analytic_case():
    """A linear scorer that reads only REGION (for deletion, insertion, MuFidelity) and a
    quadratic texture-energy scorer of the same region (for ROAD: linear imputation
    keeps a region's mean, but wipes its texture)."""
    rng = np.random.default_rng(0)
    image = rng.random((SIZE, SIZE, 3), dtype=np.float32)
    weights = np.zeros((2, SIZE, SIZE, 3))
    weights[0][REGION] = 12 / REGION_VALUES
    linear = AnalyticAdapter(weights, bias=[-3.0, 0.0], batch_size=16)
    # logit = 60 * mean((x - 0.5)^2 over the region) - 2: about 3 on uniform noise.
    quadratic = np.zeros((2, SIZE, SIZE, 3))
    quadratic[0][REGION] = 60 / REGION_VALUES
    texture = AnalyticAdapter(-quadratic, bias=[60 * 0.25 - 2, 0.0], quadratic=quadratic)
    truth = np.zeros((SIZE, SIZE))
    truth[REGION] = 1
    maps = {
        "true": truth,
        "noisy true": truth + 2 * rng.random((SIZE, SIZE)),
        "centre": centre_map((SIZE, SIZE)),
        "random": random_map((SIZE, SIZE), seed=5),
    }
    return image, linear, texture, maps


def test_true_map_is_best_and_random_map_worst_on_the_analytic_model(analytic_case):
    image, linear, texture, maps = analytic_case
    scores = {}
    for name, saliency in maps.items():
        scores[name] = {
            "deletion": deletion(linear, image, saliency, 0, steps=32).value,
            "insertion": insertion(linear, image, saliency, 0, steps=32, reference="black").value,
            "road-morf": road(texture, image, saliency, 0).morf.value,
            "road-lerf": road(texture, image, saliency, 0).lerf.value,
            "mufidelity": mufidelity(linear, image, saliency, 0, samples=100),
        }
    lower_is_better = {"deletion", "road-morf"}
    for metric in scores["true"]:
        ranked = sorted(scores, key=lambda name: scores[name][metric])
        if metric not in lower_is_better:
            ranked = ranked[::-1]
        assert ranked[0] == "true" and ranked[-1] == "random", (metric, scores)
    # The true map removes the whole region within the first 14 % of pixels.
    assert scores["true"]["deletion"] < 0.5 * scores["random"]["deletion"]


def test_insertion_with_blur_reference_rewards_the_true_texture_map(analytic_case):
    image, _, texture, maps = analytic_case
    true = insertion(texture, image, maps["true"], 0, steps=32)
    chance = insertion(texture, image, maps["random"], 0, steps=32)
    assert true.value > chance.value + 0.2


def test_deletion_curve_is_batched_not_one_call_per_step(analytic_case):
    image, _, _, maps = analytic_case
    for batch_size in (7, 64):
        weights = np.zeros((2, 16, 14, 3))
        weights[0, 4:9, 3:8] = 0.05
        adapter = AnalyticAdapter(weights, batch_size=batch_size)
        picture = image[:16, :14]
        curve = deletion(adapter, picture, maps["random"][:16, :14], steps=224)
        # 16×14 = 224 pixels: 224 steps of one pixel, 225 images, ceil(225 / batch) calls.
        assert adapter.evaluations == 225
        assert adapter.calls == -(-225 // batch_size)
        if batch_size == 7:
            small = curve
    np.testing.assert_allclose(curve.scores, small.scores, rtol=1e-6)
    adapter.calls = adapter.evaluations = 0
    road(adapter, picture, maps["random"][:16, :14], 0)
    assert adapter.evaluations == 1 + 2 * 9  # the original, then 9 MoRF and 9 LeRF images
    assert adapter.calls == 1


def test_maps_are_resized_to_the_image_and_bad_maps_refused(analytic_case):
    image, linear, _, maps = analytic_case
    small = maps["true"][::2, ::2]
    resized = deletion(linear, image, small, 0, steps=16).value
    full = deletion(linear, image, maps["true"], 0, steps=16).value
    assert resized == pytest.approx(full, abs=0.02)
    with pytest.raises(UsageError, match="H×W"):
        deletion(linear, image, np.zeros((SIZE, SIZE, 3)), 0)
    with pytest.raises(UsageError, match="NaN"):
        deletion(linear, image, np.full((SIZE, SIZE), np.nan), 0)


# -- the embedded model on the bundled photos ---------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("photo", ["chelsea", "coffee"])
def test_most_relevant_first_hurts_more_than_least_relevant_first(default_model, photo):
    """Deletion AUC of a map <= that of its reversed map, for gradient × input and IG."""
    image = salmap.sample_image(photo)
    # At the model's input size, as `salmap eval` measures (and faster).
    import cv2

    image = cv2.resize(image, (224, 224), interpolation=cv2.INTER_AREA)
    found = {}
    for method, params in (("gradient-x-input", {}), ("integrated-gradients", {"steps": 16})):
        result = salmap.explain(image, default_model, method=method, **params)
        forward = deletion(default_model, image, result.map, result.target, steps=28)
        backward = deletion(default_model, image, -result.map, result.target, steps=28)
        found[method] = (forward.value, backward.value)
        assert forward.scores[0] == pytest.approx(backward.scores[0])
        assert forward.value < backward.value, (method, found)
    print(photo, found)


def test_evaluate_ranks_the_exact_gradient_above_the_baselines(analytic_case):
    """On the region scorer, vanilla gradients are the true map (w is the region)."""
    from salmap.errors import ModelError
    from salmap.report import evaluate

    image, linear, _, _ = analytic_case
    found = evaluate(
        [image, image[::-1]],
        linear,
        names=["upright", "flipped"],
        methods=["vanilla"],
        metrics=["deletion", "insertion", "mufidelity"],
        target=0,
        steps=32,
        # A scorer of the region's mean cannot see blur: insert onto black instead.
        insertion_reference="black",
        mufidelity_samples=50,
    )
    assert found.methods == ["vanilla", "random", "centre"]
    assert [(row["image"], row["method"]) for row in found.rows][:3] == [
        ("upright", "vanilla"),
        ("upright", "random"),
        ("upright", "centre"),
    ]
    summary = {entry["method"]: entry for entry in found.summary()}
    for baseline in ("random", "centre"):
        assert summary["vanilla"]["deletion"] < summary[baseline]["deletion"]
        assert summary["vanilla"]["insertion"] > summary[baseline]["insertion"]
        assert summary["vanilla"]["mufidelity"] > summary[baseline]["mufidelity"]
    single = deletion(linear, image, found.maps[("upright", "vanilla")].map, 0, steps=32)
    assert found.value("upright", "vanilla", "deletion") == pytest.approx(single.value)
    assert summary["vanilla"]["deletion"] == pytest.approx(
        np.mean([found.value(name, "vanilla", "deletion") for name in ("upright", "flipped")])
    )
    with pytest.raises(ModelError, match="sanity"):
        evaluate([image], linear, methods=["vanilla"], metrics=["deletion", "sanity"])

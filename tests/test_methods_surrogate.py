"""LIME, KernelSHAP, Shapley sampling, feature ablation against exact Shapley values
enumerated over all 2^8 coalitions, and linear-model identities."""

from __future__ import annotations

import itertools
from math import factorial

import numpy as np
import pytest

from salmap.methods import METHODS, feature_ablation, kernel_shap, lime, shapley_sampling
from salmap.methods.surrogate import feature_baseline, image_features
from salmap.models.analytic import AnalyticAdapter

H, W, CLASSES = 32, 48, 3
GRID8 = {"segmentation": "grid", "features": 8}


def _linear(seed, scale=1.0):
    """A linear scorer; a small ``scale`` keeps its softmax away from saturation."""
    rng = np.random.default_rng(seed)
    weights = scale * rng.normal(size=(CLASSES, H, W, 3))
    return AnalyticAdapter(weights, rng.normal(size=CLASSES))


def _images(seed, count=2):
    """Random crops of real photos, shrunk to H×W (superpixels need real structure)."""
    import skimage.data
    from skimage.transform import resize

    rng = np.random.default_rng(seed)
    photos = (skimage.data.chelsea(), skimage.data.coffee(), skimage.data.astronaut())
    crops = []
    for _ in range(count):
        photo = photos[rng.integers(len(photos))]
        top, left = rng.integers(0, photo.shape[0] - 200), rng.integers(0, photo.shape[1] - 300)
        crops.append(resize(photo[top : top + 200, left : left + 300], (H, W)))
    return np.stack(crops).astype(np.float32)


def _coalition_scores(adapter, image, target, segments, background, score):
    """f(z) for every z in {0, 1}^M, as a dict keyed by the tuple z."""
    features = int(segments.max()) + 1
    table = list(itertools.product((0, 1), repeat=features))
    inputs = np.stack(
        [np.where(np.array(z, bool)[segments][..., None], image, background) for z in table]
    )
    logits = adapter._logits(inputs.astype(np.float64))
    if score == "probability":
        logits = np.exp(logits - logits.max(axis=1, keepdims=True))
        logits /= logits.sum(axis=1, keepdims=True)
    return dict(zip(table, logits[:, target], strict=True)), features


def _exact_shapley(adapter, image, target, segments, background, score="logit"):
    """Shapley values by enumeration: sum over coalitions S without j of
    |S|! (M - |S| - 1)! / M! (f(S + j) - f(S))."""
    values, features = _coalition_scores(adapter, image, target, segments, background, score)
    phi = np.zeros(features)
    for z, value in values.items():
        size = sum(z)
        for j in range(features):
            if z[j]:
                continue
            added = z[:j] + (1,) + z[j + 1 :]
            weight = factorial(size) * factorial(features - size - 1) / factorial(features)
            phi[j] += weight * (values[added] - value)
    return phi


def _per_feature(maps, segments):
    """The value each feature's pixels carry (checking they all carry the same)."""
    first = np.unique(segments.ravel(), return_index=True)[1]
    values = maps.ravel()[first].astype(np.float64)
    np.testing.assert_array_equal(maps, values[segments].astype(np.float32))
    return values


def test_grid_features_are_exact_and_square():
    segments = image_features(np.zeros((16, 24, 3), np.float32), "grid", 8)
    assert segments.max() == 7 and np.bincount(segments.ravel()).tolist() == [48] * 8
    assert image_features(np.zeros((10, 10, 3), np.float32), "grid", 7).max() == 6


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("score", ["logit", "probability"])
def test_kernel_shap_with_every_coalition_is_the_exact_shapley_value(seed, score):
    # The probability couples the features (softmax), so the Shapley values are not
    # the single-feature effects.
    adapter, images, targets = _linear(seed, 0.05), _images(seed + 10), np.array([0, 2])
    maps = kernel_shap(adapter, images, targets, score=score, samples=256, **GRID8)
    for image, target, result in zip(images, targets, maps, strict=True):
        segments = image_features(image, "grid", 8)
        background = feature_baseline(image, segments, "black")
        exact = _exact_shapley(adapter, image, target, segments, background, score)
        np.testing.assert_allclose(_per_feature(result, segments), exact, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_sampled_kernel_shap_and_shapley_sampling_converge_to_the_exact_values(seed):
    # A softmax probability of 8 features: interactions are strong (ablation is off by
    # 40-100 % of the largest value), so only a Shapley estimator comes close.
    adapter, image = _linear(seed, 0.1), _images(seed + 20, 1)
    segments = image_features(image[0], "grid", 8)
    background = feature_baseline(image[0], segments, "grey")
    exact = _exact_shapley(adapter, image[0], 1, segments, background, "probability")
    params = {"score": "probability", "baseline": "grey", **GRID8}

    def error(function, **budget):
        values = _per_feature(function(adapter, image, [1], **params, **budget)[0], segments)
        return np.abs(values - exact).max() / np.abs(exact).max()

    assert error(feature_ablation) > 0.2
    # 254 < 2^8: sizes 1-3 and 5-7 enumerated, size 4 sampled.
    kernel = [error(kernel_shap, samples=n, seed=seed) for n in (24, 100, 254)]
    assert kernel[2] < 0.04 and kernel[2] < kernel[1] < kernel[0]
    sampled = [error(shapley_sampling, permutations=n, seed=seed) for n in (10, 1000)]
    assert sampled[1] < 0.08 and sampled[1] < sampled[0]
    # Along every order the contributions add up to f(x) - f(baseline).
    values = shapley_sampling(adapter, image, [1], permutations=3, **params)[0]
    assert _per_feature(values, segments).sum() == pytest.approx(exact.sum(), abs=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("baseline", ["black", "grey", "mean"])
def test_on_a_linear_model_shapley_methods_give_w_times_x_minus_baseline(seed, baseline):
    adapter, images, targets = _linear(seed), _images(seed + 30), np.array([1, 2])
    params = {"baseline": baseline, "segmentation": "slic", "features": 12}
    results = {
        "kernel-shap": kernel_shap(adapter, images, targets, samples=300, seed=seed, **params),
        "shapley-sampling": shapley_sampling(adapter, images, targets, permutations=3, **params),
        "feature-ablation": feature_ablation(adapter, images, targets, **params),
    }
    for i, (image, target) in enumerate(zip(images, targets, strict=True)):
        segments = image_features(image, "slic", 12)
        assert segments.max() >= 5
        difference = adapter.weights[target] * (image - feature_baseline(image, segments, baseline))
        expected = np.bincount(segments.ravel(), difference.sum(axis=-1).ravel())
        for name, maps in results.items():
            values = _per_feature(maps[i], segments)
            np.testing.assert_allclose(values, expected, rtol=1e-4, atol=1e-4, err_msg=name)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lime_on_a_linear_model_recovers_its_weights(seed):
    adapter, images, targets = _linear(seed), _images(seed + 40), np.array([0, 1])
    params = {"segmentation": "slic", "features": 10, "baseline": "mean", "seed": seed}
    exact = lime(adapter, images, targets, alpha=0.0, samples=200, **params)
    ridge = lime(adapter, images, targets, **params)  # lime's Ridge(alpha=1)
    for i, (image, target) in enumerate(zip(images, targets, strict=True)):
        segments = image_features(image, "slic", 10)
        background = feature_baseline(image, segments, "mean")
        difference = (adapter.weights[target] * (image - background)).sum(axis=-1)
        weights = np.bincount(segments.ravel(), difference.ravel())
        np.testing.assert_allclose(_per_feature(exact[i], segments), weights, atol=1e-4)
        shrunk = _per_feature(ridge[i], segments)
        assert np.corrcoef(shrunk, weights)[0, 1] > 0.99
        assert np.abs(shrunk - weights).max() < 0.1 * np.abs(weights).max()


def test_lime_matches_the_lime_package_on_the_same_superpixels():
    lime_image = pytest.importorskip("lime.lime_image")
    adapter, image = _linear(7), _images(50, 1)[0]
    explainer = lime_image.LimeImageExplainer(random_state=0)

    def classifier(batch):
        return adapter._logits(np.asarray(batch, np.float64))

    def segmenter(picture):
        return image_features(picture.astype(np.float32), "slic", 10)

    explanation = explainer.explain_instance(
        image.astype(np.float64), classifier, labels=(1,), top_labels=None, hide_color=None,
        num_samples=1000, segmentation_fn=segmenter, batch_size=100,
    )  # fmt: skip
    theirs = dict(explanation.local_exp[1])
    segments = segmenter(image)
    ours = _per_feature(
        lime(adapter, image[None], [1], segmentation="slic", features=10)[0], segments
    )
    theirs = np.array([theirs[j] for j in range(len(ours))])
    assert np.corrcoef(ours, theirs)[0, 1] > 0.99
    np.testing.assert_allclose(ours, theirs, rtol=0.1, atol=0.05 * np.abs(theirs).max())


@pytest.mark.parametrize("name", ["lime", "kernel-shap", "shapley-sampling", "feature-ablation"])
def test_batch_size_and_batch_companions_do_not_change_the_map(name):
    adapter, images = _linear(9), _images(60, 3)
    function = METHODS[name].function
    small = {"lime": {"samples": 60}, "kernel-shap": {"samples": 60}}.get(name, {})
    small |= {"permutations": 2} if name == "shapley-sampling" else {}
    params = {"segmentation": "slic", "features": 10, **small}
    together = function(adapter, images, np.array([0, 1, 2]), batch_size=7, **params)
    alone = function(adapter, images[1:2], np.array([1]), batch_size=32, **params)
    np.testing.assert_allclose(together[1], alone[0], rtol=1e-5, atol=1e-6)
    assert together.shape == (3, H, W) and together.dtype == np.float32
    assert len(np.unique(together[1])) > 3  # several features, not one


def test_evaluations_are_batched():
    adapter, images = _linear(11), _images(70, 2)
    adapter.batch_size, adapter.calls, adapter.evaluations = 64, 0, 0
    kernel_shap(adapter, images, np.array([0, 1]), samples=100, **GRID8)
    # 2^8 = 256 > 100: sampled; 2 ends + 49 pairs per image, all in full batches.
    assert adapter.evaluations == 2 * 100 and adapter.calls == 4

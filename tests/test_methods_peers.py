"""Agreement with PAIR's ``saliency`` package on the same Keras model, parameters matched.

PAIR takes a callback, so the reference gradients come from a plain GradientTape on
the Keras model, independent of salmap's adapter.
"""

from __future__ import annotations

import numpy as np
import pytest

saliency = pytest.importorskip("saliency.core")

SIZE = 48


@pytest.fixture(scope="module")
def model():
    import keras

    keras.utils.set_random_seed(7)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(12, 5, activation="relu", padding="same", name="conv1")(inputs)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Conv2D(16, 3, activation="relu", padding="same", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(5, name="logits")(x)
    return keras.Model(inputs, outputs, name="peer_tiny")


@pytest.fixture(scope="module")
def adapter(model):
    import salmap

    return salmap.load_model(model, preprocess="none")


@pytest.fixture(scope="module")
def image():
    from skimage.transform import resize

    import salmap

    return resize(salmap.sample_image("chelsea"), (SIZE, SIZE), anti_aliasing=True).astype(
        np.float32
    )


TARGET = 3


@pytest.fixture(scope="module")
def call_model(model):
    import tensorflow as tf

    @tf.function
    def gradients(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            scores = model(x, training=False)[:, TARGET]
        return tape.gradient(scores, x), scores

    def call_model_function(x_batch, call_model_args=None, expected_keys=None):
        grads, scores = gradients(tf.constant(np.asarray(x_batch, np.float32)))
        return {
            saliency.INPUT_OUTPUT_GRADIENTS: grads.numpy(),
            saliency.OUTPUT_LAYER_VALUES: scores.numpy(),
        }

    return call_model_function


def _correlation(a, b) -> float:
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


def test_integrated_gradients(adapter, image, call_model):
    from salmap.methods import integrated_gradients

    reference = saliency.IntegratedGradients().GetMask(
        image, call_model, x_steps=64, x_baseline=np.zeros_like(image), batch_size=64
    )
    ours = integrated_gradients(adapter, image[None], TARGET, steps=64, rule="trapezoid")[0]
    assert _correlation(ours, reference) >= 0.99


def test_blur_ig(adapter, image, call_model):
    from salmap.methods import blur_integrated_gradients

    reference = saliency.BlurIG().GetMask(
        image, call_model, max_sigma=8, steps=40, grad_step=0.01, batch_size=40
    )
    ours = blur_integrated_gradients(adapter, image[None], TARGET, max_sigma=8, steps=40)[0]
    assert _correlation(ours, reference) >= 0.99


def test_gaussian_blur_matches_scipy(image):
    from scipy import ndimage

    from salmap.methods.path import gaussian_blur

    for sigma in (0.7, 3.0, 12.0):
        reference = ndimage.gaussian_filter(image, sigma=[sigma, sigma, 0], mode="constant")
        np.testing.assert_allclose(gaussian_blur(image, sigma), reference, atol=2e-3)


class _NumpyWithOldQuantile:
    """NumPy as PAIR 0.2.1 expects it: ``quantile(interpolation=...)`` was removed in
    NumPy 2.4 (now ``method=``)."""

    def __getattr__(self, name):
        return getattr(np, name)

    @staticmethod
    def quantile(values, q, interpolation="linear", **kwargs):
        return np.quantile(values, q, method=interpolation, **kwargs)


def test_guided_ig(adapter, image, call_model, monkeypatch):
    from saliency.core import guided_ig

    from salmap.methods import guided_integrated_gradients

    monkeypatch.setattr(guided_ig, "np", _NumpyWithOldQuantile())

    reference = saliency.GuidedIG().GetMask(
        image,
        call_model,
        x_steps=40,
        x_baseline=np.zeros_like(image),
        fraction=0.25,
        max_dist=0.02,
    )
    ours = guided_integrated_gradients(adapter, image[None], TARGET, steps=40)[0]
    assert _correlation(ours, reference) >= 0.99


def test_xrai_regions_are_the_reference_given_the_same_attribution(image):
    from salmap.methods.xrai import xrai_regions, xrai_segments

    attribution = np.random.default_rng(0).normal(size=image.shape).astype(np.float32)
    reference = saliency.XRAI().GetMask(image, None, base_attribution=attribution)
    ours = xrai_regions(attribution.max(axis=-1), xrai_segments(image))
    np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=1e-6)


def test_xrai(adapter, image, call_model):
    from salmap.methods import xrai

    # Region ranking is greedy: IG must be converged on both sides for the same order.
    parameters = saliency.XRAIParameters(steps=128)
    reference = saliency.XRAI().GetMask(
        image,
        call_model,
        baselines=[np.zeros_like(image), np.ones_like(image)],
        batch_size=64,
        extra_parameters=parameters,
    )
    ours = xrai(adapter, image[None], TARGET, steps=128, rule="trapezoid")[0]
    assert _correlation(ours, reference) >= 0.99


def test_occlusion_is_the_reference(adapter, image, call_model):
    from salmap.methods import occlusion

    reference = saliency.Occlusion().GetMask(image, call_model, size=12, value=0.5)
    ours = occlusion(adapter, image[None], TARGET, window=12, stride=1, value=0.5, aggregate="sum")[
        0
    ]
    np.testing.assert_allclose(ours, reference[..., 0], rtol=1e-3, atol=1e-4)

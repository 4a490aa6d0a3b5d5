"""Every method through the same checks on a small Keras model; guided backpropagation
and deconvnet against hand-written backward rules; the model is never changed."""

from __future__ import annotations

import numpy as np
import pytest

import salmap
from salmap.errors import ModelError
from salmap.methods import METHODS

#: small settings so every method runs in a moment
#: Methods a Keras model cannot run, and the words of the error that says so.
KERAS_CANNOT = {
    "deeplift": "backward rule 'deeplift'",
    "deeplift-shap": "backward rule 'deeplift'",
    "lrp": "backward rule 'lrp",
    "fullgrad": "bias",
    "attention-rollout": "attention maps",
    "transformer-attribution": "attention maps",
}

SMALL = {"samples": 3, "steps": 6, "masks": 24, "window": 8, "stride": 8, "max_sigma": 4.0}


@pytest.fixture(scope="module")
def relu_model():
    """ReLU in a Conv layer's activation, in a ReLU layer and in an Activation layer."""
    import keras

    keras.utils.set_random_seed(5)
    inputs = keras.Input((24, 24, 3))
    x = keras.layers.Conv2D(6, 3, activation="relu", name="conv1")(inputs)
    x = keras.layers.Conv2D(6, 3, name="conv2")(x)
    x = keras.layers.ReLU(name="relu2")(x)
    x = keras.layers.Conv2D(8, 3, name="conv3")(x)
    x = keras.layers.Activation("relu", name="relu3")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(4, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs)


def _reference_backward(model, image, target, rule):
    """The same network written with tf ops and a custom ReLU backward rule."""
    import tensorflow as tf

    @tf.custom_gradient
    def relu(z):
        def backward(upstream):
            gate = tf.cast(upstream > 0, upstream.dtype)
            if rule == "guided":
                gate *= tf.cast(z > 0, z.dtype)
            return upstream * gate

        return tf.nn.relu(z), backward

    def conv(x, name):
        layer = model.get_layer(name)
        return tf.nn.conv2d(x, layer.kernel, 1, "VALID") + layer.bias

    x = tf.constant(image[None])
    with tf.GradientTape() as tape:
        tape.watch(x)
        h = relu(conv(relu(conv(relu(conv(x, "conv1")), "conv2")), "conv3"))
        dense = model.get_layer("predictions")
        logits = tf.reduce_mean(h, axis=(1, 2)) @ dense.kernel + dense.bias
        score = logits[0, target]
    return tape.gradient(score, x).numpy()[0]


@pytest.mark.parametrize("rule", ["guided", "deconv"])
def test_modified_backward_rules_equal_hand_written_ones(relu_model, rule):
    adapter = salmap.load_model(relu_model, preprocess="none")
    image = np.random.default_rng(0).random((24, 24, 3), dtype=np.float32)
    expected = _reference_backward(relu_model, image, 2, rule)
    method = "guided-backprop" if rule == "guided" else "deconvnet"
    ours = METHODS[method].function(adapter, image[None], np.array([2]))[0]
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-6 * np.abs(expected).max())
    assert np.abs(expected).max() > 0
    vanilla = METHODS["vanilla"].function(adapter, image[None], np.array([2]))[0]
    assert not np.allclose(ours, vanilla)


def test_the_model_is_never_changed(relu_model):
    adapter = salmap.load_model(relu_model, preprocess="none")
    images = np.random.default_rng(1).random((2, 24, 24, 3), dtype=np.float32)
    before_weights = [w.copy() for w in relu_model.get_weights()]
    before_output = relu_model(images).numpy()
    config = relu_model.get_config()
    for name in ("guided-backprop", "deconvnet", "grad-cam", "guided-grad-cam", "score-cam"):
        METHODS[name].function(adapter, images, np.array([0, 1]))
    assert relu_model.get_config() == config
    assert relu_model.get_layer("conv1").activation.__name__ == "relu"
    for before, after in zip(before_weights, relu_model.get_weights(), strict=True):
        assert np.array_equal(before, after)
    np.testing.assert_allclose(relu_model(images).numpy(), before_output, rtol=1e-6)


@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_common_checks(tiny_keras_model, name):
    """Shape, finiteness, one-by-one = batched, same seed = same map bit for bit."""
    spec = METHODS[name]
    adapter = salmap.load_model(tiny_keras_model, preprocess="none")
    images = np.random.default_rng(3).random((2, 36, 32, 3), dtype=np.float32)
    targets = np.array([3, 8], np.int32)
    params = {k: v for k, v in SMALL.items() if k in spec.defaults}
    if name in KERAS_CANNOT:  # a PyTorch-only rule or capability: one clear error
        with pytest.raises(ModelError, match=KERAS_CANNOT[name]):
            spec.function(adapter, images, targets, **params)
        return
    out = spec.function(adapter, images, targets, **params)
    shape = (2, 36, 32, 3) if spec.output == "attribution" else (2, 36, 32)
    assert out.shape == shape and out.dtype == np.float32 and np.isfinite(out).all()
    assert np.abs(out).max() > 0
    if not spec.signed:
        assert out.min() >= 0
    again = spec.function(adapter, images, targets, **params)
    assert np.array_equal(out, again)
    one = spec.function(adapter, images[1:], targets[1:], batch_size=1, **params)
    np.testing.assert_allclose(one[0], out[1], rtol=2e-3, atol=2e-5 * np.abs(out[1]).max())


def test_smoothgrad_over_a_sequential_method_and_unknown_bases(tiny_keras_model):
    from salmap.errors import UsageError
    from salmap.methods import guided_integrated_gradients, smoothgrad
    from salmap.methods.engine import GaussianNoise, unit_rng

    adapter = salmap.load_model(tiny_keras_model, preprocess="none")
    images = np.random.default_rng(4).random((2, 32, 32, 3), dtype=np.float32)
    targets = np.array([1, 2])
    ours = smoothgrad(
        adapter, images, targets, base="guided-ig", samples=3, steps=5, seed=9, batch_size=4
    )
    noise = GaussianNoise(0.15)
    noisy = np.stack([noise(images[1], unit_rng(9, u)) for u in range(3)])
    expected = guided_integrated_gradients(adapter, noisy, np.full(3, 2), steps=5).mean(0)
    np.testing.assert_allclose(ours[1], expected, rtol=1e-3, atol=1e-6 * np.abs(expected).max())
    with pytest.raises(UsageError, match="not to 'grad-cam'"):
        smoothgrad(adapter, images, targets, base="grad-cam")
    with pytest.raises(UsageError, match="unknown base"):
        smoothgrad(adapter, images, targets, base="nope")


def test_explain_several_targets_and_aliases(tiny_keras_model):
    adapter = salmap.load_model(tiny_keras_model, preprocess="none")
    image = np.random.default_rng(6).random((32, 32, 3), dtype=np.float32)
    results = salmap.explain(image, model=adapter, method="ig", target=[1, 5], steps=8)
    assert [r.target for r in results] == [1, 5]
    assert results[0].method == "integrated-gradients" and results[0].attribution.shape == (
        32,
        32,
        3,
    )
    assert not np.allclose(results[0].map, results[1].map)
    cam = salmap.explain(image, model=adapter, method="gradcam", target=1)
    assert cam.map.shape == (32, 32) and cam.attribution is None

"""CAM family on Keras models: Grad-CAM against a direct GradientTape computation, layer
choice on several keras.applications architectures and inside nested models."""

from __future__ import annotations

import numpy as np
import pytest

import salmap
from salmap.methods import METHODS, grad_cam
from salmap.models.keras_views import default_cam_layer


def _tape_grad_cam(feature_model, head, image, target):
    """Grad-CAM written out: activations, gradients of the target logit, pooled weights."""
    import tensorflow as tf

    with tf.GradientTape() as tape:
        activations = feature_model(tf.constant(image[None]), training=False)
        tape.watch(activations)
        score = head(activations)[0, target]
    grads = tape.gradient(score, activations).numpy()[0]
    weights = grads.mean(axis=(0, 1))
    return np.maximum((activations.numpy()[0] * weights).sum(-1), 0)


def test_grad_cam_equals_gradient_tape_on_a_small_model(tiny_keras_model):
    import keras

    from salmap.maps import resize_map

    adapter = salmap.load_model(tiny_keras_model, preprocess="none")
    image = np.random.default_rng(0).random((32, 32, 3), dtype=np.float32)
    assert adapter.cam_layer() == "conv2"
    features = keras.Model(tiny_keras_model.inputs, tiny_keras_model.get_layer("conv2").output)
    dense = tiny_keras_model.get_layer("predictions")

    def head(activations):  # the logits: the softmax is skipped, as the adapter does
        return keras.ops.mean(activations, axis=(1, 2)) @ dense.kernel + dense.bias

    expected = resize_map(_tape_grad_cam(features, head, image, 4).astype(np.float32), 32, 32)
    ours = grad_cam(adapter, image[None], np.array([4]))[0]
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-6 * expected.max())
    assert expected.max() > 0


@pytest.fixture(scope="module")
def nested_resnet():
    """A classifier head over a nested ResNet50 feature extractor (random weights)."""
    import keras

    keras.utils.set_random_seed(2)
    base = keras.applications.ResNet50(weights=None, include_top=False, input_shape=(64, 64, 3))
    inputs = keras.Input((64, 64, 3))
    x = keras.layers.GlobalAveragePooling2D()(base(inputs))
    outputs = keras.layers.Dense(6, activation="softmax")(x)
    return keras.Model(inputs, outputs), base


def test_grad_cam_inside_a_nested_model(nested_resnet):
    import keras

    model, base = nested_resnet
    adapter = salmap.load_model(model, preprocess="none")
    assert adapter.cam_layer() == f"{base.name}/conv5_block3_out"
    dense = model.layers[-1]

    def head(activations):
        return keras.ops.mean(activations, axis=(1, 2)) @ dense.kernel + dense.bias

    image = np.random.default_rng(1).random((64, 64, 3), dtype=np.float32)
    expected = _tape_grad_cam(base, head, image, 2)
    values, grads, scores = adapter.layer_values_and_gradients(image[None], [2])
    assert values.shape == (1, 2, 2, 2048)
    np.testing.assert_allclose(scores[0], adapter.predict(image[None])[0, 2], rtol=1e-5)
    weights = grads[0].mean(axis=(0, 1))
    np.testing.assert_allclose(
        np.maximum((values[0] * weights).sum(-1), 0), expected, rtol=1e-4, atol=1e-5
    )
    # An inner layer by bare name, found inside the nested model.
    assert adapter.cam_layer("conv4_block6_out") == f"{base.name}/conv4_block6_out"
    assert grad_cam(adapter, image[None], [2], layer="conv4_block6_out").shape == (1, 64, 64)


@pytest.mark.parametrize(
    "application, size, expected",
    [
        ("ResNet50", 64, "conv5_block3_out"),  # after the last addition and ReLU
        ("MobileNetV2", 64, "out_relu"),
        ("EfficientNetB0", 64, "top_activation"),
        ("DenseNet121", 64, "relu"),
        ("VGG16", 64, "block5_pool"),
        ("MobileNetV3Small", 96, None),  # auto-named: the activation before the pooling
    ],
)
def test_default_cam_layer_on_keras_applications(application, size, expected):
    import keras

    model = getattr(keras.applications, application)(weights=None, input_shape=(size, size, 3))
    name = default_cam_layer(model)
    if expected is not None:
        assert name == expected
    chosen = model.get_layer(name)
    shape = chosen.output.shape
    assert len(shape) == 4 and shape[1] > 1 and shape[2] > 1
    later = model.layers[model.layers.index(chosen) + 1 :]
    # Everything after it is pooled or 1×1 (MobileNetV3's head convolutions work on 1×1).
    assert all(len(layer.output.shape) != 4 or layer.output.shape[1] == 1 for layer in later)
    if application == "MobileNetV3Small":
        assert shape[-1] == 576 and isinstance(later[0], keras.layers.GlobalAveragePooling2D)


def test_cam_variants_on_a_keras_model(tiny_keras_model):
    adapter = salmap.load_model(tiny_keras_model, preprocess="none")
    images = np.random.default_rng(2).random((2, 40, 36, 3), dtype=np.float32)
    targets = np.array([1, 7])
    for name in ("grad-cam", "grad-cam++", "layer-cam", "hires-cam", "eigen-cam", "score-cam"):
        maps = METHODS[name].function(adapter, images, targets)
        assert maps.shape == (2, 40, 36) and maps.min() >= 0 and np.isfinite(maps).all()
        one = METHODS[name].function(adapter, images[1:], targets[1:], batch_size=1)
        np.testing.assert_allclose(maps[1:], one, rtol=1e-4, atol=1e-7)
    guided = METHODS["guided-grad-cam"].function(adapter, images, targets)
    assert guided.shape == (2, 40, 36, 3)


def test_unknown_layer_is_a_usage_error(tiny_keras_model):
    from salmap.errors import UsageError

    adapter = salmap.load_model(tiny_keras_model, preprocess="none")
    with pytest.raises(UsageError, match="no layer 'nope'.*conv2"):
        grad_cam(adapter, np.zeros((1, 32, 32, 3), np.float32), [0], layer="nope")

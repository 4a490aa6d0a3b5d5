"""Ablation-CAM and XGrad-CAM by hand on the analytic model and a Keras CNN."""

from __future__ import annotations

import numpy as np
import pytest

import salmap
from salmap.maps import resize_map
from salmap.methods import ablation_cam, xgrad_cam
from salmap.models.analytic import AnalyticAdapter


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ablation_cam_on_a_linear_model_by_hand(seed):
    # The analytic model's layer is the image: zeroing colour channel c of a linear
    # model drops the score by sum_i w_ic x_ic exactly.
    rng = np.random.default_rng(seed)
    adapter = AnalyticAdapter(rng.normal(size=(3, 8, 10, 3)) + 0.5, rng.normal(size=3))
    images = rng.random((2, 8, 10, 3), dtype=np.float32)
    targets = np.array([0, 2])
    maps = ablation_cam(adapter, images, targets, batch_size=4)
    for image, target, result in zip(images, targets, maps, strict=True):
        w = adapter.weights[target]
        score = (w * image).sum() + adapter.bias[target]
        weights = (w * image).sum(axis=(0, 1)) / score
        expected = np.maximum((image * weights).sum(axis=-1), 0)
        np.testing.assert_allclose(result, expected, rtol=1e-4, atol=1e-6)


def _keras_case(seed):
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((20, 20, 3))
    x = keras.layers.Conv2D(6, 3, activation="relu", name="conv1")(inputs)
    x = keras.layers.Conv2D(5, 3, activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(4, name="logits")(x)
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize("seed", [0, 1])
def test_keras_ablation_and_xgrad_cam_by_hand(seed):
    model = _keras_case(seed)
    adapter = salmap.load_model(model, preprocess="none")
    images = np.random.default_rng(seed).random((2, 20, 20, 3), dtype=np.float32)
    targets = np.array([1, 3])
    head = model.get_layer("logits")
    values = model.get_layer("conv2")(model.get_layer("conv1")(images)).numpy()

    def logits(activations):
        return (activations.mean(axis=(1, 2)) @ head.kernel.numpy()) + head.bias.numpy()

    scores = logits(values)[[0, 1], targets]
    ablation = ablation_cam(adapter, images, targets, layer="conv2", batch_size=3)
    xgrad = xgrad_cam(adapter, images, targets, layer="conv2")
    for i, target in enumerate(targets):
        drops = []
        for channel in range(values.shape[-1]):
            zeroed = values[i : i + 1].copy()
            zeroed[..., channel] = 0
            drops.append(scores[i] - logits(zeroed)[0, target])
        weights = np.array(drops) / scores[i]
        expected = resize_map(np.maximum(values[i] @ weights, 0).astype(np.float32), 20, 20)
        np.testing.assert_allclose(ablation[i], expected, rtol=1e-3, atol=1e-5 * expected.max())
        # XGrad-CAM: the gradient of a mean-pooled head is kernel / (h w) everywhere.
        grads = np.broadcast_to(head.kernel.numpy()[:, target] / 256, values[i].shape)
        channel_weights = (grads * values[i]).sum(axis=(0, 1)) / (values[i].sum(axis=(0, 1)) + 1e-7)
        expected = resize_map(np.maximum(values[i] @ channel_weights, 0).astype(np.float32), 20, 20)
        np.testing.assert_allclose(xgrad[i], expected, rtol=1e-3, atol=1e-5 * expected.max())

"""Tests of the Keras EfficientNet-Lite0 port and its weights read from the PyTorch file."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import skimage.data
import tensorflow as tf

from salmap.errors import ModelError, UsageError
from salmap.models.efficientnet_lite import (
    BATCH_NORM_EPSILON,
    FEATURE_LAYER,
    INPUT_SIZE,
    PREPROCESS,
    build_efficientnet_lite0,
    default_weights_path,
    keras_weights_from_state_dict,
)
from salmap.models.pth import load_state_dict

# Logits of a reference forward pass written with PyTorch 2.13.0 functional ops
# (F.conv2d on TF-"SAME"-padded inputs, F.batch_norm with eps 1e-3, F.relu6) over the
# tensors torch.load returns, fed the same resized and normalised arrays as below.
TORCH_REFERENCE_LOGITS = {
    "chelsea": {285: 10.524017, 282: 8.361226, 281: 8.134479, 287: 6.202420, 728: 4.113364},
    "coffee": {967: 10.481520, 968: 7.197613, 925: 6.642026, 504: 6.391675, 969: 5.174795},
}


@pytest.fixture(scope="module")
def model():
    return build_efficientnet_lite0()


@pytest.fixture(scope="module")
def state_dict():
    return load_state_dict(default_weights_path())


def _pipeline(image: np.ndarray) -> tf.Tensor:
    """The adapter's path: [0, 1] RGB -> antialiased bilinear 224×224 -> (x - mean) / std."""
    x = tf.image.resize(
        tf.constant(image, tf.float32), INPUT_SIZE, method="bilinear", antialias=True
    )
    mean = tf.constant(PREPROCESS["mean"], tf.float32)
    std = tf.constant(PREPROCESS["std"], tf.float32)
    return (x - mean) / std


def _photo(name: str) -> np.ndarray:
    return getattr(skimage.data, name)().astype(np.float32) / 255.0


@pytest.mark.slow
@pytest.mark.parametrize("name, label", [("chelsea", 285), ("coffee", 967)])
def test_top1_on_real_photos(model, name, label):
    logits = model(_pipeline(_photo(name))[None], training=False).numpy()[0]
    probabilities = tf.nn.softmax(logits).numpy()
    assert int(np.argmax(logits)) == label  # 285 Egyptian cat, 967 espresso
    assert probabilities[label] > 0.6  # measured 0.79 (cat) and 0.88 (espresso)
    for index, expected in TORCH_REFERENCE_LOGITS[name].items():
        assert logits[index] == pytest.approx(expected, abs=2e-3)


def test_output_is_logits_not_probabilities(model):
    assert model.get_layer("logits").activation is keras.activations.linear
    logits = model(_pipeline(_photo("coffee"))[None], training=False).numpy()[0]
    assert logits.shape == (1000,)
    assert logits.min() < 0 and logits.max() > 1


def test_state_dict_maps_one_to_one_onto_keras_weights(model, state_dict):
    mapped = keras_weights_from_state_dict(state_dict, model)
    layers_with_weights = {layer.name for layer in model.layers if layer.weights}
    assert set(mapped) == layers_with_weights
    # Every Keras variable receives exactly one tensor of its shape, and holds it.
    for name, arrays in mapped.items():
        variables = model.get_layer(name).weights
        assert [tuple(v.shape) for v in variables] == [a.shape for a in arrays], name
        for variable, array in zip(variables, arrays, strict=True):
            np.testing.assert_array_equal(variable.numpy(), array, err_msg=name)
    # Every tensor of the file is used, apart from the batch-norm step counters.
    counters = [name for name in state_dict if name.endswith(".num_batches_tracked")]
    assert sum(len(arrays) for arrays in mapped.values()) == len(state_dict) - len(counters)
    assert len(counters) == 49  # stem, head and 47 block batch norms
    values = sum(a.size for n, a in state_dict.items() if n not in counters)
    assert model.count_params() == values == 4_694_024


def test_layouts_are_transposed_from_torch(model, state_dict):
    stem = model.get_layer("stem_conv").kernel.numpy()
    # Keras kernel[h, w, in, out] is torch weight[out, in, h, w].
    assert stem[2, 0, 1, 5] == state_dict["_conv_stem.weight"][5, 1, 2, 0]
    depthwise = model.get_layer("block15_depthwise_conv").kernel.numpy()
    assert depthwise.shape == (3, 3, 1152, 1)
    assert depthwise[0, 2, 700, 0] == state_dict["_blocks.15._depthwise_conv.weight"][700, 0, 0, 2]
    dense = model.get_layer("logits").kernel.numpy()
    assert dense[17, 285] == state_dict["_fc.weight"][285, 17]
    bn = model.get_layer("head_bn")
    assert bn.epsilon == BATCH_NORM_EPSILON == 1e-3
    np.testing.assert_array_equal(bn.moving_variance.numpy(), state_dict["_bn1.running_var"])


def test_wrong_or_extra_tensors_are_refused(model, state_dict):
    extra = dict(state_dict, **{"_blocks.16._bn0.weight": np.ones(3, np.float32)})
    with pytest.raises(ModelError, match="does not use"):
        keras_weights_from_state_dict(extra, model)
    missing = {k: v for k, v in state_dict.items() if k != "_blocks.3._project_conv.weight"}
    with pytest.raises(ModelError, match="lacks tensor '_blocks.3._project_conv.weight'"):
        keras_weights_from_state_dict(missing, model)
    reshaped = dict(state_dict, **{"_fc.bias": np.zeros(10, np.float32)})
    with pytest.raises(ModelError, match="layer 'logits'"):
        keras_weights_from_state_dict(reshaped, model)


def test_preprocessing_matches_the_stem_batch_norm_statistics(model):
    # The stem's batch norm recorded the mean and variance of the stem convolution over the
    # training images, normalised as in training: the right normalisation reproduces that
    # variance on real photos, the ImageNet mean/std (≈2.2× larger values) does not.
    stem = keras.Model(model.input, model.get_layer("stem_conv").output)
    moving_variance = model.get_layer("stem_bn").moving_variance.numpy()
    photos = ["chelsea", "coffee", "astronaut", "rocket", "hubble_deep_field"]
    resized = tf.stack(
        [tf.image.resize(_photo(n), INPUT_SIZE, antialias=True) for n in photos]
    ).numpy()

    def variance_ratio(mean, std):
        features = stem((resized - np.float32(mean)) / np.float32(std)).numpy()
        variance = features.reshape(-1, features.shape[-1]).var(axis=0)
        live = moving_variance > 1e-3
        return float(np.median(variance[live] / moving_variance[live]))

    assert 0.6 < variance_ratio(PREPROCESS["mean"], PREPROCESS["std"]) < 1.5  # measured 0.90
    assert variance_ratio((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)) > 3  # measured 4.5
    np.testing.assert_allclose(PREPROCESS["mean"], 127 / 255)
    np.testing.assert_allclose(PREPROCESS["std"], 128 / 255)


def test_architecture_and_layer_names():
    random_model = build_efficientnet_lite0(weights=None)
    assert random_model.input_shape == (None, 224, 224, 3)
    assert random_model.output_shape == (None, 1000)
    assert random_model.get_layer("head_conv").output.shape == (None, 7, 7, 1280)
    assert random_model.get_layer(FEATURE_LAYER).output.shape == (None, 7, 7, 1280)
    depthwise = [layer for layer in random_model.layers if layer.name.endswith("depthwise_conv")]
    assert len(depthwise) == 16
    assert [layer.kernel_size[0] for layer in depthwise] == [3, 3, 3, 5, 5] + [3] * 3 + [5] * 7 + [
        3
    ]
    assert [layer.strides[0] for layer in depthwise].count(2) == 4
    # Residual additions: blocks that keep width and resolution (the repeats of each stage).
    adds = [layer.name for layer in random_model.layers if isinstance(layer, keras.layers.Add)]
    assert len(adds) == 9
    # The Lite variant: no squeeze-and-excitation (no Multiply), ReLU6 everywhere (no swish).
    kinds = {type(layer).__name__ for layer in random_model.layers}
    assert "Multiply" not in kinds and "Activation" not in kinds
    relus = [layer for layer in random_model.layers if isinstance(layer, keras.layers.ReLU)]
    assert len(relus) == 1 + 15 + 16 + 1 and all(layer.max_value == 6.0 for layer in relus)
    assert random_model.count_params() == 4_694_024
    # Random weights are not the pretrained ones (Keras' initial moving variance is 1).
    np.testing.assert_array_equal(random_model.get_layer("stem_bn").moving_variance.numpy(), 1.0)


def test_bad_weights_arguments(tmp_path):
    with pytest.raises(UsageError, match="weights must be"):
        build_efficientnet_lite0(weights=3)
    with pytest.raises(ModelError, match="does not exist"):
        build_efficientnet_lite0(weights=tmp_path / "missing.pth")

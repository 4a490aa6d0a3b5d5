"""The Keras adapter: exact gradients, preprocessing parity, logits, no mutation."""

from __future__ import annotations

import numpy as np
import pytest

import salmap
from salmap.errors import ModelError, UsageError
from salmap.models import KerasAdapter, load_model
from salmap.targets import Class


@pytest.fixture(scope="module")
def resnet_pair():
    """ResNet50 with random weights, with its softmax (as the tutorial) and a copy of the
    same weights without it (the reference for logits)."""
    import keras

    keras.utils.set_random_seed(1)
    with_softmax = keras.applications.ResNet50(weights=None)
    logits_model = keras.applications.ResNet50(weights=None, classifier_activation=None)
    logits_model.set_weights(with_softmax.get_weights())
    return with_softmax, logits_model


def _tutorial_gradient(model, image01, klass, preprocess):
    """The TensorFlow tutorial's computation, differentiated w.r.t. the [0, 1] image."""
    import tensorflow as tf

    image = tf.convert_to_tensor(image01[None])
    with tf.GradientTape() as tape:
        tape.watch(image)
        predictions = model(preprocess(image * 255.0), training=False)
        loss = predictions[0][klass]
    return tape.gradient(loss, image).numpy()[0]


@pytest.mark.parametrize("score", ["probability", "logit"])
def test_vanilla_equals_tutorial_gradient_tape_on_resnet50(resnet_pair, score):
    import keras

    with_softmax, logits_model = resnet_pair
    rng = np.random.default_rng(0)
    image = rng.random((224, 224, 3), dtype=np.float32)
    adapter = load_model(with_softmax, preprocess="caffe")
    klass = 7
    result = salmap.explain(image, model=adapter, target=klass, score=score)
    reference_model = with_softmax if score == "probability" else logits_model
    expected = _tutorial_gradient(
        reference_model, image, klass, keras.applications.resnet50.preprocess_input
    )
    assert np.abs(expected).max() > 0
    np.testing.assert_allclose(
        result.attribution, expected, rtol=1e-3, atol=1e-4 * np.abs(expected).max()
    )
    np.testing.assert_allclose(result.map, np.abs(expected).max(axis=-1), rtol=1e-3, atol=1e-6)


def test_vanilla_equals_gradient_tape_on_tiny_model(tiny_keras_model):
    import tensorflow as tf

    rng = np.random.default_rng(1)
    images = rng.random((3, 32, 32, 3), dtype=np.float32)
    adapter = KerasAdapter(tiny_keras_model, preprocess="tf")
    grads, scores = adapter.gradients(images, Class([1, 4, 9], "probability"))
    x = tf.convert_to_tensor(images)
    with tf.GradientTape() as tape:
        tape.watch(x)
        probabilities = tiny_keras_model(x * 2.0 - 1.0)
        chosen = tf.gather(probabilities, [1, 4, 9], batch_dims=1)
    expected = tape.gradient(chosen, x).numpy()
    np.testing.assert_allclose(grads, expected, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(scores, chosen.numpy(), rtol=1e-5)


def test_logits_read_before_softmax_without_mutation(tiny_keras_model):
    import keras

    weights_before = [w.copy() for w in tiny_keras_model.get_weights()]
    layers_before = len(tiny_keras_model.layers)
    adapter = KerasAdapter(tiny_keras_model, preprocess="none")
    images = np.random.default_rng(2).random((2, 32, 32, 3), dtype=np.float32)
    logits = adapter.predict(images)
    probabilities = tiny_keras_model(images).numpy()
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(exp / exp.sum(axis=1, keepdims=True), probabilities, rtol=1e-5)
    assert not np.allclose(logits.sum(axis=1), 1.0)  # really logits, not probabilities
    last = tiny_keras_model.layers[-1]
    assert last.activation is keras.activations.softmax
    assert len(tiny_keras_model.layers) == layers_before
    for before, after in zip(weights_before, tiny_keras_model.get_weights(), strict=True):
        np.testing.assert_array_equal(before, after)


def test_batched_equals_one_by_one(tiny_keras_model):
    adapter = KerasAdapter(tiny_keras_model, preprocess="none", batch_size=2)
    images = np.random.default_rng(3).random((5, 40, 48, 3), dtype=np.float32)
    targets = np.array([0, 1, 2, 3, 4])
    batched, _ = adapter.gradients(images, targets)
    single = np.concatenate(
        [adapter.gradients(images[i : i + 1], targets[i : i + 1])[0] for i in range(5)]
    )
    np.testing.assert_allclose(batched, single, rtol=1e-4, atol=1e-7)


def test_gradient_is_at_the_original_resolution(tiny_keras_model):
    adapter = KerasAdapter(tiny_keras_model, preprocess="none")
    image = np.random.default_rng(4).random((50, 70, 3), dtype=np.float32)
    result = salmap.explain(image, model=adapter)
    assert result.map.shape == (50, 70) and result.attribution.shape == (50, 70, 3)
    assert result.map.dtype == np.float32 and (result.map > 0).mean() > 0.9


@pytest.mark.parametrize(
    ("mode", "reference"),
    [("caffe", "resnet50"), ("tf", "mobilenet_v2"), ("torch", "densenet")],
)
def test_preprocessing_parity_with_keras_applications(mode, reference):
    import importlib

    import tensorflow as tf

    from salmap.models import make_preprocess

    pixels = np.random.default_rng(5).random((2, 8, 8, 3), dtype=np.float32)
    ours = make_preprocess(mode)(tf.constant(pixels)).numpy()
    keras_module = importlib.import_module(f"keras.applications.{reference}")
    theirs = np.asarray(keras_module.preprocess_input(pixels * 255.0))
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-4)


def test_named_model_preprocessing_is_right():
    assert salmap.models.MODELS["resnet50"].preprocess == "caffe"
    assert salmap.models.MODELS["mobilenet_v2"].preprocess == "tf"
    assert salmap.models.MODELS["densenet121"].preprocess == "torch"


def test_reductions():
    from salmap.maps import reduce_channels

    attribution = np.array([[[1.0, -3.0, 2.0]]])
    assert reduce_channels(attribution, "max-abs")[0, 0] == 3.0
    assert reduce_channels(attribution, "sum-abs")[0, 0] == 6.0
    assert reduce_channels(attribution, "sum")[0, 0] == 0.0


def test_targets_by_name_index_and_errors(tiny_keras_model):
    from salmap.models import imagenet_classes, resolve_target

    names = imagenet_classes()
    assert len(names) == 1000 and names[285] == "Egyptian cat" and names[967] == "espresso"
    assert resolve_target("Egyptian cat", 1000, names) == 285
    assert resolve_target("egyptian_cat", 1000, names) == 285
    assert (
        resolve_target("tabby cat", 1000, names, salmap.models.classes.imagenet_synonyms()) == 281
    )
    assert resolve_target(967, 1000, names) == 967
    with pytest.raises(UsageError, match="out of range"):
        resolve_target(1000, 1000, names)
    with pytest.raises(UsageError, match="did you mean 'egyptian cat'"):
        resolve_target("egyptain cat", 1000, names)
    with pytest.raises(UsageError, match="ambiguous"):
        resolve_target("crane", 1000, names)  # a bird (134) and a machine (517)


def test_model_files(tmp_path, tiny_keras_model):
    import keras

    path = tmp_path / "tiny.keras"
    tiny_keras_model.save(path)
    adapter = load_model(path, preprocess="none")
    image = np.random.default_rng(6).random((32, 32, 3), dtype=np.float32)
    np.testing.assert_allclose(
        adapter.predict(image),
        KerasAdapter(tiny_keras_model, preprocess="none").predict(image),
        rtol=1e-5,
        atol=1e-6,
    )
    with pytest.raises(UsageError, match="preprocess"):
        load_model(path)
    with pytest.raises(ModelError, match="not found"):
        load_model(tmp_path / "missing.keras", preprocess="none")
    broken = tmp_path / "broken.keras"
    broken.write_bytes(b"not a zip file at all")
    with pytest.raises(ModelError, match="not a Keras model"):
        load_model(broken, preprocess="none")
    inputs = keras.Input((8, 8, 3))
    lambda_model = keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2)(inputs))
    lambda_path = tmp_path / "lambda.keras"
    lambda_model.save(lambda_path)
    with pytest.raises(ModelError, match="safe_mode=False"):
        load_model(lambda_path, preprocess="none")


def test_models_without_fixed_size_or_rgb_input_are_refused():
    import keras

    inputs = keras.Input((None, None, 3))
    flexible = keras.Model(
        inputs, keras.layers.Dense(4)(keras.layers.GlobalAveragePooling2D()(inputs))
    )
    with pytest.raises(ModelError, match="input_size"):
        KerasAdapter(flexible)
    assert KerasAdapter(flexible, input_size=(16, 16)).input_size == (16, 16)
    gray = keras.Input((16, 16, 1))
    gray_model = keras.Model(gray, keras.layers.Dense(2)(keras.layers.Flatten()(gray)))
    with pytest.raises(ModelError, match="RGB"):
        KerasAdapter(gray_model)


def test_unknown_model_name():
    with pytest.raises(UsageError, match="unknown model 'resnet5'"):
        load_model("resnet5")

"""Targets beyond classification, on Keras and the analytic model: segmentation
regions, regression outputs, any callable, and strict errors for outputs that do not
fit the target."""

from __future__ import annotations

import numpy as np
import pytest

import salmap
from salmap.errors import UsageError
from salmap.targets import Box, Class, Function, Regression, Segmentation, as_targets, box_iou

SIZE = 16


@pytest.fixture(scope="module")
def segmenter():
    """1×1 convolutions only: each output pixel sees its own input pixel alone."""
    import keras

    keras.utils.set_random_seed(1)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(6, 1, activation="relu")(inputs)
    outputs = keras.layers.Conv2D(4, 1, name="logits")(x)
    return salmap.load_model(keras.Model(inputs, outputs), preprocess="none")


@pytest.fixture(scope="module")
def regressor():
    import keras

    keras.utils.set_random_seed(2)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(2)(x)
    return salmap.load_model(keras.Model(inputs, outputs), preprocess="none")


def _images(seed: int, count: int = 2) -> np.ndarray:
    return np.random.default_rng(seed).random((count, SIZE, SIZE, 3), dtype=np.float32)


@pytest.mark.parametrize("seed", range(4))
def test_segmentation_map_is_exactly_zero_outside_the_mask(segmenter, seed):
    rng = np.random.default_rng(seed)
    mask = np.zeros((SIZE, SIZE), bool)
    top, left = rng.integers(0, SIZE - 6, size=2)
    mask[top : top + 6, left : left + 5] = True
    image = _images(seed, 1)[0]
    for method in ("vanilla", "gradient-x-input", "integrated-gradients"):
        result = salmap.explain(image, segmenter, method=method, target=Segmentation(2, mask))
        assert np.all(result.map[~mask] == 0), method
        assert np.abs(result.map[mask]).max() > 0, method
        assert result.target == 2 and result.predictions == []


def test_segmentation_default_region_is_the_predicted_one(segmenter):
    image = _images(7, 1)[0]
    outputs = segmenter.predict(image[None])[0]
    predicted = outputs.argmax(axis=-1)
    label = int(np.bincount(predicted.ravel()).argmax())
    result = salmap.explain(image, segmenter, target=Segmentation(label))
    assert np.all(result.map[predicted != label] == 0)
    # The score is the class output summed over its own region.
    expected = outputs[..., label][predicted == label].sum()
    assert result.score == pytest.approx(expected, rel=1e-5)


def test_regression_target_and_completeness(regressor):
    images = _images(3)
    results = salmap.explain(
        list(images), regressor, method="integrated-gradients", target=Regression(1), steps=128
    )
    outputs = regressor.predict(np.concatenate([images, np.zeros_like(images[:1])]))
    for row, result in enumerate(results):
        assert result.score == pytest.approx(outputs[row, 1], rel=1e-5)
        change = outputs[row, 1] - outputs[-1, 1]
        total = result.attribution.sum()
        assert total == pytest.approx(change, rel=0.02, abs=1e-3)


def test_callable_target_is_a_sum_of_class_targets(regressor):
    import tensorflow as tf

    image = _images(4, 1)[0]
    both = salmap.explain(image, regressor, target=Function(lambda out: tf.reduce_sum(out, 1)))
    first = salmap.explain(image, regressor, target=Regression(0))
    second = salmap.explain(image, regressor, target=Regression(1))
    np.testing.assert_allclose(
        both.attribution, first.attribution + second.attribution, rtol=1e-4, atol=1e-6
    )


def test_class_target_object_equals_the_index(tiny_keras_model):
    model = salmap.load_model(tiny_keras_model, preprocess="none")
    image = _images(5, 1)[0]
    by_index = salmap.explain(image, model, target=3, score="probability")
    by_object = salmap.explain(image, model, target=Class(3, "probability"))
    np.testing.assert_array_equal(by_index.map, by_object.map)
    assert by_object.score == pytest.approx(by_index.score)


def test_wrong_output_for_the_target_is_one_clear_error(segmenter, regressor):
    image = _images(6, 1)[0]
    with pytest.raises(UsageError, match="not N×classes"):
        salmap.explain(image, segmenter)  # no top-1 class of a segmentation output
    with pytest.raises(UsageError, match="N×classes"):
        salmap.explain(image, segmenter, target=3)
    with pytest.raises(UsageError, match="segmentation target needs"):
        salmap.explain(image, regressor, target=Segmentation(0))
    with pytest.raises(UsageError, match="box target needs a detection model"):
        salmap.explain(image, regressor, target=Box((0, 0, 4, 4)))
    with pytest.raises(UsageError, match="x1 > x0"):
        salmap.explain(image, regressor, target=Box((4, 0, 2, 4)))


def test_targets_index_like_arrays():
    target = as_targets([3, 1, 2], 3)
    assert isinstance(target, Class) and len(target) == 3
    np.testing.assert_array_equal(target[np.array([2, 2, 0])].index, [2, 2, 3])
    assert len(as_targets(5, 4)) == 4
    with pytest.raises(UsageError, match="3 targets given for 2 images"):
        as_targets([1, 2, 3], 2)
    np.testing.assert_allclose(
        box_iou(np.array([[0, 0, 2, 2], [1, 1, 3, 3], [5, 5, 6, 6]]), np.array([0, 0, 2, 2])),
        [1.0, 1 / 7, 0.0],
    )


def test_cli_explains_a_segmentation_region_from_a_mask_file(segmenter, tmp_path):
    import json
    import subprocess
    import sys

    from PIL import Image

    segmenter.model.save(tmp_path / "segmenter.keras")
    image = (_images(9, 1)[0] * 255).astype(np.uint8)
    Image.fromarray(image).save(tmp_path / "photo.png")
    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[4:10, 3:12] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    common = [sys.executable, "-m", "salmap", "explain", str(tmp_path / "photo.png")]
    model = ["--model", str(tmp_path / "segmenter.keras"), "--preprocess", "none"]
    done = subprocess.run(
        [
            *common,
            *model,
            "--target-mask",
            str(tmp_path / "mask.png"),
            "--target-class",
            "1",
            "--npy",
            str(tmp_path / "map.npy"),
            "-o",
            str(tmp_path / "figure.png"),
            "--json",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["target"] == 1
    saliency = np.load(tmp_path / "map.npy")
    assert np.all(saliency[mask == 0] == 0) and saliency[mask > 0].max() > 0
    for extra, message in [
        (["--target-mask", str(tmp_path / "mask.png")], "needs --target-class"),
        (["--target-class", "1"], "goes with --target-mask or --target-box"),
        (["--target-box", "1,2,3"], "x0,y0,x1,y1"),
    ]:
        bad = subprocess.run([*common, *model, *extra], capture_output=True, text=True)
        assert bad.returncode == 2 and message in bad.stderr
        assert "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_segmentation_on_an_image_larger_than_the_model_input(segmenter):
    """Resized inside the model: the region's gradient stays near the region."""
    image = np.random.default_rng(11).random((40, 56, 3), dtype=np.float32)
    mask = np.zeros((40, 56), bool)
    mask[10:30, 14:42] = True
    result = salmap.explain(image, segmenter, target=Segmentation(1, mask))
    assert result.map.shape == (40, 56)
    inside, outside = np.abs(result.map[mask]).mean(), np.abs(result.map[~mask]).mean()
    assert inside > 10 * outside

"""The NumPy EfficientNet-Lite0 (the one-photo path) against the Keras port: same
resize, same logits, same gradients and CAMs, on real photos."""

from __future__ import annotations

import numpy as np
import pytest

import salmap
from salmap.errors import ModelError, UsageError
from salmap.models.numpy_lite import NumpyLite0, resize_matrix
from salmap.targets import Class, Regression


@pytest.fixture(scope="module")
def lite():
    return NumpyLite0()


@pytest.mark.parametrize(("height", "width"), [(300, 451), (224, 224), (97, 180), (512, 333)])
def test_resize_matrices_equal_tensorflow_antialiased_bilinear(height, width):
    import tensorflow as tf

    image = np.random.default_rng(height).random((1, height, width, 3), dtype=np.float32)
    expected = tf.image.resize(image, (224, 224), "bilinear", antialias=True).numpy()
    rows, columns = resize_matrix(height, 224), resize_matrix(width, 224)
    ours = np.einsum("ah,nhwc,bw->nabc", rows, image, columns)
    np.testing.assert_allclose(ours, expected, atol=2e-5)


@pytest.mark.slow
@pytest.mark.parametrize("photo", ["chelsea", "coffee", "astronaut"])
def test_same_logits_gradients_and_cams_as_the_keras_port(lite, default_model, photo):
    image = salmap.sample_image(photo)
    logits = lite.predict(image[None])
    expected = default_model.predict(image[None])
    np.testing.assert_allclose(logits, expected, atol=2e-4)
    top = int(expected.argmax())
    for score in ("logit", "probability"):
        ours, our_scores = lite.gradients(image[None], Class(top, score))
        theirs, their_scores = default_model.gradients(image[None], Class(top, score))
        np.testing.assert_allclose(our_scores, their_scores, rtol=1e-4)
        assert np.corrcoef(ours.ravel(), theirs.ravel())[0, 1] > 0.9999
    ours = salmap.explain(image, lite, method="grad-cam")
    theirs = salmap.explain(image, default_model, method="grad-cam")
    assert ours.target == theirs.target == top
    np.testing.assert_allclose(ours.map, theirs.map, atol=1e-4 * theirs.map.max())


@pytest.mark.slow
def test_batches_equal_single_images(lite):
    images = np.stack(
        [salmap.sample_image(name)[:200, :200] for name in ("chelsea", "coffee", "rocket")]
    )
    batch, scores = lite.gradients(images, [285, 967, 1])
    for row in range(3):
        single, score = lite.gradients(images[row : row + 1], [[285, 967, 1][row]])
        # BLAS sums in another order for another batch: a ReLU6 may flip at its edge.
        scale = np.abs(single).max()
        np.testing.assert_allclose(batch[row : row + 1], single, atol=2e-2 * scale)
        assert np.corrcoef(batch[row].ravel(), single.ravel())[0, 1] > 0.9999
        assert scores[row] == pytest.approx(score[0], rel=1e-5)


def test_what_it_cannot_do_is_a_clear_error(lite):
    image = np.zeros((1, 32, 32, 3), np.float32)
    with pytest.raises(ModelError, match="backward rule 'guided'"):
        lite.gradients(image, [1], backward="guided")
    with pytest.raises(UsageError, match="class targets"):
        lite.gradients(image, Regression(0))
    with pytest.raises(UsageError, match="one layer"):
        lite.cam_layer("block3_add")
    with pytest.raises(ModelError, match="randomised copy"):
        salmap.metrics.cascading_randomization(lite, image[0], "vanilla")

"""Named models: real weight loading from a local file, and a clear error offline."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np

import salmap


def test_weights_file_is_loaded_into_the_named_model(tmp_path):
    import keras

    keras.utils.set_random_seed(3)
    source = keras.applications.MobileNetV2(weights=None)
    path = tmp_path / "mobilenet_v2.weights.h5"
    source.save_weights(path)
    adapter = salmap.load_model("mobilenet_v2", weights=path)
    image = salmap.sample_image("coffee")
    logits = adapter.predict(image)[0]
    # The file's model ends in softmax; the adapter reads logits: same ranking, same softmax.
    probabilities = source(
        keras.applications.mobilenet_v2.preprocess_input(255.0 * _resized(image)[None])
    ).numpy()[0]
    exp = np.exp(logits - logits.max())
    np.testing.assert_allclose(exp / exp.sum(), probabilities, rtol=1e-3, atol=1e-6)


def _resized(image):
    import tensorflow as tf

    return tf.image.resize(image, (224, 224), method="bilinear", antialias=True).numpy()


def test_offline_without_weights_names_the_weights_option(tmp_path):
    environment = dict(os.environ)
    environment.update(
        KERAS_HOME=str(tmp_path),  # an empty cache
        HTTPS_PROXY="http://127.0.0.1:9",  # nothing listens there: the download fails at once
        HTTP_PROXY="http://127.0.0.1:9",
        https_proxy="http://127.0.0.1:9",
        http_proxy="http://127.0.0.1:9",
    )
    done = subprocess.run(
        [sys.executable, "-m", "salmap", "explain", "chelsea", "--model", "mobilenet_v2",
         "-o", str(tmp_path / "out.png")],
        capture_output=True, text=True, env=environment, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 4, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "--weights" in lines[0] and "mobilenet_v2" in lines[0]
    assert done.stdout == "" and not (tmp_path / "out.png").exists()


def test_missing_weights_file_is_a_model_error(tmp_path):
    import pytest

    with pytest.raises(salmap.ModelError, match="not found"):
        salmap.load_model("resnet50", weights=tmp_path / "nothing.h5")
    broken = tmp_path / "broken.h5"
    broken.write_bytes(b"\x00" * 64)
    with pytest.raises(salmap.ModelError, match="cannot load ResNet50 weights"):
        salmap.load_model("resnet50", weights=broken)

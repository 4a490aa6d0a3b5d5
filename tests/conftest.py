"""Shared fixtures: small real models, real photos, files of every kind."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# PyTorch (with torchvision, which loads Triton) must come before TensorFlow in one
# process: the other order crashes inside Triton's LLVM. The suite runs both frameworks
# in one process, so the order is fixed here, before any test module imports either.
try:
    import torch  # noqa: F401
    import torchvision  # noqa: F401
except ImportError:  # the torch extra is not installed: its tests skip
    pass

import numpy as np
import pytest


@pytest.fixture(scope="session")
def chelsea() -> np.ndarray:
    import salmap

    return salmap.sample_image("chelsea")


@pytest.fixture(scope="session")
def tiny_keras_model():
    """A small convolutional classifier ending in softmax (10 classes, 32×32 input)."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv1")(inputs)
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(10, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="tiny")


@pytest.fixture(scope="session")
def default_model():
    """The embedded EfficientNet-Lite0 with its real ImageNet weights."""
    import salmap

    return salmap.load_model()

"""Model input preprocessing, applied inside the differentiable path.

Every mode maps a batch of RGB images in [0, 1] to what the network's first layer
expects, so gradients, baselines and noise are all defined in [0, 1] image space.
"""

from __future__ import annotations

from collections.abc import Callable

from salmap.errors import UsageError

__all__ = ["PREPROCESS_MODES", "make_preprocess"]

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)

#: Named modes, as in ``keras.applications.imagenet_utils.preprocess_input``, plus two.
PREPROCESS_MODES = {
    "torch": "ImageNet mean/std normalisation of [0, 1] RGB",
    "caffe": "0-255 BGR minus the ImageNet BGR mean (ResNet50, VGG)",
    "tf": "scaled to [-1, 1] (MobileNet, Inception)",
    "none": "the [0, 1] image as it is",
    "0-255": "scaled to [0, 255] RGB (models that normalise inside, e.g. keras EfficientNet)",
}


def make_preprocess(spec) -> Callable:
    """Return a function ``x -> x'`` on a float32 tensor batch N×H×W×3 in [0, 1].

    ``spec`` is a mode name from :data:`PREPROCESS_MODES`, a ``{"mean": ..., "std": ...}``
    dict applied to [0, 1] RGB, or a callable (it must be differentiable by the
    framework: use tensor ops).
    """
    import tensorflow as tf

    if callable(spec):
        return spec
    if isinstance(spec, dict):
        mean = tf.constant(spec["mean"], tf.float32)
        std = tf.constant(spec["std"], tf.float32)
        return lambda x: (x - mean) / std
    if spec == "torch":
        mean = tf.constant(_IMAGENET_MEAN, tf.float32)
        std = tf.constant(_IMAGENET_STD, tf.float32)
        return lambda x: (x - mean) / std
    if spec == "caffe":
        mean = tf.constant(_CAFFE_BGR_MEAN, tf.float32)
        return lambda x: x[..., ::-1] * 255.0 - mean
    if spec == "tf":
        return lambda x: x * 2.0 - 1.0
    if spec == "none" or spec is None:
        return lambda x: x
    if spec == "0-255":
        return lambda x: x * 255.0
    raise UsageError(
        f"unknown preprocessing {spec!r}; use one of {', '.join(PREPROCESS_MODES)}, "
        "a mean/std dict or a function"
    )

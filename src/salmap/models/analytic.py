"""A pure-NumPy model with analytic gradients, for exact tests of the methods.

Each class score is a diagonal polynomial of the [0, 1] image,

.. math:: f_c(x) = b_c + \\sum_i w_{c,i} x_i + \\sum_i q_{c,i} x_i^2
          + \\sum_{p \\ge 3} \\sum_i a_{p,c,i} x_i^p,

so that :math:`\\partial f_c / \\partial x_i = w_{c,i} + 2 q_{c,i} x_i + \\dots`; with
``q = 0`` and no higher powers it is linear. Every method's exact answer can then be
written down by hand: the integrated gradient of a linear model is
``(x - baseline) * w``, SmoothGrad of a linear model is ``w``, the occlusion score
drop of a window is the sum of the window's terms.
"""

from __future__ import annotations

import numpy as np

from salmap.errors import UsageError
from salmap.models.base import as_image_batch, require, require_backward
from salmap.targets import Class, Target, as_targets

__all__ = ["AnalyticAdapter", "NumpyOps"]


class NumpyOps:
    """The tensor operations targets use, on NumPy arrays (forward only)."""

    tensor = staticmethod(np.asarray)
    stack = staticmethod(np.stack)
    to_numpy = staticmethod(np.asarray)

    @staticmethod
    def softmax(values):
        shifted = np.exp(values - values.max(axis=-1, keepdims=True))
        return shifted / shifted.sum(axis=-1, keepdims=True)

    @staticmethod
    def take_columns(values, columns):
        return values[np.arange(len(values)), np.asarray(columns)]

    @staticmethod
    def class_planes(values, index: int):
        return values[..., int(index)]

    @staticmethod
    def spatial_sum(values):
        return values.reshape(len(values), -1).sum(axis=1)


class AnalyticAdapter:
    """A linear or diagonal-quadratic scorer over H×W×3 images, in NumPy.

    Parameters
    ----------
    weights : C×H×W×3 array
        Linear coefficients ``w`` of each class score.
    bias : C array, optional
    quadratic : C×H×W×3 array, optional
        Diagonal quadratic coefficients ``q`` (default 0: a linear model).
    powers : dict, optional
        Higher powers: ``{p: C×H×W×3 coefficients}`` (along a straight path the
        gradient is then a polynomial of degree ``max(p) - 1``, for quadrature tests).
    batch_size : int
        Largest batch per call, as for real adapters.

    Attributes
    ----------
    calls : int
        Number of ``predict``/``gradients`` calls (each runs the batch it is given).
    evaluations : int
        Number of images passed through the model, all calls together.

    The "layer" ``"input"`` is the image itself (C = 3 channels), so the CAM family
    can be tested too: its activations are the image, its gradients the input
    gradients.
    """

    framework = "numpy"
    backward_rules = ("standard",)
    capabilities = frozenset({"layers", "ablation"})
    synonyms = None
    ops = NumpyOps()

    def __init__(
        self,
        weights,
        bias=None,
        quadratic=None,
        *,
        powers: dict | None = None,
        batch_size: int = 32,
        name="analytic",
    ):
        self.weights = np.asarray(weights, dtype=np.float64)
        if self.weights.ndim != 4 or self.weights.shape[-1] != 3:
            raise UsageError(f"weights must be C×H×W×3, got {self.weights.shape}")
        classes = self.weights.shape[0]
        self.bias = np.zeros(classes) if bias is None else np.asarray(bias, dtype=np.float64)
        self.quadratic = (
            np.zeros_like(self.weights)
            if quadratic is None
            else np.asarray(quadratic, dtype=np.float64)
        )
        self.powers = {int(p): np.asarray(c, dtype=np.float64) for p, c in (powers or {}).items()}
        self.name = name
        self.input_size = tuple(self.weights.shape[1:3])
        self.num_classes = classes
        self.class_names = None
        self.batch_size = int(batch_size)
        self.calls = 0
        self.evaluations = 0

    # -- the maths ------------------------------------------------------------------
    def _check(self, images) -> np.ndarray:
        images = as_image_batch(images).astype(np.float64)
        if images.shape[1:] != self.weights.shape[1:]:
            raise UsageError(
                f"the analytic model takes images of shape {self.weights.shape[1:]}, "
                f"got {images.shape[1:]}"
            )
        return images

    def _logits(self, images: np.ndarray) -> np.ndarray:
        flat = images.reshape(len(images), -1)
        w = self.weights.reshape(self.num_classes, -1)
        q = self.quadratic.reshape(self.num_classes, -1)
        logits = flat @ w.T + (flat**2) @ q.T + self.bias
        for p, c in self.powers.items():
            logits += (flat**p) @ c.reshape(self.num_classes, -1).T
        return logits

    def _input_gradients(self, images: np.ndarray, classes) -> np.ndarray:
        """d f_c / d x for the classes ``classes`` (an index array, or a slice)."""
        grads = self.weights[classes] + 2 * self.quadratic[classes] * images
        for p, c in self.powers.items():
            grads = grads + p * c[classes] * images ** (p - 1)
        return grads

    def _count(self, count: int) -> None:
        self.calls += 1
        self.evaluations += count

    # -- the protocol ------------------------------------------------------------------
    def predict(self, images: np.ndarray) -> np.ndarray:
        """Logits N×C (float32)."""
        images = self._check(images)
        self._count(len(images))
        return self._logits(images).astype(np.float32)

    def scores(self, images, targets: Target) -> np.ndarray:
        """Each image's target score, N float32 (any target over the N×C logits)."""
        logits = self.predict(images).astype(np.float64)
        targets = as_targets(targets, len(logits))
        return np.asarray(targets.scores(logits, self.ops), dtype=np.float32)

    def gradients(self, images, targets: Target, backward: str = "standard"):
        """``(d score / d image N×H×W×3, scores N)``, exact (computed in float64), for
        class targets under the standard rule (the model has no ReLUs to modify)."""
        require_backward(self, backward)
        images = self._check(images)
        targets = as_targets(targets, len(images))
        if not isinstance(targets, Class):
            raise UsageError("the analytic model differentiates class targets only")
        self._count(len(images))
        score = targets.score
        targets = targets.index
        logit_grads = self._input_gradients(images, targets)
        logits = self._logits(images)
        rows = np.arange(len(images))
        if score == "logit":
            return logit_grads.astype(np.float32), logits[rows, targets].astype(np.float32)
        # d softmax_t = p_t (d logit_t - sum_j p_j d logit_j)
        probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        all_grads = self._input_gradients(images[:, None], slice(None))
        mean_grad = np.einsum("nc,nchwk->nhwk", probabilities, all_grads)
        chosen = probabilities[rows, targets]
        grads = chosen[:, None, None, None] * (logit_grads - mean_grad)
        return grads.astype(np.float32), chosen.astype(np.float32)

    def cam_layer(self, layer: str | None = None) -> str:
        if layer not in (None, "input"):
            raise UsageError(f"the analytic model has one layer, 'input'; got {layer!r}")
        return "input"

    def layer_values_and_gradients(self, images, targets: Target, layer=None):
        """The image as the layer (N×H×W×3) and the input gradients."""
        self.cam_layer(layer)
        grads, scores = self.gradients(images, targets)
        return self._check(images).astype(np.float32), grads, scores

    def layer_ablation_scores(self, images, targets: Target, layer, channels) -> np.ndarray:
        """Scores with colour channel ``channels[i]`` of image ``i`` zeroed (``-1``: none)."""
        self.cam_layer(layer)
        images = self._check(images).copy()
        channels = np.asarray(channels, np.int64)
        rows = np.flatnonzero(channels >= 0)
        images[rows, :, :, channels[rows]] = 0
        return self.scores(images, targets)

    def cascade_layers(self) -> list[str]:
        return []

    def randomization_cascade(self, layers, seed: int):
        require(self, "randomize", "the randomisation test")

    def __repr__(self) -> str:
        return f"AnalyticAdapter(classes={self.num_classes}, size={self.input_size})"

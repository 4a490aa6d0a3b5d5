"""The model adapter protocol: the only interface methods use to talk to a framework.

An adapter takes batches of RGB images in [0, 1] (N×H×W×3 float32, any H×W: it
resizes and preprocesses inside the differentiable path) and returns NumPy arrays.
Each call evaluates exactly the batch it is given: the engine
(:mod:`salmap.methods.engine`) is the one loop that cuts work into batches of
``batch_size``. Targets (:mod:`salmap.targets`) turn the model's outputs into one
score per image; adapters hand them their own :class:`~salmap.targets.TensorOps`.

Everything a method, metric, report or command uses is declared here. A method
that needs what an adapter cannot do asks :func:`require` first and fails with one
line, never silently falls back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from salmap.errors import ModelError, UsageError
from salmap.targets import SCORES, Target

__all__ = [
    "ModelAdapter",
    "SCORES",
    "BACKWARD_RULES",
    "CAPABILITIES",
    "require",
    "cut_points",
    "DEFAULT_CUTS",
    "require_backward",
    "select_output",
    "as_image_batch",
    "AttentionMaps",
]

#: Backward rules through the network's nonlinearities (gradients under a rule):
#: ``standard`` (the true gradient), ``guided`` (guided backpropagation), ``deconv``
#: (deconvnet), ``deeplift`` (DeepLIFT's rescale multipliers against reference images
#: passed as ``references=``), and layer-wise relevance propagation, whose "gradients"
#: are relevances (already times the input): ``lrp-epsilon``, ``lrp-gamma``,
#: ``lrp-alpha1beta0`` on every layer, or the composites ``lrp-epsilon-plus`` and
#: ``lrp-epsilon-gamma-box``. Adapters list the ones they implement in ``backward_rules``.
BACKWARD_RULES = (
    "standard",
    "guided",
    "deconv",
    "deeplift",
    "lrp-epsilon",
    "lrp-gamma",
    "lrp-alpha1beta0",
    "lrp-epsilon-plus",
    "lrp-epsilon-gamma-box",
)

#: What an adapter may be able to do beyond ``predict``/``scores``/``gradients``:
#: ``layers`` (inner-layer values and gradients, for CAMs), ``randomize`` (randomised
#: copies, for the sanity cascade), ``ablation`` (scores with one channel of an inner
#: layer zeroed, for AblationCAM), ``biases`` (bias gradients, for FullGrad),
#: ``attention`` (a transformer's attention probabilities, their gradients and
#: relevances).
CAPABILITIES = ("layers", "randomize", "ablation", "biases", "attention")


@dataclass
class AttentionMaps:
    """A transformer's self-attention on a batch: one N×heads×T×T float32 array per
    attention call, in call order (rows attend to columns; ``T = front + h·w``)."""

    #: the attention probabilities ``A`` (each row sums to 1)
    attention: list[np.ndarray]
    #: tokens in front of the patch grid (class, distillation, register tokens)
    front: int
    #: the patch grid (h, w), row-major in the tokens after ``front``
    grid: tuple[int, int]
    #: ``d score / d A`` (when asked for)
    gradients: list[np.ndarray] | None = None
    #: the LRP relevance of ``A`` under Chefer et al.'s rules (when asked for)
    relevance: list[np.ndarray] | None = None
    #: each image's target score (when a target was needed)
    scores: np.ndarray | None = None


@runtime_checkable
class ModelAdapter(Protocol):
    """A model, seen through [0, 1] RGB images, by every method of salmap."""

    #: a short name for results and reports
    name: str
    #: ``"keras"``, ``"torch"``, ``"numpy"``, … (segmentation outputs are channels-first
    #: on ``torch``, channels-last elsewhere)
    framework: str
    #: (height, width) images are resized to inside the differentiable path
    input_size: tuple[int, int]
    #: classes of an N×classes output; ``None`` when the output is something else
    num_classes: int | None
    #: class names in output order, and alternative names of each (for targets by name)
    class_names: Sequence[str] | None
    synonyms: Sequence[Sequence[str]] | None
    #: images per model call when the caller does not say (the engine's chunk size)
    batch_size: int
    #: the backward rules :meth:`gradients` implements (see :data:`BACKWARD_RULES`)
    backward_rules: tuple[str, ...]
    #: what else it can do (see :data:`CAPABILITIES`)
    capabilities: frozenset[str]

    def predict(self, images: np.ndarray) -> Any:
        """The model's outputs on a batch, as NumPy (N×classes logits for a classifier;
        whatever ``output=`` selected otherwise). Forward only."""

    def scores(self, images: np.ndarray, targets: Target) -> np.ndarray:
        """Each image's target score (N float32), forward only."""

    def gradients(
        self, images: np.ndarray, targets: Target, backward: str = "standard"
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(d score / d image N×H×W×3 float32, scores N float32)`` under ``backward``.
        Rules that compare with a reference (``deeplift``) also take
        ``references=`` (N×H×W×3, one per image)."""

    def cam_layer(self, layer: str | None = None) -> str:
        """The layer CAMs read: ``layer`` checked, or the adapter's default (the last
        spatial activation); raises :class:`UsageError` for an unknown layer."""

    def layer_values_and_gradients(
        self, images: np.ndarray, targets: Target, layer: str | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(activations N×h×w×C, d score / d activations N×h×w×C, scores N)`` float32,
        channels last whatever the framework (token layers reshaped to their grid)."""

    def layer_ablation_scores(
        self, images: np.ndarray, targets: Target, layer: str | None, channels: np.ndarray
    ) -> np.ndarray:
        """Each image's target score (N float32, forward only) with channel
        ``channels[i]`` of ``layer`` set to zero in image ``i`` (``-1``: nothing zeroed);
        channels counted as in :meth:`layer_values_and_gradients` (capability
        ``ablation``)."""

    def bias_gradients(self, images: np.ndarray, targets: Target):
        """``(d score / d image N×H×W×3, [bias × d score / d output N×h×w×C, per layer
        with a bias over a spatial map])`` (capability ``biases``, for FullGrad)."""

    def attention_maps(
        self,
        images: np.ndarray,
        targets: Target | None = None,
        *,
        gradients: bool = False,
        relevance: bool = False,
    ) -> AttentionMaps:
        """Every self-attention's probabilities on a batch, and on request their
        gradients and LRP relevances for ``targets`` (capability ``attention``)."""

    def randomization_cascade(
        self, layers: int | Sequence[str] | None, seed: int
    ) -> Iterator[tuple[str, int, ModelAdapter]]:
        """Randomise a copy of the model from the top layer down; after each cut point
        yield ``(layer name, layers randomised so far, adapter of the copy)``. The
        user's model is never touched."""

    def cascade_layers(self) -> list[str]:
        """Names of the layers with weights, top (output) first: the cascade's order."""


#: Cut points of the sanity cascade when none are given.
DEFAULT_CUTS = 10


def cut_points(count: int, layers, names: list[str]) -> list[int]:
    """Indices into the top-down list of ``count`` weighted layers (named ``names``)
    where the sanity cascade stops: ``layers`` is an int (that many cuts, evenly
    spread from the top layer alone to all of them), names, or ``None`` (every layer
    of small models, :data:`DEFAULT_CUTS` of larger ones)."""
    if count == 0:
        raise ModelError("the model has no layers with weights to randomise")
    if layers is None:
        layers = min(count, DEFAULT_CUTS)
    if isinstance(layers, (int, np.integer)):
        if int(layers) < 1:
            raise UsageError(f"the cascade needs at least one step, got layers={layers}")
        steps = min(int(layers), count)
        return sorted({int(round(p)) for p in np.linspace(0, count - 1, steps)})
    positions = []
    for name in layers:
        if name not in names:
            raise UsageError(
                f"no weighted layer named {name!r}; the model's weighted layers from the top "
                f"are {', '.join(names[:8])}{', ...' if len(names) > 8 else ''}"
            )
        positions.append(names.index(name))
    return sorted(set(positions))


def require(adapter, capability: str, what: str) -> None:
    """Fail with one line when ``adapter`` lacks ``capability`` that ``what`` needs."""
    if capability not in adapter.capabilities:
        raise ModelError(
            f"{what} needs {_CAPABILITY_WORDS[capability]}, which the {adapter.framework} "
            f"model {adapter.name!r} does not provide"
        )


_CAPABILITY_WORDS = {
    "layers": "an inner layer's activations and gradients",
    "randomize": "a randomised copy of the model",
    "ablation": "scores with an inner layer's channel zeroed",
    "biases": "the gradients of every bias",
    "attention": "a transformer's attention maps",
}


def require_backward(adapter, backward: str) -> None:
    """Fail with one line when ``adapter`` does not implement the backward rule."""
    if backward not in adapter.backward_rules:
        raise ModelError(
            f"the backward rule {backward!r} is not available for the {adapter.framework} "
            f"model {adapter.name!r} (it has {', '.join(adapter.backward_rules)})"
        )


def select_output(outputs, output: int | str | Callable | None):
    """The part of a model's raw outputs that targets score.

    ``output`` is ``None`` (the outputs as they are; a one-element tuple or list is
    unwrapped, unless it holds a dict: a detector's per-image list), an index into a
    tuple or list, a key of a dict, an attribute name of a dataclass or named tuple, or
    a callable.
    """
    if output is None:
        # A detector's list of per-image dicts stays a list, even for one image.
        if isinstance(outputs, (tuple, list)) and len(outputs) == 1:
            return outputs if isinstance(outputs[0], dict) else outputs[0]
        return outputs
    if callable(output):
        return output(outputs)
    if isinstance(outputs, dict) or hasattr(outputs, "keys"):
        if output not in outputs:
            raise UsageError(
                f"the model's output has no {output!r}; it has {', '.join(map(str, outputs))}"
            )
        return outputs[output]
    if isinstance(output, int) and isinstance(outputs, (tuple, list)):
        if not -len(outputs) <= output < len(outputs):
            raise UsageError(f"output {output} out of range: the model returns {len(outputs)}")
        return outputs[output]
    if isinstance(output, str) and hasattr(outputs, output):
        return getattr(outputs, output)
    raise UsageError(f"cannot select output {output!r} from a {type(outputs).__name__}")


def as_image_batch(images) -> np.ndarray:
    """Images as an N×H×W×3 float32 batch (one H×W×3 image becomes a batch of one)."""
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or images.shape[-1] != 3:
        raise UsageError(f"expected a batch of RGB images N×H×W×3, got shape {images.shape}")
    return images

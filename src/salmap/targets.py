"""What one score per image means: the bridge from any model output to the methods.

Every method asks the adapter for *scores* (and their gradients); a target says how
a model's outputs become one score per image:

- :class:`Class` — a column of an N×classes output (pre-softmax logit by default,
  or the softmax probability);
- :class:`Segmentation` — the summed logit of one class over a region of an
  N×classes×h×w (PyTorch) or N×h×w×classes (Keras) output; the region is a given
  mask, or the model's own predicted region of that class;
- :class:`Box` — for detection models that return torchvision-style dicts
  (``boxes``, ``labels``, ``scores``): the score of the detection that matches a box
  (same label, best IoU above a threshold), like pytorch-grad-cam's box-score target;
- :class:`Regression` — one output value;
- any callable ``outputs -> N scores``, written in the model's own tensors.

A target holds one entry per image (``len(target)``) and is indexed by rows like an
array (``target[rows]``), so the engine can hand each model batch the targets of the
images its points came from. Targets are framework-neutral: the adapter passes its
own small tensor namespace (:class:`TensorOps`) to :meth:`Target.scores`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np

from salmap.errors import UsageError

__all__ = [
    "TensorOps",
    "Target",
    "Class",
    "Segmentation",
    "Box",
    "Regression",
    "Function",
    "as_targets",
    "SCORES",
]

#: What a class target scores: the pre-softmax logit (default) or the probability.
SCORES = ("logit", "probability")


class TensorOps(Protocol):
    """The few tensor operations a target needs, in one framework's tensors."""

    def tensor(self, array: np.ndarray) -> Any:
        """A NumPy array as a constant tensor beside the model's outputs."""

    def softmax(self, values) -> Any:
        """Softmax over the last axis."""

    def take_columns(self, values, columns: np.ndarray) -> Any:
        """``values[i, columns[i]]`` for an N×C tensor: N values."""

    def class_planes(self, values, index: int) -> Any:
        """The N×h×w plane of class ``index`` of a segmentation output (the class axis
        is the framework's channel axis)."""

    def spatial_sum(self, values) -> Any:
        """Sum over every axis but the first: N values."""

    def stack(self, values: list) -> Any:
        """Scalars (0-d tensors) as one N-vector."""

    def to_numpy(self, values) -> np.ndarray:
        """A tensor as a NumPy array (detached)."""


class Target:
    """One score per image, from a model's outputs. Subclasses are frozen dataclasses
    whose per-image fields are arrays with one row per image."""

    #: per-image array fields, indexed by :meth:`__getitem__`
    _per_image: tuple[str, ...] = ()

    def _rows(self):
        return getattr(self, self._per_image[0]) if self._per_image else None

    def __len__(self) -> int:
        rows = self._rows()
        return 1 if rows is None else len(rows)

    def __getitem__(self, rows) -> Target:
        """The targets of images ``rows`` (an index array or a slice)."""
        if self._rows() is None:
            return self
        return replace(self, **{name: getattr(self, name)[rows] for name in self._per_image})

    def broadcast(self, count: int) -> Target:
        """The same target for ``count`` images (a single target repeated)."""
        if self._rows() is None or len(self) == count:
            return self
        if len(self) != 1:
            raise UsageError(f"{len(self)} targets given for {count} images; give one per image")
        return self[np.zeros(count, dtype=np.int64)]

    def scores(self, outputs, ops: TensorOps):
        """N scores (a tensor of the model's framework) from the model's ``outputs``."""
        raise NotImplementedError

    def resolve(self, adapter, outputs) -> Target:
        """Fill what was left to the model (e.g. the predicted region) from the outputs
        on the images themselves (NumPy, as ``adapter.predict`` returns them)."""
        return self

    def describe(self, row: int, adapter=None) -> tuple[int | None, str]:
        """``(class index or None, label)`` of image ``row``'s target, for results."""
        return None, type(self).__name__.lower()


@dataclass(frozen=True)
class Class(Target):
    """A class score of an N×classes output.

    Parameters
    ----------
    index : int, str or sequence
        Class index or name (names are resolved against the model's class names), or
        one per image.
    score : {"logit", "probability"}
        The pre-softmax logit (default; softmax saturates) or the probability.
    """

    index: Any
    score: str = "logit"
    _per_image = ("index",)

    def __post_init__(self):
        if self.score not in SCORES:
            raise UsageError(f"unknown score {self.score!r}; use 'logit' or 'probability'")
        index = np.atleast_1d(np.asarray(self.index))
        object.__setattr__(self, "index", index.astype(np.int64) if _is_integer(index) else index)

    def scores(self, outputs, ops: TensorOps):
        _check_rank(outputs, 2, "a class target", "N×classes")
        values = ops.softmax(outputs) if self.score == "probability" else outputs
        return ops.take_columns(values, self.index)

    def resolve(self, adapter, outputs) -> Class:
        _check_rank(np.asarray(outputs), 2, "a class target", "N×classes")
        if _is_integer(self.index):
            classes = np.asarray(outputs).shape[-1]
            bad = self.index[(self.index < 0) | (self.index >= classes)]
            if len(bad):
                raise UsageError(
                    f"class index {int(bad[0])} is out of range: the model has {classes} "
                    f"classes (0 to {classes - 1})"
                )
            return self
        from salmap.models.classes import resolve_target

        names = [
            resolve_target(name, adapter.num_classes, adapter.class_names, adapter.synonyms)
            for name in self.index
        ]
        return replace(self, index=np.asarray(names, dtype=np.int64))

    def describe(self, row, adapter=None):
        index = int(self.index[row])
        names = getattr(adapter, "class_names", None)
        return index, names[index] if names is not None else f"class {index}"


@dataclass(frozen=True)
class Segmentation(Target):
    """The summed class-``index`` output over a region of a segmentation map.

    Parameters
    ----------
    index : int
        The class whose per-pixel output is summed.
    mask : H×W bool array, optional
        The region, at the image's or the output's resolution (resized to the output's
        by nearest neighbour); default: the pixels the model itself labels ``index``
        (argmax over classes) on the image.

    The score is ``sum(output[index] * mask)`` (as pytorch-grad-cam's
    ``SemanticSegmentationTarget``); outside the mask nothing contributes.
    """

    index: int
    mask: Any = None
    _per_image = ("masks",)
    masks: Any = None  # N×h×w float32, filled by resolve()

    def scores(self, outputs, ops: TensorOps):
        _check_rank(outputs, 4, "a segmentation target", "N×classes×h×w")
        if self.masks is None:
            raise UsageError("a segmentation target must be resolved on the images first")
        planes = ops.class_planes(outputs, int(self.index))
        return ops.spatial_sum(planes * ops.tensor(self.masks))

    def resolve(self, adapter, outputs) -> Segmentation:
        if self.masks is not None:
            return self
        outputs = np.asarray(outputs)
        if outputs.ndim != 4:
            raise UsageError(
                f"a segmentation target needs N×classes×h×w outputs, got shape {outputs.shape}"
            )
        channels_first = adapter.framework == "torch"
        classes = outputs.shape[1] if channels_first else outputs.shape[-1]
        if not 0 <= int(self.index) < classes:
            raise UsageError(f"class {self.index} is out of range: the output has {classes}")
        height, width = outputs.shape[2:] if channels_first else outputs.shape[1:3]
        if self.mask is None:
            labels = outputs.argmax(axis=1 if channels_first else -1)
            masks = (labels == int(self.index)).astype(np.float32)
        else:
            mask = _resize_nearest(np.asarray(self.mask) > 0, height, width)
            masks = np.broadcast_to(mask, (len(outputs), height, width)).astype(np.float32)
        return replace(self, masks=masks)

    def describe(self, row, adapter=None):
        names = getattr(adapter, "class_names", None)
        index = int(self.index)
        label = names[index] if names is not None and index < len(names) else f"class {index}"
        return index, f"{label} (region)"


@dataclass(frozen=True)
class Box(Target):
    """The score of the detection matching a box, for torchvision-style detectors.

    Parameters
    ----------
    box : (x0, y0, x1, y1)
        In the pixels of the image as given to the model (its input size).
    label : int, optional
        The detection's class; default any class.
    iou : float
        Smallest intersection-over-union that counts as a match (0.5).

    The model's output is a list of dicts with ``boxes`` (K×4), ``labels`` (K) and
    ``scores`` (K) per image; the score is the ``scores`` entry of the detection with
    the target's label whose box overlaps most (IoU >= ``iou``), 0 when none does.
    """

    box: Any
    label: int | None = None
    iou: float = 0.5
    _per_image = ("boxes",)
    boxes: Any = None  # N×4, filled by resolve()

    def resolve(self, adapter, outputs) -> Box:
        box = np.asarray(self.box, dtype=np.float64).reshape(-1, 4)
        if np.any(box[:, 2] <= box[:, 0]) or np.any(box[:, 3] <= box[:, 1]):
            raise UsageError(f"a box is x0,y0,x1,y1 with x1 > x0 and y1 > y0, got {self.box}")
        return replace(self, boxes=np.broadcast_to(box, (len(outputs), 4)).copy())

    def scores(self, outputs, ops: TensorOps):
        if not isinstance(outputs, (list, tuple)) or not all(
            isinstance(o, dict) and {"boxes", "scores"} <= set(o) for o in outputs
        ):
            raise UsageError(
                "a box target needs a detection model returning a list of dicts with "
                "'boxes', 'labels' and 'scores' (torchvision style)"
            )
        values = []
        for detections, box in zip(outputs, self.boxes, strict=True):
            overlap = box_iou(ops.to_numpy(detections["boxes"]).reshape(-1, 4), box)
            if self.label is not None and "labels" in detections:
                overlap[ops.to_numpy(detections["labels"]) != self.label] = 0
            best = int(np.argmax(overlap)) if len(overlap) else -1
            if best < 0 or overlap[best] < self.iou:
                values.append(detections["scores"].sum() * 0)  # keeps the graph, scores 0
            else:
                values.append(detections["scores"][best])
        return ops.stack(values)

    def describe(self, row, adapter=None):
        names = getattr(adapter, "class_names", None)
        if self.label is None:
            return None, "box"
        label = names[self.label] if names is not None else f"class {self.label}"
        return int(self.label), f"{label} (box)"


@dataclass(frozen=True)
class Regression(Target):
    """One value of an N×K output (``index``, default 0), e.g. a regressor's output."""

    index: int = 0

    def scores(self, outputs, ops: TensorOps):
        _check_rank(outputs, 2, "a regression target", "N×outputs")
        return ops.take_columns(outputs, np.full(_rows(outputs), int(self.index)))

    def describe(self, row, adapter=None):
        return int(self.index), f"output {self.index}"


@dataclass(frozen=True)
class Function(Target):
    """Any callable ``outputs -> N scores`` in the model's own tensors."""

    function: Callable

    def scores(self, outputs, ops: TensorOps):
        return self.function(outputs)

    def describe(self, row, adapter=None):
        return None, getattr(self.function, "__name__", "function")


def as_targets(targets, count: int, score: str = "logit") -> Target:
    """Any target specification as a :class:`Target` with ``count`` rows.

    Accepts a :class:`Target` (its own score kind wins), a callable (a
    :class:`Function`), or class indices/names — one, or one per image — as a
    :class:`Class` scoring ``score``.
    """
    if isinstance(targets, Target):
        return targets.broadcast(count)
    if callable(targets):
        return Function(targets)
    return Class(targets, score).broadcast(count)


def _is_integer(array: np.ndarray) -> bool:
    return array.dtype.kind in "iu"


def box_iou(boxes: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Intersection over union of K×4 ``boxes`` with one ``box`` (x0, y0, x1, y1)."""
    boxes = np.asarray(boxes, dtype=np.float64)
    x0 = np.maximum(boxes[:, 0], box[0])
    y0 = np.maximum(boxes[:, 1], box[1])
    x1 = np.minimum(boxes[:, 2], box[2])
    y1 = np.minimum(boxes[:, 3], box[3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + (box[2] - box[0]) * (box[3] - box[1]) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def _resize_nearest(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    if mask.ndim != 2:
        raise UsageError(f"a mask is H×W, got shape {mask.shape}")
    rows = (np.arange(height) * mask.shape[0] // height).clip(0, mask.shape[0] - 1)
    columns = (np.arange(width) * mask.shape[1] // width).clip(0, mask.shape[1] - 1)
    return mask[rows][:, columns]


def _rows(outputs) -> int:
    return int(outputs.shape[0])


def _check_rank(outputs, rank: int, what: str, shape: str) -> None:
    actual = getattr(outputs, "shape", None)
    if actual is None or len(actual) != rank:
        raise UsageError(
            f"{what} needs model outputs of shape {shape}, got "
            f"{'shape ' + str(tuple(actual)) if actual is not None else type(outputs).__name__}"
            "; choose the output with output= or use another target"
        )

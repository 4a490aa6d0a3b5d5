"""The one place where methods meet the model: generate, batch, reduce on the fly.

A method describes *what* to evaluate; this module decides *how*:

- **Points.** A gradient method is a sum over model evaluation points,
  ``attribution(x) = sum_k multiplier_k * gradient(point_k(x))`` — one point for
  vanilla gradients (multiplier 1) and gradient × input (multiplier ``x``), ``m``
  interpolation points for Integrated Gradients (multiplier ``w_k (x - baseline)``),
  blurred copies for Blur IG. A :class:`PointRule` generates any slice of them.
- **Units.** Noise wrappers (SmoothGrad, VarGrad, SquareGrad) repeat the whole sum
  on ``samples`` noisy copies of each image and combine the results (mean, mean of
  squares, variance). One image × one noisy copy is a *unit*.
- **Stream.** All points of all units of all images form one flat stream that is
  cut into chunks of ``batch_size``; each chunk is generated just in time, sent
  through the adapter in one call, multiplied, and added to running sums. A unit
  finished inside a chunk is folded into its image's accumulators and freed, so
  memory holds a chunk and a few partial sums — never all samples.
- **Seeds.** Every unit draws from its own generator, seeded by ``(seed, sample
  index)``: the same seed gives the same map bit for bit, an image's map does not
  depend on the other images of the batch, and the chunk size changes only the
  summation order.

Forward-only methods (occlusion, RISE, Score-CAM) use :func:`accumulate_scores`, the
same stream with scores instead of gradients.

**One loop.** Every model call of salmap goes through :func:`batches`: the streams
above, :func:`map_batches` (ready inputs: sequential methods, CAM layers, the
faithfulness metrics, predictions) and the noise wrapper of whole methods. Adapters
run exactly the batch they are given.

**Targets.** Methods take class indices or any :class:`salmap.targets.Target`; the
engine turns them into a target with one row per image (:func:`as_targets`) and
hands every model batch the rows of the images its points came from.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from salmap.errors import UsageError
from salmap.models.base import require_backward
from salmap.targets import Target, as_targets

__all__ = [
    "PointRule",
    "GaussianNoise",
    "REDUCTIONS",
    "unit_rng",
    "chunk_size",
    "batches",
    "map_batches",
    "beside_the_model",
    "repeat_target",
    "target_scores",
    "model_gradients",
    "accumulate_gradients",
    "accumulate_scores",
    "accumulate_batches",
    "ScoreSums",
    "correlations",
]

#: How the results of noisy units combine: SmoothGrad, SquareGrad, VarGrad, or both
#: first moments (``moments``: mean and mean of squares, stacked) for callers that
#: combine runs themselves.
REDUCTIONS = ("mean", "square", "variance", "moments")


class PointRule(Protocol):
    """How one unit's input becomes ``count`` model evaluation points."""

    #: points per unit
    count: int

    def prepare(self, image: np.ndarray, rng: np.random.Generator, target: int):
        """Per-unit state (e.g. the image and its baselines), computed once."""

    def points(self, state, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray | float]:
        """``(inputs k×H×W×3, multipliers broadcastable to k×H×W×3)`` for point indices
        ``indices`` (for gradient streams), or ``(inputs, weight maps k×... or None)``
        (for score streams)."""

    # Optional: ``finish(state, summed) -> attribution``, applied to a unit's sum once
    # its last point is in (lets a rule multiply by a per-unit factor once, e.g. IG's
    # ``x - b``, and pass per-point scalars as multipliers).
    # Optional: ``points(state, indices, out=array)`` writing the inputs into ``out``
    # (k×H×W×3 float32, part of the model batch) when the rule sets ``fills = True``:
    # score streams then skip a copy of every batch.


@dataclass(frozen=True)
class GaussianNoise:
    """Additive Gaussian noise of standard deviation ``sigma`` in [0, 1] image units
    (Smilkov et al. 2017: 10-20 % of the input range; 0.15 is 15 %)."""

    sigma: float = 0.15

    def __call__(self, image: np.ndarray, rng: np.random.Generator, sample: int = 0) -> np.ndarray:
        # ``sample`` (the copy's index) is unused by plain Monte-Carlo; sequence-based
        # noise (quasi-random, antithetic pairs) takes it from the same call.
        noise = rng.standard_normal(image.shape, dtype=np.float32)
        return image + np.float32(self.sigma) * noise


def unit_rng(seed: int, *keys: int) -> np.random.Generator:
    """An independent generator from the user's seed and a unit's keys (sample index)."""
    return np.random.default_rng([int(seed) % 2**32, *(int(k) for k in keys)])


def chunk_size(adapter, batch_size: int | None) -> int:
    """Images per model call: the user's ``batch_size``, or the adapter's own."""
    size = int(batch_size) if batch_size is not None else int(adapter.batch_size)
    if size < 1:
        raise UsageError(f"batch_size must be >= 1, got {batch_size}")
    return size


def batches(total: int, size: int):
    """The one loop that cuts ``total`` model evaluations into calls of ``size``:
    ``(start, stop)`` pairs."""
    for start in range(0, int(total), int(size)):
        yield start, min(start + int(size), int(total))


def beside_the_model(function: Callable) -> Callable:
    """Run ``function(adapter, ...)`` with NumPy's BLAS on one thread when a framework
    computes the model: OpenBLAS threads spin for a while after each call and take the
    cores the framework's own threads need (RISE on EfficientNet-Lite0, 2 cores: 1.6×
    the forward floor with BLAS threads, 1.05× without). The engine's own NumPy work
    (weighted sums, masks, noise) is small enough for one thread."""

    @functools.wraps(function)
    def wrapper(adapter, *args, **kwargs):
        if adapter.framework == "numpy":  # the model is NumPy itself: it wants the threads
            return function(adapter, *args, **kwargs)
        with _blas_controller().limit(limits=1, user_api="blas"):
            return function(adapter, *args, **kwargs)

    return wrapper


@functools.lru_cache(maxsize=1)
def _blas_controller():
    """The thread pools of the loaded libraries, found once (finding them costs
    milliseconds: too much per call for a model that takes twenty)."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def map_batches(call: Callable, count: int, size: int):
    """``call(start, stop)`` for every batch of ``count`` evaluations, results joined
    along the first axis (a tuple of arrays is joined element-wise). A single batch is
    returned as it is, without a copy."""
    parts = [call(start, stop) for start, stop in batches(count, size)]
    if len(parts) == 1:
        return parts[0]
    if isinstance(parts[0], tuple):
        return tuple(np.concatenate(column) for column in zip(*parts, strict=True))
    return np.concatenate(parts)


def repeat_target(target: Target, count: int) -> Target:
    """Row 0 of ``target`` repeated ``count`` times (one image's target for its points)."""
    return target[np.zeros(int(count), dtype=np.int64)]


def target_scores(
    adapter, images: np.ndarray, targets, score: str = "logit", batch_size: int | None = None
) -> np.ndarray:
    """Each image's target score (forward only), N float64, in model batches."""
    targets = as_targets(targets, len(images), score)
    return map_batches(
        lambda a, b: np.asarray(adapter.scores(images[a:b], targets[a:b]), dtype=np.float64),
        len(images),
        chunk_size(adapter, batch_size),
    )


@beside_the_model
def model_gradients(
    adapter,
    inputs: np.ndarray,
    targets,
    *,
    score: str = "logit",
    backward: str = "standard",
    batch_size: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Gradients of a ready batch of inputs, in model batches (for sequential methods
    such as Guided IG, whose next points depend on this step's gradients)."""
    targets = as_targets(targets, len(inputs), score)
    require_backward(adapter, backward)
    return map_batches(
        lambda a, b: adapter.gradients(inputs[a:b], targets[a:b], backward=backward),
        len(inputs),
        chunk_size(adapter, batch_size),
    )


def _weighted_sum(values: np.ndarray, weights) -> np.ndarray:
    """``sum_k weights_k * values_k`` over the first axis, as float64.

    Per-point weights (a vector) go through one matrix-vector product; element-wise
    multipliers through one fused product-sum — no float64 copy of the chunk."""
    weights = np.asarray(weights, dtype=np.float32)
    if weights.ndim == 0:
        return values.sum(axis=0, dtype=np.float64) * float(weights)
    if weights.ndim == 1 or weights.size == len(values):
        flat = weights.reshape(-1) @ values.reshape(len(values), -1)
        return flat.reshape(values.shape[1:]).astype(np.float64)
    weights = np.broadcast_to(weights, values.shape)
    return np.einsum("k...,k...->...", values, weights, dtype=np.float64)


def _runs(units: np.ndarray):
    """Contiguous runs of equal unit ids in a chunk: (unit, start, stop)."""
    edges = np.flatnonzero(np.diff(units)) + 1
    starts = np.concatenate([[0], edges])
    stops = np.concatenate([edges, [len(units)]])
    return [(int(units[a]), int(a), int(b)) for a, b in zip(starts, stops, strict=True)]


def _stream(total_units: int, count: int, size: int):
    for start, stop in batches(total_units * count, size):
        flat = np.arange(start, stop)
        yield flat // count, flat % count


def _batch_targets(images, targets, score: str = "logit") -> tuple[np.ndarray, Target]:
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4:
        raise UsageError(f"expected N×H×W×3 images, got shape {images.shape}")
    return images, as_targets(targets, len(images), score)


class _Moments:
    """Running sums of each image's unit results, reduced at the end; with a
    ``checkpoint``, a second set for the units of samples ``< checkpoint`` only (the
    map at fewer samples, for the convergence measure)."""

    def __init__(self, count: int, samples: int, reduce: str, checkpoint: int | None):
        if reduce not in REDUCTIONS:
            raise UsageError(f"unknown reduction {reduce!r}; use {', '.join(REDUCTIONS)}")
        if checkpoint is not None and not 1 <= checkpoint <= samples:
            raise UsageError(f"checkpoint must be in 1..{samples}, got {checkpoint}")
        self.count, self.samples, self.reduce, self.checkpoint = count, samples, reduce, checkpoint
        self.sums: list | None = None

    def add(self, image_index, sample: int, value: np.ndarray) -> None:
        if self.sums is None:
            shape = (self.count, *value.shape)
            parts = 1 if self.reduce == "mean" else 2
            sets = 1 if self.checkpoint is None else 2
            self.sums = [[np.zeros(shape) for _ in range(parts)] for _ in range(sets)]
        chosen = (
            self.sums if self.checkpoint is not None and sample < self.checkpoint else self.sums[:1]
        )
        for sums in chosen:
            sums[0][image_index] += value
            if len(sums) > 1:
                sums[1][image_index] += value * value

    def _result(self, sums, samples: int) -> np.ndarray:
        if self.reduce == "mean":
            return (sums[0] / samples).astype(np.float32)
        if self.reduce == "square":
            return (sums[1] / samples).astype(np.float32)
        if self.reduce == "moments":
            return np.stack([sums[0] / samples, sums[1] / samples])
        mean = sums[0] / samples
        return np.maximum(sums[1] / samples - mean * mean, 0.0).astype(np.float32)

    def results(self):
        """The reduced maps over all samples, and over the first ``checkpoint`` ones."""
        full = self._result(self.sums[0], self.samples)
        if self.checkpoint is None:
            return full
        return full, self._result(self.sums[1], self.checkpoint)


@beside_the_model
def accumulate_gradients(
    adapter,
    images: np.ndarray,
    targets,
    rule: PointRule,
    *,
    score: str = "logit",
    backward: str = "standard",
    samples: int = 1,
    noise: Callable | None = None,
    reduce: str = "mean",
    batch_size: int | None = None,
    seed: int = 0,
    checkpoint: int | None = None,
    first_sample: int = 0,
):
    """Sum ``multiplier * gradient`` over each unit's points, then combine the units.

    Parameters
    ----------
    adapter : ModelAdapter
    images : N×H×W×3 float32 in [0, 1]
    targets : N class indices (or one for all)
    rule : PointRule
        The points of one unit (see the module docstring).
    score, backward :
        Passed to ``adapter.gradients``.
    samples : int
        Units per image (noisy copies); 1 without a noise wrapper.
    noise : callable ``(image, rng, sample index) -> image``, optional
        Applied to each unit's image before ``rule.prepare``.
    reduce : {"mean", "square", "variance"}
        How units combine: mean (SmoothGrad), mean of squares (SquareGrad), variance
        (VarGrad).
    batch_size : int, optional
        Points per model call (default: the adapter's batch size).
    seed : int
        Seeds each unit's generator (noise, random baselines).
    checkpoint : int, optional
        Also return the result over the first ``checkpoint`` samples (same stream).
    first_sample : int
        Number of the first noisy copy: a later run continues the same sequence of
        draws (rounds of a converging loop).

    Returns
    -------
    N×H×W×3 float32 (``moments``: 2×N×H×W×3 float64); with ``checkpoint``, a pair
    (all samples, the first ones).
    """
    images, targets = _batch_targets(images, targets, score)
    require_backward(adapter, backward)
    samples = int(samples)
    if samples < 1:
        raise UsageError(f"samples must be >= 1, got {samples}")
    moments = _Moments(len(images), samples, reduce, checkpoint)
    size = chunk_size(adapter, batch_size)
    finish = getattr(rule, "finish", None)
    partial: dict[int, np.ndarray] = {}
    states: dict[int, object] = {}
    for units, indices in _stream(len(images) * samples, rule.count, size):
        inputs = np.empty((len(units), *images.shape[1:]), dtype=np.float32)
        multipliers = []
        runs = _runs(units)
        for unit, start, stop in runs:
            if unit not in states:
                image_index, sample = divmod(unit, samples)
                rng = unit_rng(seed, first_sample + sample)
                image = images[image_index]
                if noise is not None:
                    image = noise(image, rng, first_sample + sample)
                states[unit] = rule.prepare(image, rng, targets[[image_index]])
            points, multiplier = rule.points(states[unit], indices[start:stop])
            inputs[start:stop] = points
            multipliers.append(multiplier)
        grads, _ = adapter.gradients(inputs, targets[units // samples], backward=backward)
        for (unit, start, stop), multiplier in zip(runs, multipliers, strict=True):
            contribution = _weighted_sum(np.asarray(grads[start:stop]), multiplier)
            partial[unit] = partial[unit] + contribution if unit in partial else contribution
            if indices[stop - 1] == rule.count - 1:  # the unit's last point: fold it in
                result = partial.pop(unit)
                state = states.pop(unit)
                if finish is not None:
                    result = finish(state, result)
                moments.add(*divmod(unit, samples), result)
    return moments.results()


def _prepare(rule, index: int, image, rng, targets: Target):
    """A unit's state; rules whose points depend on which image it is (Score-CAM's
    per-image channels) define ``prepare_at(index, image, rng, target)``."""
    prepare_at = getattr(rule, "prepare_at", None)
    if prepare_at is not None:
        return prepare_at(index, image, rng, targets[[index]])
    return rule.prepare(image, rng, targets[[index]])


@dataclass
class ScoreSums:
    """What a forward stream returns, per image.

    ``weighted``: sum over points of score × weight map; ``coverage``: sum of the
    weight maps; ``scores``: every point's score (N×count), when asked for.
    """

    weighted: np.ndarray | None
    coverage: np.ndarray | None
    scores: np.ndarray | None


def _aligned_empty(shape: tuple) -> np.ndarray:
    """An empty float32 array whose data starts on a 64-byte boundary: frameworks take
    such a buffer as it is (TensorFlow copies a NumPy input that is not aligned)."""
    count = int(np.prod(shape))
    raw = np.empty(count + 16, np.float32)
    offset = (-raw.ctypes.data % 64) // 4
    return raw[offset : offset + count].reshape(shape)


@beside_the_model
def accumulate_scores(
    adapter,
    images: np.ndarray,
    targets,
    rule: PointRule,
    *,
    score: str = "logit",
    batch_size: int | None = None,
    seed: int = 0,
    keep_scores: bool = False,
) -> ScoreSums:
    """Forward-only stream: ``sum_k score(point_k) * weight_k`` and ``sum_k weight_k``.

    ``rule.points`` returns ``(inputs, weight maps)``; weight maps may be ``None`` when
    only the scores are wanted (``keep_scores=True``). Used by occlusion (window
    indicators), RISE (the masks) and Score-CAM (scores only).
    """
    images, targets = _batch_targets(images, targets, score)
    size = chunk_size(adapter, batch_size)
    count = rule.count
    weighted: list | None = None
    coverage: list | None = None
    all_scores = np.zeros((len(images), count)) if keep_scores else None
    states: dict[int, object] = {}
    buffer = _aligned_empty((size, *images.shape[1:]))  # reused: its pages stay mapped
    for units, indices in _stream(len(images), count, size):
        inputs = buffer[: len(units)]
        weights = []
        runs = _runs(units)
        for unit, start, stop in runs:
            if unit not in states:
                states[unit] = _prepare(rule, unit, images[unit], unit_rng(seed, 0), targets)
            if getattr(rule, "fills", False):
                _, weight = rule.points(states[unit], indices[start:stop], out=inputs[start:stop])
            else:
                points, weight = rule.points(states[unit], indices[start:stop])
                inputs[start:stop] = points
            weights.append(weight)
        scores = np.asarray(adapter.scores(inputs, targets[units]), dtype=np.float64)
        for (unit, start, stop), weight in zip(runs, weights, strict=True):
            if all_scores is not None:
                all_scores[unit, indices[start:stop]] = scores[start:stop]
            if weight is not None:
                weight = np.asarray(weight, dtype=np.float32)
                if weighted is None:
                    weighted = [np.zeros(weight.shape[1:]) for _ in range(len(images))]
                    coverage = [np.zeros(weight.shape[1:]) for _ in range(len(images))]
                weighted[unit] += _weighted_sum(weight, scores[start:stop].astype(np.float32))
                coverage[unit] += weight.sum(axis=0)
            if indices[stop - 1] == count - 1:
                del states[unit]
    return ScoreSums(
        None if weighted is None else np.stack(weighted),
        None if coverage is None else np.stack(coverage),
        all_scores,
    )


def accumulate_batches(
    method: Callable,
    adapter,
    images: np.ndarray,
    targets,
    *,
    samples: int,
    noise: Callable,
    reduce: str = "mean",
    batch_size: int | None = None,
    seed: int = 0,
    checkpoint: int | None = None,
):
    """The noise wrapper for methods that are not a fixed sum of gradients (Guided IG):
    noisy copies are generated in chunks, the whole method runs on each chunk as one
    batch, and results are folded into running sums (``checkpoint`` as
    :func:`accumulate_gradients`)."""
    images, targets = _batch_targets(images, targets)
    moments = _Moments(len(images), samples, reduce, checkpoint)
    for start, stop in batches(len(images) * samples, chunk_size(adapter, batch_size)):
        units = np.arange(start, stop)
        image_index = units // samples
        noisy = np.stack(
            [
                noise(images[i], unit_rng(seed, u % samples), u % samples)
                for i, u in zip(image_index, units, strict=True)
            ]
        )
        result = np.asarray(method(adapter, noisy, targets[image_index]), dtype=np.float64)
        for unit, value in zip(units, result, strict=True):
            moments.add(*divmod(int(unit), samples), value)
    return moments.results()


def correlations(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Pearson correlation of each pair of maps ``first[i]``, ``second[i]`` (1 for two
    constant maps): how far a sampled map still moves between two sample counts."""
    a = first.reshape(len(first), -1)
    b = second.reshape(len(second), -1)
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.where(norms > 0, (a * b).sum(axis=1) / np.where(norms > 0, norms, 1), 1.0)

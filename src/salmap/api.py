"""The public entry point for model saliency: :func:`explain`."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

import numpy as np

from salmap.errors import UsageError
from salmap.io.image import load_image
from salmap.maps import CHANNEL_REDUCTIONS, SaliencyMap, SaliencyMaps, reduce_channels
from salmap.methods import ALIASES, METHODS, method_parameters, parameter_defaults
from salmap.methods.engine import target_scores
from salmap.methods.parameters import check_parameters
from salmap.models.zoo import load_model
from salmap.targets import Class, Target, as_targets

__all__ = ["explain", "explain_video", "top_predictions"]


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exps = np.exp(shifted)
    return exps / exps.sum(axis=-1, keepdims=True)


def top_predictions(adapter, probabilities: np.ndarray, k: int = 5) -> list[tuple[int, str, float]]:
    """The ``k`` most probable classes as (index, label, probability)."""
    order = np.argsort(-probabilities)[:k]
    return [(int(i), _label(adapter, int(i)), float(probabilities[i])) for i in order]


def _label(adapter, index: int) -> str:
    names = adapter.class_names
    return names[index] if names is not None else f"class {index}"


def _is_many(value) -> bool:
    return isinstance(value, (list, tuple)) or (isinstance(value, np.ndarray) and value.ndim == 4)


def explain(
    image,
    model=None,
    *,
    method: str = "vanilla",
    target: int | str | Sequence[int | str] | None = None,
    score: str = "logit",
    reduction: str = "max-abs",
    top_k: int = 5,
    **params,
) -> SaliencyMap | SaliencyMaps:
    """Explain a model's decision on one or more images.

    Parameters
    ----------
    image : path, array, or a list of them
        Anything :func:`salmap.load_image` reads (a path, a bundled sample name such as
        ``"chelsea"``, an H×W×3 array in [0, 1]); a list (or an N×H×W×3 array)
        explains several images in batches.
    model : str, path, keras.Model, torch.nn.Module or adapter, optional
        See :func:`salmap.load_model`; default: the embedded EfficientNet-Lite0.
    method : str
        A name from ``salmap.methods.METHODS`` (default ``vanilla`` gradients).
    target : int, str, Target, callable or sequence, optional
        What one score per image means (see :mod:`salmap.targets`): a class index or
        name (default each image's top-1 class), a target object
        (``salmap.targets.Segmentation``, ``Box``, ``Regression``, ``Class``) or a
        function from the model's outputs to one score per image. For one image, a
        sequence of targets gives one map per target; for several images, a sequence
        gives one target per image.
    score : {"logit", "probability"}
        Differentiate the pre-softmax logit (default; softmax saturates) or the
        probability (as the TensorFlow tutorial did).
    reduction : {"max-abs", "sum-abs", "sum"}
        How per-channel attributions become one map (``sum`` is the tutorial's signed
        sum, where opposite signs cancel).
    top_k : int
        How many predictions each result lists.
    **params
        Method parameters (see ``salmap methods``).

    Returns
    -------
    SaliencyMap, or a list of them (:class:`~salmap.maps.SaliencyMaps`, shown as a grid
    in Jupyter) when several images or targets were given.
    Maps are H×W float32 at each image's own resolution.
    """
    method = ALIASES.get(method, method)
    if method not in METHODS:
        raise UsageError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if reduction not in CHANNEL_REDUCTIONS:
        raise UsageError(
            f"unknown channel reduction {reduction!r}; use {', '.join(CHANNEL_REDUCTIONS)}"
        )
    spec = METHODS[method]
    unknown = sorted(set(params) - method_parameters(method, params))
    if unknown:
        raise UsageError(
            f"{method} has no parameter {', '.join(map(repr, unknown))}; it takes "
            f"{', '.join(sorted(method_parameters(method, params) - {'score'})) or 'none'}"
        )
    params = check_parameters(method, params, parameter_defaults(method, params))
    adapter = load_model(model)
    many_images = _is_many(image)
    images = [load_image(item) for item in image] if many_images else [load_image(image)]
    if not images:
        raise UsageError("no images given")
    jobs = _jobs(images, target, many_images)
    results: list[SaliencyMap | None] = [None] * len(jobs)
    for group in _job_groups(images, jobs):
        batch = np.stack([images[jobs[j][0]] for j in group])
        outputs = _predict(adapter, batch)
        targets = _group_targets(adapter, [jobs[j][1] for j in group], outputs, score)
        classes = isinstance(targets, Class) and _is_classifier(adapter, outputs)
        probabilities = _softmax(outputs) if classes else None
        scores = None if probabilities is not None else target_scores(adapter, batch, targets)
        info: dict | None = {} if spec.reports else None
        start = time.perf_counter()
        extra = {} if info is None else {"info": info}
        output = spec.function(adapter, batch, targets, score=score, **extra, **params)
        seconds = (time.perf_counter() - start) / len(group)
        for row, j in enumerate(group):
            attribution = output[row] if spec.output == "attribution" else None
            saliency = (
                reduce_channels(output[row], reduction) if attribution is not None else output[row]
            )
            klass, label = targets.describe(row, adapter)
            results[j] = SaliencyMap(
                map=np.asarray(saliency, dtype=np.float32),
                image=images[jobs[j][0]],
                method=method,
                params={"score": score, "reduction": reduction, **params},
                target=klass,
                label=label,
                score=float(
                    probabilities[row][klass] if probabilities is not None else scores[row]
                ),
                predictions=(
                    top_predictions(adapter, probabilities[row], top_k)
                    if probabilities is not None
                    else []
                ),
                attribution=attribution,
                model=adapter.name,
                seconds=seconds,
                extras={
                    "signed": spec.signed,
                    **{key: values[row] for key, values in (info or {}).items()},
                },
            )
    if not many_images and not _is_many_targets(target):
        return results[0]
    return SaliencyMaps(results)


def _is_many_targets(target) -> bool:
    return isinstance(target, (list, tuple, np.ndarray))


def _jobs(images, target, many_images) -> list[tuple[int, object]]:
    """(image index, target) pairs to explain."""
    if not _is_many_targets(target):
        return [(i, target) for i in range(len(images))]
    targets = list(target)
    if not many_images:
        return [(0, t) for t in targets]
    if len(targets) != len(images):
        raise UsageError(
            f"{len(targets)} targets given for {len(images)} images; give one per image"
        )
    return list(enumerate(targets))


def _job_groups(images, jobs) -> list[list[int]]:
    """Jobs explained in one batch: same image shape, and class targets together (a
    target object is a group of its own)."""
    groups: dict[tuple, list[int]] = {}
    for j, (index, target) in enumerate(jobs):
        kind = id(target) if isinstance(target, Target) or callable(target) else "class"
        groups.setdefault((images[index].shape, kind), []).append(j)
    return list(groups.values())


def _predict(adapter, batch: np.ndarray):
    """The model's outputs on a batch, through the engine's batches."""
    from salmap.methods.engine import map_batches

    return map_batches(lambda a, b: adapter.predict(batch[a:b]), len(batch), adapter.batch_size)


def _is_classifier(adapter, outputs) -> bool:
    return (
        adapter.num_classes is not None
        and isinstance(outputs, np.ndarray)
        and outputs.shape[1:] == (adapter.num_classes,)
    )


def _group_targets(adapter, specs: list, outputs, score: str) -> Target:
    """The group's targets, one row per image, resolved on the model's outputs: the
    top-1 class where none was given, class indices or names, or a target object."""
    first = specs[0]
    if isinstance(first, Target) or callable(first):
        return as_targets(first, len(specs), score).resolve(adapter, outputs)
    if any(spec is None for spec in specs) and not _is_classifier(adapter, outputs):
        raise UsageError(
            f"the model's output (shape {_shape(outputs)}) is not N×classes, so there is no "
            "top-1 class to explain: give a target (salmap.targets.Segmentation, Box, "
            "Regression or a function; CLI: --target-class with --target-mask or --target-box)"
        )
    top = outputs.argmax(axis=-1) if _is_classifier(adapter, outputs) else None
    indices = [int(top[row]) if spec is None else spec for row, spec in enumerate(specs)]
    return Class(np.asarray(indices, dtype=object), score).resolve(adapter, outputs)


def _shape(outputs) -> str:
    shape = getattr(outputs, "shape", None)
    return "×".join(map(str, shape)) if shape is not None else type(outputs).__name__


def explain_video(
    source,
    model=None,
    *,
    method: str = "vanilla",
    target: int | str | None = None,
    fix_target: bool = False,
    smoothing: float = 0.0,
    start: int = 0,
    end: int | None = None,
    every: int = 1,
    max_width: int | None = None,
    frames_per_batch: int = 8,
    score: str = "logit",
    reduction: str = "max-abs",
    top_k: int = 5,
    **params,
) -> Iterator[SaliencyMap]:
    """Model saliency for every frame of a video, streamed.

    Frames are read lazily and sent through the model ``frames_per_batch`` at a time, so
    memory does not grow with the video's length.

    Parameters
    ----------
    source : path
        A video file OpenCV decodes (MP4, AVI, MKV, MOV...) or an animated GIF.
    model, method, score, reduction, top_k, **params
        As for :func:`explain`.
    target : int or str, optional
        One class for every frame. Default: each frame's own top-1 class, or, with
        ``fix_target``, the first frame's top-1 class held for the whole video.
    smoothing : float in [0, 1)
        Temporal smoothing: each map becomes ``smoothing × previous + (1 − smoothing) ×
        current`` (an exponential moving average; 0 = none). Meaningful when the
        target is the same from frame to frame.
    start, end, every, max_width
        Frame range (0-based, ``end`` exclusive), stride, and a width frames are
        downscaled to before explaining (maps are then at that size).

    Yields
    ------
    SaliencyMap
        One per frame, in order; ``extras["frame"]`` and ``extras["time"]`` (seconds)
        say which.
    """
    from salmap.io.video import iter_frame_batches

    if not 0.0 <= smoothing < 1.0:
        raise UsageError(f"smoothing must be in [0, 1), not {smoothing}")
    adapter = load_model(model)
    held = target
    previous: np.ndarray | None = None
    for batch in iter_frame_batches(source, frames_per_batch, start, end, every, max_width):
        frames = list(batch.images)
        if held is None and fix_target:
            held = int(np.argmax(_predict(adapter, frames[0][None])[0]))
        results = explain(
            frames,
            model=adapter,
            method=method,
            target=[held] * len(frames) if held is not None else None,
            score=score,
            reduction=reduction,
            top_k=top_k,
            **params,
        )
        for result, index, moment in zip(results, batch.indices, batch.times, strict=True):
            if smoothing and previous is not None and previous.shape == result.map.shape:
                result.map = (smoothing * previous + (1.0 - smoothing) * result.map).astype(
                    np.float32
                )
                result.params["smoothing"] = smoothing
            previous = result.map
            result.extras.update(frame=int(index), time=float(moment))
            yield result

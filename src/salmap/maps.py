"""The result type every saliency method returns, and the operations on maps."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

__all__ = [
    "SaliencyMap",
    "SaliencyMaps",
    "normalize_map",
    "resize_map",
    "resize_maps",
    "reduce_channels",
    "CHANNEL_REDUCTIONS",
]

#: How per-channel attributions become one map (see :func:`reduce_channels`).
CHANNEL_REDUCTIONS = ("max-abs", "sum-abs", "sum")


@dataclass
class SaliencyMap:
    """A saliency map and what produced it.

    Attributes
    ----------
    map : numpy.ndarray
        H×W float32 at the original image's resolution. Not normalised: magnitudes are
        the method's own (use :func:`normalize_map` to draw).
    image : numpy.ndarray or None
        The H×W×3 float32 [0, 1] image it explains.
    method : str
        Method name (``vanilla``, ``itti-koch``, ...).
    params : dict
        The parameters the method ran with.
    target, label, score :
        For model saliency: class index, its name, and the model's probability for it.
    predictions : list of (index, label, probability)
        The model's top-k classes for the image.
    attribution : numpy.ndarray or None
        Raw per-channel attribution (H×W×3, signed) when the method has one.
    model : str or None
        Name of the model that was explained.
    seconds : float
        Wall time the method took for this image.
    extras : dict
        Method-specific intermediate results (feature maps, scan paths, ...).
    """

    map: np.ndarray
    image: np.ndarray | None = None
    method: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    target: int | None = None
    label: str | None = None
    score: float | None = None
    predictions: list[tuple[int, str, float]] = field(default_factory=list)
    attribution: np.ndarray | None = None
    model: str | None = None
    seconds: float = 0.0
    extras: dict[str, Any] = field(default_factory=dict)

    def _repr_png_(self) -> bytes | None:
        """Jupyter shows a result as its three panels (map, input, overlay)."""
        from salmap.viz.notebook import three_panels_png

        return three_panels_png(self)

    @property
    def signed(self) -> bool:
        """Whether the map carries a sign (positive and negative evidence)."""
        return bool(np.any(self.map < 0))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable summary (no arrays but the map's shape and range)."""
        return {
            "method": self.method,
            "model": self.model,
            "target": self.target,
            "label": self.label,
            "score": self.score,
            "predictions": [
                {"index": int(i), "label": name, "probability": float(p)}
                for i, name, p in self.predictions
            ],
            "params": {k: _jsonable(v) for k, v in self.params.items()},
            "shape": list(self.map.shape),
            "min": float(self.map.min()),
            "max": float(self.map.max()),
            "seconds": round(float(self.seconds), 4),
            **{k: _jsonable(self.extras[k]) for k in DIAGNOSTICS if k in self.extras},
        }


class SaliencyMaps(list):
    """A list of :class:`SaliencyMap` that Jupyter shows as a grid of overlays."""

    def _repr_html_(self) -> str:
        from salmap.viz.notebook import grid_html

        return grid_html(self)


#: What a method may report about its own accuracy and cost (see ``info`` of the
#: methods); copied into the JSON summary.
DIAGNOSTICS = (
    "evaluations",
    "forward_evaluations",
    "completeness_error",
    "convergence",
    "samples",
    "masks",
)


def _jsonable(value):
    if isinstance(value, (np.generic,)):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None  # JSON has no NaN
    if isinstance(value, np.ndarray):
        return f"array{list(value.shape)}"
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return repr(value)


def normalize_map(
    saliency: np.ndarray, mode: str = "minmax", percentile: float = 99.0
) -> np.ndarray:
    """Scale a map to [0, 1] for display.

    Parameters
    ----------
    saliency : numpy.ndarray
        H×W map (any range).
    mode : {"minmax", "percentile"}
        ``minmax`` maps the minimum to 0 and the maximum to 1. ``percentile`` maps 0 to
        0 and the ``percentile``-th percentile of ``|map|`` to 1, clipping above — a few
        extreme gradients then do not wash the rest of the map out. A map that sits on
        a large offset (one sign throughout, and further from zero than its own spread,
        as RISE's mean scores running from 9.66 to 10.28 logits) would be one flat
        colour that way: it is scaled between its ``100 - percentile``-th and
        ``percentile``-th percentiles instead, so its structure shows.
    percentile : float
        Upper percentile for ``percentile`` mode, in (50, 100].

    Returns
    -------
    numpy.ndarray
        H×W float32 in [0, 1]; a constant map becomes all zeros.
    """
    values = np.asarray(saliency, dtype=np.float32)
    if mode == "minmax":
        low, high = float(values.min()), float(values.max())
    elif mode == "percentile":
        values, low, high = _percentile_scale(values, percentile)
    else:
        raise ValueError(f"unknown normalisation {mode!r}; use 'minmax' or 'percentile'")
    if not high > low:
        return np.zeros_like(values, dtype=np.float32)
    return np.clip((values - low) / (high - low), 0.0, 1.0).astype(np.float32)


def _percentile_scale(values: np.ndarray, percentile: float):
    """``(|map|, 0, p-th percentile of |map|)``, or ``(map, low, high)`` with the map's own
    percentile range when it sits on an offset larger than that range."""
    low, high = (float(v) for v in np.percentile(values, [100.0 - percentile, percentile]))
    offset = min(abs(low), abs(high)) if low * high > 0 else 0.0
    if offset > high - low:
        return values, low, high
    magnitude = np.abs(values)
    return magnitude, 0.0, float(np.percentile(magnitude, percentile))


def resize_map(saliency: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize an H'×W' (or H'×W'×C) map to height×width with bilinear interpolation."""
    saliency = np.asarray(saliency, dtype=np.float32)
    if saliency.shape[:2] == (height, width):
        return saliency
    shrinking = height < saliency.shape[0] or width < saliency.shape[1]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(saliency, (width, height), interpolation=interpolation)


def resize_maps(maps, height: int, width: int) -> np.ndarray:
    """Each of N maps (h×w) resized to height×width (:func:`resize_map`): N×H×W float32."""
    return np.stack([resize_map(m, height, width) for m in maps])


def reduce_channels(attribution: np.ndarray, reduction: str = "max-abs") -> np.ndarray:
    """Reduce a (..., H, W, C) attribution to (..., H, W).

    ``max-abs`` (default) takes the largest magnitude over channels (Simonyan et al.
    2014); ``sum-abs`` sums magnitudes; ``sum`` sums signed values, as the TensorFlow
    tutorial did — opposite signs then cancel.
    """
    if reduction == "max-abs":
        return np.max(np.abs(attribution), axis=-1)
    if reduction == "sum-abs":
        return np.sum(np.abs(attribution), axis=-1)
    if reduction == "sum":
        return np.sum(attribution, axis=-1)
    raise ValueError(
        f"unknown channel reduction {reduction!r}; use one of {', '.join(CHANNEL_REDUCTIONS)}"
    )

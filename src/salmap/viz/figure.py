"""Drawing: colour maps, overlays, the three-panel figure and method grids.

Everything that draws goes through :func:`colorize` and :func:`overlay`; figures are
built with matplotlib's object API (no global pyplot state) and written atomically.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from salmap.errors import UsageError
from salmap.io.atomic import atomic_path
from salmap.maps import SaliencyMap, normalize_map, resize_map

__all__ = [
    "colormap",
    "colorize",
    "overlay",
    "plot_maps",
    "plot_grid",
    "save_figure",
    "save_heatmap",
    "DEFAULT_CMAP",
    "DIVERGING_CMAP",
]

DEFAULT_CMAP = "inferno"
DIVERGING_CMAP = "RdBu_r"


def colormap(name: str) -> matplotlib.colors.Colormap:
    """The matplotlib colormap called ``name``; an unknown name is a usage error."""
    try:
        return matplotlib.colormaps[name]
    except KeyError:
        raise UsageError(
            f"unknown colormap {name!r}; use a matplotlib colormap such as inferno, jet, ocean"
        ) from None


def _display_values(
    saliency: np.ndarray, normalize: str, percentile: float, diverging: bool
) -> np.ndarray:
    """Values in [0, 1] to colour; diverging maps keep 0.5 as zero evidence."""
    if diverging:
        scale = (
            float(np.percentile(np.abs(saliency), percentile))
            if normalize == "percentile"
            else float(np.abs(saliency).max())
        )
        if scale <= 0:
            return np.full(saliency.shape, 0.5, dtype=np.float32)
        return np.clip(0.5 + 0.5 * saliency / scale, 0.0, 1.0).astype(np.float32)
    return normalize_map(saliency, normalize, percentile)


def colorize(
    saliency: np.ndarray,
    cmap: str = DEFAULT_CMAP,
    normalize: str = "minmax",
    percentile: float = 99.0,
    diverging: bool = False,
) -> np.ndarray:
    """Turn an H×W map into an H×W×3 float32 RGB picture in [0, 1].

    ``diverging=True`` draws signed maps around zero (negative blue, positive red with
    the default diverging colormap) instead of by magnitude.
    """
    values = _display_values(np.asarray(saliency, np.float32), normalize, percentile, diverging)
    return colormap(cmap)(values)[..., :3].astype(np.float32)


def overlay(
    image: np.ndarray,
    saliency: np.ndarray,
    cmap: str = DEFAULT_CMAP,
    alpha: float = 0.5,
    normalize: str = "minmax",
    percentile: float = 99.0,
    diverging: bool = False,
) -> np.ndarray:
    """Blend a coloured map onto an H×W×3 [0, 1] image; returns H×W×3 float32 in [0, 1].

    The map is resized to the image if needed. Where the map is weak the photo shows
    through: the blend weight is ``alpha`` times the normalised saliency (for diverging
    maps, its distance from zero).
    """
    height, width = image.shape[:2]
    saliency = resize_map(saliency, height, width)
    values = _display_values(saliency, normalize, percentile, diverging)
    strength = np.abs(values - 0.5) * 2 if diverging else values
    colours = colormap(cmap)(values)[..., :3]
    weight = (alpha * (0.35 + 0.65 * strength))[..., None]
    blended = (1 - weight) * image + weight * colours
    return np.clip(blended, 0, 1).astype(np.float32)


def _title(result: SaliencyMap) -> str:
    parts = [result.method or "saliency"]
    if result.model:
        parts.append(result.model)
    if result.label is not None:
        what = f"{result.label} ({result.target})" if result.target is not None else result.label
        if result.score is not None:
            what += f", p={result.score:.3f}"
        parts.append(what)
    return " · ".join(parts)


def plot_maps(
    result: SaliencyMap,
    path: str | os.PathLike | None = None,
    *,
    image: np.ndarray | None = None,
    cmap: str = DEFAULT_CMAP,
    normalize: str = "minmax",
    percentile: float = 99.0,
    alpha: float = 0.5,
    diverging: bool = False,
    title: str | None = None,
    dpi: int = 100,
) -> Figure:
    """Draw the tutorial's three panels: saliency map, input image, overlay.

    Parameters
    ----------
    result : SaliencyMap
        What to draw; ``result.image`` is the photo unless ``image`` is given.
    path : path-like, optional
        Where to save the figure (format from the extension; written atomically).
    cmap : str
        Any matplotlib colormap name (the TensorFlow tutorial used ``ocean``).
    normalize : {"minmax", "percentile"}
        How the map is scaled to the colormap (see :func:`salmap.normalize_map`).
    diverging : bool
        Draw a signed map around zero instead of by magnitude.

    Returns
    -------
    matplotlib.figure.Figure
    """
    photo = result.image if image is None else image
    if photo is None:
        raise UsageError("plot_maps needs the image: pass image= or a result that carries it")
    if diverging and cmap == DEFAULT_CMAP:
        cmap = DIVERGING_CMAP
    height, width = photo.shape[:2]
    saliency = resize_map(result.map, height, width)
    values = _display_values(saliency, normalize, percentile, diverging)
    aspect = width / height
    figure = Figure(figsize=(3 * 4 * aspect + 0.6, 4.6), dpi=dpi, layout="constrained")
    axes = figure.subplots(1, 3)
    shown = axes[0].imshow(values, cmap=colormap(cmap), vmin=0, vmax=1)
    axes[0].set_title("saliency map")
    colorbar = figure.colorbar(shown, ax=axes[0], fraction=0.046, pad=0.02)
    colorbar.set_label("negative ← 0 → positive" if diverging else f"{normalize} scaled")
    axes[1].imshow(photo)
    axes[1].set_title("input image")
    axes[2].imshow(overlay(photo, saliency, cmap, alpha, normalize, percentile, diverging))
    axes[2].set_title("overlay")
    for axis in axes:
        axis.set_axis_off()
    figure.suptitle(title if title is not None else _title(result))
    if path is not None:
        save_figure(figure, path)
    return figure


def plot_grid(
    image: np.ndarray,
    results: Sequence[SaliencyMap],
    path: str | os.PathLike | None = None,
    *,
    cmap: str = DEFAULT_CMAP,
    normalize: str = "percentile",
    percentile: float = 99.0,
    alpha: float = 0.6,
    columns: int = 4,
    title: str | None = None,
    dpi: int = 100,
) -> Figure:
    """A comparison grid: the photo, then one overlay per result, titled with the
    method and the seconds it took."""
    count = len(results) + 1
    columns = min(columns, count)
    rows = -(-count // columns)
    height, width = image.shape[:2]
    aspect = width / height
    figure = Figure(
        figsize=(columns * 3.2 * aspect, rows * 3.4 + 0.4), dpi=dpi, layout="constrained"
    )
    axes = np.atleast_1d(figure.subplots(rows, columns)).ravel()
    axes[0].imshow(image)
    axes[0].set_title("input image", fontsize=9)
    for axis, result in zip(axes[1:], results, strict=False):
        diverging = bool(result.extras.get("diverging", False))
        axis.imshow(
            overlay(
                image,
                result.map,
                DIVERGING_CMAP if diverging else cmap,
                alpha,
                normalize,
                percentile,
                diverging,
            )
        )
        axis.set_title(f"{result.method} · {result.seconds:.2f} s", fontsize=9)
    for axis in axes:
        axis.set_axis_off()
    if title:
        figure.suptitle(title)
    if path is not None:
        save_figure(figure, path)
    return figure


def save_figure(figure: Figure, path: str | os.PathLike) -> None:
    """Save a matplotlib figure atomically; the format follows the extension."""
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format=_format_of(path))


def save_heatmap(
    path: str | os.PathLike,
    saliency: np.ndarray,
    cmap: str = DEFAULT_CMAP,
    normalize: str = "minmax",
    percentile: float = 99.0,
    diverging: bool = False,
) -> None:
    """Write the map alone as a coloured image at its own resolution (atomically)."""
    rgb = colorize(saliency, cmap, normalize, percentile, diverging)
    pixels = Image.fromarray(np.round(rgb * 255).astype(np.uint8))
    with atomic_path(path) as tmp:
        pixels.save(tmp, format=_format_of(path))


_FORMATS = {
    ".png": "png",
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
    ".pdf": "pdf",
    ".svg": "svg",
    ".webp": "webp",
    ".tif": "tiff",
    ".tiff": "tiff",
    ".bmp": "bmp",
}


def _format_of(path: str | os.PathLike) -> str:
    suffix = os.path.splitext(str(path))[1].lower()
    if suffix not in _FORMATS:
        raise UsageError(
            f"cannot tell the format of {path}: use one of {', '.join(sorted(_FORMATS))}"
        )
    return _FORMATS[suffix]

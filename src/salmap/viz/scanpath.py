"""Scan paths: attended locations numbered on the photo, and the Itti–Koch figure
with its conspicuity maps."""

from __future__ import annotations

import os

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Circle

from salmap.errors import UsageError
from salmap.maps import SaliencyMap, normalize_map, resize_map
from salmap.viz.figure import DEFAULT_CMAP, colorize, overlay, save_figure

__all__ = ["draw_scan_path", "plot_itti_koch"]

_CONSPICUITY_TITLES = {
    "intensity": "intensity conspicuity Ī",
    "colour": "colour conspicuity C̄",
    "orientation": "orientation conspicuity Ō",
}


def draw_scan_path(
    axis: Axes,
    image: np.ndarray,
    path: np.ndarray,
    *,
    radius: float | None = None,
    colour: str = "#00e5ff",
) -> None:
    """Draw ``image`` on ``axis`` with the attended locations numbered in order.

    Parameters
    ----------
    axis : matplotlib.axes.Axes
    image : numpy.ndarray
        H×W×3 float image in [0, 1].
    path : numpy.ndarray
        K×2 (x, y) locations in image pixels, in attention order.
    radius : float, optional
        Focus-of-attention radius in pixels; each fixation is circled with it.
    colour : str
        Colour of the circles, lines and numbers.
    """
    axis.imshow(image)
    points = np.asarray(path, dtype=np.float64).reshape(-1, 2)
    if len(points) > 1:
        axis.plot(points[:, 0], points[:, 1], "-", color=colour, linewidth=1.2, alpha=0.8)
    for number, (x, y) in enumerate(points, start=1):
        if radius:
            axis.add_patch(
                Circle((x, y), radius, fill=False, edgecolor=colour, linewidth=1.2, alpha=0.9)
            )
        axis.text(
            x,
            y,
            str(number),
            color="black",
            fontsize=9,
            fontweight="bold",
            ha="center",
            va="center",
            bbox={"boxstyle": "circle,pad=0.25", "facecolor": colour, "edgecolor": "none"},
        )
    axis.set_xlim(-0.5, image.shape[1] - 0.5)
    axis.set_ylim(image.shape[0] - 0.5, -0.5)


def plot_itti_koch(
    result: SaliencyMap,
    path: str | os.PathLike | None = None,
    *,
    fixations: int | None = None,
    cmap: str = DEFAULT_CMAP,
    normalize: str = "minmax",
    percentile: float = 99.0,
    alpha: float = 0.5,
    title: str | None = None,
    dpi: int = 100,
) -> Figure:
    """The Itti–Koch figure: map, input and overlay on top; the intensity, colour and
    orientation conspicuity maps and the numbered scan path below.

    Parameters
    ----------
    result : SaliencyMap
        A result of ``salmap.static_saliency(image, method="itti")`` (it carries the
        conspicuity maps and the scan path in ``extras``).
    path : path-like, optional
        Where to save the figure (written atomically).
    fixations : int, optional
        How many attended locations to number (default: all in the result).
    cmap, normalize, percentile, alpha :
        As for :func:`salmap.plot_maps`.

    Returns
    -------
    matplotlib.figure.Figure
    """
    extras = result.extras
    if "conspicuity" not in extras or "scan_path" not in extras:
        raise UsageError("plot_itti_koch needs an Itti–Koch result (method='itti')")
    photo = result.image
    if photo is None:
        raise UsageError("plot_itti_koch needs a result that carries its image")
    height, width = photo.shape[:2]
    saliency = resize_map(result.map, height, width)
    scan = np.asarray(extras["scan_path"]).reshape(-1, 2)
    if fixations is not None:
        scan = scan[: max(int(fixations), 0)]
    aspect = width / height
    figure = Figure(figsize=(4 * 3.4 * aspect + 0.6, 2 * 3.4 + 0.8), dpi=dpi, layout="constrained")
    top, bottom = figure.subfigures(2, 1)
    upper = top.subplots(1, 3)
    shown = upper[0].imshow(
        normalize_map(saliency, normalize, percentile), cmap=cmap, vmin=0, vmax=1
    )
    upper[0].set_title("saliency map")
    top.colorbar(shown, ax=upper[0], fraction=0.046, pad=0.02).set_label(f"{normalize} scaled")
    upper[1].imshow(photo)
    upper[1].set_title("input image")
    upper[2].imshow(overlay(photo, saliency, cmap, alpha, normalize, percentile))
    upper[2].set_title("overlay")
    lower = bottom.subplots(1, 4)
    for axis, (name, conspicuity) in zip(lower, extras["conspicuity"].items(), strict=False):
        axis.imshow(colorize(resize_map(conspicuity, height, width), cmap))
        axis.set_title(_CONSPICUITY_TITLES.get(name, name), fontsize=10)
    draw_scan_path(lower[3], photo, scan, radius=extras.get("foa_radius"))
    lower[3].set_title(f"scan path, first {len(scan)} shifts", fontsize=10)
    for axis in (*upper, *lower):
        axis.set_axis_off()
    figure.suptitle(title if title is not None else "Itti–Koch–Niebur saliency")
    if path is not None:
        save_figure(figure, path)
    return figure

"""Pictures of videos: per-frame overlays on a scale that does not flicker, optical
flow in colour, and a contact sheet to judge a whole run at a glance.

:func:`salmap.viz.overlay` rescales every map to its own minimum and maximum, which
is right for one photo and wrong for a video: a frame with nothing moving would be
drawn as brightly as one with a runner. Here maps are put on a common scale first
(:class:`RunningScale`), then blended with the same formula as :func:`overlay`,
through a 256-entry look-up table so it keeps up with the video.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import cv2
import numpy as np
from matplotlib.figure import Figure

from salmap.errors import UsageError
from salmap.maps import SaliencyMap
from salmap.viz.figure import DEFAULT_CMAP, colormap, save_figure

__all__ = [
    "RunningScale",
    "overlay_frame",
    "colorize_frame",
    "flow_to_rgb",
    "ContactSheet",
    "plot_contact_sheet",
]


class RunningScale:
    """Scale a stream of maps to [0, 1] with one slowly adapting ceiling.

    The ceiling is the largest ``percentile`` seen so far (never below ``floor``), so
    brightness means the same from frame to frame and quiet frames stay dark; a
    fixed ceiling is used instead when ``fixed`` is given.

    Parameters
    ----------
    floor : float
        Smallest ceiling, in the map's units (for motion saliency, pixels per frame:
        sensor noise and flow jitter stay below it).
    percentile : float
        Which percentile of each map raises the ceiling, in (0, 100]; below 100 a few
        outlier pixels cannot dim the whole video.
    fixed : float, optional
        A constant ceiling (no adaptation).
    """

    def __init__(self, floor: float = 1.0, percentile: float = 99.5, fixed: float | None = None):
        if fixed is not None and not fixed > 0:
            raise UsageError(f"a fixed display scale must be positive, not {fixed}")
        if not floor > 0:
            raise UsageError(f"the display scale floor must be positive, not {floor}")
        self.floor = float(floor)
        self.percentile = float(percentile)
        self.fixed = fixed
        self.ceiling = float(fixed) if fixed is not None else float(floor)

    def update(self, saliency: np.ndarray) -> float:
        """Raise the ceiling with this map (subsampled: the cost does not grow with size)."""
        if self.fixed is None:
            step = max(1, int(np.sqrt(saliency.size / 20000)))
            sample = np.abs(saliency[::step, ::step])
            self.ceiling = max(self.ceiling, float(np.percentile(sample, self.percentile)))
        return self.ceiling

    def __call__(self, saliency: np.ndarray) -> np.ndarray:
        """The map scaled to [0, 1] (float32), after updating the ceiling with it."""
        ceiling = self.update(saliency)
        return np.clip(np.asarray(saliency, np.float32) / np.float32(ceiling), 0.0, 1.0)


def _lookup(cmap: str) -> np.ndarray:
    """256×3 float32 RGB in [0, 1] for the colormap."""
    return colormap(cmap)(np.linspace(0.0, 1.0, 256))[:, :3].astype(np.float32)


def _levels(values: np.ndarray) -> np.ndarray:
    return (np.clip(values, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def colorize_frame(values: np.ndarray, cmap: str = DEFAULT_CMAP) -> np.ndarray:
    """H×W values in [0, 1] -> H×W×3 uint8 RGB through the colormap (no rescaling)."""
    table = (_lookup(cmap) * 255.0 + 0.5).astype(np.uint8).reshape(256, 1, 3)
    levels = _levels(values)
    return cv2.LUT(cv2.merge([levels, levels, levels]), table)


def overlay_frame(
    image: np.ndarray, values: np.ndarray, cmap: str = DEFAULT_CMAP, alpha: float = 0.5
) -> np.ndarray:
    """Blend already-scaled values onto a frame; H×W×3 uint8 RGB out.

    The blend is :func:`salmap.viz.overlay`'s (weight ``alpha·(0.35 + 0.65·value)``),
    but ``values`` (H×W in [0, 1], resized to the frame if needed) are not rescaled,
    so a video keeps one scale over all its frames. Values are quantised to 256
    levels, and the weights and colours looked up per level: ~5× faster than the
    per-pixel arithmetic, for the same pixels.

    Parameters
    ----------
    image : numpy.ndarray
        H×W×3 RGB frame, uint8 or float in [0, 1].
    values : numpy.ndarray
        Map scaled to [0, 1], e.g. by :class:`RunningScale`.
    cmap : str
        Matplotlib colormap name.
    alpha : float
        Opacity of the colour where the map is strongest, in [0, 1].
    """
    if not 0 <= alpha <= 1:
        raise UsageError(f"overlay alpha must be in [0, 1], not {alpha}")
    height, width = image.shape[:2]
    if values.shape != (height, width):
        values = cv2.resize(
            values.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR
        )
    levels = _levels(values)
    levels = cv2.merge([levels, levels, levels])
    weight = (alpha * (0.35 + 0.65 * np.linspace(0.0, 1.0, 256))).astype(np.float32)
    keep = np.repeat(1.0 - weight, 3).reshape(256, 1, 3).astype(np.float32)
    add = (weight[:, None] * _lookup(cmap) * 255.0).reshape(256, 1, 3).astype(np.float32)
    if image.dtype == np.uint8:
        blended = cv2.multiply(image, cv2.LUT(levels, keep), dtype=cv2.CV_32F)
    else:
        blended = cv2.multiply(image.astype(np.float32), cv2.LUT(levels, keep), scale=255.0)
    return cv2.add(blended, cv2.LUT(levels, add), dtype=cv2.CV_8U)


def flow_to_rgb(flow: np.ndarray, max_speed: float | None = None) -> np.ndarray:
    """Optical flow in colour: hue is the direction, brightness the speed.

    The usual colour wheel of the flow literature (Baker et al. 2011): right is red,
    down is green-yellow... seen through OpenCV's hue circle; still pixels are black.

    Parameters
    ----------
    flow : numpy.ndarray
        H×W×2 displacements in pixels.
    max_speed : float, optional
        Speed drawn at full brightness (default: the 99th percentile of the field,
        at least 1 pixel).

    Returns
    -------
    numpy.ndarray
        H×W×3 uint8 RGB.

    References
    ----------
    S. Baker, D. Scharstein, J. P. Lewis, S. Roth, M. J. Black, R. Szeliski, "A
    Database and Evaluation Methodology for Optical Flow", IJCV 92(1), 2011.
    """
    flow = np.asarray(flow, np.float32)
    speed, angle = cv2.cartToPolar(flow[..., 0], flow[..., 1], angleInDegrees=True)
    if max_speed is None:
        max_speed = max(1.0, float(np.percentile(speed, 99)))
    hsv = np.empty(flow.shape[:2] + (3,), np.uint8)
    hsv[..., 0] = (angle / 2).astype(np.uint8)  # OpenCV's 8-bit hue runs 0..179
    hsv[..., 1] = 255
    hsv[..., 2] = _levels(speed / np.float32(max_speed))
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


class ContactSheet:
    """Collect every ``every``-th motion result (as thumbnails) for :func:`plot_contact_sheet`.

    Memory is bounded: at most ``max_rows`` thumbnails ``width`` pixels wide are kept,
    however long the video.

    Parameters
    ----------
    every : int
        Keep one result in ``every``: the middle one of each stretch of ``every``.
    max_rows : int
        Stop collecting after this many.
    width : int
        Thumbnail width in pixels.
    """

    def __init__(self, every: int = 1, max_rows: int = 12, width: int = 320) -> None:
        if int(every) != every or every < 1:
            raise UsageError(f"contact sheet stride must be a whole number >= 1, not {every}")
        if int(max_rows) != max_rows or max_rows < 1:
            raise UsageError(f"contact sheet rows must be a whole number >= 1, not {max_rows}")
        self.every = int(every)
        self.max_rows = int(max_rows)
        self.width = int(width)
        self.rows: list[SaliencyMap] = []
        self.cuts: list[int] = []  # frames that start a new shot, kept or not
        self._seen = 0

    def add(self, result: SaliencyMap) -> None:
        """Offer one result; kept if it is mid-stretch and there is room."""
        # The middle of each stretch of ``every`` frames: not the very first frame of
        # the run, which has no temporal history yet.
        keep = self._seen % self.every == self.every // 2 and len(self.rows) < self.max_rows
        self._seen += 1
        if result.extras.get("cut"):
            self.cuts.append(int(result.extras["frame"]))
        if keep:
            self.rows.append(_thumbnail(result, self.width))

    def save(self, path: str | os.PathLike, **kwargs) -> Figure:
        """Draw and write the sheet (see :func:`plot_contact_sheet` for the options)."""
        return plot_contact_sheet(self.rows, path, cuts=self.cuts, **kwargs)


def _thumbnail(result: SaliencyMap, width: int) -> SaliencyMap:
    """A copy with image, map and flow shrunk to ``width`` (speeds keep video pixels)."""
    height_full, width_full = result.map.shape
    extras = dict(result.extras)
    if width_full <= width:
        return SaliencyMap(
            map=result.map.copy(),
            image=None if result.image is None else result.image.copy(),
            method=result.method,
            params=result.params,
            seconds=result.seconds,
            extras=extras,
        )
    height = max(1, round(height_full * width / width_full))
    size = (width, height)
    if "flow" in extras:
        flow = extras["flow"]  # values are video pixels per frame already: only resample
        extras["flow"] = cv2.resize(flow, size, interpolation=cv2.INTER_AREA)
    if "static" in extras:
        extras["static"] = cv2.resize(extras["static"], size, interpolation=cv2.INTER_AREA)
    image = None
    if result.image is not None:
        image = cv2.resize(result.image, size, interpolation=cv2.INTER_AREA)
    return SaliencyMap(
        map=cv2.resize(result.map, size, interpolation=cv2.INTER_AREA),
        image=image,
        method=result.method,
        params=result.params,
        seconds=result.seconds,
        extras=extras,
    )


def plot_contact_sheet(
    results: Sequence[SaliencyMap],
    path: str | os.PathLike | None = None,
    *,
    cmap: str = DEFAULT_CMAP,
    alpha: float = 0.6,
    ceiling: float | None = None,
    title: str | None = None,
    dpi: int = 100,
    cuts: Sequence[int] = (),
) -> Figure:
    """One row per frame: the frame, its optical flow in colour, its saliency overlay.

    Parameters
    ----------
    results : sequence of SaliencyMap
        Motion saliency results (from :func:`salmap.motion_saliency`), e.g. collected
        by :class:`ContactSheet`; ``extras["flow"]`` is drawn when present.
    path : path-like, optional
        Where to write the figure (atomically; format from the extension).
    cmap : str
        Colormap of the saliency overlay.
    ceiling : float, optional
        Map value drawn at full colour (default: the largest 99.5th percentile over
        the rows, at least 1), the same for every row so rows compare.
    cuts : sequence of int
        Frames that start a new shot (``extras["cut"]`` of the results): listed in the
        title; each row names its shot, in red on the first row of a new shot.

    Returns
    -------
    matplotlib.figure.Figure
    """
    if not results:
        raise UsageError("a contact sheet needs at least one frame")
    fused = results[0].params.get("static") is not None  # unitless [0, 1] maps
    if ceiling is None:
        scale = RunningScale(floor=1e-6 if fused else 1.0)
        for result in results:
            scale.update(result.map)
        ceiling = scale.ceiling
    flows = [r.extras.get("flow") for r in results]
    has_flow = any(f is not None for f in flows)
    speeds = [np.percentile(np.hypot(f[..., 0], f[..., 1]), 99) for f in flows if f is not None]
    max_speed = max([1.0, *speeds])
    columns = 3 if has_flow else 2
    height, width = results[0].map.shape
    aspect = width / height
    figure = Figure(
        figsize=(columns * 2.3 * aspect, len(results) * 2.3 + 0.5), dpi=dpi, layout="constrained"
    )
    axes = np.asarray(figure.subplots(len(results), columns, squeeze=False))
    fixed = RunningScale(fixed=ceiling)
    shot = results[0].extras.get("shot")
    for row, (result, flow) in enumerate(zip(results, flows, strict=True)):
        image = result.image if result.image is not None else np.zeros((height, width, 3))
        label, new_shot = _row_label(result, shot, bool(cuts))
        shot = result.extras.get("shot", shot)
        axes[row, 0].imshow(image)
        axes[row, 0].set_title(label, fontsize=8, color="red" if new_shot else "black")
        if has_flow:
            if flow is not None:
                axes[row, 1].imshow(flow_to_rgb(flow, max_speed))
            axes[row, 1].set_title(_flow_title(result), fontsize=8)
        axes[row, columns - 1].imshow(overlay_frame(image, fixed(result.map), cmap, alpha))
        unit = "" if fused or not result.method.startswith("motion") else " px/frame"
        axes[row, columns - 1].set_title(
            f"{result.method or 'saliency'} · peak {float(result.map.max()):.2f}{unit}", fontsize=8
        )
    for axis in axes.ravel():
        axis.set_axis_off()
    if cuts:
        frames = (
            f"cut at frame {cuts[0]}"
            if len(cuts) == 1
            else f"cuts at frames {', '.join(map(str, cuts))}"
        )
        title = f"{title} · {frames}" if title else frames
    if title:
        figure.suptitle(title, fontsize=10)
    if path is not None:
        save_figure(figure, path)
    return figure


def _flow_title(result: SaliencyMap) -> str:
    """ "optical flow · scene (dx, dy) px": the camera's shift of the image centre."""
    camera = result.extras.get("camera")
    if camera is None:
        return "optical flow"
    dx, dy = camera.translation
    scale = result.extras.get("scale", 1.0)
    # round first, then + 0.0: a tiny negative shift prints as +0.0, not -0.0
    dx, dy = round(dx * scale, 1) + 0.0, round(dy * scale, 1) + 0.0
    return f"optical flow · scene ({dx:+.1f}, {dy:+.1f}) px"


def _row_label(result: SaliencyMap, previous_shot: int | None, shots: bool) -> tuple[str, bool]:
    """ "frame N · t s · shot k" and whether the row starts a new shot since the last row."""
    frame, seconds = result.extras.get("frame"), result.extras.get("time")
    label = "frame" if frame is None else f"frame {frame}"
    if seconds is not None:
        label += f" · {seconds:.2f} s"
    shot = result.extras.get("shot")
    if not shots or shot is None:
        return label, False
    new_shot = previous_shot is not None and shot != previous_shot
    return label + f" · shot {shot + 1}" + (" · after a cut" if new_shot else ""), new_shot

"""Visual search arrays: the classic pop-out and conjunction stimuli.

Treisman & Gelade (1980) showed that a target differing from its distractors in one
feature (a red bar among green ones, a tilted bar among upright ones) is found at
once, whatever the number of distractors, while a target defined by a conjunction of
features (red *and* vertical among red horizontals and green verticals) needs a
serial search. Itti & Koch (2000) reproduced both with their model.

:func:`search_array` draws one display with a seeded random generator;
:func:`random_search_array` also draws its conditions (image shape, grid, set size,
bar size, contrast, background luminance, a target next to the image edge), so that
a model is measured on many displays it was not tuned on. :func:`attended_item` and
:func:`on_target` say which bar a location falls on.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from salmap.errors import UsageError

__all__ = [
    "SearchArray",
    "search_array",
    "random_search_array",
    "attended_item",
    "on_target",
    "SEARCH_KINDS",
    "BACKGROUNDS",
    "SEARCH_SHAPES",
]

SEARCH_KINDS = ("colour", "orientation", "conjunction")

#: Background luminances by name (grey level in [0, 1]).
BACKGROUNDS = {"black": 0.0, "grey": 0.5, "white": 1.0}

#: Image shapes (height, width) :func:`random_search_array` draws from: square and wide.
SEARCH_SHAPES = ((480, 480), (400, 640))

_RED = np.array((1.0, 0.0, 0.0))
_GREEN = np.array((0.0, 1.0, 0.0))
_WHITE = np.array((1.0, 1.0, 1.0))
_BLACK = np.array((0.0, 0.0, 0.0))


@dataclass
class SearchArray:
    """A generated search display.

    Attributes
    ----------
    image : numpy.ndarray
        H×W×3 float32 RGB in [0, 1].
    target : numpy.ndarray
        (x, y) centre of the odd one out, in pixels.
    distractors : numpy.ndarray
        N×2 (x, y) centres of the other bars.
    kind : str
        ``colour``, ``orientation`` or ``conjunction``.
    background : float
        Grey level of the background.
    contrast : float
        How far the bars' colour lies from the background's (1: full colour).
    bar_length, bar_width : float
        Bar size in pixels.
    """

    image: np.ndarray
    target: np.ndarray
    distractors: np.ndarray
    kind: str
    background: float = 0.0
    contrast: float = 1.0
    bar_length: float = 64.0
    bar_width: float = 16.0

    @property
    def items(self) -> np.ndarray:
        """All bar centres, the target first."""
        return np.vstack([self.target[None, :], self.distractors])


def _draw_bar(canvas: np.ndarray, centre, length: float, thickness: float, angle, colour):
    # cv2 rotates rectangles clockwise on screen; orientations here are counter-clockwise.
    corners = cv2.boxPoints(((float(centre[0]), float(centre[1])), (length, thickness), -angle))
    scaled = np.round(corners * 16).astype(np.int32)  # 4 fractional bits for sub-pixel corners
    colour_255 = tuple(int(round(255 * c)) for c in colour[::-1])  # drawn as BGR
    cv2.fillConvexPoly(canvas, scaled, colour_255, lineType=cv2.LINE_AA, shift=4)


def _styles(kind: str, count: int, rng: np.random.Generator, background: float) -> list:
    """(angle, full colour) of every bar, the target first."""
    if kind == "colour":
        return [(90.0, _RED)] + [(90.0, _GREEN)] * (count - 1)
    if kind == "orientation":
        # Light bars on a dark background, dark on a light one, either on mid-grey.
        light = background < 0.5 or (background == 0.5 and rng.integers(2) == 1)
        ink = _WHITE if light else _BLACK
        return [(45.0, ink)] + [(90.0, ink)] * (count - 1)
    distractors = count - 1
    red_horizontal = distractors // 2 + (rng.integers(2) if distractors % 2 else 0)
    kinds = [(0.0, _RED)] * red_horizontal + [(90.0, _GREEN)] * (distractors - red_horizontal)
    return [(90.0, _RED)] + [kinds[i] for i in rng.permutation(len(kinds))]


def _layout(shape, grid, cell) -> tuple[int, int, float, float, float, float]:
    """Rows, columns, cell height and width, and the grid's offset (x, y)."""
    height, width = shape
    if grid is None:
        rows, cols = height // cell, width // cell
        return rows, cols, cell, cell, (width - cols * cell) / 2, (height - rows * cell) / 2
    rows, cols = grid
    if rows < 1 or cols < 1:
        raise UsageError(f"grid must have at least one row and column, got {grid}")
    return rows, cols, height / rows, width / cols, 0.0, 0.0


def _half_extent(length: float, width: float, angle: float) -> np.ndarray:
    """Half the (x, y) extent of a bar drawn at ``angle`` degrees."""
    cos, sin = abs(np.cos(np.deg2rad(angle))), abs(np.sin(np.deg2rad(angle)))
    return np.array([cos * length + sin * width, sin * length + cos * width]) / 2


def _choose_cells(rng, set_size, rows, cols, target_at_edge) -> np.ndarray:
    """Distinct grid cells, the target's first (on the grid's rim if asked)."""
    if not 2 <= set_size <= rows * cols:
        raise UsageError(f"set size must be between 2 and {rows * cols} for a {rows}×{cols} grid")
    everything = np.arange(rows * cols)
    if not target_at_edge:
        return rng.choice(everything, size=set_size, replace=False)
    row, col = everything // cols, everything % cols
    rim = everything[(row == 0) | (row == rows - 1) | (col == 0) | (col == cols - 1)]
    target = rng.choice(rim)
    others = rng.choice(everything[everything != target], size=set_size - 1, replace=False)
    return np.concatenate([[target], others])


def _centres(rng, cells, shape, layout, reach, target_reach, target_at_edge) -> np.ndarray:
    """Bar centres jittered within their cells; with ``target_at_edge`` the target
    (first) is moved to 1–3 pixels from the image edge its cell touches."""
    rows, cols, cell_h, cell_w, offset_x, offset_y = layout
    room = np.maximum(np.array([cell_w, cell_h]) / 2 - reach - 2, 0.0)
    jitter = rng.uniform(-1, 1, size=(len(cells), 2)) * room
    row, col = cells // cols, cells % cols
    centres = (
        np.column_stack([offset_x + (col + 0.5) * cell_w, offset_y + (row + 0.5) * cell_h]) + jitter
    )
    if target_at_edge:
        height, width = shape
        gap = target_reach + rng.uniform(1, 3, size=2)
        if col[0] == 0:
            centres[0, 0] = gap[0]
        elif col[0] == cols - 1:
            centres[0, 0] = width - gap[0]
        if row[0] == 0:
            centres[0, 1] = gap[1]
        elif row[0] == rows - 1:
            centres[0, 1] = height - gap[1]
    return centres


def _ink(colour: np.ndarray, background: float, contrast: float) -> np.ndarray:
    """The bar colour ``contrast`` of the way from the background to ``colour``."""
    return background + contrast * (colour - background)


def search_array(
    kind: str,
    set_size: int,
    *,
    rng: np.random.Generator | int | None = None,
    shape: tuple[int, int] = (480, 640),
    cell: int = 96,
    grid: tuple[int, int] | None = None,
    bar_length: float = 64.0,
    bar_width: float = 16.0,
    background: float = 0.0,
    contrast: float = 1.0,
    target_at_edge: bool = False,
) -> SearchArray:
    """Draw a search array of ``set_size`` bars, one of them the target.

    Bars sit in randomly chosen cells of a grid, jittered within their cell.

    - ``colour``: a red vertical bar among green vertical bars (equal intensity
      (r + g + b)/3, so only colour tells them apart);
    - ``orientation``: a bar tilted 45° among vertical bars, all of one grey (light
      on a dark background, dark on a light one, either on mid-grey);
    - ``conjunction``: a red vertical bar among red horizontal and green vertical
      bars (about half each), so neither colour nor orientation alone singles it out.

    Parameters
    ----------
    kind : {"colour", "orientation", "conjunction"}
    set_size : int
        Number of bars including the target (>= 2).
    rng : numpy.random.Generator or int, optional
        Random generator or seed for positions and the target's cell.
    shape : (height, width)
        Image size in pixels.
    cell : int
        Spacing of a square grid centred in the image (when ``grid`` is None).
    grid : (rows, columns), optional
        A grid whose cells tile the whole image, so edge cells touch its border.
    bar_length, bar_width : float
        Bar size in pixels.
    background : float
        Background grey level in [0, 1] (see :data:`BACKGROUNDS`).
    contrast : float
        In (0, 1]: each bar's colour is ``background + contrast · (colour −
        background)``, so red and green keep equal intensity on any background.
    target_at_edge : bool
        Put the target in a cell of the grid's rim, 1–3 pixels from the image edge.

    Returns
    -------
    SearchArray
    """
    if kind not in SEARCH_KINDS:
        raise UsageError(f"unknown search array {kind!r}; use one of {', '.join(SEARCH_KINDS)}")
    if not (0 <= background <= 1 and 0 < contrast <= 1):
        raise UsageError("background must be in [0, 1] and contrast in (0, 1]")
    rng = np.random.default_rng(rng)
    layout = _layout(shape, grid, cell)
    cells = _choose_cells(rng, set_size, layout[0], layout[1], target_at_edge)
    styles = _styles(kind, set_size, rng, background)
    reach = float(np.hypot(bar_length, bar_width)) / 2
    target_reach = _half_extent(bar_length, bar_width, styles[0][0])
    centres = _centres(rng, cells, shape, layout, reach, target_reach, target_at_edge)
    canvas = np.full((*shape, 3), int(round(255 * background)), np.uint8)
    for centre, (angle, colour) in zip(centres, styles, strict=True):
        _draw_bar(canvas, centre, bar_length, bar_width, angle, _ink(colour, background, contrast))
    image = canvas[..., ::-1].astype(np.float32) / 255.0
    return SearchArray(
        image=np.ascontiguousarray(image),
        target=centres[0].astype(np.float32),
        distractors=centres[1:].astype(np.float32),
        kind=kind,
        background=float(background),
        contrast=float(contrast),
        bar_length=float(bar_length),
        bar_width=float(bar_width),
    )


def random_search_array(
    kind: str,
    rng: np.random.Generator | int | None = None,
    *,
    shapes: tuple[tuple[int, int], ...] = SEARCH_SHAPES,
    grids: tuple[int, int] = (4, 8),
    max_set_size: int = 64,
) -> SearchArray:
    """A search array whose conditions are drawn at random too.

    Square or wide image (``shapes``); an n×n grid, n uniform in ``grids``; set
    size uniform from 4 to min(n², ``max_set_size``); black, grey or white
    background; contrast uniform in [0.4, 1]; bar length 40–70 % of the smaller
    cell side and width a third to a fifth of it; in half the arrays the target
    touches the image edge (1–3 pixels away).

    Parameters
    ----------
    kind : {"colour", "orientation", "conjunction"}
    rng : numpy.random.Generator or int, optional
    shapes : tuple of (height, width)
    grids : (smallest, largest) grid side
    max_set_size : int

    Returns
    -------
    SearchArray
    """
    rng = np.random.default_rng(rng)
    height, width = shapes[int(rng.integers(len(shapes)))]
    side = int(rng.integers(grids[0], grids[1] + 1))
    set_size = int(rng.integers(4, min(side * side, max_set_size) + 1))
    background = float(rng.choice(list(BACKGROUNDS.values())))
    contrast = float(rng.uniform(0.4, 1.0))
    length = float(rng.uniform(0.4, 0.7)) * min(height, width) / side
    return search_array(
        kind,
        set_size,
        rng=rng,
        shape=(height, width),
        grid=(side, side),
        bar_length=length,
        bar_width=length / float(rng.uniform(3.0, 5.0)),
        background=background,
        contrast=contrast,
        target_at_edge=bool(rng.integers(2)),
    )


def attended_item(array: SearchArray, location) -> int:
    """Index of the bar nearest to ``location`` (x, y): 0 is the target."""
    location = np.asarray(location, dtype=np.float64).reshape(2)
    distances = np.hypot(*(array.items - location).T)
    return int(np.argmin(distances))


def on_target(array: SearchArray, location) -> bool:
    """Whether ``location`` (x, y) falls on the target: it is the nearest bar, and
    the location lies within one bar length of its centre."""
    location = np.asarray(location, dtype=np.float64).reshape(2)
    near = np.hypot(*(location - array.target)) <= array.bar_length
    return bool(near and attended_item(array, location) == 0)

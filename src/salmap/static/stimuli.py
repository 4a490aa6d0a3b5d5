"""Visual search arrays: the classic pop-out and conjunction stimuli.

Treisman & Gelade (1980) showed that a target differing from its distractors in one
feature (a red bar among green ones, a tilted bar among upright ones) is found at
once, whatever the number of distractors, while a target defined by a conjunction of
features (red *and* vertical among red horizontals and green verticals) needs a
serial search. Itti & Koch (2000) reproduced both with their model. These
generators draw such arrays with a seeded random generator, and
:func:`attended_item` says which item a location falls on.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from salmap.errors import UsageError

__all__ = ["SearchArray", "search_array", "attended_item", "SEARCH_KINDS"]

SEARCH_KINDS = ("colour", "orientation", "conjunction")

_RED = (1.0, 0.0, 0.0)
_GREEN = (0.0, 1.0, 0.0)
_WHITE = (1.0, 1.0, 1.0)


@dataclass
class SearchArray:
    """A generated search display.

    Attributes
    ----------
    image : numpy.ndarray
        H×W×3 float32 RGB in [0, 1], bars on a black background.
    target : numpy.ndarray
        (x, y) centre of the odd one out, in pixels.
    distractors : numpy.ndarray
        N×2 (x, y) centres of the other bars.
    kind : str
        ``colour``, ``orientation`` or ``conjunction``.
    """

    image: np.ndarray
    target: np.ndarray
    distractors: np.ndarray
    kind: str

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


def search_array(
    kind: str,
    set_size: int,
    *,
    rng: np.random.Generator | int | None = None,
    shape: tuple[int, int] = (480, 640),
    cell: int = 96,
    bar_length: float = 64.0,
    bar_width: float = 16.0,
) -> SearchArray:
    """Draw a search array of ``set_size`` bars, one of them the target.

    Bars sit in randomly chosen cells of a ``cell``-pixel grid, jittered within their
    cell, on black.

    - ``colour``: a red vertical bar among green vertical bars (equal intensity
      (r + g + b)/3, so only colour tells them apart);
    - ``orientation``: a white bar tilted 45° among white vertical bars;
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
    cell, bar_length, bar_width : float
        Grid spacing and bar size in pixels.

    Returns
    -------
    SearchArray
    """
    if kind not in SEARCH_KINDS:
        raise UsageError(f"unknown search array {kind!r}; use one of {', '.join(SEARCH_KINDS)}")
    rng = np.random.default_rng(rng)
    height, width = shape
    rows, cols = height // cell, width // cell
    if not 2 <= set_size <= rows * cols:
        raise UsageError(
            f"set size must be between 2 and {rows * cols} for a {width}×{height} array"
        )
    cells = rng.choice(rows * cols, size=set_size, replace=False)
    margin = (cell - bar_length) / 2 - 2
    jitter = (
        rng.uniform(-margin, margin, size=(set_size, 2)) if margin > 0 else np.zeros((set_size, 2))
    )
    offset_x = (width - cols * cell) / 2
    offset_y = (height - rows * cell) / 2
    centres = np.column_stack(
        [
            offset_x + (cells % cols + 0.5) * cell + jitter[:, 0],
            offset_y + (cells // cols + 0.5) * cell + jitter[:, 1],
        ]
    )
    canvas = np.zeros((height, width, 3), np.uint8)
    if kind == "colour":
        styles = [(90.0, _RED)] + [(90.0, _GREEN)] * (set_size - 1)
    elif kind == "orientation":
        styles = [(45.0, _WHITE)] + [(90.0, _WHITE)] * (set_size - 1)
    else:
        distractors = set_size - 1
        red_horizontal = distractors // 2 + (rng.integers(2) if distractors % 2 else 0)
        kinds = [(0.0, _RED)] * red_horizontal + [(90.0, _GREEN)] * (distractors - red_horizontal)
        order = rng.permutation(len(kinds))
        styles = [(90.0, _RED)] + [kinds[i] for i in order]
    for centre, (angle, colour) in zip(centres, styles, strict=True):
        _draw_bar(canvas, centre, bar_length, bar_width, angle, colour)
    image = canvas[..., ::-1].astype(np.float32) / 255.0
    return SearchArray(
        image=np.ascontiguousarray(image),
        target=centres[0].astype(np.float32),
        distractors=centres[1:].astype(np.float32),
        kind=kind,
    )


def attended_item(array: SearchArray, location) -> int:
    """Index of the bar nearest to ``location`` (x, y): 0 is the target."""
    location = np.asarray(location, dtype=np.float64).reshape(2)
    distances = np.hypot(*(array.items - location).T)
    return int(np.argmin(distances))

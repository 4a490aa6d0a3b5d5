"""How results show themselves in Jupyter: a map as its three panels, a list of maps
as a grid of overlays — without a call to :func:`salmap.plot_maps`."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence

import numpy as np
from PIL import Image

from salmap.maps import SaliencyMap
from salmap.viz.figure import DIVERGING_CMAP, overlay, plot_maps

__all__ = ["three_panels_png", "grid_html"]

#: Width of each overlay in a grid, pixels.
THUMBNAIL_WIDTH = 280


def three_panels_png(result: SaliencyMap, dpi: int = 72) -> bytes | None:
    """The three-panel figure (map, input, overlay) as PNG bytes; ``None`` without
    the image (Jupyter then shows the text form)."""
    if result.image is None:
        return None
    figure = plot_maps(result, diverging=result.signed, dpi=dpi)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _thumbnail(result: SaliencyMap) -> str:
    diverging = result.signed
    picture = overlay(
        result.image,
        result.map,
        DIVERGING_CMAP if diverging else "inferno",
        alpha=0.6,
        normalize="percentile",
        diverging=diverging,
    )
    pixels = Image.fromarray(np.round(picture * 255).astype(np.uint8))
    height = max(1, round(pixels.height * THUMBNAIL_WIDTH / pixels.width))
    pixels = pixels.resize((THUMBNAIL_WIDTH, height), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    pixels.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _caption(result: SaliencyMap) -> str:
    parts = [result.method or "saliency"]
    if result.label is not None:
        parts.append(f"{result.label} ({result.target})")
    if result.score is not None:
        parts.append(f"p={result.score:.3f}")
    return " · ".join(parts)


def grid_html(results: Sequence[SaliencyMap]) -> str:
    """A grid of overlays, one captioned cell per result (maps without an image are
    listed by caption only)."""
    cells = []
    for result in results:
        caption = html.escape(_caption(result))
        picture = (
            f'<img alt="{caption}" src="{_thumbnail(result)}" style="width:100%">'
            if result.image is not None
            else ""
        )
        cells.append(
            f'<figure style="margin:0">{picture}'
            f'<figcaption style="font-size:0.85em;text-align:center">{caption}</figcaption>'
            "</figure>"
        )
    style = (
        "display:grid;gap:8px;"
        f"grid-template-columns:repeat(auto-fill,minmax({THUMBNAIL_WIDTH}px,1fr))"
    )
    return f'<div class="salmap-grid" style="{style}">{"".join(cells)}</div>'

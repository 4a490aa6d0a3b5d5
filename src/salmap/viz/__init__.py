"""Pictures: colour maps, overlays, the three-panel figure, comparison grids."""

from salmap.viz.figure import (
    DEFAULT_CMAP,
    DIVERGING_CMAP,
    colorize,
    overlay,
    plot_grid,
    plot_maps,
    save_figure,
    save_heatmap,
)

__all__ = [
    "DEFAULT_CMAP",
    "DIVERGING_CMAP",
    "colorize",
    "overlay",
    "plot_grid",
    "plot_maps",
    "save_figure",
    "save_heatmap",
]

"""Write an :class:`~salmap.report.evaluate.Evaluation` as a report people can read.

``index.html`` is self-contained (every figure embedded as a base64 PNG, no script,
no external file), rendered from the Jinja2 template ``report.html``, which shares
its base and style with the web page (see :mod:`salmap.report.templating`); beside
it ``results.json`` (settings, summary, per-image numbers, curves, the cascade) and
``results.csv`` (one row per image × method). Every file is written atomically.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import os
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from salmap.errors import UsageError
from salmap.io.atomic import atomic_path
from salmap.maps import normalize_map
from salmap.report.templating import environment
from salmap.viz import overlay, plot_grid

__all__ = ["write_report", "render_html", "REPORT_FILES"]

#: The files :func:`write_report` writes into its folder.
REPORT_FILES = ("index.html", "results.json", "results.csv")


def write_report(evaluation, folder: str | os.PathLike) -> dict[str, Path]:
    """Write ``index.html``, ``results.json`` and ``results.csv`` into ``folder``.

    Parameters
    ----------
    evaluation : Evaluation
        What :func:`salmap.report.evaluate` returned.
    folder : path
        Created if missing (its parent must exist); existing report files are
        replaced, only once each new file is complete.

    Returns
    -------
    dict of name -> Path
        The files written (``html``, ``json``, ``csv``).
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"cannot write the report into {folder}: it is a file")
    if not folder.exists():
        if not folder.parent.is_dir():
            raise UsageError(f"cannot create {folder}: folder {folder.parent} does not exist")
        folder.mkdir()
    paths = {
        "json": folder / "results.json",
        "csv": folder / "results.csv",
        "html": folder / "index.html",
    }
    with atomic_path(paths["json"]) as tmp:
        tmp.write_text(json.dumps(evaluation.to_dict(), indent=2) + "\n", encoding="utf-8")
    with atomic_path(paths["csv"]) as tmp:
        _write_csv(evaluation, tmp)
    with atomic_path(paths["html"]) as tmp:
        tmp.write_text(render_html(evaluation), encoding="utf-8")
    return paths


def _write_csv(evaluation, path: Path) -> None:
    keys = ["image", "method", "baseline", "target", "label", "probability", "seconds"]
    keys += [column.key for column in evaluation.columns]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(keys)
        for row in evaluation.rows:
            writer.writerow([_csv_value(row.get(key)) for key in keys])


def _csv_value(value):
    if isinstance(value, (float, np.floating)):
        return "" if not np.isfinite(value) else f"{float(value):.6g}"
    return value


# -- HTML -----------------------------------------------------------------------------------
def _png(figure: Figure) -> str:
    """A figure as a ``data:image/png`` URL."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=figure.dpi)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _format(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "—"
    return f"{value:.{digits}f}"


def render_html(evaluation) -> str:
    """The report as one HTML string (figures embedded)."""
    context = {
        "evaluation": evaluation,
        "when": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "summary": _summary(evaluation),
        "curves": _curves(evaluation),
        "sanity": _sanity(evaluation),
        "pointing": _pointing(evaluation),
        "examples": _examples(evaluation),
        "examples_limit": 4,
        "rows": _rows(evaluation),
        "settings": json.dumps(evaluation.to_dict()["settings"], sort_keys=True),
        "format": _format,
    }
    return environment().get_template("report.html").render(context)


def _best(values: list[float], higher: bool) -> float | None:
    finite = [v for v in values if v is not None and np.isfinite(v)]
    if not finite:
        return None
    return max(finite) if higher else min(finite)


def _summary(evaluation) -> list[dict]:
    """Summary rows: each cell's text (mean ± spread) and whether it is the column's best."""
    summary = evaluation.summary()
    several = len(evaluation.images) > 1
    best = {
        column.key: _best([entry[column.key] for entry in summary], column.higher_is_better)
        for column in evaluation.columns
    }
    rows = []
    for entry in summary:
        cells = []
        for column in evaluation.columns:
            value = entry[column.key]
            text = _format(value)
            spread = entry.get(f"{column.key}_ci")
            if several and spread is not None and np.isfinite(spread):
                text += f" ± {spread:.3f}"
            winner = best[column.key] is not None and value == best[column.key]
            cells.append({"text": text, "best": winner})
        rows.append({**entry, "cells": cells, "seconds_text": _format(entry["seconds"], 3)})
    return rows


def _mean_curves(evaluation, metric: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per method, the curve averaged over the images (fractions as on the first)."""
    found = {}
    for method in evaluation.methods:
        curves = [
            evaluation.curves[(image, method)][metric]
            for image in evaluation.images
            if metric in evaluation.curves.get((image, method), {})
        ]
        if not curves:
            continue
        length = min(len(c.scores) for c in curves)
        scores = np.mean([c.scores[:length] for c in curves], axis=0)
        found[method] = (curves[0].fractions[:length], scores)
    return found


def _curve_figure(evaluation, pairs: list[tuple[str, str, str]]) -> str | None:
    panels = [(metric, title, xlabel) for metric, title, xlabel in pairs]
    data = [_mean_curves(evaluation, metric) for metric, _, _ in panels]
    if not any(data):
        return None
    figure = Figure(figsize=(5.2 * len(panels), 3.8), dpi=90, layout="constrained")
    axes = np.atleast_1d(figure.subplots(1, len(panels)))
    for axis, (_metric, title, xlabel), curves in zip(axes, panels, data, strict=True):
        for method, (fractions, scores) in curves.items():
            baseline = method in evaluation.baselines
            axis.plot(
                fractions,
                scores,
                linestyle="--" if baseline else "-",
                linewidth=1.2 if baseline else 1.8,
                label=method,
            )
        axis.set_title(title)
        axis.set_xlabel(xlabel)
        axis.set_ylabel("class probability")
        axis.set_xlim(0, 1)
        axis.set_ylim(bottom=0)
        axis.grid(alpha=0.3)
    drawn = [axis for axis in axes if axis.lines]
    (drawn[-1] if drawn else axes[-1]).legend(fontsize=8, loc="best")
    return _png(figure)


def _curves(evaluation) -> dict:
    """The deletion/insertion and ROAD figures (``None`` where not measured)."""
    return {
        "deletion_insertion": _curve_figure(
            evaluation,
            [
                ("deletion", "Deletion (lower is better)", "fraction of pixels removed"),
                ("insertion", "Insertion (higher is better)", "fraction of pixels inserted"),
            ],
        ),
        "road": _curve_figure(
            evaluation,
            [
                (
                    "road-morf",
                    "ROAD MoRF (lower is better)",
                    "fraction imputed, most relevant first",
                ),
                (
                    "road-lerf",
                    "ROAD LeRF (higher is better)",
                    "fraction imputed, least relevant first",
                ),
            ],
        ),
    }


def _sanity(evaluation) -> dict | None:
    """The randomisation cascade: Spearman and SSIM lines, the maps grid, the table."""
    cascade = evaluation.sanity
    if cascade is None:
        return None
    steps = len(cascade.layers)
    figure = Figure(figsize=(11, 3.8), dpi=90, layout="constrained")
    axes = figure.subplots(1, 2)
    positions = np.arange(steps)
    for method in cascade.methods:
        axes[0].plot(positions, cascade.spearman[method], marker="o", label=method)
        axes[1].plot(positions, cascade.ssim[method], marker="o", label=method)
    for axis, title in zip(axes, ("Spearman rank correlation", "SSIM"), strict=True):
        axis.set_xticks(positions, cascade.layers, rotation=45, ha="right", fontsize=7)
        axis.set_title(f"{title} with the original map")
        axis.set_ylim(-0.25, 1.05)
        axis.axhline(0, color="#999", linewidth=0.8)
        axis.grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    lines = _png(figure)

    picture = evaluation.pictures[evaluation.images[0]]
    rows, columns = len(cascade.methods), steps
    aspect = picture.shape[1] / picture.shape[0]
    grid = Figure(
        figsize=(min(1.7 * columns * aspect, 16), 1.8 * rows + 0.5), dpi=64, layout="constrained"
    )
    axes = np.asarray(grid.subplots(rows, columns, squeeze=False))
    for row, method in enumerate(cascade.methods):
        for column in range(columns):
            axis = axes[row, column]
            axis.imshow(
                normalize_map(np.abs(cascade.maps[method][column])),
                cmap="inferno",
                vmin=0,
                vmax=1,
            )
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0:
                axis.set_title(cascade.layers[column], fontsize=7)
            if column == 0:
                axis.set_ylabel(method, fontsize=8)
    staying = [
        method
        for method in cascade.methods
        if len(cascade.spearman[method]) > 1 and cascade.spearman[method][1] > 0.9
    ]
    return {
        "cascade": cascade,
        "lines": lines,
        "grid": _png(grid),
        "staying": staying,
        "rows": [
            (method, [_format(v, 2) for v in cascade.spearman[method]])
            for method in cascade.methods
        ],
    }


def _pointing(evaluation) -> dict | None:
    """The pointing game's composite and each method's maximum, for the first image."""
    if not evaluation.pointing:
        return None
    image = evaluation.images[0]
    found = evaluation.pointing[image]
    composite, box, maps = found["composite"], found["box"], found["maps"]
    count = len(maps) + 1
    columns = min(count, 5)
    rows = -(-count // columns)
    figure = Figure(figsize=(2.6 * columns, 2.8 * rows), dpi=80, layout="constrained")
    axes = np.atleast_1d(figure.subplots(rows, columns)).ravel()
    top, left, bottom, right = box
    panels = [("composite", composite)] + [
        (method, overlay(composite, saliency, normalize="percentile"))
        for method, saliency in maps.items()
    ]
    for axis, (title, shown) in zip(axes, panels, strict=False):
        axis.imshow(shown)
        axis.add_patch(
            Rectangle(
                (left - 0.5, top - 0.5),
                right - left,
                bottom - top,
                fill=False,
                edgecolor="lime",
                linewidth=1.5,
            )
        )
        if title != "composite":
            saliency = maps[title]
            y, x = np.unravel_index(int(np.argmax(saliency)), saliency.shape)
            axis.plot([x], [y], marker="+", color="cyan", markersize=12, mew=2)
            hit = evaluation.value(image, title, "pointing_hit")
            title = f"{title} · {'hit' if hit else 'miss'}"
        axis.set_title(title, fontsize=8)
    for axis in axes:
        axis.set_axis_off()
    return {
        "image": image,
        "background": str(evaluation.settings.get("pointing_background")),
        "figure": _png(figure),
    }


def _examples(evaluation, limit: int = 4) -> list[str]:
    """One comparison grid per image (the first ``limit``)."""
    figures = []
    for image in evaluation.images[:limit]:
        results = [evaluation.maps[(image, method)] for method in evaluation.methods]
        first = results[0]
        figure = plot_grid(
            evaluation.pictures[image],
            results,
            columns=min(len(results) + 1, 5),
            title=f"{image}: {first.label} ({first.target}), p={first.score:.3f}",
            dpi=56,
        )
        figures.append(_png(figure))
    return figures


def _rows(evaluation) -> list[dict]:
    """Per image × method: the row with its numbers formatted."""
    return [
        {
            **row,
            "texts": [_format(row.get(column.key)) for column in evaluation.columns],
            "probability_text": f"{row['probability']:.3f}",
            "seconds_text": f"{row['seconds']:.3f}",
        }
        for row in evaluation.rows
    ]

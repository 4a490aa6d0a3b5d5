"""Write an :class:`~salmap.report.evaluate.Evaluation` as a report people can read.

``index.html`` is self-contained (every figure embedded as a base64 PNG, no script,
no external file), beside ``results.json`` (settings, summary, per-image numbers,
curves, the cascade) and ``results.csv`` (one row per image × method). Every file is
written atomically.
"""

from __future__ import annotations

import base64
import csv
import html
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
from salmap.viz import overlay, plot_grid

__all__ = ["write_report", "render_html", "REPORT_FILES"]

#: The files :func:`write_report` writes into its folder.
REPORT_FILES = ("index.html", "results.json", "results.csv")

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; } h2 { margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
th:first-child, td:first-child, td.text { text-align: left; }
thead th { background: #f2f2f2; }
tr.baseline td { color: #666; font-style: italic; }
td.best { font-weight: bold; background: #e8f4e8; }
img { max-width: 100%; height: auto; }
.note { color: #555; font-size: 0.92em; }
dt { font-weight: bold; } dd { margin: 0 0 0.6em 1.5em; }
"""


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
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=figure.dpi)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="" src="data:image/png;base64,{data}">'


def _format(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "—"
    return f"{value:.{digits}f}"


def render_html(evaluation) -> str:
    """The report as one HTML string (figures embedded)."""
    escape = html.escape
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>salmap evaluation — {escape(evaluation.model)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>Is the map faithful? Saliency evaluation</h1>",
        f"<p>Model <b>{escape(evaluation.model)}</b> · {len(evaluation.images)} image(s) · "
        f"methods {escape(', '.join(evaluation.methods))} · metrics "
        f"{escape(', '.join(evaluation.metrics))} · {evaluation.seconds:.1f} s · {when}</p>",
    ]
    parts += _summary_section(evaluation)
    parts += _curves_section(evaluation)
    parts += _sanity_section(evaluation)
    parts += _pointing_section(evaluation)
    parts += _examples_section(evaluation)
    parts += _per_image_section(evaluation)
    parts += _definitions_section(evaluation)
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _best(values: list[float], higher: bool) -> float | None:
    finite = [v for v in values if v is not None and np.isfinite(v)]
    if not finite:
        return None
    return max(finite) if higher else min(finite)


def _summary_section(evaluation) -> list[str]:
    escape = html.escape
    columns = evaluation.columns
    summary = evaluation.summary()
    several = len(evaluation.images) > 1
    best = {
        column.key: _best([entry[column.key] for entry in summary], column.higher_is_better)
        for column in columns
    }
    head = "".join(
        f'<th title="{escape(c.description)}">{escape(c.title)} '
        f"{'↑' if c.higher_is_better else '↓'}</th>"
        for c in columns
    )
    rows = []
    for entry in summary:
        cells = []
        for column in columns:
            value = entry[column.key]
            text = _format(value)
            spread = entry.get(f"{column.key}_ci")
            if several and spread is not None and np.isfinite(spread):
                text += f" ± {spread:.3f}"
            winner = best[column.key] is not None and value == best[column.key]
            cells.append(f'<td class="best">{text}</td>' if winner else f"<td>{text}</td>")
        kind = ' class="baseline"' if entry["baseline"] else ""
        name = escape(entry["method"]) + (" (baseline)" if entry["baseline"] else "")
        rows.append(
            f"<tr{kind}><td>{name}</td>{''.join(cells)}<td>{_format(entry['seconds'], 3)}</td></tr>"
        )
    note = (
        "Mean over the images ± the half-width of its 95 % confidence interval (Student's t). "
        if several
        else "One image: the numbers are that image's. "
    )
    note += (
        "↑ higher is better, ↓ lower is better; the best value of each column is shaded. "
        "Seconds: the method's own time per image (the map, not the metrics). "
        "Baselines: a random map and a centre-bias map — a method should beat both."
    )
    if evaluation.sanity is not None:
        note += (
            f" Sanity ρ comes from the cascade on {escape(evaluation.images[0])}; baseline "
            "maps do not depend on the model, so theirs is 1 by construction."
        )
    return [
        "<h2>Summary</h2>",
        f"<table><thead><tr><th>method</th>{head}<th>seconds / image</th></tr></thead>",
        "<tbody>" + "".join(rows) + "</tbody></table>",
        f'<p class="note">{note}</p>',
    ]


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
    axes[-1].legend(fontsize=8, loc="best")
    return _png(figure)


def _curves_section(evaluation) -> list[str]:
    parts = []
    deletion_insertion = _curve_figure(
        evaluation,
        [
            ("deletion", "Deletion (lower is better)", "fraction of pixels removed"),
            ("insertion", "Insertion (higher is better)", "fraction of pixels inserted"),
        ],
    )
    if deletion_insertion:
        parts += [
            "<h2>Deletion and insertion curves</h2>",
            deletion_insertion,
            '<p class="note">Class probability as pixels are removed (blacked out) or '
            "inserted into a blurred copy, most salient first; mean over the images. A "
            "faithful map makes deletion fall fast and insertion rise fast. Beware: "
            "scattered blacked-out pixels (the random map's order) push a photo out of "
            "the distribution the model knows and can make its probability collapse "
            "faster than any map — ROAD below is built to avoid that.</p>",
        ]
    road = _curve_figure(
        evaluation,
        [
            ("road-morf", "ROAD MoRF (lower is better)", "fraction imputed, most relevant first"),
            ("road-lerf", "ROAD LeRF (higher is better)", "fraction imputed, least relevant first"),
        ],
    )
    if road:
        parts += [
            "<h2>ROAD curves</h2>",
            road,
            '<p class="note">Removed pixels are filled by noisy linear imputation from their '
            "neighbours, so the removal does not leak the mask's shape to the model.</p>",
        ]
    return parts


def _sanity_section(evaluation) -> list[str]:
    cascade = evaluation.sanity
    if cascade is None:
        return []
    escape = html.escape
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
    table_rows = "".join(
        f"<tr><td>{escape(method)}</td>"
        + "".join(f"<td>{_format(v, 2)}</td>" for v in cascade.spearman[method])
        + "</tr>"
        for method in cascade.methods
    )
    head = "".join(f"<th>{escape(label)}</th>" for label in cascade.layers)
    staying = [
        method
        for method in cascade.methods
        if len(cascade.spearman[method]) > 1 and np.nanmin(cascade.spearman[method][1:2]) > 0.9
    ]
    warning = (
        f"<p><b>Warning:</b> {escape(', '.join(staying))} barely changed when the top layer "
        "was randomised (ρ &gt; 0.9): such maps show the image more than the model "
        "(guided backpropagation is the known case, Adebayo et al. 2018).</p>"
        if staying
        else ""
    )
    return [
        "<h2>Sanity check: cascading model randomisation</h2>",
        f'<p class="note">A copy of the model is re-initialised from the top layer down '
        f"(the user's model is untouched); each column names the lowest layer randomised "
        f"so far. Image {escape(evaluation.images[0])}, class {cascade.target}. Maps that "
        "explain the model should stop resembling the original as the network becomes "
        "random.</p>",
        warning,
        lines,
        f"<table><thead><tr><th>Spearman ρ</th>{head}</tr></thead><tbody>{table_rows}"
        "</tbody></table>",
        _png(grid),
    ]


def _pointing_section(evaluation) -> list[str]:
    if not evaluation.pointing:
        return []
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
    return [
        "<h2>Pointing game</h2>",
        f'<p class="note">Each photo is pasted into a known box (green) of a '
        f"{html.escape(str(evaluation.settings.get('pointing_background')))} canvas, off "
        "the centre; the composite is explained for the photo's class. A hit: the map's "
        f"maximum (cyan +) within 15 px of the box. Shown for {html.escape(image)}.</p>",
        _png(figure),
    ]


def _examples_section(evaluation, limit: int = 4) -> list[str]:
    parts = ["<h2>Example maps</h2>"]
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
        parts.append(_png(figure))
    if len(evaluation.images) > limit:
        parts.append(f'<p class="note">First {limit} of {len(evaluation.images)} images.</p>')
    return parts


def _per_image_section(evaluation) -> list[str]:
    escape = html.escape
    columns = evaluation.columns
    head = "".join(f"<th>{escape(c.title)}</th>" for c in columns)
    rows = []
    for row in evaluation.rows:
        cells = "".join(f"<td>{_format(row.get(c.key))}</td>" for c in columns)
        kind = ' class="baseline"' if row["baseline"] else ""
        rows.append(
            f"<tr{kind}><td>{escape(row['image'])}</td><td class='text'>"
            f"{escape(row['method'])}</td><td class='text'>{escape(str(row['label']))} "
            f"({row['target']})</td><td>{row['probability']:.3f}</td>{cells}"
            f"<td>{row['seconds']:.3f}</td></tr>"
        )
    return [
        "<h2>Per image</h2><details><summary>every image × method</summary>",
        "<table><thead><tr><th>image</th><th>method</th><th>class</th><th>p</th>"
        f"{head}<th>seconds</th></tr></thead><tbody>{''.join(rows)}</tbody></table>",
        "</details>",
    ]


def _definitions_section(evaluation) -> list[str]:
    escape = html.escape
    items = "".join(
        f"<dt>{escape(c.title)} ({'higher' if c.higher_is_better else 'lower'} is better)</dt>"
        f"<dd>{escape(c.description)}</dd>"
        for c in evaluation.columns
    )
    settings = escape(json.dumps(evaluation.to_dict()["settings"], sort_keys=True))
    return [
        "<h2>What the numbers mean</h2>",
        f"<dl>{items}</dl>",
        f'<p class="note">Settings: <code>{settings}</code></p>',
    ]

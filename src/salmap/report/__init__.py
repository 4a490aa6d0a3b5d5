"""Evaluation reports: every method × every faithfulness metric, as HTML, JSON and CSV.

>>> import salmap
>>> evaluation = salmap.evaluate(["chelsea"], methods=["vanilla", "integrated-gradients"])
>>> salmap.write_report(evaluation, "report")  # report/index.html, results.json, .csv
"""

from salmap.report.evaluate import (
    BASELINES,
    COLUMNS,
    DEFAULT_METRICS,
    METRICS,
    Column,
    Evaluation,
    evaluate,
)
from salmap.report.html import REPORT_FILES, render_html, write_report

__all__ = [
    "evaluate",
    "Evaluation",
    "Column",
    "COLUMNS",
    "METRICS",
    "DEFAULT_METRICS",
    "BASELINES",
    "write_report",
    "render_html",
    "REPORT_FILES",
]

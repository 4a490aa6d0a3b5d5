"""salmap's Sobol and HSIC agree with Xplique 2.0.2's on the same masks (issue 12).

Xplique lives in its own virtual environment (2.0.2 pins ``tensorflow<=2.20``), never in
the one these tests run in; ``SALMAP_XPLIQUE_PYTHON`` names that environment's python
(see ``benchmarks/compare_xplique.py`` for the install). The test runs the comparison
there on one photo with small designs, without the timings.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYTHON = os.environ.get("SALMAP_XPLIQUE_PYTHON", "")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (PYTHON and os.access(PYTHON, os.X_OK)),
        reason="SALMAP_XPLIQUE_PYTHON is not set to the python of a virtual environment "
        "with Xplique 2.0.2 (install: benchmarks/compare_xplique.py)",
    ),
]


def _row(lines: list[str], first: str) -> list[float]:
    """The numbers of the table row that starts with ``first``."""
    words = next(line.split() for line in lines if line.split()[:1] == [first])
    return [float(word) for word in words[1:] if word.replace(".", "", 1).isdigit()]


def test_sobol_and_hsic_agree_with_xplique_on_the_same_masks():
    done = subprocess.run(
        [
            PYTHON,
            str(ROOT / "benchmarks" / "compare_xplique.py"),
            *("--images", "chelsea", "--sobol-designs", "4", "--hsic-designs", "128"),
            *("--no-defaults", "--repeats", "0"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    lines = done.stdout.splitlines()
    # class, Sobol maps, Sobol estimators, HSIC maps, HSIC estimators, same width
    _, sobol_maps, sobol_estimates, hsic_maps, _, same_width = _row(lines, "chelsea")
    assert sobol_estimates > 0.9999 and same_width > 0.9999
    assert min(sobol_maps, hsic_maps) >= 0.95
    # A constant added to the score leaves salmap's HSIC as it was.
    assert _row(lines, "+20")[-1] == pytest.approx(1.0, abs=1e-4)

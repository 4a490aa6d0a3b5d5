"""Jupyter shows a result as its three panels and a list of results as a grid."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
from PIL import Image

import salmap
from salmap.models.analytic import AnalyticAdapter


def _hot_square(size=(60, 90), seed=0):
    rng = np.random.default_rng(seed)
    image = rng.random((*size, 3)).astype(np.float32)
    saliency = np.zeros(size, np.float32)
    saliency[10:30, 50:80] = 1.0
    return image, saliency


def test_a_result_shows_its_three_panels():
    image, saliency = _hot_square()
    result = salmap.SaliencyMap(map=saliency, image=image, method="test")
    picture = Image.open(io.BytesIO(result._repr_png_()))
    assert picture.format == "PNG" and picture.width > 2.5 * picture.height
    assert salmap.SaliencyMap(map=saliency)._repr_png_() is None  # no image: text form


def test_ipython_picks_the_png_and_the_grid():
    formatter = pytest.importorskip("IPython.core.formatters")
    image, saliency = _hot_square()
    result = salmap.SaliencyMap(map=saliency, image=image, method="test")
    assert formatter.PNGFormatter()(result).startswith(b"\x89PNG")
    assert "<img" in formatter.HTMLFormatter()(salmap.SaliencyMaps([result, result]))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_explain_returns_a_grid_of_its_maps(seed):
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=(3, 24, 32, 3))
    model = AnalyticAdapter(weights)
    images = [rng.random((24, 32, 3)).astype(np.float32) for _ in range(3)]
    results = salmap.explain(images, model=model, method="gradient-x-input", reduction="sum")
    assert isinstance(results, salmap.SaliencyMaps) and len(results) == 3
    page = results._repr_html_()
    sources = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(sources) == 3
    for source, result in zip(sources, results, strict=True):
        thumbnail = np.asarray(Image.open(io.BytesIO(base64.b64decode(source))))
        assert thumbnail.shape[1] == 280 and abs(thumbnail.shape[0] - 210) <= 1
        assert f"gradient-x-input · class {result.target} ({result.target})" in page
    # signed maps (gradient × input, signed sum) are drawn diverging: red and blue both
    colours = np.asarray(Image.open(io.BytesIO(base64.b64decode(sources[0]))), float)
    red = (colours[..., 0] - colours[..., 2] > 60).mean()
    blue = (colours[..., 2] - colours[..., 0] > 60).mean()
    assert red > 0.02 and blue > 0.02


def test_grid_captions_are_escaped():
    image, saliency = _hot_square()
    result = salmap.SaliencyMap(map=saliency, image=image, method="<script>")
    page = salmap.SaliencyMaps([result])._repr_html_()
    assert "<script>" not in page and "&lt;script&gt;" in page

"""Drawing maps: ``percentile`` scaling keeps gradient maps as they were and shows the
structure of maps on a large offset (RISE's mean scores), which used to be one colour."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from salmap.maps import normalize_map
from salmap.viz import save_heatmap


def _structure(seed: int, height: int, width: int) -> np.ndarray:
    """A few Gaussian blobs of different strengths plus texture, in [0, 1]."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    field = np.zeros((height, width), np.float32)
    for _ in range(rng.integers(1, 5)):
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        radius = rng.uniform(0.08, 0.3) * min(height, width)
        field += rng.uniform(0.3, 1.0) * np.exp(-((ys - cy) ** 2 + (xs - cx) ** 2) / radius**2)
    field += 0.05 * rng.random((height, width), dtype=np.float32)
    return (field - field.min()) / (field.max() - field.min())


def _old_rule(saliency: np.ndarray) -> np.ndarray:
    """0 -> 0 and the 99th percentile of |map| -> 1: the scaling before offsets were seen."""
    magnitude = np.abs(saliency)
    return np.clip(magnitude / np.percentile(magnitude, 99), 0, 1)


CASES = [
    (seed, shape, offset, spread)
    for seed, shape in enumerate([(300, 451), (224, 224), (61, 97), (480, 320)])
    for offset, spread in [(9.66, 0.62), (-40.0, 3.0), (1e4, 25.0), (0.5, 0.1)]
]


@pytest.mark.parametrize("seed, shape, offset, spread", CASES)
def test_offset_maps_show_their_structure(seed, shape, offset, spread):
    structure = _structure(seed, *shape)
    saliency = (offset + spread * structure).astype(np.float32)
    # The data is what the issue describes: the old scaling draws it nearly flat.
    assert _old_rule(saliency).std() < 0.05
    shown = normalize_map(saliency, "percentile")
    assert shown.dtype == np.float32 and 0 <= shown.min() and shown.max() <= 1
    assert shown.std() > 0.15
    assert np.corrcoef(shown.ravel(), structure.ravel())[0, 1] > 0.97
    assert np.percentile(shown, 1) < 0.02 and np.percentile(shown, 99.5) > 0.98


@pytest.mark.parametrize("seed", range(4))
def test_the_drawn_heatmap_of_an_offset_map_has_contrast(tmp_path, seed):
    """RISE on chelsea: mean scores from 9.66 to 10.28 logits, drawn as a PNG."""
    structure = _structure(seed, 300, 451)
    saliency = (9.66 + 0.62 * structure).astype(np.float32)
    path = tmp_path / "rise.png"
    save_heatmap(path, saliency, normalize="percentile")
    luminance = np.asarray(Image.open(path).convert("L"), np.float32) / 255
    assert np.percentile(luminance, 95) - np.percentile(luminance, 5) > 0.4
    assert np.corrcoef(luminance.ravel(), structure.ravel())[0, 1] > 0.9


@pytest.mark.parametrize("seed", range(6))
def test_maps_that_start_near_zero_keep_the_old_scaling(seed):
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(20, 300)), int(rng.integers(20, 300)))
    maps = [
        np.abs(rng.normal(0, 10.0 ** rng.uniform(-6, 2), shape)),  # gradient magnitudes
        rng.exponential(1.0, shape) + 0.01,  # small floor, large spread
        np.maximum(_structure(seed, *shape) - 0.3, 0),  # a ReLU'd CAM
        rng.normal(0, 1, shape),  # signed: drawn by magnitude
        -np.abs(rng.normal(0, 1, shape)),  # one sign, touching zero
    ]
    for saliency in maps:
        saliency = saliency.astype(np.float32)
        np.testing.assert_allclose(
            normalize_map(saliency, "percentile"), _old_rule(saliency), atol=1e-6
        )


def test_constant_and_minmax_maps():
    assert not normalize_map(np.full((9, 9), 10.0, np.float32), "percentile").any()
    ramp = np.linspace(5, 6, 100, dtype=np.float32).reshape(10, 10)
    np.testing.assert_allclose(normalize_map(ramp, "minmax"), (ramp - 5) / 1, atol=1e-6)
    with pytest.raises(ValueError, match="unknown normalisation"):
        normalize_map(ramp, "z-score")

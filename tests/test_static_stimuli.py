"""The search-array generator: the conditions it promises are the ones it draws."""

from __future__ import annotations

import numpy as np
import pytest

from salmap.errors import UsageError
from salmap.static import (
    BACKGROUNDS,
    SEARCH_KINDS,
    attended_item,
    on_target,
    random_search_array,
    search_array,
)
from salmap.static.stimuli import SEARCH_SHAPES


def _ink_at(array, point):
    x, y = np.round(point).astype(int)
    return array.image[y, x]


@pytest.mark.parametrize("background", sorted(BACKGROUNDS.values()))
def test_red_and_green_bars_have_equal_intensity_on_every_background(background):
    array = search_array("colour", 9, rng=3, grid=(3, 3), shape=(300, 300), background=background)
    red, green = _ink_at(array, array.target), _ink_at(array, array.distractors[0])
    assert red[0] > red[1] and green[1] > green[0]
    assert red.mean() == pytest.approx(green.mean(), abs=2 / 255)
    corner = array.image[0, 0]
    np.testing.assert_allclose(corner, background, atol=1 / 255)


def test_orientation_bars_contrast_with_the_background_and_keep_its_grey():
    light = search_array("orientation", 4, rng=1, grid=(2, 2), shape=(200, 200), background=0.0)
    dark = search_array("orientation", 4, rng=1, grid=(2, 2), shape=(200, 200), background=1.0)
    faint = search_array("orientation", 4, rng=1, grid=(2, 2), shape=(200, 200), contrast=0.4)
    assert _ink_at(light, light.target).min() > 0.95
    assert _ink_at(dark, dark.target).max() < 0.05
    assert _ink_at(faint, faint.target) == pytest.approx([0.4] * 3, abs=2 / 255)


def test_random_arrays_cover_the_conditions_and_place_edge_targets_at_the_edge():
    arrays = [random_search_array("orientation", seed) for seed in range(60)]
    assert {a.image.shape[:2] for a in arrays} == set(SEARCH_SHAPES)
    assert {a.background for a in arrays} == set(BACKGROUNDS.values())
    sizes = [len(a.items) for a in arrays]
    assert min(sizes) >= 4 and max(sizes) <= 64 and max(sizes) > 30
    edge_gaps = []
    for array in arrays:
        height, width = array.image.shape[:2]
        x, y = array.target
        edge_gaps.append(min(x, y, width - x, height - y))
        # Bars never overlap: centres are at least a bar length apart.
        gaps = np.hypot(*(array.items[:, None] - array.items[None]).transpose(2, 0, 1))
        assert gaps[np.triu_indices(len(array.items), 1)].min() > array.bar_length * 0.9
    # Half the targets touch the edge: their centre within half a diagonal of it.
    touching = [
        gap < 0.5 * np.hypot(a.bar_length, a.bar_width) + 3
        for gap, a in zip(edge_gaps, arrays, strict=True)
    ]
    assert 0.3 <= np.mean(touching) <= 0.7


def test_on_target_needs_the_nearest_bar_and_one_bar_length():
    array = search_array("colour", 6, rng=2)
    assert on_target(array, array.target) and attended_item(array, array.target) == 0
    assert not on_target(array, array.distractors[0])
    far = array.target + [array.bar_length * 1.01, 0]
    assert not on_target(array, far)


def test_bad_requests_fail_with_one_line():
    with pytest.raises(UsageError, match="unknown search array"):
        search_array("motion", 4)
    with pytest.raises(UsageError, match="set size"):
        search_array("colour", 17, grid=(4, 4))
    with pytest.raises(UsageError, match="contrast"):
        search_array("colour", 4, contrast=0.0)
    assert set(SEARCH_KINDS) == {"colour", "orientation", "conjunction"}

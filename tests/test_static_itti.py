"""Itti–Koch–Niebur: the N(·) operator, the stages, the winner-take-all, and the
classic pop-out psychophysics on generated search arrays."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from salmap.errors import UsageError
from salmap.io import load_image
from salmap.static import (
    SEARCH_KINDS,
    attended_item,
    iterative_normalization,
    itti_koch,
    itti_koch_stages,
    map_normalization,
    on_target,
    random_search_array,
    search_array,
    winner_take_all,
)
from salmap.static._features import broadly_tuned_colours, gabor_energy

# ------------------------------------------------------------------- N(·) operator


def _peaks(shape, peaks):
    feature = np.zeros(shape, np.float32)
    for (row, col), height in peaks:
        feature[row, col] = height
    return feature


def test_one_peak_keeps_its_map():
    feature = _peaks((20, 20), [((10, 10), 5.0)])
    result = map_normalization(feature)
    np.testing.assert_allclose(result, feature / 5.0)


def test_two_equal_peaks_cancel():
    feature = _peaks((20, 20), [((3, 3), 2.0), ((15, 15), 2.0)])
    assert np.abs(map_normalization(feature)).max() == 0.0


def test_weaker_peaks_scale_the_map_by_one_minus_their_mean_squared():
    # M = 1 after scaling; other maxima 0.5 and 0.3: m̄ = 0.4, factor (1 − 0.4)² = 0.36.
    feature = _peaks((30, 30), [((5, 5), 1.0), ((5, 20), 0.5), ((20, 10), 0.3)])
    result = map_normalization(feature)
    assert result.max() == pytest.approx(0.36, abs=1e-6)
    assert result[5, 20] == pytest.approx(0.5 * 0.36, abs=1e-6)


def test_a_plateau_counts_as_one_maximum_and_ripples_below_threshold_are_ignored():
    feature = _peaks((30, 30), [((20, 20), 0.5), ((25, 5), 0.05)])
    feature[2:6, 2:6] = 1.0  # a flat-topped peak: one maximum, not sixteen
    result = map_normalization(feature)
    # m̄ = 0.5 (the 0.05 ripple is under the 10 % threshold): factor 0.25.
    assert result.max() == pytest.approx(0.25, abs=1e-6)


def test_flat_and_near_flat_maps_normalise_to_zero():
    assert map_normalization(np.full((8, 8), 3.0, np.float32)).max() == 0.0
    noise = 1e-7 * np.random.default_rng(0).random((8, 8)).astype(np.float32)
    assert map_normalization(noise).max() == 0.0


def test_iterative_normalization_grows_a_lone_peak_and_erodes_a_crowd():
    lone = np.zeros((64, 64), np.float32)
    lone[30:32, 30:32] = 1.0
    crowd = np.zeros((64, 64), np.float32)
    for row in range(2, 64, 8):
        for col in range(2, 64, 8):
            crowd[row : row + 2, col : col + 2] = 1.0
    # Short-range excitation beats the global inhibition for an isolated peak; in a
    # crowd every peak sits in the others' inhibitory surround.
    assert iterative_normalization(lone).max() > 1.5
    assert iterative_normalization(crowd).max() < 0.5
    assert iterative_normalization(crowd, iterations=20).max() < 0.1
    np.testing.assert_allclose(iterative_normalization(lone * 7, iterations=0), lone)
    assert iterative_normalization(np.full((8, 8), 2.0, np.float32)).max() == 0.0


# --------------------------------------------------------------------- features


def test_broadly_tuned_colours_of_pure_hues_and_the_darkness_cutoff():
    image = np.zeros((4, 4, 3), np.float32)
    image[0, 0] = (1, 0, 0)
    image[0, 1] = (1, 1, 0)
    image[0, 2] = (0, 0, 1)
    image[3, 3] = (0.09, 0.0, 0.0)  # I = 0.03 < 1/10 of the maximum I (1/3 · 2 = 0.67)
    colours = broadly_tuned_colours(image)
    # r/I = 3 for pure red: R = 3 − 0, Y = (3 + 0)/2 − 3/2 = 0.
    assert colours["R"][0, 0] == pytest.approx(3.0)
    assert colours["Y"][0, 0] == pytest.approx(0.0)
    # Yellow: r/I = g/I = 1.5: Y = 1.5, R = G = 0.75, B = 0.
    assert colours["Y"][0, 1] == pytest.approx(1.5)
    assert colours["R"][0, 1] == pytest.approx(0.75)
    assert colours["B"][0, 2] == pytest.approx(3.0)
    assert all(channel[3, 3] == 0.0 for channel in colours.values())


@pytest.mark.parametrize("orientation", [0, 45, 90, 135])
def test_gabor_channels_prefer_bars_of_their_orientation(orientation):
    from salmap.static.stimuli import _draw_bar

    canvas = np.zeros((64, 64, 3), np.uint8)
    _draw_bar(canvas, (32, 32), 40, 4, orientation, (1.0, 1.0, 1.0))
    image = canvas[..., 0].astype(np.float32) / 255
    energies = {theta: gabor_energy(image, theta)[32, 32] for theta in (0, 45, 90, 135)}
    assert max(energies, key=energies.get) == orientation


# ------------------------------------------------------------------------ stages


@pytest.fixture(scope="module")
def stages():
    array = search_array("colour", 12, rng=5)
    return itti_koch_stages(array.image, fixations=4, colour_opponency="paper")


def test_the_42_feature_maps_of_the_paper(stages):
    names = set(stages.feature_maps)
    assert len(names) == 42
    expected = set()
    for c in (2, 3, 4):
        for s in (c + 3, c + 4):
            expected |= {f"I({c},{s})", f"RG({c},{s})", f"BY({c},{s})"}
            expected |= {f"O({c},{s},{theta})" for theta in (0, 45, 90, 135)}
    assert names == expected
    # Each map lives at its centre scale: 480×640 / 2^c.
    assert stages.feature_maps["I(2,5)"].shape == (120, 160)
    assert stages.feature_maps["O(4,8,45)"].shape == (30, 40)


def test_conspicuity_and_saliency_shapes(stages):
    assert set(stages.conspicuity) == {"intensity", "colour", "orientation"}
    for conspicuity in stages.conspicuity.values():
        assert conspicuity.shape == (30, 40)  # scale 4
    assert stages.coarse_saliency.shape == (30, 40)
    assert stages.saliency.shape == (480, 640)
    assert stages.saliency.dtype == np.float32
    assert stages.saliency.max() == pytest.approx(1.0)
    assert stages.foa_radius == pytest.approx(80.0)  # 480 / 6
    assert stages.scan_path.shape == (4, 2)


def test_split_opponency_is_the_default_with_54_maps():
    array = search_array("colour", 6, rng=1)
    split = itti_koch_stages(array.image, fixations=0)
    assert len(split.feature_maps) == 54
    assert "GR(2,5)" in split.feature_maps and "YB(3,7)" in split.feature_maps
    assert split.params["colour_opponency"] == "split"
    for option in ("colour_opponency", "orientation_opponency", "map_range", "normalization"):
        with pytest.raises(UsageError, match=option.split("_")[0]):
            itti_koch_stages(array.image, **{option: "nope"})


def test_itti_koch_returns_the_stages_map():
    array = search_array("orientation", 6, rng=2)
    np.testing.assert_array_equal(itti_koch(array.image), itti_koch_stages(array.image).saliency)


# --------------------------------------------------------------- winner-take-all


def test_winner_take_all_visits_peaks_in_order_and_never_returns():
    saliency = np.zeros((30, 40))
    for (row, col), height in (((5, 5), 3.0), ((25, 35), 2.0), ((5, 35), 1.0)):
        saliency[row, col] = height
    path, values = winner_take_all(saliency, 10, foa_radius=3.0, proximity=0.0)
    np.testing.assert_allclose(path, [[5, 5], [35, 25], [35, 5]])
    np.testing.assert_allclose(values, [3.0, 2.0, 1.0])


def test_winner_take_all_maps_to_image_pixels():
    saliency = np.zeros((30, 40))
    saliency[10, 20] = 1.0
    path, _ = winner_take_all(saliency, 1, foa_radius=80, image_shape=(480, 640))
    # Cell (10, 20) of a 16× coarser map covers pixels 320–335 × 160–175.
    np.testing.assert_allclose(path, [[327.5, 167.5]])


def test_proximity_preference_breaks_a_tie_towards_the_last_focus():
    saliency = np.zeros((20, 60))
    saliency[10, 10] = 2.0
    saliency[10, 16] = 1.0  # near the first winner
    saliency[10, 50] = 1.0  # far away, equally salient
    near, _ = winner_take_all(saliency, 2, foa_radius=4.0, proximity=0.1)
    assert near[1].tolist() == [16.0, 10.0]
    # Without the preference the tie goes to the first index (row-major), also (16, 10);
    # put the far one first to see the difference.
    flipped = saliency[:, ::-1]
    near, _ = winner_take_all(flipped, 2, foa_radius=4.0, proximity=0.1)
    plain, _ = winner_take_all(flipped, 2, foa_radius=4.0, proximity=0.0)
    assert near[1].tolist() == [43.0, 10.0]
    assert plain[1].tolist() == [9.0, 10.0]


# ------------------------------------------------------------------------- pop-out
# Random arrays (square and wide, 4×4–8×8 grids, set sizes 4–64, black/grey/white,
# contrast 0.4–1, half the targets at the edge), with seeds benchmarks/bench_static.py
# does not use (it draws [2026, kind, trial]).

TRIALS = 40


def _arrays(kind):
    index = SEARCH_KINDS.index(kind)
    return [random_search_array(kind, np.random.default_rng([15, index, t])) for t in range(TRIALS)]


def _outcomes(kind):
    """Per array: map maximum on the target, first attended location on it, and
    whether the map's maximum lies within one bar length of the image border."""
    outcomes = []
    for array in _arrays(kind):
        stages = itti_koch_stages(array.image, fixations=1)
        row, col = np.unravel_index(np.argmax(stages.saliency), stages.saliency.shape)
        winner = array.items[attended_item(array, (col, row))]
        outcomes.append(
            (
                on_target(array, (col, row)),
                on_target(array, stages.scan_path[0]),
                _near_border(array, winner),
                np.mean([_near_border(array, item) for item in array.items]),
            )
        )
    return np.array(outcomes, dtype=float)


def _near_border(array, point):
    height, width = array.image.shape[:2]
    x, y = point
    return min(x, y, width - x, height - y) < array.bar_length


@pytest.mark.parametrize("kind", ["colour", "orientation"])
def test_singletons_pop_out_on_arrays_the_model_was_not_tuned_on(kind):
    """A red bar among green ones, or a 45° bar among vertical ones, is the map's
    maximum and the first attended location (>= 95 %), at the border too."""
    outcomes = _outcomes(kind)
    map_hits, first_hits = outcomes[:, 0].mean(), outcomes[:, 1].mean()
    assert map_hits >= 0.95 and first_hits >= 0.95, (map_hits, first_hits)
    targets_at_border = [_near_border(a, a.target) for a in _arrays(kind)]
    assert sum(targets_at_border) >= TRIALS // 3  # the border cases were drawn


def test_conjunction_targets_do_not_pop_out_and_border_bars_are_not_favoured():
    """A red vertical bar among red horizontals and green verticals wins about as
    often as any other bar (chance: 1/set size, about 0.1 here), and the winner lies
    at the border about as often as bars do (a mirrored border once doubled them)."""
    outcomes = _outcomes("conjunction")
    chance = np.mean([1 / len(a.items) for a in _arrays("conjunction")])
    assert outcomes[:, 0].mean() <= chance + 0.15
    assert outcomes[:, 1].mean() <= chance + 0.15
    assert outcomes[:, 2].mean() <= outcomes[:, 3].mean() + 0.15


def test_paper_choices_miss_colour_singletons_in_sparse_arrays():
    """Why the defaults differ from the paper: with its merged R−G map, per-map
    range and raw Gabor energy, a red bar among few green ones often loses."""
    hits = 0
    for t in range(12):
        rng = np.random.default_rng([16, t])
        array = search_array("colour", int(rng.integers(4, 9)), rng=rng)
        saliency = itti_koch(
            array.image,
            colour_opponency="paper",
            orientation_opponency="paper",
            map_range="map",
        )
        row, col = np.unravel_index(np.argmax(saliency), saliency.shape)
        hits += on_target(array, (col, row))
    assert hits <= 9


# ---------------------------------------------------------------- photo borders


@pytest.fixture(scope="module")
def half_photos():
    photos = {}
    for name in ("chelsea", "coffee", "astronaut"):
        image = load_image(name)
        size = (image.shape[1] // 2, image.shape[0] // 2)
        photos[name] = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return photos


@pytest.mark.parametrize(
    "frame", [(0.0, 0.0, 0.0), (0.5, 0.5, 0.5), (1.0, 1.0, 1.0), (0.2, 0.4, 0.8)]
)
def test_a_uniform_frame_around_a_photo_never_wins(half_photos, frame):
    """The map's maximum lies in the photo, and the first attended location (a
    pixel of the scale-4 map, 16 input pixels apart) within half a cell of it."""
    for name, photo in half_photos.items():
        for width in (32, 56):
            framed = cv2.copyMakeBorder(photo, *[width] * 4, cv2.BORDER_CONSTANT, value=frame)
            stages = itti_koch_stages(framed, fixations=1)
            row, col = np.unravel_index(np.argmax(stages.saliency), stages.saliency.shape)
            for (x, y), tolerance in (((col, row), 0), (stages.scan_path[0], 8)):
                outside = max(width - x, width - y, x - (framed.shape[1] - 1 - width))
                outside = max(outside, y - (framed.shape[0] - 1 - width))
                assert outside <= tolerance, (name, width, (x, y))


def test_chelsea_is_first_attended_away_from_the_border():
    image = load_image("chelsea")
    stages = itti_koch_stages(image, fixations=1)
    x, y = stages.scan_path[0]
    height, width = image.shape[:2]
    assert min(x, y, width - x, height - y) > 0.15 * min(height, width), (x, y)

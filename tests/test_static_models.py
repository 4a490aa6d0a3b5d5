"""The successors of Itti–Koch: agreement with OpenCV contrib where it implements the
same model, exact answers on analytic inputs, and common checks for every model."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from salmap.errors import InputError, UsageError
from salmap.io import load_image
from salmap.maps import SaliencyMap
from salmap.static import (
    STATIC_METHODS,
    attended_item,
    boolean_map_saliency,
    fine_grained,
    frequency_tuned,
    gbvs,
    gbvs_activation,
    gbvs_normalization,
    markov_equilibrium,
    search_array,
    spectral_residual,
    static_saliency,
    surrounded_regions,
)
from salmap.static.gbvs import _falloff

PHOTOS = ("chelsea", "coffee", "astronaut")


@pytest.fixture(scope="module")
def photos():
    """Real photos, halved (the tests only need their statistics, not their size)."""
    small = {}
    for name in PHOTOS:
        image = load_image(name)
        small[name] = cv2.resize(
            image, (image.shape[1] // 2, image.shape[0] // 2), interpolation=cv2.INTER_AREA
        )
    return small


def _bgr8(image):
    return np.round(image[..., ::-1] * 255).astype(np.uint8)


def _correlation(a, b):
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


# ------------------------------------------------------------------ every model


@pytest.fixture(scope="module")
def scene():
    rng = np.random.default_rng(0)
    image = np.full((96, 128, 3), 0.45, np.float32) + 0.03 * rng.standard_normal((96, 128, 3))
    image[40:60, 70:94] = (0.9, 0.1, 0.1)  # a red patch
    return np.clip(image, 0, 1).astype(np.float32)


@pytest.mark.parametrize("name", list(STATIC_METHODS))
def test_every_model_gives_a_finite_map_at_the_image_resolution(name, scene):
    result = static_saliency(scene, method=name)
    assert isinstance(result, SaliencyMap)
    assert result.method == name
    assert result.map.shape == (96, 128) and result.map.dtype == np.float32
    assert np.all(np.isfinite(result.map)) and result.map.min() >= 0
    # Same image, same map, bit for bit (no hidden randomness or thread races).
    np.testing.assert_array_equal(result.map, static_saliency(scene, method=name).map)
    # The red patch is the most salient thing in the scene for every model.
    row, col = np.unravel_index(np.argmax(result.map), result.map.shape)
    assert 30 <= row < 70 and 60 <= col < 104, (row, col)


@pytest.mark.parametrize("name", list(STATIC_METHODS))
@pytest.mark.parametrize("grey", [0.0, 0.123, 1.0])
def test_a_uniform_image_has_no_saliency(name, grey):
    uniform = np.full((40, 52, 3), grey, np.float32)
    assert static_saliency(uniform, method=name).map.max() == 0.0


@pytest.mark.parametrize("name", list(STATIC_METHODS))
def test_the_smallest_accepted_image(name):
    tiny = np.random.default_rng(1).random((8, 8, 3)).astype(np.float32)
    assert static_saliency(tiny, method=name).map.shape == (8, 8)


def test_static_saliency_records_parameters_and_itti_stages(scene):
    result = static_saliency(scene, method="itti", fixations=3)
    assert result.params["fixations"] == 3 and result.params["normalization"] == "maxlocal"
    assert result.extras["scan_path"].shape == (3, 2)
    assert set(result.extras["conspicuity"]) == {"intensity", "colour", "orientation"}
    assert len(result.extras["feature_maps"]) == 54  # split colour opponency
    assert result.image is not None and result.seconds > 0
    assert static_saliency("chelsea", method="sr").method == "spectral-residual"


def test_static_saliency_rejects_unknown_methods_parameters_and_inputs(scene):
    with pytest.raises(UsageError, match="unknown static saliency method"):
        static_saliency(scene, method="deepgaze")
    with pytest.raises(UsageError, match="no parameter"):
        static_saliency(scene, method="gbvs", sigma=3)
    with pytest.raises(InputError):
        static_saliency(np.zeros((4, 4, 3), np.float32), method="itti")
    with pytest.raises(InputError):
        spectral_residual(np.zeros((16, 16), np.float32))


# ------------------------------------------------------------- spectral residual


def test_spectral_residual_opencv_flavour_agrees_with_opencv(photos):
    reference = cv2.saliency.StaticSaliencySpectralResidual_create()
    for name, image in photos.items():
        ok, expected = reference.computeSaliency(_bgr8(image))
        assert ok
        assert _correlation(spectral_residual(image, flavour="opencv"), expected) >= 0.95, name


def test_spectral_residual_paper_flavour_differs_from_opencv_by_design(photos):
    """OpenCV shrinks to 64×64 ignoring the aspect ratio, without antialiasing, and
    smooths before squaring; the paper keeps the aspect ratio (64 pixels wide), its
    authors' code antialiases and squares first. Same model, visibly different maps."""
    reference = cv2.saliency.StaticSaliencySpectralResidual_create()
    for image in photos.values():
        ok, expected = reference.computeSaliency(_bgr8(image))
        paper = _correlation(spectral_residual(image), expected)
        assert 0.6 < paper < 0.95


def test_spectral_residual_finds_the_odd_patch_in_a_texture():
    # A regular grating is all redundancy: its spectrum is a few lines, which the
    # residual removes; a small blob breaking the pattern stays.
    rows, cols = np.mgrid[0:128, 0:192]
    grating = 0.5 + 0.25 * np.sin(2 * np.pi * cols / 8.0)
    grating[60:70, 130:140] = 1.0
    image = np.repeat(grating[..., None], 3, axis=2).astype(np.float32)
    saliency = spectral_residual(image)
    row, col = np.unravel_index(np.argmax(saliency), saliency.shape)
    assert 50 <= row < 80 and 120 <= col < 150


# ------------------------------------------------------------------ fine-grained


def test_fine_grained_agrees_with_opencv(photos):
    reference = cv2.saliency.StaticSaliencyFineGrained_create()
    for name, image in photos.items():
        ok, expected = reference.computeSaliency(_bgr8(image))
        assert ok
        assert _correlation(fine_grained(image), expected) >= 0.95, name


def test_fine_grained_on_and_off_centre_contrast_of_a_dot():
    image = np.zeros((64, 64, 3), np.float32)
    image[32, 32] = 1.0
    saliency = fine_grained(image, scales=(3,), presmooth=0)
    # On-centre: 1 − 0 at the dot, the map's maximum (scaled to 1). Off-centre:
    # its neighbours see the dot in their surround, 1/48 above them; all equal,
    # scaled to 1.
    assert saliency[32, 32] == pytest.approx(1.0)
    assert saliency[32, 33] == pytest.approx(1.0)
    assert saliency[32, 40] == 0.0


# ------------------------------------------------------------- frequency-tuned


def test_frequency_tuned_is_the_lab_distance_from_the_mean_colour():
    image = np.zeros((60, 80, 3), np.float32)
    image[:] = (0.2, 0.4, 0.6)
    image[20:40, 30:50] = (0.9, 0.8, 0.1)
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2Lab).astype(np.float64)
    mean = lab.reshape(-1, 3).mean(axis=0)
    saliency = frequency_tuned(image)
    # Inside the uniform patches the 5×5 blur changes nothing.
    assert saliency[30, 40] == pytest.approx(np.linalg.norm(lab[30, 40] - mean), abs=1e-3)
    assert saliency[5, 5] == pytest.approx(np.linalg.norm(lab[5, 5] - mean), abs=1e-3)


# ------------------------------------------------------------------------ GBVS


def test_gbvs_closed_forms_equal_the_markov_chains_equilibria():
    rng = np.random.default_rng(2)
    feature = rng.random((6, 7)) + 0.01
    sigma = 1.5
    falloff = _falloff(feature.shape, sigma)
    logs = np.log(feature / feature.max() + 1e-3).ravel()
    activation_weights = np.abs(logs[:, None] - logs[None, :]) * falloff
    activation = gbvs_activation(feature, sigma)
    np.testing.assert_allclose(
        activation.ravel(), markov_equilibrium(activation_weights), atol=1e-10
    )
    normalization_weights = falloff * activation.ravel()[None, :]
    np.testing.assert_allclose(
        gbvs_normalization(activation, sigma).ravel(),
        markov_equilibrium(normalization_weights),
        atol=1e-10,
    )
    assert activation.sum() == pytest.approx(1.0)


def test_gbvs_activation_concentrates_on_the_odd_node():
    feature = np.ones((9, 9))
    feature[4, 4] = 5.0
    activation = gbvs_activation(feature, 2.0)
    assert np.unravel_index(np.argmax(activation), activation.shape) == (4, 4)
    assert gbvs_activation(np.ones((9, 9)), 2.0).max() == 0.0


# ------------------------------------------------------------------------- BMS


def test_surrounded_regions():
    mask = np.zeros((9, 9), bool)
    mask[2:5, 2:5] = True  # an island
    mask[0:3, 7:9] = True  # touches the border
    mask[6, 1:8] = True  # a bar, not touching
    surrounded = surrounded_regions(mask)
    assert surrounded[3, 3] and surrounded[6, 4]
    assert not surrounded[1, 8] and not surrounded[0, 0]
    assert surrounded.sum() == 9 + 7
    # Diagonal contact only: separate under 4-connectivity, joined under 8.
    corner = np.zeros((5, 5), bool)
    corner[0, 0] = corner[1, 1] = True
    assert surrounded_regions(corner)[1, 1]
    assert not surrounded_regions(corner, connectivity=8)[1, 1]


def test_bms_lights_up_an_enclosed_figure_not_the_border():
    image = np.full((120, 160, 3), 0.9, np.float32)
    image[45:75, 60:100] = (0.2, 0.3, 0.7)
    saliency = boolean_map_saliency(image)
    assert saliency[60, 80] == pytest.approx(1.0, abs=0.05)
    assert saliency[5, 5] < 0.05 and saliency[115, 155] < 0.05


# --------------------------------------------------------------- colour pop-out


@pytest.mark.parametrize("model", [gbvs, boolean_map_saliency])
def test_gbvs_and_bms_find_the_red_bar_among_green_ones(model):
    """Both weigh rare colours without Itti's merged R−G map; neither is perfect
    (about 90–100 % over many arrays, see benchmarks/bench_static.py --popout)."""
    hits = 0
    for trial in range(8):
        rng = np.random.default_rng([7, trial])
        array = search_array("colour", int(rng.integers(4, 31)), rng=rng)
        saliency = model(array.image)
        row, col = np.unravel_index(np.argmax(saliency), saliency.shape)
        hits += attended_item(array, (col, row)) == 0
    assert hits >= 6

"""Fixation metrics against the MIT benchmark's definitions and against pysaliency.

``_mit_*`` below transcribe the MIT benchmark's MATLAB reference code
(``code_forMetrics``: AUC_Judd.m, AUC_Borji.m, AUC_shuffled.m, NSS.m, CC.m,
similarity.m, KLdiv.m, InfoGain.m) line by line, loops and all, so the vectorised
implementations are checked against the definitions rather than against themselves.
pysaliency is imported without its package ``__init__`` (which needs PyTorch for
its DeepGaze models), and ``numpy.trapz``, gone in NumPy 2.4, is pointed at
``numpy.trapezoid`` for its ROC code.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import sys
import types

import numpy as np
import pytest

from salmap.errors import InputError
from salmap.metrics import (
    EPS,
    auc_borji,
    auc_judd,
    auc_shuffled,
    cc,
    center_bias,
    fixation_density,
    fixation_map,
    fixation_metrics,
    information_gain,
    kl_divergence,
    nss,
    sim,
)

H, W = 24, 32


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def pysaliency():
    spec = importlib.util.find_spec("pysaliency")
    if spec is None:
        pytest.skip("pysaliency is not installed (pip install -e '.[test]')")
    name = "_pysaliency_core"
    if name not in sys.modules:
        package = types.ModuleType(name)
        package.__path__ = list(spec.submodule_search_locations)
        sys.modules[name] = package
    modules = types.SimpleNamespace(
        metrics=importlib.import_module(f"{name}.metrics"),
        models=importlib.import_module(f"{name}.saliency_map_models"),
        datasets=importlib.import_module(f"{name}.datasets"),
    )
    return modules


@pytest.fixture(autouse=True)
def _numpy_trapz(monkeypatch):
    if not hasattr(np, "trapz"):
        monkeypatch.setattr(np, "trapz", np.trapezoid, raising=False)


def _distinct_points(rng, count, shape=(H, W), offset=(0.3, 0.6)):
    """``count`` points on distinct pixels, with sub-pixel offsets."""
    cells = rng.choice(shape[0] * shape[1], size=count, replace=False)
    rows, cols = np.divmod(cells, shape[1])
    return np.column_stack([cols + offset[0], rows + offset[1]])


def _pysaliency_model(pysaliency, saliency):
    class Fixed(pysaliency.models.SaliencyMapModel):
        def __init__(self):
            super().__init__(caching=False)

        def _saliency_map(self, stimulus):
            return saliency

    return Fixed()


def _pysaliency_data(pysaliency, points, shape=(H, W)):
    stimuli = pysaliency.datasets.Stimuli([np.zeros((*shape, 3), np.uint8)])
    fixations = pysaliency.datasets.Fixations.create_without_history(
        points[:, 0], points[:, 1], np.zeros(len(points), int)
    )
    return stimuli, fixations


# ------------------------------------------------------ MIT reference code, transcribed


def _mit_auc_judd(saliency, fixation_map, jitter_values=None):
    saliency = np.array(saliency, dtype=np.float64)
    if jitter_values is not None:
        saliency = saliency + jitter_values / 10000000
    saliency = (saliency - saliency.min()) / (saliency.max() - saliency.min())
    s = saliency.ravel()
    f = fixation_map.ravel()
    sth = s[f > 0]
    n_fix, n_pix = len(sth), len(s)
    thresholds = sorted(sth, reverse=True)
    tp = np.zeros(n_fix + 2)
    fp = np.zeros(n_fix + 2)
    tp[-1] = fp[-1] = 1
    for i in range(1, n_fix + 1):
        above = np.sum(s >= thresholds[i - 1])
        tp[i] = i / n_fix
        fp[i] = (above - i) / (n_pix - n_fix)
    return np.trapezoid(tp, fp)


def _mit_roc(sth, curfix, step, n_negatives):
    top = max(np.max(sth), np.max(curfix))
    thresholds = [k * step for k in range(int(math.floor(top / step + 1e-10)) + 1)][::-1]
    tp = np.zeros(len(thresholds) + 2)
    fp = np.zeros(len(thresholds) + 2)
    tp[-1] = fp[-1] = 1
    for i, threshold in enumerate(thresholds, start=1):
        tp[i] = np.sum(sth >= threshold) / len(sth)
        fp[i] = np.sum(curfix >= threshold) / n_negatives
    return np.trapezoid(tp, fp)


def _mit_auc_borji(saliency, fixation_map, draws, step=0.1):
    s = np.array(saliency, dtype=np.float64).ravel()
    s = (s - s.min()) / (s.max() - s.min())
    sth = s[fixation_map.ravel() > 0]
    aucs = [_mit_roc(sth, s[draws[:, k]], step, len(sth)) for k in range(draws.shape[1])]
    return float(np.mean(aucs))


def _mit_nss(saliency, fixation_map):
    m = np.array(saliency, dtype=np.float64)
    m = (m - m.mean()) / m.std(ddof=1)
    return float(m[fixation_map.astype(bool)].mean())


def _mit_cc(a, b):
    a = np.array(a, dtype=np.float64)
    b = np.array(b, dtype=np.float64)
    a = (a - a.mean()) / a.std(ddof=1)
    b = (b - b.mean()) / b.std(ddof=1)
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def _mit_sim(a, b):
    a = np.array(a, dtype=np.float64)
    b = np.array(b, dtype=np.float64)
    if a.any():
        a = (a - a.min()) / (a.max() - a.min())
        a = a / a.sum()
    if b.any():
        b = (b - b.min()) / (b.max() - b.min())
        b = b / b.sum()
    return float(np.minimum(a, b).sum())


def _mit_kl(saliency, fixations):
    a = np.array(saliency, dtype=np.float64)
    b = np.array(fixations, dtype=np.float64)
    if a.any():
        a = a / a.sum()
    if b.any():
        b = b / b.sum()
    return float(np.sum(b * np.log(EPS + b / (a + EPS))))


def _mit_info_gain(saliency, fixation_map, baseline):
    a = np.array(saliency, dtype=np.float64).ravel()
    z = np.array(baseline, dtype=np.float64).ravel()
    a = (a - a.min()) / (a.max() - a.min())
    z = (z - z.min()) / (z.max() - z.min())
    a = a / a.sum()
    z = z / z.sum()
    locations = fixation_map.ravel().astype(bool)
    return float(np.mean(np.log2(EPS + a[locations]) - np.log2(EPS + z[locations])))


# ---------------------------------------------------------------- fixation inputs


def test_points_become_pixels_by_floor_and_repeats_count_once():
    points = np.array([[0.0, 0.0], [0.99, 0.2], [W - 0.01, H - 0.01], [5.5, 7.9]])
    binary = fixation_map(points, (H, W))
    assert binary.dtype == bool
    assert binary.sum() == 3  # the first two land on pixel (0, 0)
    assert binary[0, 0] and binary[H - 1, W - 1] and binary[7, 5]


@pytest.mark.parametrize(
    "points", [[[W, 0.0]], [[0.0, H]], [[-0.01, 3.0]], [[np.nan, 1.0]], np.zeros((0, 2))]
)
def test_bad_points_are_input_errors(points):
    with pytest.raises(InputError):
        fixation_map(np.asarray(points, dtype=np.float64), (H, W))


def test_fixation_density_counts_repeats_and_sums_to_one():
    points = np.array([[3.2, 4.0], [3.7, 4.5], [10.0, 10.0]])
    density = fixation_density(points, (H, W), sigma=0)
    assert density.sum() == pytest.approx(1.0)
    assert density[4, 3] == pytest.approx(2 / 3) and density[10, 10] == pytest.approx(1 / 3)
    blurred = fixation_density(points, (H, W), sigma=2.0)
    assert blurred.sum() == pytest.approx(1.0) and np.count_nonzero(blurred) > 3


def test_center_bias_peaks_in_the_middle_and_stretches_with_the_aspect_ratio():
    bias = center_bias((41, 81), sigma=0.25)
    assert bias[20, 40] == pytest.approx(1.0)
    # One standard deviation out along each axis: 0.25 of that side.
    assert bias[20, 40 + 20] == pytest.approx(math.exp(-0.5 * (20 / 20.25) ** 2))
    assert bias[20 + 10, 40] == pytest.approx(math.exp(-0.5 * (10 / 10.25) ** 2))


# ------------------------------------------------------------------ MIT definitions


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auc_judd_matches_the_mit_code(seed):
    rng = np.random.default_rng(seed)
    saliency = rng.random((H, W)) ** 3
    points = _distinct_points(rng, 15)
    binary = fixation_map(points, (H, W))
    jitter = np.random.default_rng(99).random((H, W))
    expected = _mit_auc_judd(saliency, binary, jitter)
    assert auc_judd(saliency, points, rng=np.random.default_rng(99)) == pytest.approx(
        expected, abs=1e-12
    )
    assert auc_judd(saliency, binary, jitter=False) == pytest.approx(
        _mit_auc_judd(saliency, binary), abs=1e-12
    )


def test_auc_judd_of_a_perfect_and_an_inverted_map():
    rng = np.random.default_rng(3)
    points = _distinct_points(rng, 10)
    binary = fixation_map(points, (H, W))
    perfect = binary.astype(float) + 0.01 * rng.random((H, W))
    assert auc_judd(perfect, points) == pytest.approx(1.0, abs=1e-12)
    # Inverted: every fixated value is below every other pixel, so all the ROC's
    # points sit at FPR 1 and the area is the first segment's triangle, 0.5 / N.
    assert auc_judd(-perfect, points) == pytest.approx(0.5 / 10, abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
def test_auc_borji_matches_the_mit_code(seed):
    rng = np.random.default_rng(seed)
    saliency = rng.random((H, W))
    points = _distinct_points(rng, 12)
    binary = fixation_map(points, (H, W))
    # The MIT code draws randi([1 Npixels], [Nfixations, Nsplits]); the same draws here.
    draws = np.random.default_rng(7).integers(0, H * W, size=(12, 100))
    expected = _mit_auc_borji(saliency, binary, draws)
    assert auc_borji(saliency, points, rng=np.random.default_rng(7)) == pytest.approx(
        expected, abs=1e-12
    )


def test_auc_shuffled_matches_the_mit_code():
    rng = np.random.default_rng(4)
    saliency = rng.random((H, W))
    points = _distinct_points(rng, 10)
    others = _distinct_points(rng, 30)
    s = (saliency - saliency.min()) / (saliency.max() - saliency.min())
    sth = s.ravel()[fixation_map(points, (H, W)).ravel()]
    candidates = np.flatnonzero(fixation_map(others, (H, W)).ravel())
    generator = np.random.default_rng(5)
    expected = np.mean(
        [
            _mit_roc(sth, s.ravel()[generator.permutation(candidates)[:10]], 0.1, 10)
            for _ in range(100)
        ]
    )
    got = auc_shuffled(saliency, points, others, rng=np.random.default_rng(5))
    assert got == pytest.approx(expected, abs=1e-12)


def test_shuffled_auc_gives_a_centre_bias_map_no_credit():
    # Fixations and "other" fixations both cluster at the centre: a centre-bias map
    # separates fixations from random pixels (AUC-Borji) but not from other fixations.
    rng = np.random.default_rng(6)
    centre = np.array([W / 2, H / 2])
    points = np.clip(centre + rng.normal(0, 3, (200, 2)), 0, [W - 0.01, H - 0.01])
    others = np.clip(centre + rng.normal(0, 3, (200, 2)), 0, [W - 0.01, H - 0.01])
    bias = center_bias((H, W))
    assert auc_borji(bias, points) > 0.8
    assert abs(auc_shuffled(bias, points, others) - 0.5) < 0.06


def test_nss_cc_sim_kl_information_gain_match_the_mit_code():
    rng = np.random.default_rng(8)
    saliency = rng.random((H, W)) ** 2
    points = _distinct_points(rng, 20)
    binary = fixation_map(points, (H, W))
    density = fixation_density(points, (H, W), sigma=2.0)
    baseline = center_bias((H, W))
    assert nss(saliency, points) == pytest.approx(_mit_nss(saliency, binary), abs=1e-12)
    assert cc(saliency, density) == pytest.approx(_mit_cc(saliency, density), abs=1e-12)
    assert sim(saliency, density) == pytest.approx(_mit_sim(saliency, density), abs=1e-12)
    assert kl_divergence(saliency, density) == pytest.approx(_mit_kl(saliency, density), abs=1e-12)
    assert information_gain(saliency, points, baseline) == pytest.approx(
        _mit_info_gain(saliency, binary, baseline), abs=1e-12
    )


def test_a_fixation_map_of_another_size_resizes_the_saliency_map():
    rng = np.random.default_rng(9)
    saliency = rng.random((H // 2, W // 2))
    binary = np.zeros((H, W))
    binary[5, 7] = binary[12, 20] = binary[20, 3] = 1
    from salmap.maps import resize_map

    resized = resize_map(saliency.astype(np.float32), H, W).astype(np.float64)
    assert nss(saliency, binary) == pytest.approx(_mit_nss(resized, binary), abs=1e-6)


def test_information_gain_of_probability_maps_is_the_log_likelihood_ratio():
    rng = np.random.default_rng(10)
    density = rng.random((H, W)) + 0.1
    density /= density.sum()
    uniform = np.full((H, W), 1.0 / (H * W))
    points = _distinct_points(rng, 25)
    binary = fixation_map(points, (H, W))
    expected = np.mean(np.log2(EPS + density[binary]) - np.log2(EPS + uniform[binary]))
    got = information_gain(density, points, uniform, probabilistic=True)
    assert got == pytest.approx(expected, abs=1e-12)
    # The MIT normalisation scales to [0, 1] first, which changes the probabilities;
    # against a uniform baseline it is even undefined (constant map).
    assert math.isnan(information_gain(density, points, uniform))


# --------------------------------------------------------------------- edge cases


def test_constant_map_edge_cases_follow_the_mit_code():
    constant = np.full((H, W), 0.4)
    points = np.array([[3.0, 4.0], [10.5, 11.5]])
    # Without jitter the [0, 1] scaling divides by zero: NaN, as AUC_Judd.m returns.
    assert math.isnan(auc_judd(constant, points, jitter=False))
    # With jitter the ties are broken at random: some AUC in [0, 1].
    assert 0.0 <= auc_judd(constant, points) <= 1.0
    assert math.isnan(auc_borji(constant, points))
    assert math.isnan(nss(constant, points))
    assert math.isnan(cc(constant, fixation_density(points, (H, W))))
    assert math.isnan(sim(constant, fixation_density(points, (H, W))))
    # KL only divides by the sum: a constant map is the uniform distribution.
    density = fixation_density(points, (H, W), sigma=0)
    assert kl_divergence(constant, density) == pytest.approx(math.log(H * W / 2), rel=1e-9)


def test_all_zero_map_stays_zero_for_sim_and_kl():
    zero = np.zeros((H, W))
    density = fixation_density(np.array([[3.0, 4.0]]), (H, W), sigma=0)
    assert sim(zero, density) == 0.0
    # Σ Q log(ε + Q/ε): the largest KL there is for one fixated pixel.
    assert kl_divergence(zero, density) == pytest.approx(math.log(EPS + 1 / EPS), rel=1e-12)


def test_a_single_fixation():
    rng = np.random.default_rng(11)
    saliency = rng.random((H, W))
    point = np.array([[7.2, 9.9]])
    value = saliency[9, 7]
    rank_fraction = (saliency > value).sum() / (H * W - 1)
    # One fixation: the ROC is (0,0) → (FPR, 1) → (1,1), area 1 − FPR/2.
    expected = 1 - rank_fraction / 2
    assert auc_judd(saliency, point, jitter=False) == pytest.approx(expected, abs=1e-12)
    standard = (value - saliency.mean()) / saliency.std(ddof=1)
    assert nss(saliency, point) == pytest.approx(standard, abs=1e-12)
    assert 0.0 <= auc_borji(saliency, point) <= 1.0


def test_fixations_on_the_border_pixels():
    rng = np.random.default_rng(12)
    saliency = rng.random((H, W))
    corners = np.array([[0.0, 0.0], [W - 1e-9, 0.0], [0.0, H - 1e-9], [W - 1e-9, H - 1e-9]])
    binary = fixation_map(corners, (H, W))
    assert binary[0, 0] and binary[0, W - 1] and binary[H - 1, 0] and binary[H - 1, W - 1]
    expected = np.mean(
        (saliency[[0, 0, H - 1, H - 1], [0, W - 1, 0, W - 1]] - saliency.mean())
        / saliency.std(ddof=1)
    )
    assert nss(saliency, corners) == pytest.approx(expected, abs=1e-12)
    assert auc_judd(saliency, corners, jitter=False) == pytest.approx(
        _mit_auc_judd(saliency, binary), abs=1e-12
    )


def test_no_fixation_gives_nan():
    saliency = np.random.default_rng(0).random((H, W))
    empty = np.zeros((H, W))
    assert math.isnan(auc_judd(saliency, empty))
    assert math.isnan(nss(saliency, empty))
    assert math.isnan(auc_borji(saliency, empty))


def test_fixation_metrics_reports_every_metric():
    rng = np.random.default_rng(13)
    saliency = rng.random((H, W))
    points = _distinct_points(rng, 10)
    scores = fixation_metrics(saliency, points, other_fixations=_distinct_points(rng, 10))
    assert set(scores) == {
        "auc_judd",
        "auc_borji",
        "auc_shuffled",
        "nss",
        "cc",
        "sim",
        "kl",
        "information_gain",
    }
    assert all(np.isfinite(value) for value in scores.values())
    # Same seed, same numbers (jitter and splits are seeded).
    again = fixation_metrics(saliency, points, rng=0)
    assert again == fixation_metrics(saliency, points, rng=0)


# ------------------------------------------------------------------------ pysaliency


def test_pysaliency_auc_judd_agrees_without_ties(pysaliency):
    rng = np.random.default_rng(20)
    saliency = rng.random((H, W))
    points = _distinct_points(rng, 25)
    stimuli, fixations = _pysaliency_data(pysaliency, points)
    reference = _pysaliency_model(pysaliency, saliency).AUC_Judd(stimuli, fixations, jitter=False)
    assert auc_judd(saliency, points, jitter=False) == pytest.approx(reference, abs=1e-6)


def test_pysaliency_nss_differs_by_the_standard_deviation_convention(pysaliency):
    rng = np.random.default_rng(21)
    saliency = rng.random((H, W))
    points = _distinct_points(rng, 25)
    stimuli, fixations = _pysaliency_data(pysaliency, points)
    reference = float(np.mean(_pysaliency_model(pysaliency, saliency).NSS(stimuli, fixations)))
    # pysaliency divides by the standard deviation with N, the MIT code with N − 1.
    assert nss(saliency, points, ddof=0) == pytest.approx(reference, abs=1e-6)
    n = H * W
    assert nss(saliency, points) == pytest.approx(reference * math.sqrt((n - 1) / n), abs=1e-6)


def test_pysaliency_cc_and_kl_agree(pysaliency):
    rng = np.random.default_rng(22)
    saliency = rng.random((H, W))
    density = fixation_density(_distinct_points(rng, 20), (H, W), sigma=2.0)
    assert cc(saliency, density) == pytest.approx(
        pysaliency.metrics.CC(saliency, density), abs=1e-6
    )
    assert kl_divergence(saliency, density) == pytest.approx(
        pysaliency.metrics.MIT_KLDiv(saliency, density), abs=1e-6
    )
    # Where they differ: pysaliency's CC of a constant map is 0, the MIT code's NaN.
    constant = np.full((H, W), 0.5)
    assert pysaliency.metrics.CC(constant, density) == 0.0
    assert math.isnan(cc(constant, density))


def test_pysaliency_sim_agrees_only_for_maps_with_minimum_zero(pysaliency):
    rng = np.random.default_rng(23)
    saliency = rng.random((H, W))
    saliency -= saliency.min()
    density = fixation_density(_distinct_points(rng, 20), (H, W), sigma=2.0)
    density -= density.min()
    assert sim(saliency, density) == pytest.approx(
        pysaliency.metrics.SIM(saliency, density), abs=1e-6
    )
    # pysaliency does not rescale to [0, 1]: a floor under the map flattens its
    # distribution towards uniform, which here raises pysaliency's SIM, not ours.
    floored = saliency + 1.0
    assert sim(floored, density) == pytest.approx(sim(saliency, density), abs=1e-12)
    assert pysaliency.metrics.SIM(floored, density) > sim(floored, density) + 0.01


def test_pysaliency_exact_shuffled_auc_agrees(pysaliency):
    # With no more other fixations than fixations the MIT split uses all of them;
    # with step=None every value is a threshold, pysaliency's exact ROC.
    rng = np.random.default_rng(24)
    saliency = rng.random((H, W))
    points = _distinct_points(rng, 25)
    others = _distinct_points(rng, 15, offset=(0.5, 0.5))
    stimuli, fixations = _pysaliency_data(pysaliency, points)
    nonfixations = pysaliency.datasets.Fixations.create_without_history(
        others[:, 0], others[:, 1], np.zeros(len(others), int)
    )
    model = _pysaliency_model(pysaliency, saliency)
    reference = model.AUC(stimuli, fixations, nonfixations=nonfixations)
    got = auc_shuffled(saliency, points, others, splits=3, step=None)
    assert got == pytest.approx(reference, abs=1e-6)


def test_pysaliency_uniform_auc_is_the_limit_of_auc_borji(pysaliency):
    rng = np.random.default_rng(25)
    saliency = rng.random((H, W)) ** 2
    points = _distinct_points(rng, 40)
    stimuli, fixations = _pysaliency_data(pysaliency, points)
    reference = _pysaliency_model(pysaliency, saliency).AUC(
        stimuli, fixations, nonfixations="uniform"
    )
    # Random negatives and 0.1 thresholds: close, not equal.
    assert auc_borji(saliency, points, splits=400, step=None) == pytest.approx(reference, abs=0.02)

"""Occlusion, RISE and Score-CAM (the forward-only methods) against direct computations.

The methods build whole chunks of inputs at once (separable window grids, masks as
matrix products); these tests recompute every answer the slow, obvious way: one
occluded image, one mask, one channel at a time.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from salmap.maps import resize_map
from salmap.methods.cam import score_cam
from salmap.methods.engine import unit_rng
from salmap.methods.perturbation import occlusion, occlusion_windows, rise, rise_masks
from salmap.models.analytic import AnalyticAdapter

H, W, CLASSES = 13, 11, 4
TARGETS = np.array([0, 2, 3], np.int32)


@pytest.fixture
def linear():
    rng = np.random.default_rng(30)
    return AnalyticAdapter(rng.normal(size=(CLASSES, H, W, 3)), rng.normal(size=CLASSES))


@pytest.fixture
def quadratic():
    rng = np.random.default_rng(31)
    return AnalyticAdapter(
        rng.normal(size=(CLASSES, H, W, 3)),
        rng.normal(size=CLASSES),
        rng.normal(size=(CLASSES, H, W, 3)),
    )


@pytest.fixture
def images():
    return np.random.default_rng(32).random((3, H, W, 3), dtype=np.float32)


def _scores(adapter, inputs, targets, score="logit"):
    logits = adapter._logits(np.asarray(inputs, np.float64))
    if score == "probability":
        logits = np.exp(logits - logits.max(axis=1, keepdims=True))
        logits /= logits.sum(axis=1, keepdims=True)
    return logits[np.arange(len(inputs)), targets]


def _occlusion_by_hand(adapter, images, window, stride, value, score):
    """Per window: occlude one copy, score it, add the drop to the covered pixels."""
    sums = np.zeros(images.shape[:3])
    counts = np.zeros((H, W))
    original = _scores(adapter, images, TARGETS, score)
    for top, left in occlusion_windows(H, W, window, stride):
        occluded = images.copy()
        occluded[:, top : top + window, left : left + window] = value
        drops = original - _scores(adapter, occluded, TARGETS, score)
        sums[:, top : top + window, left : left + window] += drops[:, None, None]
        counts[top : top + window, left : left + window] += 1
    return sums, counts


# -- occlusion ---------------------------------------------------------------------------


@pytest.mark.parametrize("aggregate", ["sum", "mean"])
def test_occlusion_of_a_linear_scorer_is_the_window_sum_of_w_times_x_minus_value(
    linear, images, aggregate
):
    # Stride 3 < window 5: windows overlap; 13 rows hold windows at 0, 3, 6 only (a
    # window at 9 would overrun), so rows 11-12 are covered by none and must stay 0.
    window, stride, value = 5, 3, 0.25
    result = occlusion(
        linear, images, TARGETS, window=window, stride=stride, value=value, aggregate=aggregate
    )
    terms = (images - value) * linear.weights[TARGETS]  # f(x) - f(x occluded) = window sum
    expected = np.zeros((3, H, W))
    counts = np.zeros((H, W))
    for top in (0, 3, 6):
        for left in (0, 3, 6):
            rows, columns = slice(top, top + window), slice(left, left + window)
            expected[:, rows, columns] += terms[:, rows, columns].sum(axis=(1, 2, 3))[:, None, None]
            counts[rows, columns] += 1
    assert counts.max() == 4 and counts[:11].min() == 1 and counts[11:].max() == 0
    if aggregate == "mean":
        expected = np.where(counts > 0, expected / np.maximum(counts, 1), 0)
    assert result.dtype == np.float32 and result.shape == (3, H, W)
    np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-5)
    assert np.all(result[:, 11:] == 0)


@pytest.mark.parametrize(
    ("window", "stride", "value", "score"),
    [(4, 3, 0.5, "logit"), (5, 2, 0.0, "probability"), (20, 4, 0.5, "logit"), (1, 1, 1.0, "logit")],
)
def test_occlusion_of_a_quadratic_model_matches_one_window_at_a_time(
    quadratic, images, window, stride, value, score
):
    sums, counts = _occlusion_by_hand(quadratic, images, window, stride, value, score)
    for aggregate in ("sum", "mean"):
        result = occlusion(
            quadratic,
            images,
            TARGETS,
            window=window,
            stride=stride,
            value=value,
            score=score,
            aggregate=aggregate,
            batch_size=7,
        )
        expected = sums if aggregate == "sum" else np.where(counts > 0, sums / counts.clip(1), 0)
        np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-6)


def test_occlusion_makes_one_pass_per_window_plus_the_image_in_full_batches(linear, images):
    windows = len(occlusion_windows(H, W, 4, 3))
    linear.calls = linear.evaluations = 0
    occlusion(linear, images, TARGETS, window=4, stride=3, batch_size=8)
    assert linear.evaluations == 3 * (windows + 1)
    assert linear.calls == -(-3 * (windows + 1) // 8)


def test_occlusion_does_not_depend_on_the_batch_size(quadratic, images):
    maps = [
        occlusion(quadratic, images, TARGETS, window=3, stride=2, batch_size=size)
        for size in (1, 7, 64)
    ]
    for other in maps[1:]:
        np.testing.assert_allclose(other, maps[0], rtol=1e-6, atol=1e-6)


# -- RISE --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("height", "width", "cells", "probability"), [(13, 11, 7, 0.5), (37, 53, 5, 0.3)]
)
def test_rise_masks_are_upsampled_grids_cropped_at_their_offsets(height, width, cells, probability):
    seed, count = 4, 12
    masks = rise_masks(count, height, width, cells=cells, probability=probability, seed=seed)
    assert masks.shape == (count, height, width) and masks.dtype == np.float32
    cell_h, cell_w = -(-height // cells), -(-width // cells)
    for k in range(count):
        rng = unit_rng(seed, k, 1)
        grid = (rng.random((cells, cells)) < probability).astype(np.float32)
        dy, dx = int(rng.integers(0, cell_h)), int(rng.integers(0, cell_w))
        size = ((cells + 1) * cell_w, (cells + 1) * cell_h)
        upsampled = cv2.resize(grid, size, interpolation=cv2.INTER_LINEAR)
        np.testing.assert_allclose(
            masks[k], upsampled[dy : dy + height, dx : dx + width], rtol=0, atol=1e-6
        )
    assert masks.min() >= 0 and masks.max() <= 1
    part = rise_masks(
        count, height, width, cells=cells, probability=probability, seed=seed, start=5, stop=9
    )
    assert np.array_equal(part, masks[5:9])


def test_rise_equals_its_definition_and_not_the_batch_size(quadratic, images):
    count, probability = 37, 0.4
    masks = rise_masks(count, H, W, probability=probability, seed=6)
    expected = np.stack(
        [
            np.tensordot(
                _scores(quadratic, image[None] * masks[..., None], np.full(count, target)),
                masks,
                axes=1,
            )
            / (count * probability)
            for image, target in zip(images, TARGETS, strict=True)
        ]
    )
    for size in (1, 7, 64):
        result = rise(
            quadratic,
            images,
            TARGETS,
            masks=count,
            probability=probability,
            seed=6,
            batch_size=size,
            tolerance=None,
            centered=False,
        )
        np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-5)


def test_centered_rise_is_eq6_with_scores_centred_on_their_mean(quadratic, images):
    count, probability = 37, 0.4
    masks = rise_masks(count, H, W, probability=probability, seed=2)
    for image, target, result in zip(
        images,
        TARGETS,
        rise(
            quadratic, images, TARGETS, masks=count, probability=probability, seed=2, tolerance=None
        ),
        strict=True,
    ):
        scores = _scores(quadratic, image[None] * masks[..., None], np.full(count, target))
        mean = scores.mean()
        expected = np.tensordot(scores - mean, masks, axes=1) / (count * probability) + mean
        np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-5)


def test_rise_stops_when_the_map_stops_moving(quadratic, images):
    info: dict = {}
    stopped = rise(quadratic, images, TARGETS, masks=4000, tolerance=0.01, seed=1, info=info)
    used = info["masks"]
    assert all(count in (500, 1000, 2000, 4000) for count in used)
    assert all(c >= 0.99 for c, n in zip(info["convergence"], used, strict=True) if n < 4000)
    assert min(used) < 4000  # a smooth quadratic scorer converges early
    for row, count in enumerate(used):  # a stopped run is the fixed run of that length
        fixed = rise(
            quadratic, images[row : row + 1], TARGETS[row], masks=count, seed=1, tolerance=None
        )
        np.testing.assert_allclose(stopped[row], fixed[0], rtol=1e-5, atol=1e-6)
    full = rise(quadratic, images, TARGETS, masks=4000, tolerance=None, seed=1)
    for row in range(len(images)):
        assert np.corrcoef(stopped[row].ravel(), full[row].ravel())[0, 1] > 0.95


# -- Score-CAM ---------------------------------------------------------------------------


class _CoarseLayer(AnalyticAdapter):
    """The analytic scorer with a 'layer' of ``channels`` random mixtures of the image
    resized to ``shape`` (coarser or finer than the image)."""

    def __init__(self, *args, shape, channels, **kwargs):
        super().__init__(*args, **kwargs)
        self.shape = shape
        self.mixing = np.random.default_rng(33).normal(size=(3, channels)).astype(np.float32)

    def layer_values_and_gradients(self, images, targets, layer=None):
        images = self._check(images).astype(np.float32)
        rows, columns = self.shape
        small = np.stack([cv2.resize(image, (columns, rows)) for image in images])
        values = small @ self.mixing
        return values, np.zeros_like(values), self.scores(images, targets)


def _score_cam_by_hand(adapter, images, score):
    """Wang et al. 2020, Eq. 5-7, one channel at a time."""
    values, _, _ = adapter.layer_values_and_gradients(images, TARGETS)
    cams = []
    for image, target, activations in zip(images, TARGETS, values, strict=True):
        scores = []
        for channel in np.moveaxis(activations, -1, 0):
            mask = resize_map(channel, H, W)
            span = mask.max() - mask.min()
            mask = (mask - mask.min()) / span if span > 0 else np.zeros_like(mask)
            scores.append(_scores(adapter, (image * mask[..., None])[None], [target], score)[0])
        weights = np.asarray(scores)
        if score == "logit":
            weights = np.exp(weights - weights.max())
            weights /= weights.sum()
        cam = np.maximum(activations.astype(np.float64) @ weights, 0)
        cams.append(resize_map(cam.astype(np.float32), H, W))
    return np.stack(cams)


@pytest.mark.parametrize(
    ("shape", "score"), [((4, 3), "logit"), ((4, 3), "probability"), ((2 * H, W + 3), "logit")]
)
def test_score_cam_matches_one_channel_at_a_time(shape, score):
    # 150 channels in batches of 200: more than the 128 channels one OpenCV resize
    # takes; the finer-than-image layer goes through area interpolation.
    rng = np.random.default_rng(34)
    adapter = _CoarseLayer(
        rng.normal(size=(CLASSES, H, W, 3)), rng.normal(size=CLASSES), shape=shape, channels=150
    )
    images = rng.random((3, H, W, 3), dtype=np.float32)
    expected = _score_cam_by_hand(adapter, images, score)
    for size in (7, 200):
        result = score_cam(adapter, images, TARGETS, score=score, batch_size=size)
        np.testing.assert_allclose(result, expected, rtol=1e-4, atol=1e-5 * expected.max())

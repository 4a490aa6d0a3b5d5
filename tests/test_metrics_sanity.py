"""Cascading model randomisation (Adebayo et al. 2018): the user's model is untouched,
layers are re-initialised from the top down, gradient maps decorrelate, guided
backpropagation does not (the known failure); rank correlation and SSIM by hand."""

from __future__ import annotations

import numpy as np
import pytest

from salmap.errors import ModelError, UsageError
from salmap.metrics import cascading_randomization, map_ssim, rank_correlation
from salmap.models import load_model
from salmap.models.analytic import AnalyticAdapter
from salmap.models.keras_randomize import weighted_layers


def test_rank_correlation_by_hand():
    first = np.array([[1.0, 2.0], [3.0, 4.0]])
    # One swapped pair: rho = 1 - 6 * sum(d^2) / (n (n^2 - 1)) = 1 - 6 * 2 / 60
    assert rank_correlation(first, np.array([[1.0, 3.0], [2.0, 4.0]])) == pytest.approx(0.8)
    assert rank_correlation(first, -first) == pytest.approx(1.0)  # magnitudes
    assert rank_correlation(first, -first, absolute=False) == pytest.approx(-1.0)
    # Ties get average ranks: (1.5, 1.5, 3) against (1, 2, 3) -> 1.5 / sqrt(1.5 * 2)
    tied = rank_correlation(np.array([[1.0, 1.0, 2.0]]), np.array([[1.0, 2.0, 3.0]]))
    assert tied == pytest.approx(1.5 / np.sqrt(3.0))
    assert np.isnan(rank_correlation(first, np.ones((2, 2))))


def test_ssim_of_maps():
    rng = np.random.default_rng(0)
    saliency = rng.random((32, 32))
    assert map_ssim(saliency, saliency) == pytest.approx(1.0)
    # Each map is min-max normalised first: scale and offset do not matter.
    assert map_ssim(saliency, 3 * saliency + 2) == pytest.approx(1.0, abs=1e-6)
    assert map_ssim(saliency, rng.random((32, 32))) < 0.2
    with pytest.raises(UsageError):
        map_ssim(np.ones((2, 2)), np.ones((2, 2)))


def test_cascade_randomises_a_copy_top_down_from_the_layers_initialisers(tiny_keras_model):
    adapter = load_model(tiny_keras_model, preprocess="none")
    before = [w.copy() for w in tiny_keras_model.get_weights()]
    assert [layer.name for layer in weighted_layers(tiny_keras_model)] == [
        "conv1",
        "conv2",
        "predictions",
    ]
    steps = adapter.randomization_cascade(None, seed=0)
    label, count, copy = next(steps)
    assert (label, count) == ("predictions", 1)
    assert copy.model is not tiny_keras_model
    original = {layer.name: layer.get_weights() for layer in tiny_keras_model.layers}
    cloned = {layer.name: layer.get_weights() for layer in copy.model.layers}
    for name in ("conv1", "conv2"):
        for a, b in zip(original[name], cloned[name], strict=True):
            np.testing.assert_array_equal(a, b)
    kernel, bias = cloned["predictions"]
    assert not np.allclose(kernel, original["predictions"][0])
    np.testing.assert_array_equal(bias, 0)  # Dense's bias initialiser: zeros
    limit = np.sqrt(6 / (8 + 10))  # Glorot uniform, the Dense kernel's initialiser
    assert np.abs(kernel).max() <= limit
    label, count, _ = next(steps)
    assert (label, count) == ("conv2", 2)
    assert not np.allclose(copy.model.get_layer("conv2").get_weights()[0], original["conv2"][0])
    np.testing.assert_array_equal(
        copy.model.get_layer("conv1").get_weights()[0], original["conv1"][0]
    )
    assert [item[:2] for item in steps] == [("conv1", 3)]
    for a, b in zip(before, tiny_keras_model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_cascade_cut_points_by_name_and_errors(tiny_keras_model, chelsea):
    adapter = load_model(tiny_keras_model, preprocess="none")
    small = chelsea[:64, :64]
    result = cascading_randomization(adapter, small, "vanilla", layers=["conv2"], target=3)
    assert result.layers == ["original", "conv2"]
    assert result.randomised == [0, 2]
    assert result.target == 3
    with pytest.raises(UsageError, match="no weighted layer"):
        cascading_randomization(adapter, small, "vanilla", layers=["conv9"])
    weights = np.zeros((2, 16, 16, 3))
    with pytest.raises(ModelError, match="randomised copy"):
        cascading_randomization(AnalyticAdapter(weights), small[:16, :16], "vanilla")


@pytest.mark.slow
def test_cascade_drives_gradient_maps_down_and_guided_backprop_stays(default_model, chelsea):
    before = [w.copy() for w in default_model.model.get_weights()[-4:]]
    probe = default_model.predict(chelsea[None])
    result = cascading_randomization(
        default_model, chelsea, ["vanilla", "gradient-x-input", "guided-backprop"], layers=3
    )
    assert result.layers[:2] == ["original", "logits"]
    assert result.layers[-1] == "stem_conv"  # everything random at the last step
    assert result.randomised[-1] == len(weighted_layers(default_model.model))
    assert result.target == 285
    for method in result.methods:
        assert result.spearman[method][0] == pytest.approx(1.0)
        assert result.ssim[method][0] == pytest.approx(1.0)
        assert len(result.maps[method]) == 4
    print({m: np.round(v, 3).tolist() for m, v in result.spearman.items()})
    for method in ("vanilla", "gradient-x-input"):
        rho = result.spearman[method]
        assert np.all(rho[1:] < 0.5), (method, rho)
        assert rho[-1] < 0.3, (method, rho)
    # Guided backpropagation ignores the top layer (Adebayo et al., §4): its map with
    # random logits is nearly the original.
    assert result.spearman["guided-backprop"][1] > 0.9
    # The user's model is untouched.
    for a, b in zip(before, default_model.model.get_weights()[-4:], strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(probe, default_model.predict(chelsea[None]))

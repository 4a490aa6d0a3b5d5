"""GradientSHAP (expected gradients): linear identities, and Captum's GradientShap fed the
very same baselines, noise and path positions."""

from __future__ import annotations

import numpy as np
import pytest

from salmap.methods import gradient_shap
from salmap.methods.engine import GaussianNoise, unit_rng
from salmap.models.analytic import AnalyticAdapter


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_on_a_linear_model_it_is_w_times_x_minus_the_mean_drawn_baseline(seed):
    rng = np.random.default_rng(seed)
    adapter = AnalyticAdapter(rng.normal(size=(3, 6, 7, 3)), rng.normal(size=3))
    images = rng.random((2, 6, 7, 3), dtype=np.float32)
    w = adapter.weights[[0, 2]]
    black = gradient_shap(adapter, images, [0, 2], baseline="black", samples=4, seed=seed)
    np.testing.assert_allclose(black, w * images, rtol=1e-5, atol=1e-6)
    # Two baselines: each unit draws one; the mean over draws is what the seed chose.
    both = gradient_shap(adapter, images, [0, 2], baseline="black,white", samples=64, seed=seed)
    picks = np.array([unit_rng(seed, k).integers(2) for k in range(64)])
    expected = w * (images - picks.mean())
    np.testing.assert_allclose(both, expected, rtol=1e-4, atol=1e-5)


def test_noise_and_samples_batch_independently():
    rng = np.random.default_rng(4)
    adapter = AnalyticAdapter(
        rng.normal(size=(3, 6, 7, 3)), quadratic=rng.normal(size=(3, 6, 7, 3))
    )
    images = rng.random((3, 6, 7, 3), dtype=np.float32)
    params = {"baseline": "black,uniform", "samples": 9, "sigma": 0.1, "seed": 5}
    together = gradient_shap(adapter, images, [0, 1, 2], batch_size=4, **params)
    alone = gradient_shap(adapter, images[1:2], [1], batch_size=64, **params)
    np.testing.assert_allclose(together[1], alone[0], rtol=1e-5, atol=1e-6)


def _cnn(seed):
    import torch

    torch.manual_seed(seed)
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
        nn.Flatten(), nn.Linear(32, 5),
    ).eval()  # fmt: skip


@pytest.mark.parametrize(("seed", "sigma"), [(0, 0.0), (1, 0.1), (2, 0.2)])
def test_equals_captum_with_the_same_baselines_noise_and_positions(seed, sigma, monkeypatch):
    torch = pytest.importorskip("torch")
    captum = pytest.importorskip("captum.attr")
    from salmap.models.torch_adapter import TorchAdapter

    model = _cnn(seed)
    adapter = TorchAdapter(model, input_size=16, batch_size=32)
    rng = np.random.default_rng(seed + 10)
    images = rng.random((2, 16, 16, 3), dtype=np.float32)
    references = rng.random((4, 16, 16, 3), dtype=np.float32)
    targets, samples = [1, 3], 12
    ours = gradient_shap(
        adapter, images, targets, baseline=references, samples=samples, sigma=sigma, seed=seed
    )
    # salmap's draws, unit by unit (image i, sample k), in Captum's order i * samples + k.
    noises, indices, alphas = [], [], []
    for image in images:
        for k in range(samples):
            draws = unit_rng(seed, k)
            noisy = GaussianNoise(sigma)(image, draws, k) if sigma > 0 else image
            noises.append(noisy - image)
            indices.append(int(draws.integers(len(references))))
            alphas.append(float(draws.random()))
    noise = torch.from_numpy(np.stack(noises).transpose(0, 3, 1, 2).copy())
    monkeypatch.setattr(torch, "normal", lambda mean, std: noise)
    monkeypatch.setattr(np.random, "choice", lambda n, size: np.array(indices))
    monkeypatch.setattr(np.random, "uniform", lambda low, high, size: np.array(alphas))
    theirs = captum.GradientShap(model).attribute(
        torch.from_numpy(images.transpose(0, 3, 1, 2).copy()),
        baselines=torch.from_numpy(references.transpose(0, 3, 1, 2).copy()),
        target=targets,
        n_samples=samples,
        stdevs=float(sigma),
    )
    theirs = theirs.detach().numpy().transpose(0, 2, 3, 1)
    for a, b in zip(ours, theirs, strict=True):
        assert np.corrcoef(a.ravel(), b.ravel())[0, 1] >= 0.99
    np.testing.assert_allclose(ours, theirs, rtol=1e-3, atol=1e-4 * np.abs(theirs).max())

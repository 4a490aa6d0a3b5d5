"""IG completeness on the embedded EfficientNet-Lite0 with its real ImageNet weights."""

from __future__ import annotations

import numpy as np
import pytest

from salmap.methods import completeness_error, integrated_gradients


@pytest.mark.slow
def test_ig_completeness_on_chelsea_at_128_steps(default_model, chelsea):
    # |sum(attribution) - (f(x) - f(black))| / |f(x) - f(black)| < 1 %, with the default
    # (adaptive) quadrature; the uniform rules need far more points on this path
    # (6.8 % trapezoid, 2.0 % Gauss-Legendre at 128 steps), see integrated_gradients.
    image, target = chelsea[None], np.array([285])
    attribution = integrated_gradients(default_model, image, target, steps=128)
    assert attribution.shape == (1, 300, 451, 3)
    error = completeness_error(default_model, image, target, attribution)[0]
    assert error < 0.01
    difference = np.diff(
        default_model.predict(np.stack([np.zeros_like(chelsea), chelsea]))[:, 285]
    )[0]
    assert difference > 5  # a real change of the logit, not a trivially small one

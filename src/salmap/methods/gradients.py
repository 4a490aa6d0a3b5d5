"""Gradient methods."""

from __future__ import annotations

import numpy as np

__all__ = ["vanilla_gradients"]


def vanilla_gradients(adapter, images: np.ndarray, targets: np.ndarray, *, score: str = "logit"):
    """Vanilla gradients: d score / d pixel (Simonyan, Vedaldi & Zisserman 2014).

    Parameters
    ----------
    adapter : ModelAdapter
    images : N×H×W×3 float32 in [0, 1]
    targets : N class indices
    score : ``"logit"`` (pre-softmax, default) or ``"probability"`` (the TensorFlow
        tutorial's choice; saturates for confident predictions).

    Returns
    -------
    N×H×W×3 float32 signed attribution, in score units per unit of pixel value.

    References
    ----------
    K. Simonyan, A. Vedaldi, A. Zisserman. Deep Inside Convolutional Networks:
    Visualising Image Classification Models and Saliency Maps. ICLR workshop 2014.
    """
    gradients, _ = adapter.gradients(images, targets, score=score)
    return gradients

"""The model adapter protocol: the only interface methods use to talk to a framework.

An adapter takes batches of RGB images in [0, 1] (N×H×W×3 float32, any H×W: it
resizes and preprocesses inside the differentiable path) and returns NumPy arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = ["ModelAdapter", "SCORES"]

#: What a gradient is taken of: the pre-softmax logit (default) or the probability.
SCORES = ("logit", "probability")


@runtime_checkable
class ModelAdapter(Protocol):
    name: str
    input_size: tuple[int, int]
    num_classes: int
    class_names: Sequence[str] | None

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Logits, N×classes float32."""

    def gradients(
        self, images: np.ndarray, targets: np.ndarray, score: str = "logit"
    ) -> tuple[np.ndarray, np.ndarray]:
        """d score[target] / d image (N×H×W×3) and the scores themselves (N,)."""

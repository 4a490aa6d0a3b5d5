"""Gradient methods: vanilla, gradient × input, guided backpropagation, deconvnet.

Each is one model evaluation per image; they differ in the multiplier applied to
the gradient and in the backward rule through the ReLUs. All run through
:func:`salmap.methods.engine.accumulate_gradients`, so the noise wrappers apply to
them unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from salmap.methods.engine import accumulate_gradients
from salmap.methods.registry import method

__all__ = [
    "GradientPlan",
    "SinglePoint",
    "vanilla_gradients",
    "gradient_x_input",
    "guided_backprop",
    "deconvnet",
    "vanilla_plan",
    "gradient_x_input_plan",
    "guided_backprop_plan",
    "deconvnet_plan",
]


@dataclass(frozen=True)
class GradientPlan:
    """A gradient method as the engine runs it: its points and its backward rule."""

    rule: object
    backward: str = "standard"


@dataclass(frozen=True)
class SinglePoint:
    """The image itself, multiplied by 1 or by the image (gradient × input)."""

    times_input: bool = False
    count: int = 1

    def prepare(self, image, rng, target):
        return image

    def points(self, image, indices):
        inputs = np.broadcast_to(image, (len(indices), *image.shape))
        return inputs, (inputs if self.times_input else 1.0)


def vanilla_plan() -> GradientPlan:
    return GradientPlan(SinglePoint())


def gradient_x_input_plan() -> GradientPlan:
    return GradientPlan(SinglePoint(times_input=True))


def guided_backprop_plan() -> GradientPlan:
    return GradientPlan(SinglePoint(), backward="guided")


def deconvnet_plan() -> GradientPlan:
    return GradientPlan(SinglePoint(), backward="deconv")


def _run(plan: GradientPlan, adapter, images, targets, score, batch_size):
    return accumulate_gradients(
        adapter,
        images,
        targets,
        plan.rule,
        score=score,
        backward=plan.backward,
        batch_size=batch_size,
    )


@method(
    "vanilla",
    "gradient of the class score w.r.t. the pixels (Simonyan et al. 2014)",
    family="gradients",
    plan=vanilla_plan,
    aliases=("gradients", "saliency"),
)
def vanilla_gradients(
    adapter,
    images: np.ndarray,
    targets: np.ndarray,
    *,
    score: str = "logit",
    batch_size: int | None = None,
) -> np.ndarray:
    """Vanilla gradients: d score / d pixel (Simonyan, Vedaldi & Zisserman 2014).

    Parameters
    ----------
    adapter : ModelAdapter
    images : N×H×W×3 float32 in [0, 1]
    targets : N class indices
    score : ``"logit"`` (pre-softmax, default) or ``"probability"`` (the TensorFlow
        tutorial's choice; saturates for confident predictions).
    batch_size : int, optional
        Images per model call (default: the adapter's).

    Returns
    -------
    N×H×W×3 float32 signed attribution, in score units per unit of pixel value.

    References
    ----------
    K. Simonyan, A. Vedaldi, A. Zisserman. Deep Inside Convolutional Networks:
    Visualising Image Classification Models and Saliency Maps. ICLR workshop 2014,
    Eq. 2 (w = dS_c/dI at the image).
    """
    return _run(vanilla_plan(), adapter, images, targets, score, batch_size)


@method(
    "gradient-x-input",
    "gradient times the pixel values (Shrikumar et al. 2016)",
    family="gradients",
    plan=gradient_x_input_plan,
    aliases=("input-x-gradient",),
)
def gradient_x_input(
    adapter,
    images: np.ndarray,
    targets: np.ndarray,
    *,
    score: str = "logit",
    batch_size: int | None = None,
) -> np.ndarray:
    """Gradient × input: the first-order Taylor contribution of each pixel.

    Returns N×H×W×3 float32, signed, in score units. For a linear model it is each
    pixel's exact term ``w_i x_i`` (relative to a black image).

    References
    ----------
    A. Shrikumar, P. Greenside, A. Shcherbina, A. Kundaje. Not Just a Black Box:
    Learning Important Features Through Propagating Activation Differences.
    arXiv:1605.01713, 2016.
    """
    return _run(gradient_x_input_plan(), adapter, images, targets, score, batch_size)


@method(
    "guided-backprop",
    "gradients through ReLUs gated by input and signal (Springenberg et al. 2015)",
    family="gradients",
    plan=guided_backprop_plan,
)
def guided_backprop(
    adapter,
    images: np.ndarray,
    targets: np.ndarray,
    *,
    score: str = "logit",
    batch_size: int | None = None,
) -> np.ndarray:
    """Guided backpropagation: only positive signals pass back through positive ReLUs.

    Every ReLU's backward rule becomes ``R_in = R_out * [x > 0] * [R_out > 0]``; the
    forward pass is unchanged. Returns N×H×W×3 float32.

    References
    ----------
    J. T. Springenberg, A. Dosovitskiy, T. Brox, M. Riedmiller. Striving for
    Simplicity: The All Convolutional Net. ICLR workshop 2015, Eq. 6 / Fig. 1.
    """
    return _run(guided_backprop_plan(), adapter, images, targets, score, batch_size)


@method(
    "deconvnet",
    "gradients through ReLUs gated by the signal only (Zeiler & Fergus 2014)",
    family="gradients",
    plan=deconvnet_plan,
)
def deconvnet(
    adapter,
    images: np.ndarray,
    targets: np.ndarray,
    *,
    score: str = "logit",
    batch_size: int | None = None,
) -> np.ndarray:
    """Deconvnet: ReLUs pass back positive signals whatever their forward input.

    Every ReLU's backward rule becomes ``R_in = R_out * [R_out > 0]``. Returns
    N×H×W×3 float32.

    References
    ----------
    M. D. Zeiler, R. Fergus. Visualizing and Understanding Convolutional Networks.
    ECCV 2014, Sec. 2.1; the rule as in Springenberg et al. 2015, Fig. 1.
    """
    return _run(deconvnet_plan(), adapter, images, targets, score, batch_size)

"""Noise wrappers: SmoothGrad, SquareGrad, VarGrad over any gradient method.

One wrapper, three reductions of the same noisy samples. A base method that is a
fixed sum of gradients (vanilla, gradient × input, guided backpropagation,
deconvnet, IG, Blur IG) joins the engine's stream directly: all noisy copies × all
of its points go through the model in full batches. Any other base method (Guided
IG) runs on chunks of noisy copies as one batch each.
"""

from __future__ import annotations

import inspect

import numpy as np

from salmap.errors import UsageError
from salmap.methods.engine import GaussianNoise, accumulate_batches, accumulate_gradients

__all__ = ["noise_wrapper", "smoothgrad", "squaregrad", "vargrad"]


def noise_wrapper(
    adapter,
    images: np.ndarray,
    targets: np.ndarray,
    *,
    score: str = "logit",
    base: str = "vanilla",
    samples: int = 50,
    sigma: float = 0.15,
    reduce: str = "mean",
    batch_size: int | None = None,
    seed: int = 0,
    **base_params,
) -> np.ndarray:
    """Average a gradient method over noisy copies of each image.

    Parameters
    ----------
    base : str
        The wrapped method's name in ``METHODS`` (``vanilla``, ``gradient-x-input``,
        ``integrated-gradients``, ``guided-ig``...); its parameters follow as keywords.
    samples : int
        Noisy copies per image (the paper: 50).
    sigma : float
        Noise standard deviation in [0, 1] image units (the paper: 10-20 % of the
        input range; 0.15).
    reduce : {"mean", "square", "variance"}
        SmoothGrad, SquareGrad or VarGrad.
    batch_size : int, optional
        Model evaluations per call (noisy copies × the base method's points).
    seed : int
        Same seed, same noise, same map.

    Returns
    -------
    N×H×W×3 float32 (signed for ``mean``, non-negative otherwise).
    """
    from salmap.methods import ALIASES, METHODS

    base = ALIASES.get(base, base)
    if base not in METHODS:
        raise UsageError(f"unknown base method {base!r}; choose one of {', '.join(METHODS)}")
    spec = METHODS[base]
    if spec.output != "attribution" or spec.name in _WRAPPERS:
        raise UsageError(f"noise wrappers apply to gradient methods, not to {base!r}")
    if sigma < 0:
        raise UsageError(f"sigma must be >= 0, got {sigma}")
    noise = GaussianNoise(float(sigma))
    if spec.plan is not None:
        context = {"adapter": adapter, "score": score}
        accepted = inspect.signature(spec.plan).parameters
        plan = spec.plan(**base_params, **{k: v for k, v in context.items() if k in accepted})
        return accumulate_gradients(
            adapter,
            images,
            targets,
            plan.rule,
            score=score,
            backward=plan.backward,
            samples=samples,
            noise=noise,
            reduce=reduce,
            batch_size=batch_size,
            seed=seed,
        )

    def method(adapter, noisy, noisy_targets):
        return spec.function(
            adapter, noisy, noisy_targets, score=score, batch_size=batch_size, **base_params
        )

    return accumulate_batches(
        method,
        adapter,
        images,
        targets,
        samples=samples,
        noise=noise,
        reduce=reduce,
        batch_size=batch_size,
        seed=seed,
    )


def smoothgrad(adapter, images, targets, **params) -> np.ndarray:
    """SmoothGrad: the mean of a gradient method over noisy copies (Smilkov et al. 2017).

    Parameters as :func:`noise_wrapper` (``base="vanilla"``, ``samples=50``,
    ``sigma=0.15``). Returns N×H×W×3 float32, signed.

    References
    ----------
    D. Smilkov, N. Thorat, B. Kim, F. Viégas, M. Wattenberg. SmoothGrad: removing
    noise by adding noise. ICML workshop 2017, Eq. 3 (n = 50, sigma 10-20 %).
    """
    return noise_wrapper(adapter, images, targets, reduce="mean", **params)


def squaregrad(adapter, images, targets, **params) -> np.ndarray:
    """SquareGrad: the mean of the squared method over noisy copies (Hooker et al. 2019).

    Non-negative. PAIR's ``GetSmoothedMask(magnitude=True)`` computes the same.

    References
    ----------
    S. Hooker, D. Erhan, P.-J. Kindermans, B. Kim. A Benchmark for Interpretability
    Methods in Deep Neural Networks. NeurIPS 2019, Sec. 3 (SG-SQ).
    """
    return noise_wrapper(adapter, images, targets, reduce="square", **params)


def vargrad(adapter, images, targets, **params) -> np.ndarray:
    """VarGrad: the variance of a gradient method over noisy copies.

    Non-negative.

    References
    ----------
    J. Adebayo, J. Gilmer, I. Goodfellow, B. Kim. Local Explanation Methods for Deep
    Neural Networks Lack Sensitivity to Parameter Values. ICLR workshop 2018;
    Hooker et al. 2019, Sec. 3 (VAR).
    """
    return noise_wrapper(adapter, images, targets, reduce="variance", **params)


_WRAPPERS = ("smoothgrad", "squaregrad", "vargrad")

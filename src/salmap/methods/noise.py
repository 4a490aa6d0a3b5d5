"""Noise wrappers: SmoothGrad, SquareGrad, VarGrad over any gradient method.

One wrapper, three reductions of the same noisy samples. A base method that is a
fixed sum of gradients (vanilla, gradient × input, guided backpropagation,
deconvnet, IG, Blur IG) joins the engine's stream directly: all noisy copies × all
of its points go through the model in full batches. Any other base method (Guided
IG) runs on chunks of noisy copies as one batch each.

Three ways to draw the noise, all seeded; the first half of a run's copies is a
fair run of half the size, so the map at half the samples comes free as a
convergence measure:

- ``mc``: independent Gaussian draws (Monte-Carlo), error O(n^-1/2);
- ``antithetic``: copies in pairs ``x + sigma z``, ``x - sigma z``; every odd-order
  term of the gradient in the noise cancels exactly within a pair;
- ``qmc``: antithetic pairs whose draws are stratified per pixel (a Latin
  hypercube: over ``m`` pairs each pixel's noise takes each of ``m`` equal-probability
  strata of the Gaussian once, in an order random per pixel), so the part of the
  gradient that is additive in the noise averages with error O(n^-3/2) instead of
  O(n^-1/2). (A scrambled Sobol' or Halton sequence does not reach the 10^5
  dimensions of an image; per pixel, one scrambled one-dimensional net padded by
  random permutations is what remains, and that is this.)
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtri

from salmap.errors import UsageError
from salmap.methods.engine import (
    GaussianNoise,
    accumulate_batches,
    accumulate_gradients,
    correlations,
    unit_rng,
)
from salmap.methods.registry import ALIASES, METHODS, method, method_defaults
from salmap.targets import as_targets

__all__ = [
    "SAMPLINGS",
    "AntitheticNoise",
    "StratifiedNoise",
    "stratified_uniform",
    "MAX_STRATA",
    "noise_wrapper",
    "smoothgrad",
    "squaregrad",
    "vargrad",
]


#: Most strata per pixel: longer runs are cut into independent blocks of this many
#: antithetic pairs (bounds the per-pixel permutation table to 64 × pixels × 2 bytes).
MAX_STRATA = 64


@functools.lru_cache(maxsize=2)
def _strata(seed: int, size: int, strata: int, block: int) -> np.ndarray:
    """For each of ``strata`` draws of block ``block``, the stratum of every pixel:
    an independent random permutation of ``0 .. strata - 1`` per pixel."""
    rng = np.random.default_rng([int(seed) % 2**32, 0x1A5, int(block)])
    table = np.tile(np.arange(strata, dtype=np.uint16), (size, 1))
    table = rng.permuted(table, axis=1).T.copy()
    table.flags.writeable = False
    return table


def stratified_uniform(index: int, size: int, strata: int, seed: int = 0) -> np.ndarray:
    """Draw ``index`` of a Latin hypercube over ``size`` pixels, float64 in (0, 1).

    Draws come in blocks of ``strata``; within a block each pixel takes every interval
    ``[c / strata, (c + 1) / strata)`` exactly once, in an order drawn independently
    for every pixel, at a uniform position inside it. Each draw on its own is uniform
    and independent across pixels, so estimates stay unbiased.

    References
    ----------
    M. D. McKay, R. J. Beckman, W. J. Conover. A Comparison of Three Methods for
    Selecting Values of Input Variables in the Analysis of Output from a Computer
    Code. Technometrics 21(2), 1979. A. B. Owen. Latin supercube sampling for very
    high-dimensional simulations. ACM TOMACS 8(1), 1998 (a scrambled one-dimensional
    net per coordinate, padded by random permutations).
    """
    block, position = divmod(int(index), int(strata))
    cells = _strata(int(seed), int(size), int(strata), block)[position]
    jitter = np.random.default_rng([int(seed) % 2**32, 0x717, int(index)]).random(size)
    return (cells + jitter) / strata


@functools.lru_cache(maxsize=2)
def _stratified_normal(index: int, size: int, strata: int, seed: int) -> np.ndarray:
    # Cached: the two copies of an antithetic pair use the same draw.
    noise = ndtri(stratified_uniform(index, size, strata, seed)).astype(np.float32)
    noise.flags.writeable = False
    return noise


@dataclass(frozen=True)
class AntitheticNoise:
    """Copies in pairs: ``x + sigma z`` (even index ``2j``) and ``x - sigma z`` (``2j + 1``),
    ``z`` drawn from the pair's own generator."""

    sigma: float = 0.15
    seed: int = 0

    def __call__(self, image: np.ndarray, rng: np.random.Generator, sample: int = 0) -> np.ndarray:
        pair = unit_rng(self.seed, sample // 2, 0xA7)
        noise = pair.standard_normal(image.shape, dtype=np.float32)
        sign = np.float32(1.0 if sample % 2 == 0 else -1.0)
        return image + sign * np.float32(self.sigma) * noise


@dataclass(frozen=True)
class StratifiedNoise:
    """Quasi-random Gaussian noise: copies ``2j`` and ``2j + 1`` are ``x ± sigma z_j``,
    ``z_j = Phi^-1(u_j)`` with ``u_j`` draw ``j`` of :func:`stratified_uniform` over
    ``strata`` strata (the number of pairs, up to :data:`MAX_STRATA`)."""

    sigma: float = 0.15
    seed: int = 0
    strata: int = MAX_STRATA

    def __call__(self, image: np.ndarray, rng: np.random.Generator, sample: int = 0) -> np.ndarray:
        noise = _stratified_normal(sample // 2, image.size, self.strata, self.seed)
        sign = np.float32(1.0 if sample % 2 == 0 else -1.0)
        return image + sign * np.float32(self.sigma) * noise.reshape(image.shape)


#: How the noisy copies are drawn (see the module docstring).
SAMPLINGS = {"mc": GaussianNoise, "antithetic": AntitheticNoise, "qmc": StratifiedNoise}


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
    sampling: str = "mc",
    tolerance: float | None = None,
    batch_size: int | None = None,
    seed: int = 0,
    info: dict | None = None,
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
    sampling : {"mc", "antithetic", "qmc"}
        How the noise is drawn (see the module docstring): plain Monte-Carlo (the
        paper), antithetic pairs, or scrambled quasi-random antithetic pairs. Use an
        even ``samples`` (a power of two is best) with the last two.
    tolerance : float, optional
        Converge, then stop: noisy copies come in rounds (8, then doubling) and an
        image stops when its map correlates at least ``1 - tolerance`` with its map at
        half the copies; ``samples`` is the cap. Copies are numbered, so a stopped run
        equals a fixed run of that many copies (``mc`` and ``antithetic`` sampling).
    batch_size : int, optional
        Model evaluations per call (noisy copies × the base method's points).
    seed : int
        Same seed, same noise, same map.
    info : dict, optional
        Filled with per-image lists: ``convergence``, the Pearson correlation of the
        returned attribution with the one from the first half of the samples (the same
        draws, no extra model calls; close to 1 means more samples would change
        little), ``evaluations``, the model evaluations used, and with ``tolerance``,
        ``samples``, the copies used.

    Returns
    -------
    N×H×W×3 float32 (signed for ``mean``, non-negative otherwise).
    """
    base = ALIASES.get(base, base)
    if base not in METHODS:
        raise UsageError(f"unknown base method {base!r}; choose one of {', '.join(METHODS)}")
    spec = METHODS[base]
    if spec.output != "attribution" or spec.name in _WRAPPERS:
        raise UsageError(f"noise wrappers apply to gradient methods, not to {base!r}")
    if sigma < 0:
        raise UsageError(f"sigma must be >= 0, got {sigma}")
    if sampling not in SAMPLINGS:
        raise UsageError(f"unknown sampling {sampling!r}; use {', '.join(SAMPLINGS)}")
    samples = int(samples)
    targets = as_targets(targets, len(images), score)
    if tolerance is not None and (sampling == "qmc" or spec.plan is None):
        raise UsageError(
            "tolerance needs mc or antithetic sampling and a base method that is a fixed "
            f"sum of gradients (not {sampling!r} sampling with {base!r})"
        )
    if tolerance is not None and not 0 < tolerance < 1:
        raise UsageError(f"tolerance must be between 0 and 1 (0.01), got {tolerance}")
    if sampling == "mc":
        noise = GaussianNoise(float(sigma))
    elif sampling == "antithetic":
        noise = AntitheticNoise(float(sigma), int(seed))
    else:
        noise = StratifiedNoise(float(sigma), int(seed), min(MAX_STRATA, max(1, -(-samples // 2))))
    checkpoint = samples // 2 if info is not None and samples >= 2 else None
    if spec.plan is not None:
        context = {"adapter": adapter, "score": score}
        accepted = inspect.signature(spec.plan).parameters
        plan = spec.plan(**base_params, **{k: v for k, v in context.items() if k in accepted})
        run = functools.partial(
            accumulate_gradients,
            rule=plan.rule,
            backward=plan.backward,
            noise=noise,
            batch_size=batch_size,
            seed=seed,
        )
        if tolerance is not None:
            return _until_converged(
                lambda rows, first, count, reduce_as: run(
                    adapter,
                    images[rows],
                    targets[rows],
                    samples=count,
                    reduce=reduce_as,
                    first_sample=first,
                ),
                len(images),
                samples,
                float(tolerance),
                reduce,
                info,
                plan.rule.count,
                pairs=sampling == "antithetic",
            )
        output = run(
            adapter, images, targets, samples=samples, reduce=reduce, checkpoint=checkpoint
        )
        return _report(output, info, samples * plan.rule.count)

    def method(adapter, noisy, noisy_targets):
        return spec.function(
            adapter, noisy, noisy_targets, score=score, batch_size=batch_size, **base_params
        )

    output = accumulate_batches(
        method,
        adapter,
        images,
        targets,
        samples=samples,
        noise=noise,
        reduce=reduce,
        batch_size=batch_size,
        seed=seed,
        checkpoint=checkpoint,
    )
    return _report(output, info, None)


#: The wrappers' parameters: :func:`noise_wrapper`'s own (``reduce`` is what tells them apart).
_NOISE_DEFAULTS = method_defaults(noise_wrapper, exclude=("reduce",))


def _until_converged(run, images, samples, tolerance, reduce, info, points, pairs):
    """Rounds of noisy copies (8, 16, 32, … up to ``samples``) until each image's map
    correlates ``>= 1 - tolerance`` with its map at half the copies.

    ``run(rows, first, count, "moments")`` returns the mean and mean of squares of
    copies ``first..first + count`` of images ``rows``; rounds are combined exactly."""
    totals: np.ndarray | None = None
    used = np.zeros(images, int)
    agreement = np.full(images, np.nan)
    active = np.arange(images)
    done = 0
    for stop in _doubling(8, samples, pairs):
        moments = run(active, done, stop - done, "moments") * (stop - done)
        if totals is None:
            totals = np.zeros((2, images, *moments.shape[2:]))
        previous = _reduced(totals[:, active] / max(done, 1), reduce)
        totals[:, active] += moments
        used[active] = stop
        if done and stop < samples:
            agreement[active] = correlations(previous, _reduced(totals[:, active] / stop, reduce))
            active = active[agreement[active] < 1 - tolerance]
        done = stop
        if not len(active):
            break
    if info is not None:
        info["samples"] = used.tolist()
        info["convergence"] = agreement.tolist()
        info["evaluations"] = (used * points).tolist()
    return _reduced(totals / used[None, :, None, None, None], reduce).astype(np.float32)


def _doubling(start: int, cap: int, pairs: bool):
    stop = min(start, cap)
    while True:
        if pairs and stop % 2 and stop < cap:
            stop += 1
        yield stop
        if stop >= cap:
            return
        stop = min(cap, 2 * stop)


def _reduced(moments: np.ndarray, reduce: str) -> np.ndarray:
    mean, square = moments
    if reduce == "mean":
        return mean
    if reduce == "square":
        return square
    return np.maximum(square - mean * mean, 0.0)


def _report(output, info: dict | None, evaluations: int | None) -> np.ndarray:
    """The attribution; with ``info``, its convergence against the half-sample map."""
    if info is None or not isinstance(output, tuple):
        if info is not None:  # one sample: nothing to compare with
            info["convergence"] = [float("nan")] * len(output)
            info["evaluations"] = [evaluations] * len(output)
        return output
    full, half = output
    info["convergence"] = [
        float(np.corrcoef(a.ravel(), b.ravel())[0, 1]) for a, b in zip(full, half, strict=True)
    ]
    info["evaluations"] = [evaluations] * len(full)
    return full


@method(
    "smoothgrad",
    "mean of any gradient method over noisy copies (Smilkov et al. 2017)",
    family="noise",
    defaults=_NOISE_DEFAULTS,
    reports=True,
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


@method(
    "squaregrad",
    "mean of the squared method over noisy copies (Hooker et al. 2019)",
    family="noise",
    signed=False,
    defaults=_NOISE_DEFAULTS,
)
def squaregrad(adapter, images, targets, **params) -> np.ndarray:
    """SquareGrad: the mean of the squared method over noisy copies (Hooker et al. 2019).

    Non-negative. PAIR's ``GetSmoothedMask(magnitude=True)`` computes the same.

    References
    ----------
    S. Hooker, D. Erhan, P.-J. Kindermans, B. Kim. A Benchmark for Interpretability
    Methods in Deep Neural Networks. NeurIPS 2019, Sec. 3 (SG-SQ).
    """
    return noise_wrapper(adapter, images, targets, reduce="square", **params)


@method(
    "vargrad",
    "variance of any gradient method over noisy copies (Adebayo et al. 2018)",
    family="noise",
    signed=False,
    defaults=_NOISE_DEFAULTS,
)
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

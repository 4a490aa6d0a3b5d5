"""Spectral residual saliency (Hou & Zhang, CVPR 2007)."""

from __future__ import annotations

import cv2
import numpy as np

from salmap.errors import UsageError
from salmap.static._features import check_rgb

__all__ = ["spectral_residual", "SPECTRAL_RESIDUAL_FLAVOURS"]

SPECTRAL_RESIDUAL_FLAVOURS = ("paper", "opencv")


def spectral_residual(
    image: np.ndarray,
    *,
    width: int = 64,
    size: tuple[int, int] | None = None,
    average_size: int = 3,
    sigma: float | None = None,
    flavour: str = "paper",
) -> np.ndarray:
    """Spectral residual saliency map.

    The grey image is shrunk to a small working size. With A(f) the amplitude and
    P(f) the phase of its Fourier transform, the log spectrum L(f) = log A(f) minus
    its local average h_n * L(f) is the *spectral residual* R(f) (eq. 4), the part of
    the spectrum not explained by the smooth 1/f trend of natural images. The
    saliency map is S(x) = g(x) * |F⁻¹[exp(R(f) + iP(f))]|² (eq. 5), smoothed by a
    Gaussian g, then resized to the image and divided by its maximum.

    Parameters
    ----------
    image : numpy.ndarray
        H×W×3 float32 RGB in [0, 1].
    width : int
        Working width in pixels (paper: 64); the height follows the aspect ratio.
    size : (width, height), optional
        Exact working size, ignoring the aspect ratio (the ``opencv`` flavour's
        default is 64×64).
    average_size : int
        Side n of the n×n averaging filter h_n on the log spectrum (paper: 3).
    sigma : float, optional
        Standard deviation of g in working-size pixels; 0 disables smoothing. The
        paper states σ = 8 without saying at which resolution. Default: 2.5 for
        ``paper`` (what the authors' published code applies to the 64-pixel-wide
        map), 8 truncated to a 5×5 kernel for ``opencv``.
    flavour : {"paper", "opencv"}
        ``paper`` follows the paper and its authors' published MATLAB code: the
        aspect ratio is kept, the image is low-passed while shrinking (area
        interpolation, like MATLAB's ``imresize``), the log spectrum is averaged
        with replicated borders, |F⁻¹[·]| is squared and then smoothed with zero
        padding (as MATLAB's ``imfilter``). ``opencv`` reproduces OpenCV contrib's
        ``StaticSaliencySpectralResidual``: 64×64 whatever the aspect ratio, plain
        bilinear shrinking (which aliases fine texture into the spectrum), mirrored
        borders, and |F⁻¹[·]| smoothed *before* squaring.

    Returns
    -------
    numpy.ndarray
        H×W float32 in [0, 1]; all zeros for a uniform image.

    References
    ----------
    X. Hou, L. Zhang. Saliency detection: a spectral residual approach. CVPR 2007,
    Section 3, eqs. (2)–(5).
    """
    if flavour not in SPECTRAL_RESIDUAL_FLAVOURS:
        raise UsageError(
            f"unknown flavour {flavour!r}; use one of {', '.join(SPECTRAL_RESIDUAL_FLAVOURS)}"
        )
    if average_size < 1:
        raise UsageError(f"average_size must be >= 1, got {average_size}")
    image = check_rgb(image)
    height, full_width = image.shape[:2]
    opencv = flavour == "opencv"
    if size is None and opencv:
        size = (64, 64)
    if size is not None:
        work_w, work_h = int(size[0]), int(size[1])
    else:
        work_w = int(width)
        work_h = max(1, int(round(height * work_w / full_width)))
    if work_w < 2 or work_h < 2:
        raise UsageError(
            f"spectral residual working size must be at least 2×2, got {work_w}×{work_h}"
        )
    if sigma is None:
        sigma = 8.0 if opencv else 2.5
    if sigma < 0:
        raise UsageError(f"sigma must be >= 0, got {sigma}")

    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    shrinking = work_w < full_width or work_h < height
    interpolation = cv2.INTER_AREA if shrinking and not opencv else cv2.INTER_LINEAR
    small = cv2.resize(grey, (work_w, work_h), interpolation=interpolation).astype(np.float64)
    if not float(small.max() - small.min()) > 1e-6:
        # A uniform image has no spectrum besides the mean: nothing stands out.
        return np.zeros((height, full_width), np.float32)
    spectrum = np.fft.fft2(small)
    # log(0) is -inf for a spectrum line that vanishes exactly; the floor keeps it finite.
    log_amplitude = np.log(np.maximum(np.abs(spectrum), 1e-300))
    phase = np.angle(spectrum)
    average_border = cv2.BORDER_REFLECT_101 if opencv else cv2.BORDER_REPLICATE
    average = cv2.blur(log_amplitude, (average_size, average_size), borderType=average_border)
    residual = log_amplitude - average
    magnitude = np.abs(np.fft.ifft2(np.exp(residual + 1j * phase)))
    if opencv:
        if sigma > 0:
            magnitude = cv2.GaussianBlur(magnitude, (5, 5), sigma)
        saliency = magnitude**2
    else:
        saliency = magnitude**2
        if sigma > 0:
            saliency = cv2.GaussianBlur(saliency, (0, 0), sigma, borderType=cv2.BORDER_CONSTANT)
    saliency = cv2.resize(
        saliency.astype(np.float32), (full_width, height), interpolation=cv2.INTER_LINEAR
    )
    peak = float(saliency.max())
    return (saliency / peak if peak > 0 else saliency).astype(np.float32)

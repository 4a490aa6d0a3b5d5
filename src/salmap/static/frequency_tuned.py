"""Frequency-tuned saliency (Achanta, Hemami, Estrada & Süsstrunk, CVPR 2009)."""

from __future__ import annotations

import cv2
import numpy as np

from salmap.static._features import check_rgb

__all__ = ["frequency_tuned"]

#: The paper's 5×5 separable binomial low-pass kernel, [1 4 6 4 1] / 16.
_BINOMIAL = np.array([1.0, 4.0, 6.0, 4.0, 1.0], dtype=np.float32) / 16.0


def frequency_tuned(image: np.ndarray) -> np.ndarray:
    """Frequency-tuned saliency: distance of each blurred pixel from the mean colour.

    S(x, y) = ‖I_μ − I_ωhc(x, y)‖ (eq. 1), the Euclidean distance in CIE L*a*b*
    between the image's mean colour I_μ and the pixel's colour after a small
    Gaussian blur I_ωhc (the 5×5 binomial kernel), which removes fine texture and
    noise while keeping almost all of the image's frequency band, so whole objects
    light up uniformly with well-defined borders.

    Parameters
    ----------
    image : numpy.ndarray
        H×W×3 float32 RGB in [0, 1] (sRGB, D65).

    Returns
    -------
    numpy.ndarray
        H×W float32, in L*a*b* units (ΔE, 0 to about 200); 0 everywhere for a
        uniform image.

    References
    ----------
    R. Achanta, S. Hemami, F. Estrada, S. Süsstrunk. Frequency-tuned salient region
    detection. CVPR 2009, Section 3.2, eq. (1).
    """
    image = check_rgb(image)
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2Lab)  # float input: L in [0, 100]
    mean = lab.reshape(-1, 3).mean(axis=0, dtype=np.float64)
    blurred = cv2.sepFilter2D(lab, cv2.CV_32F, _BINOMIAL, _BINOMIAL, borderType=cv2.BORDER_REFLECT)
    return np.linalg.norm(blurred - mean.astype(np.float32), axis=2).astype(np.float32)

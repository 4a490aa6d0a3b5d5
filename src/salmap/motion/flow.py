"""Dense optical flow and the camera's own motion.

A camera that pans, tilts or shakes moves every pixel; what is *salient* is what
moves differently from the scene. :func:`estimate_camera_motion` fits the dominant
global motion (a homography, an affine map or a translation) to a grid of flow
vectors with RANSAC, so the moving objects are outliers of the fit;
:func:`camera_flow` renders that fit as a flow field, and the residual
``flow - camera_flow`` is what the scene's own motion does not explain.

Flow convention: ``flow[y, x] = (dx, dy)`` is the displacement of pixel ``(x, y)`` of
the *first* image to its position in the second, in pixels: ``first(p) ≈
second(p + flow(p))``.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from salmap.errors import UsageError

__all__ = [
    "FLOW_METHODS",
    "DIS_PRESETS",
    "CAMERA_MODELS",
    "OpticalFlow",
    "optical_flow",
    "CameraMotion",
    "estimate_camera_motion",
    "camera_flow",
]

FLOW_METHODS = ("dis", "farneback")
DIS_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}
CAMERA_MODELS = ("homography", "affine", "translation", "none")


def _grey(image: np.ndarray) -> np.ndarray:
    """8-bit grey from H×W or H×W×3 RGB (uint8, or float in [0, 1])."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        image = (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    return np.ascontiguousarray(image)  # DIS refuses views (crops, strides)


class OpticalFlow:
    """A reusable dense optical-flow estimator (build once, call per frame pair).

    Parameters
    ----------
    method : {"dis", "farneback"}
        ``dis``: Dense Inverse Search (Kroeger et al. 2016), fast enough for real
        time. ``farneback``: polynomial expansion (Farnebäck 2003), slower, smoother.
    preset : {"ultrafast", "fast", "medium"}
        DIS speed/quality preset (ignored by Farnebäck). The finest pyramid level
        is kept at least 320 pixels wide (or the full frame), finer than the presets
        alone on frames up to 1280 pixels wide.

    References
    ----------
    T. Kroeger, R. Timofte, D. Dai, L. Van Gool, "Fast Optical Flow using Dense
    Inverse Search", ECCV 2016.
    G. Farnebäck, "Two-Frame Motion Estimation Based on Polynomial Expansion",
    SCIA 2003.
    """

    def __init__(self, method: str = "dis", preset: str = "fast") -> None:
        if method not in FLOW_METHODS:
            raise UsageError(
                f"unknown flow method {method!r}; use one of {', '.join(FLOW_METHODS)}"
            )
        if preset not in DIS_PRESETS:
            raise UsageError(f"unknown DIS preset {preset!r}; use one of {', '.join(DIS_PRESETS)}")
        self.method = method
        self.preset = preset
        self._dis = cv2.DISOpticalFlow_create(DIS_PRESETS[preset]) if method == "dis" else None
        self._preset_scale = self._dis.getFinestScale() if self._dis is not None else 0
        self._width = None

    def __call__(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        """Flow from ``first`` to ``second`` (same size; grey or RGB): H×W×2 float32 pixels."""
        first, second = _grey(first), _grey(second)
        if first.shape != second.shape:
            raise UsageError(
                f"flow needs two images of one size, not {first.shape} and {second.shape}"
            )
        if self._dis is not None:
            if first.shape[1] != self._width:
                self._width = first.shape[1]
                self._dis.setFinestScale(_finest_scale(self._width, self._preset_scale))
            return self._dis.calc(first, second, None)
        # OpenCV's documented example parameters: 3 levels halving the size, a 15-pixel
        # window, 3 iterations, polynomial neighbourhood 5 with sigma 1.2.
        return cv2.calcOpticalFlowFarneback(first, second, None, 0.5, 3, 15, 3, 5, 1.2, 0)


#: DIS stops refining at a pyramid level at least this wide (see :func:`_finest_scale`).
MIN_FLOW_WIDTH = 320


def _finest_scale(width: int, preset_scale: int) -> int:
    """The finest DIS pyramid level for frames ``width`` pixels wide.

    The presets stop refining at 1/4 (ultrafast, fast) or 1/2 (medium) resolution
    whatever the frame size. That level is too coarse for small objects: on 160×120
    test videos the IoU with the moving disks fell from 0.8 to under 0.1, and the
    walkers of OpenCV's ``vtest.avi`` at 640 pixels (1-2 pixels/frame) came out at
    half their speed. Keeping the finest level at least ``MIN_FLOW_WIDTH`` wide
    costs ~3× the preset's flow time at 640×480 and fixes both."""
    levels = int(np.floor(np.log2(max(width, 1) / MIN_FLOW_WIDTH))) if width > 0 else 0
    return int(min(preset_scale, max(0, levels)))


def optical_flow(
    first: np.ndarray, second: np.ndarray, method: str = "dis", preset: str = "fast"
) -> np.ndarray:
    """Dense optical flow between two images (one-off form of :class:`OpticalFlow`).

    Returns
    -------
    numpy.ndarray
        H×W×2 float32: ``(dx, dy)`` in pixels taking each pixel of ``first`` to ``second``.
    """
    return OpticalFlow(method, preset)(first, second)


@dataclass(frozen=True)
class CameraMotion:
    """The dominant global motion of a flow field.

    Attributes
    ----------
    matrix : numpy.ndarray
        3×3 float64 homography taking a pixel ``(x, y, 1)`` of the first image to the
        second (identity for ``model="none"``).
    model : str
        Which model was fitted.
    inliers : float
        Fraction of sampled flow vectors the fit explains within the RANSAC threshold,
        in [0, 1] (a low value means no single motion dominates the scene).
    size : (width, height) or None
        Size of the images the fit was made on.
    """

    matrix: np.ndarray
    model: str
    inliers: float
    size: tuple[int, int] | None = None

    def displacement(self, x: float, y: float) -> tuple[float, float]:
        """Where the camera motion moves pixel ``(x, y)``, minus ``(x, y)``, in pixels."""
        u, v, w = self.matrix @ np.array([x, y, 1.0])
        return float(u / w - x), float(v / w - y)

    @property
    def translation(self) -> tuple[float, float]:
        """Displacement of the image centre in pixels (of the origin when ``size`` is
        unknown): for a pan, the pan itself; robust to the small rotation and zoom
        terms a fit picks up, which move far corners more than the centre."""
        if self.size is None:
            return self.displacement(0.0, 0.0)
        return self.displacement((self.size[0] - 1) / 2, (self.size[1] - 1) / 2)


def _sample_grid(height: int, width: int, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """Grid positions (ys, xs), away from the borders where flow is least reliable."""
    step = max(2, int(np.sqrt(height * width / max_points)))
    margin_y, margin_x = max(step // 2, height // 20), max(step // 2, width // 20)
    ys = np.arange(margin_y, height - margin_y, step)
    xs = np.arange(margin_x, width - margin_x, step)
    return ys, xs


def estimate_camera_motion(
    flow: np.ndarray,
    model: str = "homography",
    threshold: float = 1.0,
    max_points: int = 1500,
) -> CameraMotion:
    """Fit the dominant global motion to a dense flow field with RANSAC.

    Parameters
    ----------
    flow : numpy.ndarray
        H×W×2 flow in pixels (see the module's convention).
    model : {"homography", "affine", "translation", "none"}
        ``homography`` (8 parameters) models any camera rotation, and translation over
        a plane; ``affine`` (6) is enough for pans and zooms with a distant scene;
        ``translation`` is the median flow; ``none`` assumes a still camera.
    threshold : float
        RANSAC inlier threshold, in pixels of reprojection error.
    max_points : int
        How many flow vectors (on a regular grid) the fit uses: the fit's cost
        does not grow with the image size.

    Returns
    -------
    CameraMotion

    References
    ----------
    M. A. Fischler, R. C. Bolles, "Random Sample Consensus", Comm. ACM 24(6), 1981.
    """
    if model not in CAMERA_MODELS:
        raise UsageError(f"unknown camera model {model!r}; use one of {', '.join(CAMERA_MODELS)}")
    height, width = flow.shape[:2]
    if model == "none":
        return CameraMotion(np.eye(3), model, 1.0, (width, height))
    ys, xs = _sample_grid(height, width, max_points)
    grid_x, grid_y = np.meshgrid(xs.astype(np.float32), ys.astype(np.float32))
    sampled = flow[ys[:, None], xs[None, :]]
    source = np.stack([grid_x, grid_y], axis=-1).reshape(-1, 2)
    target = source + sampled.reshape(-1, 2)
    matrix, mask = None, None
    if model == "translation" or len(source) < 8:
        shift = np.median(target - source, axis=0)
        matrix = np.array([[1, 0, shift[0]], [0, 1, shift[1]], [0, 0, 1]], np.float64)
        residual = np.linalg.norm(target - source - shift, axis=1)
        inliers = float(np.mean(residual <= threshold))
        return CameraMotion(matrix, "translation", inliers, (width, height))
    if model == "homography":
        matrix, mask = cv2.findHomography(source, target, cv2.RANSAC, threshold, maxIters=500)
    else:
        affine, mask = cv2.estimateAffine2D(
            source, target, method=cv2.RANSAC, ransacReprojThreshold=threshold, maxIters=500
        )
        if affine is not None:
            matrix = np.vstack([affine, [0.0, 0.0, 1.0]])
    if matrix is None or not np.all(np.isfinite(matrix)):
        # Degenerate sample (a blank scene): fall back to the median translation.
        return estimate_camera_motion(flow, "translation", threshold, max_points)
    matrix = np.asarray(matrix, np.float64) / matrix[2, 2]
    return CameraMotion(matrix, model, float(np.mean(mask)), (width, height))


def camera_flow(motion: CameraMotion | np.ndarray, height: int, width: int) -> np.ndarray:
    """The flow field a global motion induces: ``H·p − p`` at every pixel, H×W×2 float32."""
    matrix = motion.matrix if isinstance(motion, CameraMotion) else np.asarray(motion)
    xs = np.arange(width, dtype=np.float32)[None, :]
    ys = np.arange(height, dtype=np.float32)[:, None]
    m = matrix.astype(np.float32) / np.float32(matrix[2, 2])
    flow = np.empty((height, width, 2), np.float32)
    # Separable sums: each term depends on x or on y only, so broadcasting costs
    # one full-size add per term instead of a 3×3 product per pixel.
    if m[2, 0] == 0 and m[2, 1] == 0:
        flow[..., 0] = (m[0, 0] - 1) * xs + (m[0, 1] * ys + m[0, 2])
        flow[..., 1] = m[1, 0] * xs + ((m[1, 1] - 1) * ys + m[1, 2])
    else:
        w = m[2, 0] * xs + (m[2, 1] * ys + m[2, 2])
        flow[..., 0] = (m[0, 0] * xs + (m[0, 1] * ys + m[0, 2])) / w - xs
        flow[..., 1] = (m[1, 0] * xs + (m[1, 1] * ys + m[1, 2])) / w - ys
    return flow

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
    "visible_mask",
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
        in [0, 1] (a low value means no single motion dominates the scene, or a shot
        change: no motion links the two images).
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
    valid: np.ndarray | None = None,
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
    valid : numpy.ndarray, optional
        H×W bool: the flow vectors to trust (e.g. :func:`visible_mask`); the others
        are left out of the fit (all are used when fewer than 8 would remain).

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
    source = np.stack([grid_x, grid_y], axis=-1).reshape(-1, 2)
    target = source + flow[ys[:, None], xs[None, :]].reshape(-1, 2)
    keep = slice(None)
    if valid is not None and valid[ys[:, None], xs[None, :]].sum() >= 8:
        keep = valid[ys[:, None], xs[None, :]].ravel()
    matrix = _fit(source[keep], target[keep], model, threshold)
    if matrix is None:
        # Degenerate sample (a blank scene): fall back to the median translation.
        model = "translation"
        matrix = _fit(source[keep], target[keep], model, threshold)
    # Inliers among all samples, trusted or not: a shot change leaves almost none.
    moved = cv2.perspectiveTransform(source[None], matrix)[0]
    inliers = float(np.mean(np.linalg.norm(moved - target, axis=1) <= threshold))
    return CameraMotion(matrix, model, inliers, (width, height))


def _fit(source, target, model: str, threshold: float) -> np.ndarray | None:
    """3×3 matrix of a RANSAC fit of ``model`` to point pairs, or None when degenerate."""
    if model == "translation" or len(source) < 8:
        shift = np.median(target - source, axis=0)
        return np.array([[1, 0, shift[0]], [0, 1, shift[1]], [0, 0, 1]], np.float64)
    if model == "homography":
        matrix, _ = cv2.findHomography(source, target, cv2.RANSAC, threshold, maxIters=500)
    else:
        affine, _ = cv2.estimateAffine2D(
            source, target, method=cv2.RANSAC, ransacReprojThreshold=threshold, maxIters=500
        )
        matrix = None if affine is None else np.vstack([affine, [0.0, 0.0, 1.0]])
    if matrix is None or not np.all(np.isfinite(matrix)) or abs(matrix[2, 2]) < 1e-12:
        return None
    return np.asarray(matrix, np.float64) / matrix[2, 2]


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


def visible_mask(flow: np.ndarray, reverse: np.ndarray, tolerance: float = 0.01) -> np.ndarray:
    """Pixels whose flow the reverse flow confirms: seen in both images.

    A pixel ``p`` of the first image is kept when following ``flow`` to the second
    image and ``reverse`` back lands near ``p`` again: ``|w(p) + ŵ(p + w(p))|² <=
    tolerance·(|w|² + |ŵ|²) + 0.5`` (Sundaram et al.'s forward–backward test).
    Background that the second image does not show (occluded by a moving object, or
    out of the frame) fails it, since its flow is only a guess.

    Parameters
    ----------
    flow, reverse : numpy.ndarray
        H×W×2 flows first → second and second → first, in pixels.
    tolerance : float
        Relative tolerance of the test (0.01 in the paper).

    Returns
    -------
    numpy.ndarray
        H×W bool, True where the flow is confirmed.

    References
    ----------
    N. Sundaram, T. Brox, K. Keutzer, "Dense Point Trajectories by GPU-Accelerated
    Large Displacement Optical Flow", ECCV 2010, eq. (5).
    """
    height, width = flow.shape[:2]
    map_x = flow[..., 0] + np.arange(width, dtype=np.float32)[None, :]
    map_y = flow[..., 1] + np.arange(height, dtype=np.float32)[:, None]
    back = cv2.remap(reverse, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    error = cv2.magnitude(flow[..., 0] + back[..., 0], flow[..., 1] + back[..., 1]) ** 2
    norms = np.einsum("...i,...i->...", flow, flow) + np.einsum("...i,...i->...", back, back)
    inside = (map_x >= 0) & (map_x <= width - 1) & (map_y >= 0) & (map_y <= height - 1)
    return (error <= tolerance * norms + 0.5) & inside

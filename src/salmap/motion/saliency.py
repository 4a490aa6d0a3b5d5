"""Motion saliency: what moves differently from the scene, frame by frame.

For each frame ``t`` (after Itti & Baldi's and Mahadevan & Vasconcelos' observation
that motion contrast, not motion itself, draws the eye under camera motion):

1. dense optical flow from frame ``t`` back to frame ``t-1`` (:class:`OpticalFlow`),
   at a bounded processing width;
2. the camera's own motion fitted to the flow with RANSAC and subtracted
   (:func:`estimate_camera_motion`, :func:`camera_flow`);
3. the residual speed ``|flow − camera_flow|`` smoothed in space (Gaussian) and in
   time (an exponential moving average whose history is warped by the camera
   motion, so a pan does not smear it);
4. optionally fused with a static saliency map, as the motion channel of the
   Itti–Koch model is fused with its colour, intensity and orientation channels.

The map of frame ``t`` lies on frame ``t``'s own pixel grid; the first frame uses
the flow towards the second. Frames are processed one at a time: memory does not
grow with the video's length.

References
----------
L. Itti, C. Koch, E. Niebur, "A Model of Saliency-Based Visual Attention for Rapid
Scene Analysis", IEEE TPAMI 20(11), 1998 (channels fused after normalisation).
L. Itti, N. Dhavale, F. Pighin, "Realistic avatar eye and head animation using a
neurobiological model of visual attention", SPIE 2003 (the motion channel).
V. Mahadevan, N. Vasconcelos, "Spatiotemporal Saliency in Dynamic Scenes", IEEE
TPAMI 32(1), 2010 (saliency under camera motion).
"""

from __future__ import annotations

import importlib
import itertools
import os
import time
from collections.abc import Callable, Iterable, Iterator

import cv2
import numpy as np

from salmap.errors import InputError, UsageError
from salmap.maps import SaliencyMap, normalize_map
from salmap.motion.flow import (
    CAMERA_MODELS,
    CameraMotion,
    OpticalFlow,
    camera_flow,
    estimate_camera_motion,
)

__all__ = ["motion_saliency", "DEFAULT_MAX_WIDTH"]

#: Flow is computed on frames at most this wide; maps are resized back to the video.
#: The DIS presets refine down to a level 320 pixels wide at most for 640-pixel
#: frames anyway (see :func:`salmap.motion.flow._finest_scale`): working at 320 gave
#: the same maps on ``vtest.avi`` and the synthetic tests, 25-35 % faster.
DEFAULT_MAX_WIDTH = 320


def motion_saliency(
    video: str | os.PathLike | Iterable[np.ndarray],
    *,
    start: int = 0,
    end: int | None = None,
    every: int = 1,
    flow: str = "dis",
    preset: str = "fast",
    camera: str = "homography",
    max_width: int | None = DEFAULT_MAX_WIDTH,
    spatial_sigma: float = 0.01,
    temporal: float = 0.3,
    static: str | Callable[[np.ndarray], np.ndarray] | None = None,
    static_weight: float = 0.3,
    saturation: float = 2.0,
) -> Iterator[SaliencyMap]:
    """Motion saliency of every selected frame of a video, streamed one frame at a time.

    Parameters
    ----------
    video : path or iterable of arrays
        A video file (see :func:`salmap.io.video.iter_frames`), or frames: H×W×3 RGB
        uint8 or float in [0, 1], or H×W grey, all one size (a list, an array
        N×H×W×3, or a generator — a live camera works).
    start, end, every : int
        Frame range ``[start, end)`` and stride, in the source's frame numbers. With
        ``every > 1`` the flow spans ``every`` source frames.
    flow : {"dis", "farneback"}
        Optical-flow algorithm (see :class:`salmap.motion.OpticalFlow`).
    preset : {"ultrafast", "fast", "medium"}
        DIS speed/quality preset.
    camera : {"homography", "affine", "translation", "none"}
        Model of the camera's motion removed from the flow (``none``: still camera).
    max_width : int or None
        Processing width in pixels: wider frames are shrunk for the flow, and maps are
        resized back. ``None`` processes at full resolution.
    spatial_sigma : float
        Standard deviation of the Gaussian smoothing, as a fraction of the frame width.
    temporal : float
        Weight of the past in the moving average over frames, in [0, 1) (0: none).
    static : str or callable, optional
        Fuse with static saliency: the name of a :func:`salmap.static_saliency` method,
        or a function ``image -> H×W map``. The fused map is then unitless, in [0, 1].
    static_weight : float
        Share of the static map in the fusion, in [0, 1].
    saturation : float
        Only with ``static``: residual speed (pixels per frame, at the video's
        resolution) that counts as full motion saliency before fusing.

    Yields
    ------
    SaliencyMap
        One per selected frame, in order:

        - ``map``: H×W float32 at the video's resolution — the smoothed residual
          speed in pixels per frame (or the fused [0, 1] map with ``static``);
        - ``image``: the frame, H×W×3 float32 RGB in [0, 1];
        - ``method``: ``motion-dis`` or ``motion-farneback``, with ``+`` and the
          static method's name (or ``+custom``) when fused;
        - ``extras["frame"]``: index in the source; ``extras["time"]``: seconds (for
          frames given as arrays, the frame number: no rate is known);
        - ``extras["flow"]``: the velocity of each pixel of this frame, pointing the
          way it moves, H'×W'×2 on the processing grid, in video pixels per frame;
        - ``extras["camera"]``: :class:`CameraMotion` taking the previous frame's
          processing pixels to this frame's (the scene's motion);
        - ``extras["scale"]``: video pixels per processing pixel;
        - ``extras["static"]``: the normalised static map, when fused.

    Raises
    ------
    InputError
        A video file that cannot be read, or fewer than two frames in the range.
    UsageError
        An invalid option.

    Examples
    --------
    >>> from salmap.motion import synthetic_video
    >>> frames = [frame for frame, _ in synthetic_video(10)]
    >>> maps = [result.map for result in motion_saliency(frames)]
    >>> len(maps), maps[0].shape
    (10, (120, 160))
    """
    _check_options(every, camera, max_width, spatial_sigma, temporal, static_weight, saturation)
    static_function = _static_function(static)
    estimator = OpticalFlow(flow, preset)  # validates flow and preset
    params = {
        "flow": flow,
        "preset": preset if flow == "dis" else None,
        "camera": camera,
        "max_width": max_width,
        "spatial_sigma": spatial_sigma,
        "temporal": temporal,
        "every": every,
        "static": static if isinstance(static, str) or static is None else "custom",
        "static_weight": static_weight if static is not None else None,
    }
    frames = _frames(video, start, end, every)
    state = _Pipeline(estimator, camera, max_width, spatial_sigma, temporal)
    previous = None
    count = 0
    for index, seconds, image in frames:
        count += 1
        tick = time.perf_counter()
        grey = state.prepare(image)
        if previous is None:
            previous = (index, seconds, image, grey, tick)
            continue
        if count == 2:
            # The first frame's map comes from the flow towards the second frame.
            p_index, p_seconds, p_image, p_grey, p_tick = previous
            raw, motion, flow_field = state.step(p_grey, grey, first=True)
            yield _result(
                state, p_image, raw, motion, flow_field, p_index, p_seconds, params,
                static_function, static_weight, saturation, p_tick
            )  # fmt: skip
        raw, motion, flow_field = state.step(grey, previous[3])
        yield _result(
            state, image, raw, motion, flow_field, index, seconds, params,
            static_function, static_weight, saturation, tick
        )  # fmt: skip
        previous = (index, seconds, image, grey, tick)
    if count < 2:
        source = video if isinstance(video, (str, os.PathLike)) else "the frames given"
        what = "no frame" if count == 0 else "only one frame"
        raise InputError(
            f"{source}: {what} in the selected range; motion saliency needs at least two"
        )


def _check_options(every, camera, max_width, spatial_sigma, temporal, static_weight, saturation):
    if int(every) != every or every < 1:
        raise UsageError(f"frame stride (every) must be a whole number >= 1, not {every}")
    if camera not in CAMERA_MODELS:
        raise UsageError(f"unknown camera model {camera!r}; use one of {', '.join(CAMERA_MODELS)}")
    if max_width is not None and (int(max_width) != max_width or max_width < 16):
        raise UsageError(f"max width must be a whole number of pixels >= 16, not {max_width}")
    if not 0 <= spatial_sigma <= 0.2:
        raise UsageError(
            f"spatial sigma is a fraction of the width in [0, 0.2], not {spatial_sigma}"
        )
    if not 0 <= temporal < 1:
        raise UsageError(f"temporal smoothing must be in [0, 1), not {temporal}")
    if not 0 <= static_weight <= 1:
        raise UsageError(f"static weight must be in [0, 1], not {static_weight}")
    if not saturation > 0:
        raise UsageError(
            f"saturation must be a positive speed in pixels per frame, not {saturation}"
        )


def _static_function(static):
    """Resolve the fusion partner: a callable, a method name, or nothing."""
    if static is None or callable(static):
        return static
    salmap = importlib.import_module("salmap")
    static_saliency = getattr(salmap, "static_saliency", None)
    if static_saliency is None:
        raise UsageError(
            "fusing with static saliency needs salmap.static_saliency, which this "
            "installation lacks; pass a function image -> map instead"
        )
    known = getattr(importlib.import_module("salmap.static"), "STATIC_METHODS", None)
    if known is not None and static not in known:
        raise UsageError(
            f"unknown static saliency method {static!r}; use one of {', '.join(known)}"
        )

    def compute(image: np.ndarray) -> np.ndarray:
        result = static_saliency(image, method=static)
        return result.map if isinstance(result, SaliencyMap) else np.asarray(result)

    return compute


def _frames(
    video, start: int, end: int | None, every: int
) -> Iterator[tuple[int, float, np.ndarray]]:
    """``(index, seconds, uint8-or-float frame)`` from a file or from arrays."""
    if isinstance(video, (str, os.PathLike)):
        from salmap.io.video import iter_frames, read_video_info

        read_video_info(video)  # refuse still images and broken files before any work
        for frame in iter_frames(video, start, end, every, dtype="uint8"):
            yield frame.index, frame.time, frame.image
        return
    if isinstance(video, np.ndarray) and (
        video.ndim == 2 or (video.ndim == 3 and video.shape[-1] in (3, 4))
    ):
        raise InputError(
            f"got a single image of shape {video.shape}; motion saliency needs a sequence "
            "of frames (an N×H×W×3 array, a list of frames, or a video file)"
        )
    if end is not None and end <= start:
        raise UsageError(f"end frame must be greater than start ({start}), not {end}")
    shape = None
    for index, frame in enumerate(itertools.islice(video, start, end)):
        if (index % every) != 0:
            continue
        frame = np.asarray(frame)
        if frame.ndim == 3 and frame.shape[2] == 1:
            frame = frame[..., 0]
        if frame.ndim not in (2, 3) or (frame.ndim == 3 and frame.shape[2] != 3):
            raise InputError(
                f"frame {start + index} has shape {frame.shape}; expected H×W×3 or H×W"
            )
        if shape is None:
            shape = frame.shape
        elif frame.shape != shape:
            raise InputError(f"frame {start + index} is {frame.shape}, not {shape} like the first")
        if frame.dtype != np.uint8:
            if not np.issubdtype(frame.dtype, np.floating):
                raise InputError(f"frames must be uint8 or float in [0, 1], not {frame.dtype}")
            if not np.all(np.isfinite(frame)) or frame.min() < -1e-6 or frame.max() > 1 + 1e-6:
                raise InputError(f"frame {start + index} has values outside [0, 1]")
        yield start + index, float(start + index), frame


class _Pipeline:
    """The per-frame state: flow estimator, processing size, smoothed history."""

    def __init__(self, estimator, camera, max_width, spatial_sigma, temporal) -> None:
        self.estimator = estimator
        self.camera = camera
        self.max_width = max_width
        self.spatial_sigma = spatial_sigma
        self.temporal = temporal
        self.history: np.ndarray | None = None
        self.video_size: tuple[int, int] | None = None  # (width, height)
        self.size: tuple[int, int] | None = None  # processing (width, height)
        self.scale = 1.0

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """Grey uint8 at the processing size."""
        if image.dtype != np.uint8:
            image = (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
        if self.video_size is None:
            height, width = grey.shape
            self.video_size = (width, height)
            if self.max_width is not None and width > self.max_width:
                self.size = (int(self.max_width), max(8, round(height * self.max_width / width)))
            else:
                self.size = (width, height)
            self.scale = width / self.size[0]
        if (grey.shape[1], grey.shape[0]) != self.size:
            grey = cv2.resize(grey, self.size, interpolation=cv2.INTER_AREA)
        return grey

    def step(self, current: np.ndarray, other: np.ndarray, first: bool = False):
        """Residual speed on ``current``'s grid from the flow ``current -> other``.

        Returns the smoothed map at the processing size (pixels per frame, processing
        pixels), the camera motion and the flow.
        """
        flow = self.estimator(current, other)
        motion = estimate_camera_motion(flow, self.camera)
        width, height = self.size
        if self.camera != "none":
            induced = camera_flow(motion, height, width)
            residual = flow - induced
        else:
            induced, residual = None, flow
        speed = cv2.magnitude(residual[..., 0], residual[..., 1])
        if induced is not None:
            # Where the camera brings in new scene content, the other frame never saw
            # it and the flow is a guess: no evidence of motion there.
            xs = np.arange(width, dtype=np.float32)[None, :] + induced[..., 0]
            ys = np.arange(height, dtype=np.float32)[:, None] + induced[..., 1]
            unseen = (xs < 0) | (xs > width - 1) | (ys < 0) | (ys > height - 1)
            speed[unseen] = 0.0
        sigma = self.spatial_sigma * width
        if sigma > 0:
            speed = cv2.GaussianBlur(speed, (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)
        if self.temporal > 0 and self.history is not None and not first:
            # The history lies on the previous frame's grid; the camera maps this frame's
            # pixels there, so sample it through the camera homography.
            past = cv2.warpPerspective(
                self.history,
                motion.matrix,
                (width, height),
                flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                borderMode=cv2.BORDER_REPLICATE,
            )
            speed = self.temporal * past + (1.0 - self.temporal) * speed
        self.history = speed
        # Report motion forwards, as people read it: the flow to the previous frame,
        # reversed, is each pixel's velocity; the first frame's flow already points on.
        if not first:
            flow = -flow
            inverse = np.linalg.inv(motion.matrix)
            motion = CameraMotion(
                inverse / inverse[2, 2], motion.model, motion.inliers, motion.size
            )
        return speed, motion, flow


def _result(
    state: _Pipeline,
    image: np.ndarray,
    speed: np.ndarray,
    motion: CameraMotion,
    flow: np.ndarray,
    index: int,
    seconds: float,
    params: dict,
    static_function,
    static_weight: float,
    saturation: float,
    tick: float,
) -> SaliencyMap:
    width, height = state.video_size
    # Speeds were measured in processing pixels; report them in video pixels.
    saliency = speed * np.float32(state.scale) if state.scale != 1 else speed
    if saliency.shape != (height, width):
        saliency = cv2.resize(saliency, (width, height), interpolation=cv2.INTER_LINEAR)
    rgb = _float_rgb(image)
    extras = {
        "frame": int(index),
        "time": float(seconds),
        "flow": flow * np.float32(state.scale) if state.scale != 1 else flow,
        "camera": motion,
        "scale": state.scale,
    }
    method = f"motion-{params['flow']}"
    if static_function is not None:
        static_map = np.asarray(static_function(rgb), np.float32)
        if static_map.shape != (height, width):
            static_map = cv2.resize(static_map, (width, height), interpolation=cv2.INTER_LINEAR)
        static_map = normalize_map(static_map)
        motion_part = np.minimum(saliency / np.float32(saturation), 1.0)
        saliency = (1.0 - static_weight) * motion_part + static_weight * static_map
        extras["static"] = static_map
        method += f"+{params['static']}"
    return SaliencyMap(
        map=np.ascontiguousarray(saliency, dtype=np.float32),
        image=rgb,
        method=method,
        params=dict(params),
        seconds=time.perf_counter() - tick,
        extras=extras,
    )


def _float_rgb(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.dtype == np.uint8:
        return image.astype(np.float32) * np.float32(1 / 255)
    return np.clip(image, 0.0, 1.0).astype(np.float32, copy=False)

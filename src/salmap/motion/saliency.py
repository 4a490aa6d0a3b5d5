"""Motion saliency: what moves differently from the scene, frame by frame.

For each frame ``t`` (after Itti & Baldi's and Mahadevan & Vasconcelos' observation
that motion contrast, not motion itself, draws the eye under camera motion):

1. dense optical flow from frame ``t`` back to frame ``t-1`` (:class:`OpticalFlow`),
   at a bounded processing width, checked by a coarser flow forwards: pixels that
   frame ``t-1`` does not show (background uncovered by a moving object, or brought
   in by the camera) fail the forward–backward test (:func:`visible_mask`) and carry
   no motion, since their flow is only a guess;
2. the camera's own motion (pan, zoom, rotation, shake: a homography) fitted to the
   checked flow with RANSAC and subtracted (:func:`estimate_camera_motion`,
   :func:`camera_flow`);
3. a shot change where both collapse (the fit explains under half of the flow and
   under half of the pixels pass the check): the smoothing restarts, and the new
   shot's first frame takes its map from the flow towards the next frame;
4. the residual speed ``|flow − camera_flow|`` smoothed in space (Gaussian) and in
   time (an exponential moving average whose history is carried along the flow, so
   neither a pan nor a moving object smears it);
5. optionally fused with a static saliency map, as the motion channel of the
   Itti–Koch model is fused with its colour, intensity and orientation channels.

The map of frame ``t`` lies on frame ``t``'s own pixel grid; the first frame of each
shot uses the flow towards the next. Frames are processed one at a time: memory does
not grow with the video's length (a shot's first frame waits for one more).

References
----------
L. Itti, C. Koch, E. Niebur, "A Model of Saliency-Based Visual Attention for Rapid
Scene Analysis", IEEE TPAMI 20(11), 1998 (channels fused after normalisation).
L. Itti, N. Dhavale, F. Pighin, "Realistic avatar eye and head animation using a
neurobiological model of visual attention", SPIE 2003 (the motion channel).
V. Mahadevan, N. Vasconcelos, "Spatiotemporal Saliency in Dynamic Scenes", IEEE
TPAMI 32(1), 2010 (saliency under camera motion).
N. Sundaram, T. Brox, K. Keutzer, "Dense Point Trajectories by GPU-Accelerated Large
Displacement Optical Flow", ECCV 2010 (the forward–backward check).
"""

from __future__ import annotations

import dataclasses
import importlib
import itertools
import os
import time
from collections.abc import Callable, Iterable, Iterator
from typing import NamedTuple

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
    visible_mask,
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
          processing pixels to this frame's (the scene's motion; on a shot's first frame,
          this frame's to the next's);
        - ``extras["scale"]``: video pixels per processing pixel;
        - ``extras["shot"]``: which shot the frame belongs to (0, 1, ...);
          ``extras["cut"]``: True on the first frame of every shot but the first;
        - ``extras["visible"]``: the share of pixels that passed the forward–backward
          check, in [0, 1];
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
    fusion = _Fusion(_static_function(static), static_weight, saturation, params["static"])
    state = _Pipeline(OpticalFlow(flow, preset), params, fusion)  # validates flow and preset
    count = 0
    for index, seconds, image in _frames(video, start, end, every):
        count += 1
        yield from state.push(_Frame(index, seconds, image, state.prepare(image)))
    if count < 2:
        source = video if isinstance(video, (str, os.PathLike)) else "the frames given"
        what = "no frame" if count == 0 else "only one frame"
        raise InputError(
            f"{source}: {what} in the selected range; motion saliency needs at least two"
        )
    yield from state.finish()


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


#: A shot change: the camera fit explains fewer than ``CUT_INLIERS`` of the flow samples
#: *and* fewer than ``CUT_VISIBLE`` of the pixels pass the forward–backward test. Both
#: collapse at a cut (measured on synthetic cuts and a photo/vtest montage: at most 0.03
#: and 0.25 across cuts, at least 0.95 and 0.96 within shots, also under shake,
#: rotation, zoom, noise and flicker); a colour-histogram distance could not tell two
#: shots of one palette apart (0.048 across the synthetic cut, 0.040 within shots).
CUT_INLIERS = 0.5
CUT_VISIBLE = 0.5
#: DIS preset of the reverse flow that checks each flow (see :func:`visible_mask`).
CHECK_PRESET = "ultrafast"
#: Image gradient (grey levels per processing pixel, RMS over 9×9) at which residual
#: speed counts half: flow in blank regions (sky, walls) is a guess. On a zoom over a
#: photo's clear sky, 42 % of the frame lit without it, 1 % with it; vtest.avi's
#: precision rose from 0.956 to 0.969; the textured synthetic scenes are unchanged.
MIN_TEXTURE = 1.0


class _Frame(NamedTuple):
    index: int
    seconds: float
    image: np.ndarray
    grey: np.ndarray
    tick: float = 0.0


class _Pair(NamedTuple):
    """The flow from one frame to a neighbour, checked by the flow back."""

    flow: np.ndarray
    motion: CameraMotion
    visible: np.ndarray


class _Fusion(NamedTuple):
    function: Callable | None
    weight: float
    saturation: float
    name: str | None


class _Pipeline:
    """The per-frame state: flow estimator, processing size, shot, smoothed history.

    Frames are pushed one at a time; each yields the maps it completes. The first frame
    of a shot waits for the next one: its map comes from the flow towards it.
    """

    def __init__(self, estimator: OpticalFlow, params: dict, fusion: _Fusion) -> None:
        self.estimator = estimator
        self.checker = (
            OpticalFlow(estimator.method, CHECK_PRESET) if estimator.method == "dis" else estimator
        )
        self.params = params
        self.fusion = fusion
        self.history: np.ndarray | None = None
        self.video_size: tuple[int, int] | None = None  # (width, height)
        self.size: tuple[int, int] | None = None  # processing (width, height)
        self.scale = 1.0
        self.previous: _Frame | None = None
        self.pending: _Frame | None = None  # a shot's first frame, waiting for the next
        self.shot = 0

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """Grey uint8 at the processing size."""
        if image.dtype != np.uint8:
            image = (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
        if self.video_size is None:
            height, width = grey.shape
            self.video_size = (width, height)
            max_width = self.params["max_width"]
            if max_width is not None and width > max_width:
                self.size = (int(max_width), max(8, round(height * max_width / width)))
            else:
                self.size = (width, height)
            self.scale = width / self.size[0]
        if (grey.shape[1], grey.shape[0]) != self.size:
            grey = cv2.resize(grey, self.size, interpolation=cv2.INTER_AREA)
        return grey

    def push(self, frame: _Frame) -> Iterator[SaliencyMap]:
        """Take the next frame; yield the maps it completes (none, one or two)."""
        frame = frame._replace(tick=time.perf_counter())
        previous, self.previous = self.previous, frame
        if previous is None:
            self.pending = frame
            return
        backward = self.estimator(frame.grey, previous.grey)
        # The flow back only checks this one, where a coarse flow does: ~4× cheaper.
        forward = self.checker(previous.grey, frame.grey)
        pair = self._pair(backward, forward)
        if pair.motion.inliers < CUT_INLIERS and pair.visible.mean() < CUT_VISIBLE:
            yield from self.finish()  # a one-frame shot has no motion to show
            self.history, self.pending = None, frame
            self.shot += 1
            return
        if self.pending is not None:
            first, self.pending = self.pending, None
            forward = self.estimator(first.grey, frame.grey)
            yield self._result(first, self._pair(forward, backward), first=True)
        yield self._result(frame, pair)

    def finish(self) -> Iterator[SaliencyMap]:
        """The map of a shot's first frame that no frame of its shot followed: still."""
        if self.pending is not None:
            frame, self.pending = self.pending, None
            still = np.zeros((*frame.grey.shape, 2), np.float32)
            yield self._result(frame, self._pair(still, still), first=True)

    def _pair(self, flow: np.ndarray, reverse: np.ndarray) -> _Pair:
        visible = visible_mask(flow, reverse)
        return _Pair(
            flow, estimate_camera_motion(flow, self.params["camera"], valid=visible), visible
        )

    def _speed(self, pair: _Pair, first: bool, texture: np.ndarray) -> np.ndarray:
        """Residual speed, smoothed in space and (along the flow) in time.

        Pixels the other frame does not show (disoccluded or new background) carry
        no evidence of motion: their flow is only a guess, as it is, in part, where
        the image is blank (``texture`` weights in [0, 1])."""
        width, height = self.size
        residual = pair.flow - camera_flow(pair.motion, height, width)
        speed = cv2.magnitude(residual[..., 0], residual[..., 1])
        speed[~pair.visible] = 0.0
        speed *= texture
        sigma = self.params["spatial_sigma"] * width
        if sigma > 0:
            speed = cv2.GaussianBlur(speed, (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)
        temporal = self.params["temporal"]
        if temporal > 0 and self.history is not None and not first:
            # Each pixel's past lies where the flow says it came from: the history
            # follows the moving objects as well as the camera.
            map_x = pair.flow[..., 0] + np.arange(width, dtype=np.float32)[None, :]
            map_y = pair.flow[..., 1] + np.arange(height, dtype=np.float32)[:, None]
            past = cv2.remap(
                self.history, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
            )
            past[~pair.visible] = 0.0
            speed = temporal * past + (1.0 - temporal) * speed
        self.history = speed
        return speed

    def _result(self, frame: _Frame, pair: _Pair, first: bool = False) -> SaliencyMap:
        speed = self._speed(pair, first, _texture_weight(frame.grey))
        flow, motion = pair.flow, pair.motion
        if not first:
            # Report motion forwards, as people read it: the flow to the previous frame,
            # reversed, is each pixel's velocity; a shot's first frame's flow points on.
            flow = -flow
            inverse = np.linalg.inv(motion.matrix)
            motion = dataclasses.replace(motion, matrix=inverse / inverse[2, 2])
        width, height = self.video_size
        # Speeds were measured in processing pixels; report them in video pixels.
        saliency = speed * np.float32(self.scale) if self.scale != 1 else speed
        if saliency.shape != (height, width):
            saliency = cv2.resize(saliency, (width, height), interpolation=cv2.INTER_LINEAR)
        extras = {
            "frame": int(frame.index),
            "time": float(frame.seconds),
            "flow": flow * np.float32(self.scale) if self.scale != 1 else flow,
            "camera": motion,
            "scale": self.scale,
            "shot": self.shot,
            "cut": bool(first and self.shot > 0),
            "visible": float(pair.visible.mean()),
        }
        return _fuse(
            self.fusion, saliency, _float_rgb(frame.image), extras, self.params, frame.tick
        )


def _texture_weight(grey: np.ndarray) -> np.ndarray:
    """``g² / (g² + MIN_TEXTURE²)``, g the local RMS gradient: 0 on blank areas, → 1."""
    dx = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3)
    dy = cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3)
    energy = cv2.blur(dx * dx + dy * dy, (9, 9)) * np.float32(1 / 64)  # Sobel gains 8
    return energy / (energy + np.float32(MIN_TEXTURE**2))


def _fuse(fusion: _Fusion, saliency, rgb, extras, params, tick) -> SaliencyMap:
    """The result, fused with the static map when one is asked for."""
    method = f"motion-{params['flow']}"
    if fusion.function is not None:
        height, width = saliency.shape
        static_map = np.asarray(fusion.function(rgb), np.float32)
        if static_map.shape != (height, width):
            static_map = cv2.resize(static_map, (width, height), interpolation=cv2.INTER_LINEAR)
        static_map = normalize_map(static_map)
        motion_part = np.minimum(saliency / np.float32(fusion.saturation), 1.0)
        saliency = (1.0 - fusion.weight) * motion_part + fusion.weight * static_map
        extras["static"] = static_map
        method += f"+{fusion.name}"
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

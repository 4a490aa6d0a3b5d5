"""Reading and writing videos, one frame at a time.

Reading is lazy: :func:`iter_frames` decodes a frame only when the loop asks for it,
so a two-hour film needs no more memory than a short clip. Containers and codecs are
whatever the OpenCV wheel's FFmpeg decodes (AVI, MP4, MKV, MOV, ...); animated GIF,
PNG and WebP go through Pillow. Writing goes through :class:`VideoWriter` (MP4, AVI,
MKV, MOV with OpenCV; GIF with Pillow, streamed frame by frame) and
:class:`NpyStackWriter` (a ``.npy`` stack of maps whose length need not be known in
advance); both write to a temporary name and rename into place on success.

Frames follow the image convention of :mod:`salmap.io`: H×W×3 RGB, float32 in [0, 1]
by default, or uint8 when asked (cheaper for pipelines that want grey levels).
"""

from __future__ import annotations

import contextlib
import math
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
from PIL import Image

from salmap.errors import InputError, UsageError
from salmap.io.atomic import atomic_path
from salmap.io.image import DAMAGED_FILE_ERRORS, damaged_file_error, quiet_pillow

__all__ = [
    "VideoInfo",
    "VideoFrame",
    "FrameBatch",
    "VideoWriter",
    "NpyStackWriter",
    "read_video_info",
    "iter_frames",
    "iter_frame_batches",
    "is_video",
    "VIDEO_EXTENSIONS",
    "WRITABLE_VIDEO_EXTENSIONS",
    "MAX_FRAME_PIXELS",
]

#: File name extensions treated as videos without looking inside (see :func:`is_video`).
VIDEO_EXTENSIONS = (
    ".mp4",
    ".m4v",
    ".mov",
    ".avi",
    ".mkv",
    ".webm",
    ".mpg",
    ".mpeg",
    ".wmv",
    ".flv",
    ".ogv",
    ".3gp",
    ".ts",
)

#: Extensions :class:`VideoWriter` can write, with the OpenCV FourCC used for each
#: (``None``: written with Pillow). ``mp4v`` (MPEG-4 part 2) is the MP4 codec the
#: OpenCV wheels can encode without an H.264 licence.
WRITABLE_VIDEO_EXTENSIONS = {
    ".mp4": "mp4v",
    ".m4v": "mp4v",
    ".mov": "mp4v",
    ".mkv": "mp4v",
    ".avi": "MJPG",
    ".webm": "VP80",  # the codec browsers play that the OpenCV wheels encode
    ".gif": None,
}

#: Frames declaring more pixels than this (8K UHD) are refused before decoding.
MAX_FRAME_PIXELS = 7680 * 4320

#: Pillow formats that can hold an animation salmap reads as a video.
_ANIMATED_FORMATS = ("GIF", "PNG", "WEBP", "FLI", "TIFF")


@dataclass(frozen=True)
class VideoInfo:
    """What a video is, read from its header and first frame.

    Attributes
    ----------
    path : str
        The file.
    width, height : int
        Frame size in pixels.
    fps : float
        Frames per second (GIF: from the frames' mean display time).
    frame_count : int or None
        Number of frames the container declares; ``None`` when it does not say. An
        estimate for some containers: readers stop at the real end either way.
    codec : str
        FourCC of the stream (``"DX50"``, ``"mp4v"``...) or the Pillow format (``"GIF"``).
    reader : {"ffmpeg", "pillow"}
        Which library decodes it.
    """

    path: str
    width: int
    height: int
    fps: float
    frame_count: int | None
    codec: str
    reader: str

    @property
    def duration(self) -> float | None:
        """Length in seconds, when the frame count is known."""
        if self.frame_count is None or self.fps <= 0:
            return None
        return self.frame_count / self.fps

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "width": self.width,
            "height": self.height,
            "fps": round(self.fps, 4),
            "frame_count": self.frame_count,
            "duration": None if self.duration is None else round(self.duration, 3),
            "codec": self.codec,
            "reader": self.reader,
        }


class VideoFrame(NamedTuple):
    """One decoded frame: its index in the source, its time in seconds, its pixels."""

    index: int
    time: float
    image: np.ndarray


class FrameBatch(NamedTuple):
    """Consecutive selected frames stacked for a batched model call.

    ``images`` is N×H×W×3 (same dtype as :func:`iter_frames`); ``indices`` and ``times``
    have N entries.
    """

    indices: list[int]
    times: list[float]
    images: np.ndarray


# --------------------------------------------------------------------------- reading


def is_video(source) -> bool:
    """Whether ``source`` names a video file (by extension, or an animated image).

    Cheap: looks at the name, and opens only GIF/PNG/WebP files to count their frames.
    Arrays and missing files are not videos.
    """
    if not isinstance(source, (str, os.PathLike)):
        return False
    path = Path(source)
    suffix = path.suffix.lower()
    if suffix in VIDEO_EXTENSIONS:
        return True
    if suffix in (".gif", ".png", ".apng", ".webp") and path.is_file():
        try:
            with quiet_pillow(), Image.open(path) as img:
                return bool(getattr(img, "is_animated", False))
        except (*DAMAGED_FILE_ERRORS, Image.DecompressionBombError, Image.DecompressionBombWarning):
            return False  # the reader that opens it says what is wrong
    return False


def read_video_info(path: str | os.PathLike) -> VideoInfo:
    """Open a video, check that at least one frame decodes, and describe it.

    Parameters
    ----------
    path : str or os.PathLike
        A video file (anything the OpenCV wheel's FFmpeg decodes) or an animated
        GIF/PNG/WebP.

    Returns
    -------
    VideoInfo

    Raises
    ------
    InputError
        Missing, empty, still-image, unreadable, oversized or zero-frame files.
    """
    with _open(path) as (info, _):
        return info


def iter_frames(
    path: str | os.PathLike,
    start: int = 0,
    end: int | None = None,
    every: int = 1,
    max_width: int | None = None,
    dtype: str | type = "float32",
) -> Iterator[VideoFrame]:
    """Decode frames lazily: ``start``, ``start + every``, ... up to (not including) ``end``.

    Parameters
    ----------
    path : str or os.PathLike
        The video (see :func:`read_video_info`).
    start : int
        Index of the first frame to yield (0-based, in the source's frame numbering).
    end : int, optional
        Index one past the last frame; ``None`` reads to the end.
    every : int
        Stride: yield one frame in ``every`` (skipped frames are not colour-converted).
    max_width : int, optional
        Shrink frames wider than this (area interpolation, aspect ratio kept).
    dtype : {"float32", "uint8"}
        ``float32``: RGB in [0, 1] (the :func:`salmap.load_image` convention);
        ``uint8``: RGB in 0..255.

    Yields
    ------
    VideoFrame
        ``(index, time, image)`` with ``image`` H×W×3. Memory stays that of one frame.

    Raises
    ------
    InputError
        The file cannot be read (see :func:`read_video_info`), or breaks mid-stream
        in a way the decoder reports.
    UsageError
        Invalid ``start``/``end``/``every``/``max_width``/``dtype``.
    """
    start, end, every = _check_range(start, end, every)
    as_float = _check_dtype(dtype)
    if max_width is not None and (int(max_width) != max_width or max_width < 8):
        raise UsageError(f"max width must be a whole number of pixels >= 8, not {max_width}")
    with _open(path) as (info, decoder):
        target = _target_size(info.width, info.height, max_width)
        for index, time, rgb in decoder(start, end, every):
            if target is not None:
                rgb = cv2.resize(rgb, target, interpolation=cv2.INTER_AREA)
            if as_float:
                rgb = rgb.astype(np.float32) * np.float32(1 / 255)
            yield VideoFrame(index, time, rgb)


def iter_frame_batches(
    path: str | os.PathLike,
    batch_size: int,
    start: int = 0,
    end: int | None = None,
    every: int = 1,
    max_width: int | None = None,
    dtype: str | type = "float32",
) -> Iterator[FrameBatch]:
    """Like :func:`iter_frames`, but stacks ``batch_size`` frames at a time.

    The last batch may be shorter. Memory is that of one batch.
    """
    if int(batch_size) != batch_size or batch_size < 1:
        raise UsageError(f"batch size must be a whole number >= 1, not {batch_size}")
    indices: list[int] = []
    times: list[float] = []
    images: list[np.ndarray] = []
    for frame in iter_frames(path, start, end, every, max_width, dtype):
        indices.append(frame.index)
        times.append(frame.time)
        images.append(frame.image)
        if len(images) == batch_size:
            yield FrameBatch(indices, times, np.stack(images))
            indices, times, images = [], [], []
    if images:
        yield FrameBatch(indices, times, np.stack(images))


def _check_range(start, end, every) -> tuple[int, int | None, int]:
    if int(start) != start or start < 0:
        raise UsageError(f"start frame must be a whole number >= 0, not {start}")
    if end is not None and (int(end) != end or end <= start):
        raise UsageError(
            f"end frame must be a whole number greater than start ({start}), not {end}"
        )
    if int(every) != every or every < 1:
        raise UsageError(f"frame stride (every) must be a whole number >= 1, not {every}")
    return int(start), None if end is None else int(end), int(every)


def _check_dtype(dtype) -> bool:
    name = np.dtype(dtype).name if not isinstance(dtype, str) else dtype
    if name not in ("float32", "uint8"):
        raise UsageError(f"frame dtype must be float32 or uint8, not {name}")
    return name == "float32"


def _target_size(width: int, height: int, max_width: int | None) -> tuple[int, int] | None:
    if max_width is None or width <= max_width:
        return None
    return int(max_width), max(1, round(height * max_width / width))


@contextlib.contextmanager
def _quiet_opencv():
    """Keep OpenCV's and FFmpeg's own console chatter out of salmap's one-line errors."""
    # FFmpeg's log level is read from the environment when OpenCV opens its first
    # file; OpenCV's own "[ERROR] ... Failed to initialize" lines
    # are silenced here: salmap says what went wrong in its own one line.
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    previous = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(previous)


@contextlib.contextmanager
def _open(path: str | os.PathLike):
    """Yield ``(info, decoder)``; ``decoder(start, end, every)`` iterates uint8 RGB frames."""
    if not isinstance(path, (str, os.PathLike)):
        raise InputError(f"cannot read a video from a {type(path).__name__}; give a file path")
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not a video file")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: file is empty")
    pillow = _open_with_pillow(path)
    if pillow is not None:
        with pillow as img:
            yield _pillow_info(path, img), lambda s, e, n: _pillow_frames(img, s, e, n)
        return
    with _quiet_opencv():
        capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    try:
        if not capture.isOpened():
            raise InputError(
                f"{path}: not a video salmap can read (the file is damaged, truncated, "
                "or in a format FFmpeg does not decode; try re-encoding it to MP4)"
            )
        info = _ffmpeg_info(path, capture)
        # Decode the first frame now: a header without frames is an error here, not a
        # silent empty result later. The capture is reopened to start cleanly.
        with _quiet_opencv():
            ok = capture.grab()
        if not ok:
            raise InputError(f"{path}: the video has no frames that can be decoded")
        capture.release()
        with _quiet_opencv():
            capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
        yield info, lambda s, e, n: _ffmpeg_frames(capture, info, s, e, n)
    finally:
        capture.release()


def _open_with_pillow(path: Path):
    """An open Pillow image for animated images; ``None`` when FFmpeg should try.

    Still images are refused here with a message that says what to give instead.
    """
    try:
        with quiet_pillow():
            img = Image.open(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputError(f"{path}: frames are too large to decode safely") from None
    except DAMAGED_FILE_ERRORS:
        return None  # not an image Pillow knows (UnidentifiedImageError) or broken: FFmpeg
    if img.format == "MPEG":  # Pillow only identifies MPEG streams; FFmpeg decodes them
        img.close()
        return None
    try:
        with quiet_pillow():
            animated = bool(getattr(img, "is_animated", False))  # counts frames: may break
    except DAMAGED_FILE_ERRORS as error:
        img.close()
        raise damaged_file_error(str(path), "animation", error) from None
    if not animated or img.format not in _ANIMATED_FORMATS:
        description = f"{img.format} {img.width}×{img.height}"
        img.close()
        raise InputError(
            f"{path}: is a still image ({description}), not a video; motion saliency needs "
            "a video (MP4, AVI, MKV, MOV...) or an animated GIF"
        )
    if img.width * img.height > MAX_FRAME_PIXELS:
        img.close()
        raise InputError(
            f"{path}: frames of {img.width}×{img.height} are too large to decode safely "
            f"(limit {MAX_FRAME_PIXELS:,} pixels)"
        )
    return img


def _pillow_info(path: Path, img: Image.Image) -> VideoInfo:
    try:
        with quiet_pillow():
            count = int(img.n_frames)
            durations = []
            for index in range(min(count, 100)):  # the first frames set the rate
                img.seek(index)
                durations.append(float(img.info.get("duration") or 0.0))
            img.seek(0)
    except DAMAGED_FILE_ERRORS as error:
        raise damaged_file_error(str(path), "animation", error) from None
    positive = [d for d in durations if d > 0]
    # Browsers show GIF delays under 20 ms as 100 ms; 10 fps is also their default.
    mean = sum(positive) / len(positive) if positive else 100.0
    fps = 1000.0 / (mean if mean >= 20 else 100.0)
    return VideoInfo(str(path), img.width, img.height, fps, count, img.format, "pillow")


def _pillow_frames(img: Image.Image, start: int, end: int | None, every: int):
    count = int(img.n_frames)
    stop = count if end is None else min(end, count)
    time = 0.0
    for index in range(stop):
        wanted = index >= start and (index - start) % every == 0
        rgb, duration = _pillow_frame(img, index, wanted)
        if wanted:
            yield index, time / 1000.0, rgb
        time += duration if duration >= 20 else 100.0


def _pillow_frame(img: Image.Image, index: int, convert: bool) -> tuple[np.ndarray | None, float]:
    """Frame ``index`` as uint8 RGB (``None`` unless ``convert``) and its display time in ms."""
    try:
        with quiet_pillow():
            img.seek(index)
            rgb = np.asarray(img.convert("RGB"), dtype=np.uint8) if convert else None
            return rgb, float(img.info.get("duration") or 0.0)
    except DAMAGED_FILE_ERRORS as error:
        raise damaged_file_error(str(img.filename), f"animation at frame {index}", error) from None


def _ffmpeg_info(path: Path, capture) -> VideoInfo:
    width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
    height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    if width <= 0 or height <= 0:
        raise InputError(f"{path}: the video does not say its frame size; try re-encoding it")
    if width * height > MAX_FRAME_PIXELS:
        raise InputError(
            f"{path}: frames of {width}×{height} are too large to decode safely "
            f"(limit {MAX_FRAME_PIXELS:,} pixels, 8K UHD)"
        )
    fps = float(capture.get(cv2.CAP_PROP_FPS))
    if not math.isfinite(fps) or fps <= 0 or fps > 1000:
        fps = 25.0  # the container does not say; PAL's rate is the common guess
    count = capture.get(cv2.CAP_PROP_FRAME_COUNT)
    frame_count = int(count) if math.isfinite(count) and count > 0 else None
    fourcc = int(capture.get(cv2.CAP_PROP_FOURCC))
    codec = "".join(chr((fourcc >> 8 * i) & 0xFF) for i in range(4)).strip("\0 ")
    if not codec.isprintable():
        codec = "unknown"
    return VideoInfo(str(path), width, height, fps, frame_count, codec or "unknown", "ffmpeg")


def _ffmpeg_frames(capture, info: VideoInfo, start: int, end: int | None, every: int):
    index = 0
    # Skipping by grab() rather than seeking: seeks land on key frames in some codecs,
    # and the frame numbering must be exact for --start to mean what it says.
    while end is None or index < end:
        with _quiet_opencv():
            ok = capture.grab()
        if not ok:
            return
        if index >= start and (index - start) % every == 0:
            ok, bgr = capture.retrieve()
            if not ok or bgr is None:
                return
            if bgr.shape[:2] != (info.height, info.width):
                raise InputError(
                    f"{info.path}: frame {index} is {bgr.shape[1]}×{bgr.shape[0]}, "
                    f"not {info.width}×{info.height}; salmap needs a constant frame size"
                )
            if bgr.ndim == 2:
                bgr = cv2.cvtColor(bgr, cv2.COLOR_GRAY2BGR)
            yield index, index / info.fps, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        index += 1


# --------------------------------------------------------------------------- writing


def _to_uint8_rgb(frame: np.ndarray) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.ndim == 2:
        frame = np.repeat(frame[..., None], 3, axis=2)
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise UsageError(f"a video frame must be H×W×3 RGB (or H×W grey), not {frame.shape}")
    if frame.dtype == np.uint8:
        return frame
    if np.issubdtype(frame.dtype, np.floating):
        return (np.clip(frame, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    raise UsageError(f"a video frame must be uint8 or float in [0, 1], not {frame.dtype}")


class VideoWriter:
    """Write RGB frames to a video file atomically, one at a time.

    The format follows the extension: ``.mp4``/``.m4v``/``.mov``/``.mkv`` (MPEG-4
    ``mp4v``), ``.avi`` (Motion JPEG) with OpenCV, or ``.gif`` with Pillow (each frame
    with its own 256-colour palette, streamed to disk). Frames go to a temporary file
    beside ``path``, renamed into place when the ``with`` block ends without error; an
    error, or no frame at all, leaves any existing file at ``path`` untouched.

    FFmpeg's encoders need even frame sizes: an odd width or height is padded by
    repeating the last column or row (the reader then sees one more pixel).

    Parameters
    ----------
    path : str or os.PathLike
        Output file.
    fps : float
        Frame rate to record (GIF: rounded to centiseconds per frame, the error spread
        over frames so the clip keeps its length).

    Examples
    --------
    >>> with VideoWriter("out.mp4", fps=25) as writer:          # doctest: +SKIP
    ...     for frame in iter_frames("in.mp4"):
    ...         writer.write(frame.image)
    """

    def __init__(self, path: str | os.PathLike, fps: float) -> None:
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in WRITABLE_VIDEO_EXTENSIONS:
            raise UsageError(
                f"cannot write video {path}: use one of "
                f"{', '.join(sorted(WRITABLE_VIDEO_EXTENSIONS))}"
            )
        if not (math.isfinite(fps) and fps > 0):
            raise UsageError(f"frame rate must be a positive number, not {fps}")
        self.fps = float(fps)
        self.fourcc = WRITABLE_VIDEO_EXTENSIONS[suffix]
        self.frames_written = 0
        self.size: tuple[int, int] | None = None  # (width, height), fixed by the first frame
        self._atomic = None
        self._tmp: Path | None = None
        self._cv_writer = None
        self._gif = None

    def __enter__(self) -> VideoWriter:
        self._atomic = atomic_path(self.path)
        self._tmp = self._atomic.__enter__()
        return self

    def write(self, frame: np.ndarray) -> None:
        """Append one H×W×3 RGB frame (uint8, or float in [0, 1]); H×W is fixed by the first."""
        if self._atomic is None:
            raise RuntimeError("VideoWriter.write() outside its with block")
        rgb = _to_uint8_rgb(frame)
        height, width = rgb.shape[:2]
        if self.size is None:
            self.size = (width, height)
            self._start(width, height)
        elif self.size != (width, height):
            raise UsageError(
                f"frame {self.frames_written} is {width}×{height}; this video is "
                f"{self.size[0]}×{self.size[1]}"
            )
        if self._gif is not None:
            self._write_gif_frame(rgb)
        else:
            bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
            if width % 2 or height % 2:
                # FFmpeg's encoders work on 2×2 chroma blocks and would silently drop
                # an odd last row or column; repeat the edge instead, losing nothing.
                bgr = cv2.copyMakeBorder(bgr, 0, height % 2, 0, width % 2, cv2.BORDER_REPLICATE)
            self._cv_writer.write(bgr)
        self.frames_written += 1

    def _start(self, width: int, height: int) -> None:
        if self.fourcc is None:
            self._gif = open(self._tmp, "wb")  # noqa: SIM115 - closed in close()
            return
        with _quiet_opencv():
            writer = cv2.VideoWriter(
                str(self._tmp),
                cv2.CAP_FFMPEG,
                cv2.VideoWriter_fourcc(*self.fourcc),
                self.fps,
                (width + width % 2, height + height % 2),
            )
        if not writer.isOpened():
            raise InputError(
                f"cannot write {self.path}: OpenCV's FFmpeg cannot encode {self.fourcc} "
                f"at {width}×{height}; try another extension (.mp4, .avi, .gif)"
            )
        self._cv_writer = writer

    def _write_gif_frame(self, rgb: np.ndarray) -> None:
        from PIL import GifImagePlugin

        # Each frame gets its own palette: a colormap overlay changes colours from
        # frame to frame, and one global palette would band them.
        frame = Image.fromarray(rgb).quantize(256, method=Image.Quantize.MEDIANCUT)
        index = self.frames_written
        # Integer centiseconds per frame, rounding spread over frames (no drift).
        centiseconds = round((index + 1) * 100 / self.fps) - round(index * 100 / self.fps)
        duration = max(2, centiseconds) * 10
        if index == 0:
            header, _ = GifImagePlugin.getheader(frame, info={"loop": 0, "duration": duration})
            for chunk in header:
                self._gif.write(chunk)
        for chunk in GifImagePlugin.getdata(frame, duration=duration, include_color_table=True):
            self._gif.write(chunk)

    def close(self, error: bool = False) -> None:
        """Finish the file (rename into place) or, on ``error``, discard it."""
        if self._atomic is None:
            return
        atomic, self._atomic = self._atomic, None
        try:
            if self._cv_writer is not None:
                self._cv_writer.release()
            if self._gif is not None:
                if not error:
                    self._gif.write(b";")  # GIF trailer
                self._gif.close()
            if not error and self.frames_written == 0:
                raise UsageError(f"no frames were written to {self.path}; nothing saved")
        except BaseException as problem:
            atomic.__exit__(type(problem), problem, problem.__traceback__)  # removes the temp
            raise
        _finish(atomic, error)

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(error=exc_type is not None)


def _finish(atomic, error: bool) -> None:
    """Leave an :func:`atomic_path` block: rename into place, or discard on ``error``."""
    if error:
        discard = RuntimeError("discarded")
        atomic.__exit__(RuntimeError, discard, None)
    else:
        atomic.__exit__(None, None, None)


class NpyStackWriter:
    """Append H×W arrays to a ``.npy`` file as an N×H×W stack, N unknown in advance.

    The header is written with room for any frame count and rewritten with the real
    count at the end, so memory stays that of one map however long the video. The
    file is written under a temporary name and renamed into place on success.

    Parameters
    ----------
    path : str or os.PathLike
        Output ``.npy`` file; ``numpy.load(path)`` (or ``mmap_mode="r"``) reads it back.
    dtype : numpy dtype
        Element type stored (default float32).
    """

    _HEADER_BYTES = 128  # a multiple of 64, as the .npy format asks for alignment

    def __init__(self, path: str | os.PathLike, dtype=np.float32) -> None:
        self.path = Path(path)
        self.dtype = np.dtype(dtype)
        self.count = 0
        self.shape: tuple[int, ...] | None = None
        self._atomic = None
        self._file = None

    def __enter__(self) -> NpyStackWriter:
        self._atomic = atomic_path(self.path, suffix=".npy")
        tmp = self._atomic.__enter__()
        try:
            self._file = open(tmp, "wb")  # noqa: SIM115 - closed in __exit__
            self._file.write(self._header(0, (0, 0)))
        except BaseException as problem:
            self._atomic.__exit__(type(problem), problem, problem.__traceback__)
            raise
        return self

    def _header(self, count: int, shape: tuple[int, ...]) -> bytes:
        descr = np.lib.format.dtype_to_descr(self.dtype)
        full = (count, *shape)
        text = f"{{'descr': {descr!r}, 'fortran_order': False, 'shape': {full!r}, }}"
        room = self._HEADER_BYTES - 10  # magic (6) + version (2) + length (2)
        if len(text) + 1 > room:
            raise UsageError(f"map shape {shape} is too large for a .npy stack")
        text = text.ljust(room - 1) + "\n"
        return b"\x93NUMPY\x01\x00" + struct.pack("<H", room) + text.encode("latin1")

    def write(self, array: np.ndarray) -> None:
        """Append one array; every array must have the first one's shape."""
        array = np.ascontiguousarray(array, dtype=self.dtype)
        if self.shape is None:
            self.shape = array.shape
        elif array.shape != self.shape:
            raise UsageError(f"map {self.count} has shape {array.shape}, not {self.shape}")
        self._file.write(array.tobytes())
        self.count += 1

    def __exit__(self, exc_type, exc, tb) -> None:
        atomic, self._atomic = self._atomic, None
        try:
            if exc_type is None:
                if self.shape is None:
                    raise UsageError(f"no maps were written to {self.path}; nothing saved")
                self._file.seek(0)
                self._file.write(self._header(self.count, self.shape))
            self._file.close()
        except BaseException as problem:
            self._file.close()
            atomic.__exit__(type(problem), problem, problem.__traceback__)
            raise
        _finish(atomic, exc_type is not None)

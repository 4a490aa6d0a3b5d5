"""Untrusted uploads: bounded bodies, file types from content, a private folder.

Request bodies are read with a byte limit and parsed in memory (Starlette's parser
would otherwise spool large files to the system's temporary folder); a file is
written to disk only when a decoder needs a path (videos), and then only inside the
server's private folder, under a name salmap chooses.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl

import numpy as np
from PIL import Image, UnidentifiedImageError
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from salmap.errors import InputError, UsageError
from salmap.io.image import load_image

__all__ = ["Limits", "UploadError", "Form", "read_form", "decode_image", "save_video"]


@dataclass(frozen=True)
class Limits:
    """What the server accepts.

    Attributes
    ----------
    image_bytes, video_bytes : int
        Largest upload (the whole request body) for an image and for a video.
    image_pixels : int
        Largest image, width × height, checked from the header before decoding.
    video_pixels : int
        Largest video frame, width × height.
    video_seconds : float
        Longest video (declared duration).
    video_frames : int
        Most frames in a video.
    """

    image_bytes: int = 20 * 2**20
    image_pixels: int = 40_000_000
    video_bytes: int = 64 * 2**20
    video_pixels: int = 1920 * 1088
    video_seconds: float = 120.0
    video_frames: int = 3000


class UploadError(Exception):
    """An upload the server refuses: ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class _InMemoryParser(MultiPartParser):
    # The body is already bounded; keeping every part in memory means no upload is
    # ever spooled to a shared temporary folder.
    spool_max_size = 2**40


@dataclass
class Form:
    """Parsed form: text fields (the last value of each, and every value) and files."""

    fields: dict[str, list[str]]
    files: dict[str, bytes]

    def get(self, name: str, default: str | None = None) -> str | None:
        values = self.fields.get(name)
        return values[-1] if values else default

    def getlist(self, name: str) -> list[str]:
        return list(self.fields.get(name, []))


async def read_form(request: Request, max_bytes: int) -> Form:
    """Read a multipart (or url-encoded) form of at most ``max_bytes`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise UploadError(413, f"upload is {_size(int(declared))}; the limit is {_size(max_bytes)}")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > max_bytes:
            raise UploadError(413, f"upload is larger than the limit of {_size(max_bytes)}")
    content_type = request.headers.get("content-type", "")
    if not body:
        return Form({}, {})
    if content_type.startswith("application/x-www-form-urlencoded"):
        fields: dict[str, list[str]] = {}
        for name, value in parse_qsl(body.decode("utf-8", "replace"), max_num_fields=64):
            fields.setdefault(name, []).append(value)
        return Form(fields, {})
    if not content_type.startswith("multipart/form-data"):
        raise UploadError(415, "send the form as multipart/form-data")

    async def stream():
        yield bytes(body)

    try:
        parsed = await _InMemoryParser(
            request.headers, stream(), max_files=4, max_fields=64, max_part_size=64 * 1024
        ).parse()
    except MultiPartException as error:
        raise UploadError(400, f"malformed form: {error.message}") from None
    fields: dict[str, list[str]] = {}
    files: dict[str, bytes] = {}
    for name, value in parsed.multi_items():
        if isinstance(value, UploadFile):
            files[name] = await value.read()
            await value.close()
        else:
            fields.setdefault(name, []).append(value)
    return Form(fields, files)


def _size(count: int) -> str:
    return f"{count / 2**20:.1f} MiB" if count >= 2**20 else f"{count} bytes"


#: Image formats recognised by their first bytes (never by the file name).
_IMAGE_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)


def image_format(data: bytes) -> str | None:
    """The image format ``data`` starts with, or ``None``."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    for signature, name in _IMAGE_SIGNATURES:
        if data.startswith(signature):
            return name
    return None


def decode_image(data: bytes, limits: Limits) -> np.ndarray:
    """Check and decode an uploaded image: H×W×3 float32 RGB in [0, 1].

    Raises
    ------
    UploadError
        415 for content that is not an image format salmap reads, 413 for too many
        pixels (read from the header, before any decoding), 422 for a damaged file.
    """
    if not data:
        raise UploadError(422, "the image file is empty")
    kind = image_format(data)
    if kind is None:
        raise UploadError(415, "not an image: send a PNG, JPEG, GIF, BMP, TIFF or WebP file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=[kind]) as img:
                width, height = img.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError):
        raise UploadError(422, f"the {kind} file is damaged or truncated") from None
    except Image.DecompressionBombError:
        width, height = 2**31, 1
    if width * height > limits.image_pixels:
        raise UploadError(
            413,
            f"image is {width}×{height} pixels; the limit is {limits.image_pixels:,} pixels",
        )
    try:
        return load_image(data)
    except InputError as error:
        raise UploadError(422, str(error).replace("the given bytes: ", "")) from None


#: Video containers recognised by their first bytes, with the extension they are saved as.
def video_extension(data: bytes) -> str | None:
    """``.avi``, ``.mp4``, ``.mkv`` or ``.gif`` from the content, or ``None``."""
    if data[:4] == b"RIFF" and data[8:12] == b"AVI ":
        return ".avi"
    if data[4:8] == b"ftyp":
        return ".mp4"
    if data[:4] == b"\x1a\x45\xdf\xa3":
        return ".mkv"  # Matroska and WebM
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return ".gif"
    return None


def save_video(data: bytes, folder: Path, limits: Limits):
    """Write an uploaded video into ``folder`` (the job's private folder) and check it.

    Returns
    -------
    (Path, salmap.io.video.VideoInfo)

    Raises
    ------
    UploadError
        415 for content that is not a video container salmap reads or that does not
        decode, 413 for frames too large or a video too long.
    """
    from salmap.io.video import read_video_info

    extension = video_extension(data)
    if extension is None:
        raise UploadError(415, "not a video: send an MP4, MOV, AVI, MKV, WebM or animated GIF")
    path = folder / f"upload{extension}"
    path.write_bytes(data)
    try:
        info = read_video_info(path)
    except (InputError, UsageError):
        raise UploadError(
            415, "the video cannot be decoded (damaged, truncated or an unsupported codec)"
        ) from None
    if info.width * info.height > limits.video_pixels:
        raise UploadError(
            413,
            f"video frames are {info.width}×{info.height}; "
            f"the limit is {limits.video_pixels:,} pixels",
        )
    if info.frame_count is not None and info.frame_count > limits.video_frames:
        raise UploadError(
            413, f"video has {info.frame_count} frames; the limit is {limits.video_frames}"
        )
    if info.duration is not None and info.duration > limits.video_seconds:
        raise UploadError(
            413, f"video lasts {info.duration:.0f} s; the limit is {limits.video_seconds:.0f} s"
        )
    return path, info

"""Fuzzing the readers: damaged images and videos decode or raise a ``SalmapError``.

Every image and video format salmap reads is written from a real photo, then damaged
in seeded ways — truncated, bits flipped, runs zeroed, junk inserted, the declared
size made huge or zero — and read through the public Python API. Each file must give
a decoded result (the right shape, dtype and range) or a :class:`SalmapError`; any
other exception (``IndexError``, ``DecompressionBombError``, ``cv2.error``...) fails.
The command line must say one line on stderr (no FFmpeg or OpenCV chatter) and exit 3.
"""

from __future__ import annotations

import io
import os
import random
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import Image

import salmap
from salmap.errors import SalmapError
from salmap.io import VideoWriter, is_video, iter_frame_batches, iter_frames, read_video_info

#: Declared sizes that are absurd: zero, longer than the data, beyond the bomb limit.
HUGE_SIZES = (0, 40_000, 65_535)
MUTATIONS = ("truncate", "flip", "zero", "junk", "size")
CASES_PER_MUTATION = 5


def _photo(width: int = 113, height: int = 75) -> np.ndarray:
    """A real photo at a size whose width and height bytes are easy to find in headers."""
    return np.asarray(Image.fromarray(skimage.data.chelsea()).resize((width, height)))


def _encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _frames(count: int = 6) -> list[Image.Image]:
    photo = _photo()
    return [Image.fromarray(np.roll(photo, 4 * k, axis=1)) for k in range(count)]


def _animation(fmt: str) -> bytes:
    first, *rest = _frames()
    return _encode(first, fmt, save_all=True, append_images=rest, duration=80, loop=0)


def _video(folder: Path, suffix: str) -> bytes:
    path = folder / f"seed{suffix}"
    with VideoWriter(path, fps=10) as writer:
        for frame in _frames():
            writer.write(np.asarray(frame)[:74, :112])  # even sizes: no padding column
    return path.read_bytes()


def _image_seeds() -> dict[str, bytes]:
    photo = Image.fromarray(_photo())
    sixteen = Image.fromarray(_photo()[..., 1].astype(np.uint16) * 257)
    return {
        "rgb.png": _encode(photo, "PNG"),
        "rgba.png": _encode(photo.convert("RGBA"), "PNG"),
        "palette.png": _encode(photo.quantize(64), "PNG"),
        "sixteen.png": _encode(sixteen, "PNG"),
        "photo.jpg": _encode(photo, "JPEG", quality=85),
        "cmyk.jpg": _encode(photo.convert("CMYK"), "JPEG"),
        "still.gif": _encode(photo, "GIF"),
        "animated.gif": _animation("GIF"),
        "photo.bmp": _encode(photo, "BMP"),
        "photo.tif": _encode(photo, "TIFF"),
        "lossy.webp": _encode(photo, "WEBP", quality=80),
        "lossless.webp": _encode(photo, "WEBP", lossless=True),
    }


def _video_seeds(folder: Path) -> dict[str, bytes]:
    return {
        "mjpg.avi": _video(folder, ".avi"),
        "mp4v.mp4": _video(folder, ".mp4"),
        "animated.gif": _animation("GIF"),
        "animated.png": _animation("PNG"),
        "animated.webp": _animation("WEBP"),
    }


def _fix_png_checksums(data: bytearray) -> None:
    """Recompute every PNG chunk's CRC, so a changed header reaches the size checks."""
    position = 8
    while position + 12 <= len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        end = position + 8 + length
        if end + 4 > len(data):
            return
        crc = zlib.crc32(bytes(data[position + 4 : end])) & 0xFFFFFFFF
        data[end : end + 4] = struct.pack(">I", crc)
        position = end + 4


def _declare_size(data: bytes, new: int, rng: random.Random) -> bytes:
    """Declare a width or height of ``new`` where the header stores it: the first 32- or
    16-bit field, in the format's byte order, that holds the seed files' width or height
    (a PNG's IHDR, a JPEG's SOF, a GIF's screen, a BMP's, TIFF's or AVI's header, an
    MP4's ``moov``), or the bit-packed size of a lossless WebP."""
    if data[12:16] == b"VP8L":
        return _declare_lossless_webp_size(data, new)
    big_endian = data.startswith((b"\x89PNG", b"\xff\xd8")) or data[4:8] == b"ftyp"
    start = max(data.find(b"moov"), 0)  # OpenCV writes an MP4's header after its frames
    for old in rng.sample((113, 75, 112, 74), 4):  # the images' sizes, the videos' (even)
        for layout in (">I", ">H") if big_endian else ("<I", "<H"):
            if new >= 1 << (8 * struct.calcsize(layout)):
                continue
            where = data.find(struct.pack(layout, old), start, start + 4096)
            if where >= 0:
                patched = bytearray(data)
                patched[where : where + struct.calcsize(layout)] = struct.pack(layout, new)
                if data.startswith(b"\x89PNG"):
                    _fix_png_checksums(patched)
                return bytes(patched)
    raise AssertionError("no size field found")


def _declare_lossless_webp_size(data: bytes, new: int) -> bytes:
    """VP8L stores width - 1 and height - 1 in 14 bits each after its 0x2F signature."""
    side = min(max(new, 1), 1 << 14) - 1
    patched = bytearray(data)
    (bits,) = struct.unpack("<I", data[21:25])
    bits = (bits & ~0x0FFFFFFF) | side | (side << 14)
    patched[21:25] = struct.pack("<I", bits)
    return bytes(patched)


def mutate(data: bytes, kind: str, seed: int) -> bytes:
    """One seeded damage of ``kind`` (see :data:`MUTATIONS`)."""
    rng = random.Random(seed)
    damaged = bytearray(data)
    if kind == "truncate":
        return bytes(damaged[: rng.randrange(1, len(damaged))])
    if kind == "flip":
        for _ in range(rng.randrange(1, 24)):
            damaged[rng.randrange(len(damaged))] ^= 1 << rng.randrange(8)
        return bytes(damaged)
    if kind == "zero":
        start = rng.randrange(len(damaged))
        length = rng.randrange(1, max(2, len(damaged) // 6))
        damaged[start : start + length] = bytes(len(damaged[start : start + length]))
        return bytes(damaged)
    if kind == "junk":
        junk = rng.randbytes(rng.randrange(1, 600))
        where = rng.randrange(len(damaged))
        return bytes(damaged[:where] + junk + damaged[where:])
    if kind == "size":  # one side, or both (a bomb when huge: 65535² pixels)
        declared = HUGE_SIZES[seed % len(HUGE_SIZES)]
        damaged = _declare_size(data, declared, rng)
        return _declare_size(damaged, declared, rng) if seed % 2 else damaged
    raise ValueError(kind)


def _cases(seeds: dict[str, bytes], folder: Path):
    """Write every damaged variant of every seed file; yields ``(label, path)``."""
    for name, data in seeds.items():
        for kind in MUTATIONS:
            for index in range(CASES_PER_MUTATION):
                seed = zlib.crc32(f"{name}/{kind}/{index}".encode())
                path = folder / f"{kind}{index}_{name}"
                path.write_bytes(mutate(data, kind, seed))
                yield f"{kind}#{index} {name}", path


def _outcome(read, path: Path) -> str:
    """``ok``, ``refused`` (a SalmapError) or the escaping exception, named."""
    try:
        read(path)
    except SalmapError:
        return "refused"
    except Exception as error:  # noqa: BLE001 - this is what the test looks for
        return f"{type(error).__name__}: {str(error)[:100]}"
    return "ok"


def _read_image(path: Path) -> None:
    image = salmap.load_image(path)
    assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.float32
    assert 0.0 <= image.min() and image.max() <= 1.0
    salmap.load_image(path.read_bytes())
    assert isinstance(is_video(path), bool)


def _read_video(path: Path) -> None:
    assert isinstance(is_video(path), bool)
    info = read_video_info(path)
    frames = [frame.image for frame in iter_frames(path, dtype="uint8")]
    assert frames and all(frame.shape == (info.height, info.width, 3) for frame in frames)
    assert sum(len(batch.indices) for batch in iter_frame_batches(path, 4)) == len(frames)


def _motion(path: Path) -> None:
    for result in salmap.motion_saliency(path, end=3, max_width=64):
        assert np.isfinite(result.map).all() and result.map.min() >= 0


@pytest.fixture(scope="module")
def damaged(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz")
    images = list(_cases(_image_seeds(), folder))
    videos = list(_cases(_video_seeds(folder), folder))
    return images, videos


def _check(cases, read) -> dict[str, int]:
    outcomes = {label: _outcome(read, path) for label, path in cases}
    escaped = {label: what for label, what in outcomes.items() if what not in ("ok", "refused")}
    assert not escaped, f"{len(escaped)} damaged files escaped as non-salmap errors: {escaped}"
    return {kind: sum(what == kind for what in outcomes.values()) for kind in ("ok", "refused")}


def test_damaged_images_decode_or_raise_salmap_errors(damaged):
    images, _ = damaged
    assert len(images) >= 97
    counts = _check(images, _read_image)
    # The damage is real: most files are refused, and some survive (JPEG, BMP bodies).
    assert counts["refused"] > len(images) // 2 and counts["ok"] > 0


def test_damaged_videos_decode_or_raise_salmap_errors(damaged):
    _, videos = damaged
    assert len(videos) >= 97 // 2
    counts = _check(videos, _read_video)
    assert counts["refused"] > 0 and counts["ok"] > 0


def test_damaged_videos_through_motion_saliency(damaged):
    _, videos = damaged
    counts = _check(videos[::3], _motion)
    assert counts["refused"] > 0 and counts["ok"] > 0


def _variants(seeds, name: str, read, wanted: str, folder: Path, kind: str = ""):
    """Damaged variants of seed ``name`` (of ``kind``) whose API outcome is ``wanted``."""
    for label, path in _cases({name: seeds[name]}, folder):
        if label.startswith(kind) and _outcome(read, path) == wanted:
            yield path


def _bare_environment() -> dict[str, str]:
    """This process's environment without the FFmpeg log level salmap set in it."""
    return {k: v for k, v in os.environ.items() if k != "OPENCV_FFMPEG_LOGLEVEL"}


def _salmap(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "salmap", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
        env=_bare_environment(),
    )


@pytest.mark.parametrize(
    "name, command",
    [
        ("mjpg.avi", "motion"),
        ("mp4v.mp4", "motion"),
        ("animated.gif", "motion"),
        ("rgb.png", "explain"),
        ("animated.gif", "explain"),
    ],
)
def test_command_line_says_one_line_and_exits_3(tmp_path, name, command):
    """FFmpeg, OpenCV and Pillow stay quiet: salmap's one line is all stderr holds."""
    video = command == "motion"
    seeds = _video_seeds(tmp_path) if video else _image_seeds()
    path = next(_variants(seeds, name, _read_video if video else _read_image, "refused", tmp_path))
    done = _salmap(command, str(path), *(["--no-video"] if video else []), cwd=tmp_path)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 3, done.stderr
    assert len(lines) == 1 and lines[0].startswith("salmap: error: "), done.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if "saliency" in p.name) == []


_RAW_DECODE = """
import cv2, sys
capture = cv2.VideoCapture(sys.argv[1], cv2.CAP_FFMPEG)
while capture.grab():
    pass
"""


@pytest.mark.parametrize("name", ["mjpg.avi", "mp4v.mp4"])
def test_damaged_but_decodable_video_keeps_ffmpeg_quiet(tmp_path, name):
    """Flipped bits inside frames: FFmpeg conceals them and complains on stderr when
    OpenCV is used bare; through salmap the complaints stay off the terminal."""
    for path in _variants(_video_seeds(tmp_path), name, _motion, "ok", tmp_path, "flip"):
        raw = subprocess.run(
            [sys.executable, "-c", _RAW_DECODE, str(path)],
            capture_output=True,
            env=_bare_environment(),
        )
        if b" @ 0x" in raw.stderr:  # "[mjpeg @ 0x55...] error count: 64"
            break
    else:
        pytest.fail(f"no damaged {name} makes FFmpeg complain")
    done = _salmap("motion", str(path), "--no-video", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""

"""Reading images: every supported file becomes an H×W×3 float32 RGB array in [0, 1]."""

from __future__ import annotations

import contextlib
import io
import os
import struct
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from salmap.errors import InputError

__all__ = [
    "load_image",
    "sample_image",
    "quiet_pillow",
    "damaged_file_error",
    "SAMPLE_IMAGES",
    "MAX_PIXELS",
    "MIN_SIDE",
    "DAMAGED_FILE_ERRORS",
]

#: Images declaring more pixels than this are refused (decompression-bomb guard).
MAX_PIXELS = 178_956_970  # Pillow's own default limit, enforced as an error, not a warning
#: Images smaller than this on either side carry too little to explain.
MIN_SIDE = 8

#: What Pillow's plugins raise on damaged data: beside their own ``OSError`` and
#: ``SyntaxError``, they index past short buffers, unpack short structs and divide by
#: zero-sized fields (a truncated animated GIF raises ``IndexError``).
DAMAGED_FILE_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    IndexError,
    KeyError,
    TypeError,
    ZeroDivisionError,
    struct.error,
)

#: Photos bundled with scikit-image, usable wherever an image path is expected.
SAMPLE_IMAGES = ("chelsea", "coffee", "astronaut", "rocket", "retina", "hubble_deep_field")


def sample_image(name: str = "chelsea") -> np.ndarray:
    """Return one of scikit-image's bundled photos as float32 RGB in [0, 1].

    Parameters
    ----------
    name : str
        One of :data:`SAMPLE_IMAGES` (``chelsea`` is a cat, ``coffee`` an espresso).
    """
    if name not in SAMPLE_IMAGES:
        raise InputError(f"unknown sample image {name!r}; choose one of {', '.join(SAMPLE_IMAGES)}")
    import skimage.data

    return _to_float_rgb(Image.fromarray(getattr(skimage.data, name)()))


def load_image(source, *, min_side: int = MIN_SIDE) -> np.ndarray:
    """Load an image as an H×W×3 float32 RGB array with values in [0, 1].

    Parameters
    ----------
    source : str, os.PathLike, bytes, PIL.Image.Image or numpy.ndarray
        A file path (PNG, JPEG, BMP, TIFF, WebP, GIF — the first frame), the name of a
        bundled photo (see :func:`sample_image`), encoded bytes, a Pillow image, or an
        array (H×W, H×W×3 or H×W×4; integer arrays are scaled by their dtype's range,
        float arrays must already be in [0, 1]).
    min_side : int
        Smallest accepted height and width in pixels.

    Returns
    -------
    numpy.ndarray
        H×W×3 float32 in [0, 1]. EXIF orientation is applied; grayscale, palette, CMYK
        and 16-bit images are converted; transparency is composited on white.

    Raises
    ------
    InputError
        For a missing, empty, truncated, non-image or oversized file.
    """
    if isinstance(source, np.ndarray):
        image = _array_to_float_rgb(source)
    elif isinstance(source, Image.Image):
        image = _to_float_rgb(source)
    elif isinstance(source, (bytes, bytearray)):
        image = _decode(io.BytesIO(source), "the given bytes")
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists() and str(source) in SAMPLE_IMAGES:
            image = sample_image(str(source))
        else:
            image = _decode_path(path)
    else:
        raise InputError(f"cannot read an image from a {type(source).__name__}")
    height, width = image.shape[:2]
    if min(height, width) < min_side:
        raise InputError(
            f"image is {width}×{height} pixels; salmap needs at least {min_side}×{min_side}"
        )
    return image


def _decode_path(path: Path) -> np.ndarray:
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not an image file")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: file is empty")
    with open(path, "rb") as handle:
        return _decode(handle, str(path))


def _decode(handle, name: str) -> np.ndarray:
    try:
        with quiet_pillow(), Image.open(handle) as img:
            img.seek(0)  # first frame of an animation
            img.load()
            return _to_float_rgb(img)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise InputError(
            f"{name}: image is too large to decode safely ({_first_line(error)}); "
            f"the limit is {MAX_PIXELS:,} pixels"
        ) from None
    except UnidentifiedImageError:
        raise InputError(
            f"{name}: not an image file salmap can read (PNG, JPEG, BMP, TIFF, WebP, GIF)"
        ) from None
    except InputError:
        raise
    except DAMAGED_FILE_ERRORS as error:
        raise damaged_file_error(name, "image file", error) from None


@contextlib.contextmanager
def quiet_pillow() -> Iterator[None]:
    """Decode untrusted files with Pillow: refuse images over :data:`MAX_PIXELS`, and
    keep Pillow's warnings about the file (skipped tags, odd chunks) off the terminal —
    the file decodes or salmap says in one line why not."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # Pillow only warns between its limit and twice it; refuse at the limit.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        previous = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = MAX_PIXELS
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = previous


def damaged_file_error(name: str, what: str, error: BaseException) -> InputError:
    """The one-line error for a file that breaks its decoder: ``NAME: WHAT is damaged``."""
    return InputError(f"{name}: {what} is damaged or truncated ({_first_line(error)})")


def _first_line(error: BaseException) -> str:
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def _to_float_rgb(img: Image.Image) -> np.ndarray:
    img = ImageOps.exif_transpose(img)
    mode = img.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        values = np.asarray(img, dtype=np.float64)
        top = 65535.0 if mode != "I" or values.max(initial=0) > 255 else 255.0
        gray = np.clip(values / top, 0.0, 1.0).astype(np.float32)
        return np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=2))
    if mode == "F":
        values = np.asarray(img, dtype=np.float32)
        top = max(float(values.max(initial=0.0)), 1.0)
        gray = np.clip(values / top, 0.0, 1.0)
        return np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=2))
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        mode == "P" and "transparency" in img.info
    )
    if has_alpha:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    rgb = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    return np.ascontiguousarray(rgb)


def _array_to_float_rgb(array: np.ndarray) -> np.ndarray:
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise InputError(f"image array has shape {array.shape}; expected H×W, H×W×3 or H×W×4")
    if array.dtype == np.bool_:
        values = array.astype(np.float32)
    elif np.issubdtype(array.dtype, np.integer):
        values = array.astype(np.float32) / float(np.iinfo(array.dtype).max)
    elif np.issubdtype(array.dtype, np.floating):
        values = array.astype(np.float32)
        if not np.all(np.isfinite(values)):
            raise InputError("image array contains NaN or infinite values")
        low, high = float(values.min()), float(values.max())
        if low < -1e-6 or high > 1 + 1e-6:
            raise InputError(
                f"float image values span [{low:.3g}, {high:.3g}]; expected [0, 1] "
                "(divide 8-bit images by 255)"
            )
        values = np.clip(values, 0.0, 1.0)
    else:
        raise InputError(f"image array has unsupported dtype {array.dtype}")
    if values.shape[2] == 1:
        values = np.repeat(values, 3, axis=2)
    elif values.shape[2] == 4:
        alpha = values[..., 3:4]
        values = values[..., :3] * alpha + (1.0 - alpha)
    return np.ascontiguousarray(values, dtype=np.float32)

"""Image input: every format and mode becomes H×W×3 float32 RGB in [0, 1]."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from salmap.errors import InputError
from salmap.io import load_image

RNG = np.random.default_rng(0)
PIXELS = RNG.integers(0, 256, size=(24, 32, 3), dtype=np.uint8)


def _save(tmp_path, name, image: Image.Image, **kwargs):
    path = tmp_path / name
    image.save(path, **kwargs)
    return path


@pytest.mark.parametrize("name", ["a.png", "a.bmp", "a.tiff", "a.webp"])
def test_lossless_formats_roundtrip_exactly(tmp_path, name):
    kwargs = {"lossless": True} if name.endswith("webp") else {}
    path = _save(tmp_path, name, Image.fromarray(PIXELS), **kwargs)
    image = load_image(path)
    assert image.dtype == np.float32 and image.shape == (24, 32, 3)
    np.testing.assert_allclose(image, PIXELS / 255.0, atol=1e-6)


def test_jpeg_is_close(tmp_path):
    smooth = np.tile(np.linspace(0, 255, 32, dtype=np.uint8)[None, :, None], (24, 1, 3))
    path = _save(tmp_path, "a.jpg", Image.fromarray(smooth), quality=95)
    assert np.abs(load_image(path) - smooth / 255.0).max() < 0.03


def test_gif_first_frame(tmp_path):
    frames = [Image.new("RGB", (16, 16), color) for color in ((255, 0, 0), (0, 0, 255))]
    path = tmp_path / "a.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    image = load_image(path)
    np.testing.assert_allclose(image[8, 8], [1, 0, 0], atol=0.01)


def test_exif_orientation_is_applied(tmp_path):
    wide = np.zeros((20, 40, 3), np.uint8)
    wide[:, :20] = 255  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise when displayed
    path = _save(tmp_path, "a.jpg", Image.fromarray(wide), exif=exif, quality=100)
    image = load_image(path)
    assert image.shape == (40, 20, 3)  # displayed upright: tall
    assert image[:20].mean() > 0.9 and image[20:].mean() < 0.1  # white on top


def test_grayscale_and_palette(tmp_path):
    gray = _save(tmp_path, "g.png", Image.fromarray(PIXELS[..., 0]))
    image = load_image(gray)
    np.testing.assert_allclose(image[..., 0], PIXELS[..., 0] / 255.0, atol=1e-6)
    np.testing.assert_array_equal(image[..., 0], image[..., 2])
    palette = _save(tmp_path, "p.png", Image.fromarray(PIXELS).convert("P"))
    expected = np.asarray(Image.open(palette).convert("RGB")) / 255.0
    np.testing.assert_allclose(load_image(palette), expected, atol=1e-6)


def test_rgba_is_composited_on_white(tmp_path):
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:, :8, 3] = 255  # left opaque red, right fully transparent
    rgba[:, 8:, 3] = 0
    image = load_image(_save(tmp_path, "a.png", Image.fromarray(rgba, "RGBA")))
    np.testing.assert_allclose(image[0, 0], [1, 0, 0], atol=1e-6)
    np.testing.assert_allclose(image[0, 15], [1, 1, 1], atol=1e-6)


def test_cmyk_jpeg(tmp_path):
    cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # pure red in CMYK
    image = load_image(_save(tmp_path, "a.jpg", cmyk, quality=100))
    assert image.shape == (16, 16, 3)
    assert image[..., 0].mean() > 0.9 and image[..., 1:].mean() < 0.1


def test_16_bit_png_keeps_its_precision(tmp_path):
    values = np.linspace(0, 65535, 16 * 16).astype(np.uint16).reshape(16, 16)
    path = tmp_path / "a.png"
    Image.fromarray(values).save(path)
    image = load_image(path)
    np.testing.assert_allclose(image[..., 1], values / 65535.0, atol=1e-6)
    assert len(np.unique(image)) == 256  # more levels than 8 bits would keep here


def test_arrays_and_bytes():
    np.testing.assert_allclose(load_image(PIXELS), PIXELS / 255.0, atol=1e-6)
    np.testing.assert_allclose(load_image(PIXELS / 255.0), PIXELS / 255.0, atol=1e-6)
    buffer = io.BytesIO()
    Image.fromarray(PIXELS).save(buffer, format="PNG")
    np.testing.assert_allclose(load_image(buffer.getvalue()), PIXELS / 255.0, atol=1e-6)
    with pytest.raises(InputError, match=r"expected \[0, 1\]"):
        load_image(PIXELS.astype(np.float32))
    with pytest.raises(InputError, match="NaN"):
        load_image(np.full((16, 16, 3), np.nan, np.float32))


def test_bundled_photo():
    image = load_image("chelsea")
    assert image.shape == (300, 451, 3) and image.dtype == np.float32
    assert 0 <= image.min() and image.max() <= 1


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def _truncated_jpeg(tmp_path):
    path = _save(tmp_path, "cut.jpg", Image.fromarray(PIXELS), quality=90)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _huge_png(tmp_path):
    # A valid PNG header declaring 100000 × 100000 pixels: must be refused unread.
    import struct
    import zlib

    def chunk(kind, payload):
        body = kind + payload
        return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")
    path = tmp_path / "huge.png"
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: _write(p / "empty.png", b""), "empty"),
        (lambda p: _write(p / "t.png", b"hello, not a picture"), "not an image"),
        (_truncated_jpeg, "truncated"),
        (_huge_png, "too large"),
        (lambda p: _save(p, "one.png", Image.new("RGB", (1, 1))), "at least"),
        (lambda p: p / "missing.png", "no such file"),
        (lambda p: p, "folder"),
    ],
    ids=["empty", "text", "truncated", "huge", "1x1", "missing", "folder"],
)
def test_bad_files_give_one_clear_line(tmp_path, make, message):
    with pytest.raises(InputError, match=message) as caught:
        load_image(make(tmp_path))
    assert "\n" not in str(caught.value)

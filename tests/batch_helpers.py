"""Shared by the batch tests: a small Keras model file and real photos of mixed sizes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")


def save_model(path: Path) -> Path:
    """A small convolutional classifier (10 classes, 32×32 input) saved as ``.keras``."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(6, 3, activation="relu", name="conv1")(inputs)
    x = keras.layers.Conv2D(6, 3, activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(10, activation="softmax", name="predictions")(x)
    keras.Model(inputs, outputs, name="small").save(path)
    return path


def crops(count: int, seed: int, sizes=((24, 40), (64, 64), (33, 47), (120, 90))):
    """``count`` crops of scikit-image's photos, of sizes drawn from ``sizes``."""
    import skimage.data

    rng = np.random.default_rng(seed)
    photos = [getattr(skimage.data, name)() for name in PHOTOS]
    found = []
    for _ in range(count):
        photo = photos[rng.integers(len(photos))]
        if photo.ndim == 2:
            photo = np.repeat(photo[..., None], 3, axis=2)
        height, width = sizes[rng.integers(len(sizes))]
        top = rng.integers(photo.shape[0] - height)
        left = rng.integers(photo.shape[1] - width)
        found.append(np.ascontiguousarray(photo[top : top + height, left : left + width, :3]))
    return found


def write_photos(folder: Path, count: int, seed: int, names=None, **kwargs) -> list[Path]:
    """Crops saved as PNG (or the suffix in ``names``) under ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, pixels in enumerate(crops(count, seed, **kwargs)):
        path = folder / (names[index] if names else f"img{index:03d}.png")
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


def write_bad_files(folder: Path) -> dict[str, str]:
    """Files that look like images but are not: name -> a word of the expected reason."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.jpg").write_text("this is not a photo")
    good = folder / "truncated.png"
    Image.fromarray(crops(1, 99)[0]).save(good)
    data = good.read_bytes()
    good.write_bytes(data[: len(data) // 3])
    (folder / "tiny.png").parent.mkdir(exist_ok=True)
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(folder / "tiny.png")
    (folder / "huge.png").write_bytes(_png_header(30_000, 30_000))
    return {"empty.png": "empty", "notes.jpg": "not an image", "truncated.png": "truncated",
            "tiny.png": "at least", "huge.png": "too large"}  # fmt: skip


def _png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width``×``height`` pixels (a decompression bomb's header)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00" * 64)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )

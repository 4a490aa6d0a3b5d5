"""Input and output: images, videos, atomic writes."""

from salmap.io.atomic import atomic_path, save_npy
from salmap.io.image import SAMPLE_IMAGES, load_image, sample_image

__all__ = ["atomic_path", "save_npy", "load_image", "sample_image", "SAMPLE_IMAGES"]

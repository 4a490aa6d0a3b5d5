"""Input and output: images, videos, atomic writes."""

from salmap.io.atomic import atomic_path, save_npy
from salmap.io.image import SAMPLE_IMAGES, load_image, sample_image
from salmap.io.video import (
    NpyStackWriter,
    VideoInfo,
    VideoWriter,
    is_video,
    iter_frame_batches,
    iter_frames,
    read_video_info,
)

__all__ = [
    "atomic_path",
    "save_npy",
    "load_image",
    "sample_image",
    "SAMPLE_IMAGES",
    "VideoInfo",
    "VideoWriter",
    "NpyStackWriter",
    "read_video_info",
    "iter_frames",
    "iter_frame_batches",
    "is_video",
]

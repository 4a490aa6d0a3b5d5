"""Decoding ahead of the model: inputs -> :class:`Sample` (pixels, content hash, or an error).

:func:`prefetch` decodes and resizes on a thread pool (Pillow and OpenCV release the
GIL) while the model works on the previous batch, keeping at most ``depth`` decoded
images in memory however long the dataset is.
"""

from __future__ import annotations

import hashlib
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import groupby

import numpy as np
from PIL import Image

from salmap.batch.inputs import Input
from salmap.errors import InputError
from salmap.io.image import SAMPLE_IMAGES, load_image

__all__ = ["Sample", "load_input", "decode_many", "prefetch", "resize_image"]

#: ``done(input, digest) -> bool``: whether every job of an input is already done.
DoneCheck = Callable[[Input, str], bool]


@dataclass
class Sample:
    """One decoded input.

    Attributes
    ----------
    input : Input
    image : numpy.ndarray or None
        H×W×3 float32 in [0, 1] (at the model's input size when one was given); None
        for errors and skipped inputs.
    original_size : (height, width) or None
        The decoded image's own size.
    digest : str
        SHA-256 of the file's bytes (of the frame's pixels for a video frame).
    error : str or None
        One line saying why the input cannot be explained.
    skipped : bool
        Every job of this input is already in the manifest (not decoded).
    """

    input: Input
    image: np.ndarray | None = None
    original_size: tuple[int, int] | None = None
    digest: str = ""
    error: str | None = None
    skipped: bool = False


def resize_image(image: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """Resize an H×W×3 [0, 1] image to ``size`` = (height, width).

    Pillow's bilinear filter on float channels widens its triangle kernel when
    shrinking — the antialiased bilinear resize the Keras adapter applies inside the
    model (``tf.image.resize(..., antialias=True)``), equal to it within 4e-6 — so a
    model sees the same pixels whether salmap resizes ahead of it or inside it.
    """
    if size is None or image.shape[:2] == tuple(size):
        return image
    height, width = size
    channels = [
        np.asarray(Image.fromarray(image[..., c], mode="F").resize((width, height), Image.BILINEAR))
        for c in range(3)
    ]
    return np.clip(np.stack(channels, axis=-1), 0.0, 1.0)


def _reason(error: InputError) -> str:
    return str(error).removeprefix("the given bytes: ").splitlines()[0]


def load_input(item: Input, size=None, done: DoneCheck | None = None) -> Sample:
    """Read, hash and decode one image file (or bundled photo); errors become the
    sample's ``error``, never an exception."""
    digest = ""
    try:
        if item.source in SAMPLE_IMAGES:
            image = load_image(item.source)
            digest = hashlib.sha256(image.tobytes()).hexdigest()
        else:
            with open(item.source, "rb") as handle:
                data = handle.read()
            digest = hashlib.sha256(data).hexdigest()
            if done is not None and done(item, digest):
                return Sample(item, digest=digest, skipped=True)
            if not data:
                return Sample(item, digest=digest, error="file is empty")
            image = load_image(data)
    except InputError as error:
        return Sample(item, digest=digest, error=_reason(error))
    except OSError as error:
        return Sample(item, digest=digest, error=f"cannot read the file ({error.strerror})")
    if done is not None and done(item, digest):
        return Sample(item, digest=digest, skipped=True)
    return Sample(item, resize_image(image, size), image.shape[:2], digest)


def _frame_samples(
    items: Sequence[Input], size=None, done: DoneCheck | None = None
) -> Iterator[Sample]:
    """Consecutive frames of one video, decoded in one pass."""
    from salmap.io.video import iter_frames

    wanted = {item.frame: item for item in items}
    first, last = min(wanted), max(wanted)
    try:
        for frame in iter_frames(items[0].source, first, last + 1, dtype="uint8"):
            item = wanted.pop(frame.index, None)
            if item is not None:
                digest = hashlib.sha256(frame.image.tobytes()).hexdigest()
                if done is not None and done(item, digest):
                    yield Sample(item, digest=digest, skipped=True)
                    continue
                image = frame.image.astype(np.float32) * np.float32(1 / 255)
                yield Sample(item, resize_image(image, size), image.shape[:2], digest)
    except InputError as error:
        message = _reason(error)
    else:
        message = "the video ends before this frame"
    for item in wanted.values():
        yield Sample(item, error=message)


def _runs(items: Sequence[Input]) -> Iterator[list[Input]]:
    """Single images, and runs of consecutive frames of one video."""
    for (_source, is_frame), run in groupby(items, key=lambda i: (i.source, i.frame is not None)):
        if is_frame:
            yield list(run)
        else:
            yield from ([item] for item in run)


def decode_many(items: Sequence[Input], size=None, done: DoneCheck | None = None) -> list[Sample]:
    """Decode ``items`` in order (one pass per run of video frames)."""
    samples: list[Sample] = []
    for run in _runs(items):
        if run[0].frame is None:
            samples.append(load_input(run[0], size, done))
        else:
            samples.extend(_frame_samples(run, size, done))
    return samples


def prefetch(
    items: Sequence[Input],
    size=None,
    *,
    workers: int = 4,
    depth: int = 64,
    done: DoneCheck | None = None,
) -> Iterator[Sample]:
    """Decoded samples in input order, decoded up to ``depth`` inputs ahead.

    A producer thread walks the inputs: image files go to a pool of ``workers``
    threads, video frames are read in one sequential pass. At most ``depth`` samples
    wait decoded (or decoding) at any time, so memory does not grow with the dataset.
    """
    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="salmap-decode")

    def put(item) -> None:
        while not stop.is_set():
            try:
                slots.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def produce() -> None:
        try:
            for run in _runs(items):
                if stop.is_set():
                    return
                if run[0].frame is None:
                    put(pool.submit(load_input, run[0], size, done))
                else:
                    for sample in _frame_samples(run, size, done):
                        if stop.is_set():
                            return
                        put(_ready(sample))
        except BaseException as error:  # noqa: BLE001 - handed to the consumer, raised there
            failed: Future = Future()
            failed.set_exception(error)
            put(failed)
        finally:
            put(None)

    producer = threading.Thread(target=produce, name="salmap-inputs", daemon=True)
    producer.start()
    try:
        while (future := slots.get()) is not None:
            yield future.result()
    finally:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
        producer.join()


def _ready(sample: Sample) -> Future:
    future: Future = Future()
    future.set_result(sample)
    return future

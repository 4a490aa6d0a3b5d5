"""Video reading and writing: round trips, frame ranges, GIFs, bad files, atomic writes."""

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from salmap.errors import InputError, UsageError
from salmap.io import (
    NpyStackWriter,
    VideoWriter,
    is_video,
    iter_frame_batches,
    iter_frames,
    read_video_info,
)

VTEST = Path(os.environ.get("SALMAP_VTEST", "/work/shared/data/vtest.avi"))


def _ramp_frames(count, width=64, height=48):
    """Frame k is a smooth picture whose brightness encodes k (10 levels per frame)."""
    ys, xs = np.mgrid[0:height, 0:width]
    base = (20 * np.sin(xs / 7.0) + 20 * np.cos(ys / 5.0)).astype(np.float32)
    frames = []
    for k in range(count):
        value = np.clip(base + 40 + 10 * k, 0, 255).astype(np.uint8)
        frames.append(np.stack([value, value, np.full_like(value, 128)], axis=-1))
    return frames


def _write(path, frames, fps=12.5):
    with VideoWriter(path, fps=fps) as writer:
        for frame in frames:
            writer.write(frame)
    return path


@pytest.mark.parametrize("suffix", [".mp4", ".avi", ".mkv", ".mov"])
def test_round_trip_keeps_size_rate_count_and_pixels(tmp_path, suffix):
    frames = _ramp_frames(12)
    path = _write(tmp_path / f"clip{suffix}", frames)
    info = read_video_info(path)
    assert (info.width, info.height) == (64, 48)
    assert info.fps == pytest.approx(12.5)
    assert info.frame_count == 12
    assert info.duration == pytest.approx(12 / 12.5)
    assert info.reader == "ffmpeg"
    read = [frame.image for frame in iter_frames(path, dtype="uint8")]
    assert len(read) == 12
    for original, decoded in zip(frames, read, strict=True):
        assert decoded.shape == (48, 64, 3) and decoded.dtype == np.uint8
        assert np.abs(decoded.astype(int) - original).mean() < 4  # lossy codecs, close


def test_odd_sizes_are_padded_not_cropped(tmp_path):
    frames = [np.full((25, 33, 3), 200, np.uint8)]
    frames[0][:, -1] = 20  # the last column must survive
    path = _write(tmp_path / "odd.mp4", frames * 3)
    info = read_video_info(path)
    assert (info.width, info.height) == (34, 26)
    first = next(iter_frames(path, dtype="uint8")).image
    assert first[:25, 32].mean() < 60 and first[:25, 33].mean() < 60  # replicated edge


def test_range_stride_times_and_max_width(tmp_path):
    path = _write(tmp_path / "ramp.avi", _ramp_frames(12), fps=10)
    frames = list(iter_frames(path, start=3, end=11, every=3))
    assert [f.index for f in frames] == [3, 6, 9]
    assert [f.time for f in frames] == pytest.approx([0.3, 0.6, 0.9])
    # Brightness encodes the frame number: the right frames were decoded, not neighbours.
    red = [float(f.image[..., 0].mean()) * 255 for f in frames]
    expected = [float(_ramp_frames(12)[k][..., 0].mean()) for k in (3, 6, 9)]
    assert red == pytest.approx(expected, abs=3)
    assert frames[0].image.dtype == np.float32
    assert 0.0 <= frames[0].image.min() and frames[0].image.max() <= 1.0
    small = next(iter_frames(path, max_width=32)).image
    assert small.shape == (24, 32, 3)
    assert len(list(iter_frames(path, start=10))) == 2  # to the real end


def test_batches_match_single_frames(tmp_path):
    path = _write(tmp_path / "ramp.avi", _ramp_frames(10))
    batches = list(iter_frame_batches(path, 4, dtype="uint8"))
    assert [b.images.shape[0] for b in batches] == [4, 4, 2]
    assert batches[1].indices == [4, 5, 6, 7]
    singles = [f.image for f in iter_frames(path, dtype="uint8")]
    np.testing.assert_array_equal(np.concatenate([b.images for b in batches]), np.stack(singles))


def test_gif_round_trip_streams_with_per_frame_palettes(tmp_path):
    frames = _ramp_frames(6)
    path = _write(tmp_path / "clip.gif", frames, fps=10)
    info = read_video_info(path)
    assert info.reader == "pillow" and info.frame_count == 6
    assert info.fps == pytest.approx(10.0)
    read = [f.image for f in iter_frames(path, dtype="uint8")]
    assert len(read) == 6
    for original, decoded in zip(frames, read, strict=True):
        assert np.abs(decoded.astype(int) - original).mean() < 3


def test_gif_frame_delays_do_not_drift(tmp_path):
    path = _write(tmp_path / "thirty.gif", _ramp_frames(9), fps=30)
    with Image.open(path) as img:
        delays = []
        for index in range(img.n_frames):
            img.seek(index)
            delays.append(img.info["duration"])
    assert set(delays) <= {30, 40}  # centisecond steps
    assert sum(delays) == 300  # nine frames at 30 fps last 0.3 s exactly


def test_skimage_animated_gif():
    import skimage.data

    path = Path(skimage.data.__file__).parent / "no_time_for_that_tiny.gif"
    if not path.exists():
        pytest.skip("scikit-image's tiny GIF is not installed")
    info = read_video_info(path)
    assert (info.width, info.height, info.frame_count) == (14, 25, 24)
    assert info.fps == pytest.approx(1000 / 70)
    frames = list(iter_frames(path, every=5, dtype="uint8"))
    assert [f.index for f in frames] == [0, 5, 10, 15, 20]
    assert frames[1].time == pytest.approx(0.35)
    assert is_video(path)


def test_is_video(tmp_path):
    Image.new("RGB", (20, 20)).save(tmp_path / "still.png")
    assert not is_video(tmp_path / "still.png")
    assert is_video("anything.MP4") and is_video(Path("x.mkv"))
    assert not is_video(np.zeros((4, 4, 3)))


def _file(path, data: bytes):
    path.write_bytes(data)
    return path


def _still(path):
    Image.new("RGB", (40, 30)).save(path)
    return path


def _zero_frame_video(path):
    writer = cv2.VideoWriter(
        str(path), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 48)
    )
    writer.release()
    return path


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: d / "missing.mp4", "no such file"),
        (lambda d: d, "folder"),
        (lambda d: _file(d / "empty.mp4", b""), "empty"),
        (lambda d: _still(d / "p.png"), "still image"),
        (lambda d: _still(d / "p.jpg"), "still image"),
        (lambda d: _file(d / "junk.mp4", os.urandom(4000)), "not a video"),
        (lambda d: _zero_frame_video(d / "zero.mp4"), "video"),
    ],
    ids=["missing", "folder", "empty", "png", "jpeg", "junk", "zero-frames"],
)
def test_bad_files_are_input_errors(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(InputError, match=message) as caught:
        read_video_info(path)
    assert caught.value.exit_code == 3
    assert "\n" not in str(caught.value)
    with pytest.raises(InputError):
        next(iter_frames(path))


def test_truncated_video_is_an_input_error_or_stops_early(tmp_path):
    path = _write(tmp_path / "full.avi", _ramp_frames(12))
    cut = tmp_path / "cut.avi"
    cut.write_bytes(path.read_bytes()[:2000])  # header and a frame or two at most
    try:
        frames = list(iter_frames(cut))
    except InputError:
        return
    assert len(frames) < 12


@pytest.mark.parametrize(
    "kwargs", [{"every": 0}, {"start": -1}, {"start": 5, "end": 5}, {"max_width": 3}]
)
def test_bad_ranges_are_usage_errors(tmp_path, kwargs):
    path = _write(tmp_path / "ramp.avi", _ramp_frames(3))
    with pytest.raises(UsageError):
        next(iter_frames(path, **kwargs))


def test_writer_is_atomic(tmp_path):
    target = tmp_path / "out.mp4"
    _write(target, _ramp_frames(4))
    before = target.read_bytes()
    with pytest.raises(RuntimeError):
        with VideoWriter(target, fps=5) as writer:
            writer.write(_ramp_frames(1)[0])
            raise RuntimeError("failure half-way")
    assert target.read_bytes() == before
    with pytest.raises(UsageError, match="no frames"):
        with VideoWriter(target, fps=5):
            pass
    assert target.read_bytes() == before
    with pytest.raises(UsageError, match="64×48"):
        with VideoWriter(target, fps=5) as writer:
            writer.write(np.zeros((48, 64, 3), np.uint8))
            writer.write(np.zeros((40, 64, 3), np.uint8))
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]  # no temporary left


def test_writer_refuses_unknown_formats():
    with pytest.raises(UsageError, match=".mp4"):
        VideoWriter("out.xyz", fps=10)
    with pytest.raises(UsageError, match="frame rate"):
        VideoWriter("out.mp4", fps=0)


def test_npy_stack_writer(tmp_path):
    path = tmp_path / "maps.npy"
    maps = [np.full((3, 5), k, np.float32) + np.arange(5, dtype=np.float32) for k in range(7)]
    with NpyStackWriter(path) as writer:
        for m in maps:
            writer.write(m)
    loaded = np.load(path)
    assert loaded.shape == (7, 3, 5) and loaded.dtype == np.float32
    np.testing.assert_array_equal(loaded, np.stack(maps))
    assert np.load(path, mmap_mode="r").shape == (7, 3, 5)
    with pytest.raises(ValueError):
        with NpyStackWriter(path) as writer:
            writer.write(maps[0])
            raise ValueError("boom")
    np.testing.assert_array_equal(np.load(path), np.stack(maps))  # old file kept
    assert sorted(p.name for p in tmp_path.iterdir()) == ["maps.npy"]


@pytest.mark.skipif(not VTEST.exists(), reason="vtest.avi not available")
def test_real_video_vtest():
    info = read_video_info(VTEST)
    assert (info.width, info.height, info.frame_count) == (768, 576, 795)
    assert info.fps == pytest.approx(10.0)
    frames = list(iter_frames(VTEST, start=790, max_width=384, dtype="uint8"))
    assert [f.index for f in frames] == [790, 791, 792, 793, 794]
    assert frames[0].image.shape == (288, 384, 3)
    assert 40 < frames[0].image.mean() < 200  # a real picture, not a blank frame

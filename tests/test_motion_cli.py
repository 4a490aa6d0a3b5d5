"""``salmap motion``: outputs re-read, JSON summary, progress line, errors and exit codes."""

import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from salmap.cli import main
from salmap.io import VideoWriter, iter_frames, read_video_info
from salmap.motion import synthetic_video

PAN = (1.5, 0.5)


def _video(path, n_frames=24, pan=PAN, fps=12.0, seed=0):
    with VideoWriter(path, fps=fps) as writer:
        for frame, _ in synthetic_video(n_frames, (160, 120), pan=pan, seed=seed):
            writer.write(frame)
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return _video(tmp_path_factory.mktemp("clip") / "clip.avi")


def _run(capsys, *argv):
    code = main(["motion", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_all_outputs(tmp_path, clip, capsys):
    out = tmp_path / "out.mp4"
    code, stdout, stderr = _run(
        capsys,
        clip,
        "-o", out,
        "--map-video", tmp_path / "map.avi",
        "--npy", tmp_path / "maps.npy",
        "--contact-sheet", tmp_path / "sheet.png",
        "--sheet-rows", 3,
        "--json",
    )  # fmt: skip
    assert code == 0, stderr
    assert stderr == ""  # no progress line when stderr is not a terminal
    summary = json.loads(stdout)
    assert summary["frames"] == 24 and summary["first_frame"] == 0 and summary["last_frame"] == 23
    assert summary["method"] == "motion-dis"
    assert summary["input"]["width"] == 160 and summary["input"]["frame_count"] == 24
    assert summary["saliency"]["unit"] == "pixels per frame"
    # The pan the video was made with is what the camera fit reports.
    np.testing.assert_allclose(summary["camera"]["mean_shift"], [-1.5, -0.5], atol=0.15)
    assert set(summary["outputs"]) == {"video", "map_video", "npy", "contact_sheet"}
    info = read_video_info(out)
    assert (info.width, info.height, info.frame_count) == (160, 120, 24)
    assert info.fps == pytest.approx(12.0)
    assert read_video_info(tmp_path / "map.avi").frame_count == 24
    maps = np.load(tmp_path / "maps.npy")
    assert maps.shape == (24, 120, 160) and maps.dtype == np.float32
    assert maps.max() == pytest.approx(summary["saliency"]["peak"], rel=1e-3)
    with Image.open(tmp_path / "sheet.png") as sheet:
        assert sheet.width > 400 and sheet.height > 3 * 100  # three rows of three panels
    # The overlay brightens moving objects: the top map pixels are redder than the rest.
    frame = next(iter_frames(out, start=12, dtype="uint8")).image.astype(float)
    hot = maps[12] > np.percentile(maps[12], 98)
    assert frame[hot, 0].mean() > frame[~hot, 0].mean() + 20


def test_range_stride_gif_and_text_output(tmp_path, clip, capsys):
    out = tmp_path / "out.gif"
    code, stdout, stderr = _run(capsys, clip, "-o", out, "--start", 4, "--end", 20, "--every", 2)
    assert code == 0, stderr
    assert "8 frames (4–18)" in stdout and f"wrote {out}" in stdout
    info = read_video_info(out)
    assert info.frame_count == 8 and info.fps == pytest.approx(6.0, rel=0.01)  # centiseconds


def test_default_output_name_and_progress_line(tmp_path, clip, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, stdout, stderr = _run(
        capsys, clip, "--progress", "--camera", "none", "--flow", "farneback"
    )
    assert code == 0
    assert (tmp_path / "clip_motion.mp4").exists()
    assert "motion" in stderr and "frames/s" in stderr and "24/24" in stderr  # rich's bar
    assert stderr.endswith("\n")


def test_no_video_writes_nothing_but_what_is_asked(tmp_path, clip, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, stdout, _ = _run(capsys, clip, "--no-video", "--npy", "m.npy", "--json")
    assert code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npy"]
    assert json.loads(stdout)["outputs"] == {"npy": "m.npy"}


def test_animated_gif_input(tmp_path, capsys):
    import skimage.data

    gif = Path(skimage.data.__file__).parent / "no_time_for_that_tiny.gif"
    if not gif.exists():
        pytest.skip("scikit-image's tiny GIF is not installed")
    code, stdout, stderr = _run(capsys, gif, "-o", tmp_path / "tiny.mp4", "--json")
    assert code == 0, stderr
    summary = json.loads(stdout)
    assert summary["frames"] == 24 and summary["input"]["reader"] == "pillow"
    assert read_video_info(tmp_path / "tiny.mp4").frame_count == 24


def test_fusion_with_static_saliency(tmp_path, clip, capsys):
    import salmap

    if not hasattr(salmap, "static_saliency"):
        pytest.skip("salmap.static_saliency is not available")
    code, stdout, stderr = _run(
        capsys, clip, "--no-video", "--end", 6, "--static", "spectral-residual",
        "--npy", tmp_path / "fused.npy", "--json",
    )  # fmt: skip
    assert code == 0, stderr
    summary = json.loads(stdout)
    assert summary["method"] == "motion-dis+spectral-residual"
    assert summary["saliency"]["unit"].startswith("unitless")
    maps = np.load(tmp_path / "fused.npy")
    assert maps.shape == (6, 120, 160) and 0.0 <= maps.min() and maps.max() <= 1.0


def _still(path):
    Image.new("RGB", (64, 48), "white").save(path)
    return path


@pytest.mark.parametrize(
    "make, code, message",
    [
        (lambda d: _still(d / "photo.png"), 3, "still image"),
        (lambda d: _still(d / "photo.jpg"), 3, "still image"),
        (lambda d: (d / "empty.mp4").write_bytes(b"") or d / "empty.mp4", 3, "empty"),
        (lambda d: d / "missing.mp4", 3, "no such file"),
        (lambda d: (d / "junk.avi").write_bytes(b"RIFF" + bytes(3000)) or d / "junk.avi", 3, ""),
    ],
    ids=["png", "jpeg", "empty", "missing", "junk"],
)
def test_bad_inputs_exit_3_with_one_line(tmp_path, capsys, make, code, message):
    path = make(tmp_path)
    status, stdout, stderr = _run(capsys, path, "-o", tmp_path / "out.mp4")
    assert status == code
    assert stderr.startswith("salmap: error:") and message in stderr
    assert stderr.count("\n") == 1 and "Traceback" not in stderr
    assert not (tmp_path / "out.mp4").exists()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--every", "0"], "--every"),
        (["--start", "100"], "past the end"),
        (["--start", "5", "--end", "5"], "--end"),
        (["-o", "out.xyz"], "cannot write video"),
        (["-o", "no/such/folder/out.mp4"], "does not exist"),
        (["--contact-sheet", "sheet.mp4"], "contact sheet"),
        (["--no-video", "-o", "x.mp4"], "contradict"),
        (["--temporal", "1.5"], "temporal"),
        (["-o", "same.mp4", "--map-video", "same.mp4"], "same file name"),
    ],
)
def test_bad_options_exit_2(tmp_path, clip, capsys, monkeypatch, extra, message):
    monkeypatch.chdir(tmp_path)
    status, _, stderr = _run(capsys, clip, *extra)
    assert status == 2, stderr
    assert message in stderr and stderr.count("\n") == 1
    assert list(tmp_path.iterdir()) == []  # nothing written, not even a temporary file


def test_output_may_not_overwrite_the_input(clip, capsys):
    status, _, stderr = _run(capsys, clip, "-o", clip)
    assert status == 2 and "input video" in stderr


def _peak_cli_bytes(path, tmp_path):
    tracemalloc.start()
    try:
        assert main(["motion", str(path), "-o", str(tmp_path / "o.mp4"), "--npy",
                     str(tmp_path / "m.npy"), "--json"]) == 0  # fmt: skip
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_cli_memory_is_flat_with_video_length(tmp_path, capsys):
    short = _video(tmp_path / "short.avi", n_frames=12, seed=1)
    long = _video(tmp_path / "long.avi", n_frames=120, seed=1)
    peaks = [_peak_cli_bytes(short, tmp_path), _peak_cli_bytes(long, tmp_path)]
    capsys.readouterr()
    print(
        f"\nCLI peak traced memory: 12 frames {peaks[0] / 1e6:.2f} MB, 120 {peaks[1] / 1e6:.2f} MB"
    )
    assert np.load(tmp_path / "m.npy", mmap_mode="r").shape == (120, 120, 160)
    assert peaks[1] < 1.2 * peaks[0]


def test_shot_change_in_json_and_text(tmp_path, capsys):
    path = tmp_path / "cut.avi"
    with VideoWriter(path, fps=12.0) as writer:
        for frame, _ in synthetic_video(20, (160, 120), pan=PAN, cuts=[11], seed=4):
            writer.write(frame)
    sheet = tmp_path / "sheet.png"
    code, stdout, stderr = _run(capsys, path, "--no-video", "--contact-sheet", sheet, "--json")
    assert code == 0, stderr
    summary = json.loads(stdout)
    assert summary["cuts"] == [11] and summary["shots"] == 2 and sheet.exists()
    code, stdout, _ = _run(capsys, path, "--no-video", "--npy", tmp_path / "m.npy")
    assert code == 0 and "2 shots: cuts at frames 11" in stdout


def test_help_lists_motion(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "motion" in capsys.readouterr().out

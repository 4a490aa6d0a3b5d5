"""Model saliency over video frames: streamed, batched, target held, smoothed."""

from __future__ import annotations

import json

import numpy as np
import pytest

import salmap
from salmap.cli import main
from salmap.io.video import VideoWriter, read_video_info
from salmap.motion import synthetic_video


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "clip.avi"
    with VideoWriter(path, fps=10) as writer:
        for frame, _ in synthetic_video(12, (96, 64), seed=3):
            writer.write(frame)
    return path


@pytest.fixture(scope="module")
def model():
    import keras

    keras.utils.set_random_seed(4)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(6, 3, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return salmap.load_model(keras.Model(inputs, keras.layers.Dense(5)(x)), preprocess="none")


def test_every_frame_is_explained_like_a_still_image(clip, model):
    results = list(salmap.explain_video(clip, model, frames_per_batch=5))
    assert [r.extras["frame"] for r in results] == list(range(12))
    for result, frame in zip(results, _frames(clip), strict=True):
        expected = salmap.explain(frame, model=model)
        assert result.target == expected.target
        np.testing.assert_allclose(result.map, expected.map, rtol=1e-4, atol=1e-7)


def test_fixed_target_and_temporal_smoothing(clip, model):
    first = int(np.argmax(model.predict(next(iter(_frames(clip))))))
    raw = list(salmap.explain_video(clip, model, fix_target=True, end=6))
    assert {r.target for r in raw} == {first}
    smooth = list(salmap.explain_video(clip, model, fix_target=True, end=6, smoothing=0.5))
    np.testing.assert_allclose(smooth[0].map, raw[0].map, rtol=1e-6)
    expected = raw[0].map
    for raw_map, smoothed in zip(raw[1:], smooth[1:], strict=True):
        expected = 0.5 * expected + 0.5 * raw_map.map
        np.testing.assert_allclose(smoothed.map, expected, rtol=1e-5, atol=1e-8)
    with pytest.raises(salmap.UsageError, match="smoothing"):
        next(salmap.explain_video(clip, model, smoothing=1.0))


def _frames(path):
    from salmap.io.video import iter_frames

    for frame in iter_frames(path):
        yield frame.image


def test_cli_writes_overlay_video_and_map_stack(clip, tmp_path, capsys):
    import keras

    keras.utils.set_random_seed(5)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(inputs))
    model_path = tmp_path / "m.keras"
    keras.Model(inputs, keras.layers.Dense(1000)(x)).save(model_path)
    out, stack = tmp_path / "out.mp4", tmp_path / "maps.npy"
    code = main(["explain", str(clip), "--model", str(model_path), "--preprocess", "none",
                 "--every", "2", "--target", "Egyptian cat", "-o", str(out), "--npy", str(stack),
                 "--json"])  # fmt: skip
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["frames"] == 6 and summary["targets"] == [
        {"index": 285, "label": "Egyptian cat", "frames": 6}
    ]
    info = read_video_info(out)
    assert (info.width, info.height, info.frame_count) == (96, 64, 6)
    assert np.load(stack).shape == (6, 64, 96)


def test_cli_refuses_a_still_image_as_video(tmp_path, capsys):
    from PIL import Image

    still = tmp_path / "still.png"
    Image.new("RGB", (40, 40)).save(still)
    code = main(["explain", str(still), "--video", "-o", str(tmp_path / "o.mp4")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 3 and len(err) == 1 and err[0].startswith("salmap: error:")
    assert not (tmp_path / "o.mp4").exists()

"""The command line: end to end on the real default model, and a table of bad inputs."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from salmap.cli import main

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def imagenet_sized_model_file(tmp_path_factory):
    """A small real Keras model file with 1000 outputs, so ImageNet class names apply."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(1000, activation="softmax")(x)
    path = tmp_path_factory.mktemp("models") / "small.keras"
    keras.Model(inputs, outputs).save(path)
    return path


def test_explain_default_model_on_chelsea(tmp_path, capsys):
    figure = tmp_path / "chelsea.png"
    heatmap = tmp_path / "heat.png"
    raw = tmp_path / "map.npy"
    code = main(["explain", "chelsea", "-o", str(figure), "--heatmap", str(heatmap),
                 "--npy", str(raw), "--json"])  # fmt: skip
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["target"] == 285 and report["label"] == "Egyptian cat"
    assert report["model"] == "efficientnet_lite0"
    assert report["predictions"][0]["index"] == 285
    assert figure.read_bytes().startswith(PNG_SIGNATURE)
    assert Image.open(heatmap).size == (451, 300)  # the photo's own resolution
    saliency = np.load(raw)
    assert saliency.shape == (300, 451) and saliency.dtype == np.float32
    # The cat fills the photo: the map must not be blank or uniform.
    assert saliency.max() > 10 * np.median(saliency) > 0


def test_explain_text_output_and_options(tmp_path, capsys, imagenet_sized_model_file):
    figure = tmp_path / "out.png"
    code = main(["explain", "coffee", "--model", str(imagenet_sized_model_file),
                 "--preprocess", "none", "--target", "Egyptian cat", "--score", "probability",
                 "--cmap", "ocean", "--reduction", "sum", "-o", str(figure)])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert "explained class 285 (Egyptian cat" in out and f"wrote {figure}" in out
    assert figure.read_bytes().startswith(PNG_SIGNATURE)


def test_models_command(capsys):
    assert main(["models", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["efficientnet_lite0"]["offline"] is True
    assert rows["resnet50"]["preprocess"] == "caffe"
    assert main(["models", "--classes", "espresso"]) == 0
    assert "967  espresso" in capsys.readouterr().out


def _image(tmp_path, name, image: Image.Image, **kwargs):
    path = tmp_path / name
    image.save(path, **kwargs)
    return path


def _cut_jpeg(tmp_path):
    path = _image(tmp_path, "cut.jpg", Image.new("RGB", (64, 64), (200, 10, 10)), quality=90)
    path.write_bytes(path.read_bytes()[:300])
    return path


def _huge_png(tmp_path):
    import struct
    import zlib

    def chunk(kind, payload):
        return (struct.pack(">I", len(payload)) + kind + payload
                + struct.pack(">I", zlib.crc32(kind + payload)))  # fmt: skip

    header = struct.pack(">IIBBBBB", 60_000, 60_000, 8, 2, 0, 0, 0)
    path = tmp_path / "huge.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))
    return path


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def _plain(p):
    return _image(p, "ok.png", Image.new("RGB", (40, 40)))


def _deep(p):
    values = np.arange(4096, dtype=np.uint16).reshape(64, 64) * 16
    return _image(p, "deep.png", Image.fromarray(values))


def _alpha(p):
    return _image(p, "alpha.png", Image.new("RGBA", (48, 40), (10, 200, 30, 128)))


def _cmyk(p):
    return _image(p, "print.jpg", Image.new("CMYK", (40, 48), (0, 200, 200, 0)))


CASES = {
    # name: (make input, extra args, expected exit code, words in the message)
    "empty file": (lambda p: _write(p / "empty.jpg", b""), [], 3, "empty"),
    "truncated jpeg": (_cut_jpeg, [], 3, "truncated"),
    "text named png": (lambda p: _write(p / "notes.png", b"just text\n"), [], 3, "not an image"),
    "1x1 image": (lambda p: _image(p, "dot.png", Image.new("RGB", (1, 1))), [], 3, "at least"),
    "huge declared size": (_huge_png, [], 3, "too large"),
    "16-bit png": (_deep, [], 0, None),
    "rgba png": (_alpha, [], 0, None),
    "cmyk jpeg": (_cmyk, [], 0, None),
    "unknown class name": (_plain, ["--target", "dragon"], 2, "unknown class name"),
    "class index out of range": (_plain, ["--target", "1000"], 2, "out of range"),
    "missing model file": (_plain, ["--model", "nowhere.keras"], 4, "not found"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_and_odd_inputs(case, tmp_path, capsys, imagenet_sized_model_file):
    make, extra, expected, words = CASES[case]
    source = make(tmp_path)
    output = tmp_path / "result.png"
    model = ["--model", str(imagenet_sized_model_file), "--preprocess", "none"]
    if "--model" in extra:
        model = ["--preprocess", "none"]
    code = main(["explain", str(source), "-o", str(output), *model, *extra])
    captured = capsys.readouterr()
    assert code == expected, captured.err
    if expected == 0:
        assert output.read_bytes().startswith(PNG_SIGNATURE)
        return
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("salmap: error: "), captured.err
    assert words in lines[0]
    assert "Traceback" not in captured.err
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith((".result", "result"))]
    assert leftovers == []


def test_usage_errors_and_process_exit_code(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "salmap", "explain", str(tmp_path / "missing.jpg")],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 3
    assert done.stderr.strip().splitlines() == [
        f"salmap: error: {tmp_path / 'missing.jpg'}: no such file"
    ]
    done = subprocess.run(
        [sys.executable, "-m", "salmap", "explain", "--score", "loss"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and "invalid choice" in done.stderr


def test_failed_figure_write_leaves_nothing(tmp_path, imagenet_sized_model_file, capsys):
    target = tmp_path / "figure.xyz"  # unknown format: refused before anything is written
    code = main(["explain", "chelsea", "--model", str(imagenet_sized_model_file),
                 "--preprocess", "none", "-o", str(target)])  # fmt: skip
    assert code == 2 and "cannot tell the format" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []

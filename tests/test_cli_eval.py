"""``salmap eval``: the report (HTML self-contained, JSON, CSV), the progress bar, and
bad arguments with their exit codes. A small Keras model file keeps it fast; the
metrics' numbers are tested in test_metrics_faithfulness.py."""

from __future__ import annotations

import base64
import csv
import json
import re

import numpy as np
import pytest
from PIL import Image

from salmap.cli import main

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(6, 3, activation="relu", name="conv1")(inputs)
    x = keras.layers.Conv2D(6, 3, activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(10, activation="softmax", name="predictions")(x)
    path = tmp_path_factory.mktemp("models") / "small.keras"
    keras.Model(inputs, outputs, name="small").save(path)
    return path


def _fast(model_file) -> list[str]:
    return ["--model", str(model_file), "--preprocess", "none", "--steps", "8",
            "--samples", "8", "--cascade", "2"]  # fmt: skip


def test_eval_writes_a_self_contained_report(tmp_path, capsys, model_file):
    photo = tmp_path / "cat photo.png"
    Image.fromarray((np.random.default_rng(0).random((40, 48, 3)) * 255).astype(np.uint8)).save(
        photo
    )
    out_dir = tmp_path / "report"
    code = main(["eval", "chelsea", str(photo), "--methods", "vanilla,gradient-x-input",
                 "-o", str(out_dir), "--progress", *_fast(model_file)])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert sorted(p.name for p in out_dir.iterdir()) == [
        "index.html",
        "results.csv",
        "results.json",
    ]

    # One rich bar over images × (methods + 2 baselines), then the 2 cascade steps, on
    # stderr (drawn once at the end when stderr is not a terminal): count, rate, times.
    assert re.search(r"sanity · conv1 .* 10/10 100% [\d.]+ maps/s \d:\d\d:\d\d", captured.err)
    assert "wrote" in captured.out and "Deletion" not in captured.err

    results = json.loads((out_dir / "results.json").read_text())
    assert results["model"] == "small"
    assert results["images"] == ["chelsea", "cat photo.png"]
    assert results["methods"] == ["vanilla", "gradient-x-input", "random", "centre"]
    keys = {column["key"] for column in results["columns"]}
    assert keys == {"deletion", "insertion", "road_morf", "road_lerf", "road", "mufidelity",
                    "pointing_hit", "pointing_energy", "sanity_spearman"}  # fmt: skip
    assert len(results["rows"]) == 8
    for row in results["rows"]:
        assert 0 <= row["deletion"] <= 1 and 0 <= row["insertion"] <= 1
        assert row["pointing_hit"] in (0.0, 1.0)
    curve = results["curves"][0]
    assert len(curve["deletion"]["scores"]) == 9  # 8 steps
    assert curve["deletion"]["fractions"][-1] == 1.0
    assert results["sanity"]["layers"] == ["original", "predictions", "conv1"]
    assert results["settings"]["steps"] == 8 and results["settings"]["mufidelity_samples"] == 8
    # The cascade runs on the first image: only its rows carry the sanity value.
    for row in results["rows"]:
        assert ("sanity_spearman" in row) == (row["image"] == "chelsea")
    summary = {entry["method"]: entry for entry in results["summary"]}
    assert summary["random"]["baseline"] and not summary["vanilla"]["baseline"]
    assert summary["centre"]["sanity_spearman"] == 1.0

    with open(out_dir / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 8
    assert {row["method"] for row in rows} == {"vanilla", "gradient-x-input", "random", "centre"}
    first = next(r for r in rows if r["image"] == "chelsea" and r["method"] == "vanilla")
    json_first = results["rows"][0]
    assert float(first["deletion"]) == pytest.approx(json_first["deletion"], rel=1e-5)

    page = (out_dir / "index.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    # Self-contained: every picture is an embedded PNG, nothing is fetched.
    sources = re.findall(r'src="([^"]*)"', page)
    assert len(sources) >= 5  # curves, ROAD, cascade lines and grid, pointing, examples
    for source in sources:
        assert source.startswith("data:image/png;base64,")
        assert base64.b64decode(source.split(",", 1)[1]).startswith(PNG_SIGNATURE)
    assert not re.search(r"(href|src)=\"(https?:|//)", page)
    for text in ("Deletion AUC", "ROAD MoRF", "MuFidelity", "Pointing", "Sanity",
                 "random (baseline)", "cat photo.png"):  # fmt: skip
        assert text in page


def test_eval_json_summary_and_a_subset_of_metrics(tmp_path, capsys, model_file):
    code = main(["eval", "coffee", "--methods", "vanilla", "--metrics", "deletion,insertion",
                 "--no-baselines", "--json", "--quiet", "-o", str(tmp_path / "r"),
                 *_fast(model_file)])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.err == ""  # --quiet: no progress bar
    payload = json.loads(captured.out)
    assert [entry["method"] for entry in payload["summary"]] == ["vanilla"]
    assert set(payload["summary"][0]) >= {"deletion", "insertion", "seconds"}
    assert "road" not in payload["summary"][0]
    assert payload["files"]["html"].endswith("index.html")


@pytest.mark.parametrize(
    ("arguments", "code", "message"),
    [
        (["--metrics", "deletion,accuracy"], 2, "unknown metric 'accuracy'"),
        (["--methods", "vanilla,telepathy"], 2, "unknown method 'telepathy'"),
        (["--param", "nonsense"], 2, "KEY=VALUE"),
        (["--param", "steps=nan"], 2, "integrated-gradients: steps must be a whole number"),
        (["-o", "{missing}/report"], 2, "does not exist"),
        (["-o", "{file}"], 2, "it is a file"),
        (["{bad}"], 3, ""),
    ],
)
def test_eval_bad_arguments(tmp_path, capsys, model_file, arguments, code, message):
    (tmp_path / "taken").write_text("x")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    arguments = [
        a.format(missing=tmp_path / "nope", file=tmp_path / "taken", bad=tmp_path / "bad.png")
        for a in arguments
    ]
    if not arguments[0].endswith(".png"):
        arguments = ["chelsea", *arguments]
    output = [] if "-o" in arguments else ["-o", str(tmp_path / "out")]
    status = main(["eval", *arguments, *output, *_fast(model_file), "--quiet"])
    err = capsys.readouterr().err
    assert status == code, err
    assert err.startswith("salmap: error:") and message in err
    assert len(err.strip().splitlines()) == 1  # one line, no traceback
    assert not (tmp_path / "out").exists()

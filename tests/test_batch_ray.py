"""``--engine ray``: the same rows and maps as the local engine, on a local Ray."""

from __future__ import annotations

import json

import numpy as np
import pytest
from batch_helpers import save_model, write_bad_files, write_photos

import salmap
from salmap.batch import read_manifest
from salmap.cli import main

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    return save_model(tmp_path_factory.mktemp("models") / "small.keras")


def _rows(folder) -> dict[str, dict]:
    """The manifest's rows by key, without their timings."""
    rows = read_manifest(folder).to_pylist()
    assert len({row["key"] for row in rows}) == len(rows)
    return {row["key"]: {k: v for k, v in row.items() if k != "seconds"} for row in rows}


def test_ray_and_local_engines_write_the_same_manifest_and_maps(tmp_path, capsys, model_file):
    data = tmp_path / "data"
    write_photos(data / "a", 9, 21)
    write_photos(data / "b", 2, 22, names=["img000.png", "img001.png"])  # same names as a/
    bad = write_bad_files(data / "bad")
    (tmp_path / "list.csv").write_text("path,target\ndata/a/img001.png,4\ndata/b/img001.png,9\n")
    common = [str(data), str(tmp_path / "list.csv"), "--methods", "vanilla,grad-cam",
              "--dtype", "float32", "--quiet", "--json", "--model", str(model_file),
              "--preprocess", "none", "--batch-size", "4"]  # fmt: skip
    assert main(["batch", *common, "-o", str(tmp_path / "local")]) == 1
    local_summary = json.loads(capsys.readouterr().out)
    assert main(["batch", *common, "-o", str(tmp_path / "ray"), "--engine", "ray"]) == 1
    ray_summary = json.loads(capsys.readouterr().out)
    for key in ("inputs", "ok", "errors", "skipped"):
        assert ray_summary[key] == local_summary[key]
    assert local_summary["ok"] == (11 + 2) * 2 and local_summary["errors"] == len(bad) * 2

    local, distributed = _rows(tmp_path / "local"), _rows(tmp_path / "ray")
    assert local.keys() == distributed.keys()
    for key, row in local.items():
        other = distributed[key]
        assert {k: v for k, v in row.items() if k not in ("score", "top5")} == {
            k: v for k, v in other.items() if k not in ("score", "top5")
        }
        if row["status"] == "ok":
            assert other["score"] == pytest.approx(row["score"], abs=1e-6)
            assert [(p["index"], p["label"]) for p in other["top5"]] == [
                (p["index"], p["label"]) for p in row["top5"]
            ]
            assert [p["probability"] for p in other["top5"]] == pytest.approx(
                [p["probability"] for p in row["top5"]], abs=1e-6
            )
            a = np.load(tmp_path / "local" / row["map"])
            b = np.load(tmp_path / "ray" / other["map"])
            np.testing.assert_allclose(b, a, rtol=0, atol=1e-5 * max(1.0, np.abs(a).max()))

    # Resumed on Ray: every input already done, the bad ones still error rows.
    assert main(["batch", *common, "-o", str(tmp_path / "ray"), "--engine", "ray"]) == 1
    again = json.loads(capsys.readouterr().out)
    assert again["skipped"] == again["inputs"] and again["ok"] == 0
    assert again["earlier_errors"] == len(bad)
    assert read_manifest(tmp_path / "ray").num_rows == len(local)


def test_ray_engine_in_memory_at_image_resolution(tmp_path, model_file):
    """No output folder: maps come back through Ray, ragged (each photo's own size)."""
    paths = write_photos(tmp_path, 6, 31)
    options = {"model": str(model_file), "preprocess": "none", "batch_size": 4}
    adapter = salmap.load_model(**options)
    found = {}
    for engine in ("local", "ray"):
        run = salmap.explain_dataset(
            paths, adapter, methods="vanilla", resolution="image", engine=engine,
            model_options=options,
        )  # fmt: skip
        found[engine] = {item.row["source"]: item for item in run}
    assert found["local"].keys() == found["ray"].keys() == {str(p) for p in paths}
    for source, item in found["local"].items():
        other = found["ray"][source]
        assert other.map.shape == item.map.shape == salmap.load_image(source).shape[:2]
        np.testing.assert_allclose(other.map, item.map, atol=1e-5 * np.abs(item.map).max())
        assert other.row["target"] == item.row["target"]

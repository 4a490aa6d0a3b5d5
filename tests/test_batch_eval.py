"""``salmap eval`` over datasets: maps made in whole batches, per-method confidence
intervals, folders expanded like ``salmap batch``."""

from __future__ import annotations

import json

import numpy as np
import pytest
from batch_helpers import save_model, write_photos

import salmap
from salmap.cli import main
from salmap.report import evaluate
from salmap.report.evaluate import METRIC_FUNCTIONS, METRICS, confidence_interval


class CountingAdapter:
    """A real adapter that records the batch size of every gradient call."""

    def __init__(self, adapter):
        self._adapter = adapter
        self.gradient_batches: list[int] = []

    def gradients(self, images, *args, **kwargs):
        self.gradient_batches.append(len(images))
        return self._adapter.gradients(images, *args, **kwargs)

    def predict(self, images):
        return self._adapter.predict(images)

    def __getattr__(self, name):
        return getattr(self._adapter, name)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    return save_model(tmp_path_factory.mktemp("models") / "small.keras")


def test_confidence_interval_is_students():
    # mean 3, s = 1.5811, standard error 0.7071, t(0.975, 4) = 2.7764
    assert confidence_interval([1, 2, 3, 4, 5]) == pytest.approx(1.96324, abs=1e-5)
    assert confidence_interval([2.0, float("nan"), 4.0]) == pytest.approx(12.7062 * 1.0, 1e-4)
    assert np.isnan(confidence_interval([1.0]))


def test_metrics_are_a_table():
    assert set(METRIC_FUNCTIONS) | {"sanity"} == set(METRICS)


@pytest.mark.parametrize("seed", [0, 1])
def test_evaluate_explains_whole_batches_and_reports_intervals(tmp_path, model_file, seed):
    size = {"sizes": ((40, 52),)}  # one size: every batch is full
    paths = write_photos(tmp_path, 6, seed, **size)
    adapter = CountingAdapter(salmap.load_model(str(model_file), preprocess="none", batch_size=4))
    found = evaluate(
        paths,
        adapter,
        methods=["vanilla"],
        metrics=["deletion", "pointing"],
        baselines=["random"],
        steps=8,
        pointing_size=(64, 64),
    )
    # 6 photos then 6 composites, 4 at a time (deletion curves use predict only).
    assert adapter.gradient_batches == [4, 2, 4, 2]
    for row in found.rows:
        single = salmap.explain(str(tmp_path / row["image"]), adapter, target=row["target"])
        np.testing.assert_allclose(
            found.maps[(row["image"], row["method"])].map,
            single.map if row["method"] == "vanilla" else found.maps[(row["image"], "random")].map,
            rtol=1e-4,
            atol=1e-6,
        )
    summary = {entry["method"]: entry for entry in found.summary()}
    for method, entry in summary.items():
        values = [row["deletion"] for row in found.rows if row["method"] == method]
        assert entry["images"] == 6
        assert entry["deletion"] == pytest.approx(np.mean(values))
        assert entry["deletion_ci"] == pytest.approx(confidence_interval(values))
        assert entry["deletion_ci"] > 0


def test_cli_eval_takes_a_folder(tmp_path, capsys, model_file):
    write_photos(tmp_path / "photos" / "a", 2, 3)
    write_photos(tmp_path / "photos" / "b", 1, 4)
    code = main(["eval", str(tmp_path / "photos"), "--methods", "vanilla", "--metrics",
                 "deletion", "--no-baselines", "--steps", "8", "--model", str(model_file),
                 "--preprocess", "none", "--json", "--quiet",
                 "-o", str(tmp_path / "r")])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    payload = json.loads(capsys.readouterr().out)
    assert payload["summary"][0]["images"] == 3
    assert np.isfinite(payload["summary"][0]["deletion_ci"])
    page = (tmp_path / "r" / "index.html").read_text()
    assert "95 % confidence interval" in page

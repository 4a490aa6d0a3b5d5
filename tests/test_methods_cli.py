"""``salmap methods`` and ``salmap explain --method/--methods/--param/--diverging``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from salmap.cli import main


@pytest.fixture(scope="module")
def model_file(tmp_path_factory, tiny_keras_model):
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    tiny_keras_model.save(path)
    return path


def _model_args(model_file):
    return ["--model", str(model_file), "--preprocess", "none", "--input-size", "32"]


def test_methods_lists_every_method_with_defaults(capsys):
    from salmap.methods import METHODS

    assert main(["methods", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["name"] for row in rows] == list(METHODS)
    by_name = {row["name"]: row for row in rows}
    assert by_name["smoothgrad"]["parameters"]["samples"] == 50
    assert by_name["integrated-gradients"]["parameters"]["baseline"] == "black"
    assert by_name["occlusion"]["parameters"] == {
        "window": 32,
        "stride": 16,
        "value": 0.5,
        "aggregate": "mean",
    }
    assert "ig" in by_name["integrated-gradients"]["aliases"]
    assert main(["methods"]) == 0
    text = capsys.readouterr().out
    assert "grad-cam++" in text and "samples=50, sigma=0.15" in text


def test_explain_one_method_with_params(tmp_path, capsys, model_file):
    figure, npy = tmp_path / "ig.png", tmp_path / "ig.npy"
    argv = ["explain", "chelsea", "--method", "ig", "--param", "steps=6", "--param",
            "baseline=black,white", "--diverging", "--reduction", "sum", "-o", str(figure),
            "--npy", str(npy), "--json", *_model_args(model_file)]  # fmt: skip
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["method"] == "integrated-gradients"
    assert out["params"]["steps"] == 6 and out["params"]["baseline"] == ["black", "white"]
    saved = np.load(npy)
    assert saved.shape == (300, 451) and saved.min() < 0 < saved.max()  # signed sum
    assert figure.stat().st_size > 10_000


def test_explain_methods_grid(tmp_path, capsys, model_file):
    figure = tmp_path / "grid.png"
    argv = ["explain", "chelsea", "--methods", "vanilla,smoothgrad,grad-cam,rise", "--param",
            "samples=2", "--param", "masks=8", "-o", str(figure), "--json",
            *_model_args(model_file)]  # fmt: skip
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert [m["method"] for m in out["methods"]] == ["vanilla", "smoothgrad", "grad-cam", "rise"]
    assert all(m["seconds"] > 0 for m in out["methods"])
    assert figure.stat().st_size > 10_000


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--method", "nope"], "unknown method 'nope'"),
        (["--methods", "vanilla,nope"], "unknown method 'nope'"),
        (["--param", "steps"], "--param expects KEY=VALUE"),
        (["--method", "ig", "--param", "rule=simpson"], "unknown quadrature rule 'simpson'"),
        (["--method", "ig", "--param", "baseline=purple"], "unknown baseline 'purple'"),
        (["--method", "grad-cam", "--param", "layer=nope"], "no layer 'nope'"),
        (["--method", "smoothgrad", "--param", "base=rise"], "not to 'rise'"),
    ],
)
def test_bad_method_arguments_are_one_line_usage_errors(extra, message, capsys, model_file):
    assert main(["explain", "chelsea", *extra, *_model_args(model_file)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_param_values_are_typed():
    from salmap.cli.common import parse_params

    assert parse_params(["samples=25", "sigma=0.2", "sqrt=true", "layer=none", "b=x,y"]) == {
        "samples": 25,
        "sigma": 0.2,
        "sqrt": True,
        "layer": None,
        "b": ("x", "y"),
    }

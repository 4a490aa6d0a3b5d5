"""``salmap methods`` and ``salmap explain --method/--methods/--param/--diverging``."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from salmap.cli import main
from salmap.errors import UsageError


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
            "samples=2", "--param", "masks=8", "-o", str(figure), "--json", "--progress",
            *_model_args(model_file)]  # fmt: skip
    assert main(argv) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    # The rich bar on stderr (drawn once at the end off a terminal): count, rate, times.
    assert re.search(r"rise .* 4/4 100% [\d.]+ maps/s \d:\d\d:\d\d", captured.err)
    assert [m["method"] for m in out["methods"]] == ["vanilla", "smoothgrad", "grad-cam", "rise"]
    assert all(m["seconds"] > 0 for m in out["methods"])
    assert figure.stat().st_size > 10_000


def test_explain_many_images_shows_progress_and_batches(tmp_path, capsys, model_file, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = ["explain", "chelsea", "coffee", "rocket", "--batch-size", "2", "--target", "3",
            "--target", "7", "--json", "--progress", *_model_args(model_file)]  # fmt: skip
    assert main(argv) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert [(e["image"], e["target"]) for e in out] == [
        (image, target) for target in (3, 7) for image in ("chelsea", "coffee", "rocket")
    ]
    assert re.search(r"rocket · 7 .* 6/6 100% [\d.]+ maps/s", captured.err)
    assert captured.err.count("\n") == 1  # the bar, once, and nothing else
    assert len(list(tmp_path.glob("*_saliency_[37].png"))) == 6


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
        (["--method", "ig", "--param", "steps=nan"], "steps must be a whole number >= 1, not nan"),
        (["--method", "ig", "--param", "tolerance=-0.1"], "tolerance must be a finite number > 0"),
        (["--method", "smoothgrad", "--param", "samples=-3"], "samples must be a whole number"),
        (["--method", "smoothgrad", "--param", "sigma=inf"], "sigma must be a finite number >= 0"),
        (["--method", "blur-ig", "--param", "sqrt=2"], "sqrt must be true or false, not 2"),
        (["--method", "rise", "--param", "masks=many"], ">= 1, not 'many'"),
        (["--methods", "vanilla,occlusion", "--param", "window=2.5"], "occlusion: window must be"),
        (["--method", "vanilla,rise"], "--method takes one method"),
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


def test_parameter_values_are_checked_by_kind():
    from salmap.methods import parameter_defaults
    from salmap.methods.parameters import check_parameters

    def check(method, **params):
        return check_parameters(method, params, parameter_defaults(method, params))

    # Whole-valued numbers become counts; None keeps the method's choice; kinds pass.
    assert check("rise", masks=1e3, probability=1, seed=0) == {
        "masks": 1000,
        "probability": 1,
        "seed": 0,
    }
    assert type(check("rise", masks=1e3)["masks"]) is int
    assert check("integrated-gradients", steps=None, tolerance=0.01, baseline="black") == {
        "steps": None,
        "tolerance": 0.01,
        "baseline": "black",
    }
    assert check("smoothgrad", base="integrated-gradients", steps=8) == {
        "base": "integrated-gradients",
        "steps": 8,
    }  # the base method's parameters are checked too
    for method, params in [
        ("integrated-gradients", {"steps": float("nan")}),
        ("integrated-gradients", {"max_steps": float("inf")}),
        ("integrated-gradients", {"steps": 0}),
        ("smoothgrad", {"base": "integrated-gradients", "steps": -1}),
        ("rise", {"seed": -1}),
        ("rise", {"masks": True}),
        ("rise", {"tolerance": 0.0}),
        ("occlusion", {"value": -0.5}),
        ("smoothgrad", {"sigma": (0.1, 0.2)}),
    ]:
        with pytest.raises(UsageError, match=f"{method}: {list(params)[-1]} must be"):
            check(method, **params)


def test_the_python_api_checks_before_any_model_loads():
    import salmap

    image = np.zeros((16, 16, 3), np.float32)
    with pytest.raises(UsageError, match="steps must be a whole number >= 1, not nan"):
        salmap.explain(image, model="no such model", method="ig", steps=float("nan"))


def test_nan_param_exits_2_with_one_line(tmp_path):
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "salmap", "explain", "--method", "ig", "--param", "steps=nan"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr == (
        "salmap: error: integrated-gradients: steps must be a whole number >= 1, not nan\n"
    )
    assert not list(tmp_path.iterdir())

"""``salmap static`` and ``salmap score``: outputs, JSON, and bad inputs (one line on
stderr, the documented exit code, no file left behind)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from salmap.cli import main
from salmap.metrics import fixation_metrics
from salmap.static import static_saliency


@pytest.fixture()
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture()
def photo(workdir):
    rng = np.random.default_rng(0)
    pixels = np.full((72, 96, 3), 110, np.uint8) + rng.integers(0, 20, (72, 96, 3), np.uint8)
    pixels[30:45, 50:70] = (230, 30, 30)
    path = workdir / "scene.png"
    Image.fromarray(pixels).save(path)
    return path


def _run(argv, capsys):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _files(folder):
    return sorted(p.name for p in folder.iterdir())


# ------------------------------------------------------------------------ static


def test_static_itti_writes_the_figure_and_reports_the_scan_path(photo, workdir, capsys):
    code, out, err = _run(["static", photo, "--scanpath", 3, "--json"], capsys)
    assert code == 0, err
    payload = json.loads(out)
    assert payload["method"] == "itti" and payload["figure"] == "scene_itti.png"
    assert len(payload["scan_path"]) == 3
    assert payload["shape"] == [72, 96]
    assert (workdir / "scene_itti.png").stat().st_size > 10_000
    expected = static_saliency(str(photo), fixations=3).extras["scan_path"]
    np.testing.assert_allclose(payload["scan_path"], np.round(expected, 2), atol=0.01)


def test_static_one_method_with_heatmap_npy_and_a_parameter(photo, workdir, capsys):
    code, out, err = _run(
        [
            "static",
            photo,
            "--method",
            "spectral-residual",
            "--param",
            "flavour=opencv",
            "--param",
            "sigma=4",
            "-o",
            "sr.png",
            "--heatmap",
            "heat.png",
            "--npy",
            "map.npy",
        ],
        capsys,
    )
    assert code == 0, err
    assert "wrote sr.png" in out
    assert _files(workdir) == ["heat.png", "map.npy", "scene.png", "sr.png"]
    expected = static_saliency(str(photo), method="spectral-residual", flavour="opencv", sigma=4)
    np.testing.assert_array_equal(np.load(workdir / "map.npy"), expected.map)


def test_static_methods_all_draws_the_grid(photo, workdir, capsys):
    code, out, err = _run(["static", photo, "--methods", "all", "--json"], capsys)
    assert code == 0, err
    payload = json.loads(out)
    assert [entry["method"] for entry in payload["results"]] == [
        "itti",
        "spectral-residual",
        "fine-grained",
        "frequency-tuned",
        "gbvs",
        "bms",
    ]
    assert (workdir / "scene_static.png").exists()


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["static", "missing.png"], 3, "no such file"),
        (["static", "broken.png"], 3, "not an image"),
        (["static", "{photo}", "--method", "deepgaze"], 2, "unknown static saliency method"),
        (["static", "{photo}", "--param", "sigma=3"], 2, "no parameter sigma"),
        (["static", "{photo}", "--param", "sigma"], 2, "KEY=VALUE"),
        (["static", "{photo}", "--methods", "all", "--param", "sigma=3"], 2, "one model"),
        (["static", "{photo}", "-o", "nofolder/out.png"], 2, "does not exist"),
        (["static", "{photo}", "-o", "out.xyz"], 2, "cannot tell the format"),
        (["static", "{photo}", "--method", "gbvs", "--param", "map_size=1"], 2, "map_size"),
    ],
)
def test_static_bad_inputs(argv, code, message, photo, workdir, capsys):
    (workdir / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")
    before = _files(workdir)
    argv = [a.replace("{photo}", str(photo)) for a in argv]
    status, out, err = _run(argv, capsys)
    assert status == code
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("salmap: error:") and message in lines[0]
    assert _files(workdir) == before  # nothing written, not even a temporary file


# ------------------------------------------------------------------------- score


@pytest.fixture()
def fixations_csv(workdir):
    path = workdir / "fixations.csv"
    path.write_text("x,y\n60.5,37.2\n55,33\n20,60\n# a comment\n90.9,5.1\n")
    return path


def test_score_an_image_against_points(photo, fixations_csv, capsys):
    code, out, err = _run(["score", photo, "--fixations", fixations_csv, "--json"], capsys)
    assert code == 0, err
    payload = json.loads(out)
    assert payload["method"] == "itti" and payload["fixated_pixels"] == 4
    points = np.array([[60.5, 37.2], [55, 33], [20, 60], [90.9, 5.1]])
    saliency = static_saliency(str(photo)).map.astype(np.float64)
    expected = fixation_metrics(saliency, points, rng=0)
    assert payload["metrics"] == pytest.approx(expected, abs=1e-12)
    assert set(payload["center_bias"]) == set(expected)
    assert payload["center_bias"]["information_gain"] == 0.0


def test_score_text_output_lists_every_metric(photo, fixations_csv, capsys):
    code, out, err = _run(["score", photo, "--fixations", fixations_csv], capsys)
    assert code == 0, err
    for label in ("AUC-Judd", "AUC-Borji", "NSS", "CC", "SIM", "KL divergence"):
        assert label in out
    assert "shuffled AUC" not in out


def test_score_npy_map_with_image_and_json_fixations(workdir, capsys):
    rng = np.random.default_rng(3)
    saliency = rng.random((40, 50))
    np.save(workdir / "map.npy", saliency)
    fixmap = np.zeros((40, 50), np.uint8)
    fixmap[10, 12] = fixmap[30, 40] = fixmap[20, 25] = 255
    Image.fromarray(fixmap).save(workdir / "fixmap.png")
    (workdir / "others.json").write_text(json.dumps({"x": [5, 45, 25], "y": [5, 35, 20]}))
    code, out, err = _run(
        [
            "score",
            "map.npy",
            "--fixations",
            "fixmap.png",
            "--other-fixations",
            "others.json",
            "--json",
        ],
        capsys,
    )
    assert code == 0, err
    payload = json.loads(out)
    assert payload["method"] is None and payload["fixated_pixels"] == 3
    assert "auc_shuffled" in payload["metrics"]
    binary = fixmap > 0
    others = np.array([[5, 5], [45, 35], [25, 20]], float)
    expected = fixation_metrics(saliency, binary.astype(float), other_fixations=others, rng=0)
    assert payload["metrics"] == pytest.approx(expected, abs=1e-12)


def test_score_a_constant_map_reports_null_not_nan(workdir, fixations_csv, capsys):
    np.save(workdir / "flat.npy", np.full((72, 96), 0.5))
    code, out, err = _run(["score", "flat.npy", "--fixations", fixations_csv, "--json"], capsys)
    assert code == 0, err
    payload = json.loads(out)  # strict JSON: NaN would not parse in other languages
    assert payload["metrics"]["nss"] is None and payload["metrics"]["cc"] is None


@pytest.mark.parametrize(
    ("files", "argv", "code", "message"),
    [
        ({}, ["score", "{photo}", "--fixations", "none.csv"], 3, "no such fixation file"),
        (
            {"bad.csv": "x,y\n1,2\nfoo,bar\n"},
            ["score", "{photo}", "--fixations", "bad.csv"],
            3,
            "expected 'x,y'",
        ),
        ({"far.csv": "500,10\n"}, ["score", "{photo}", "--fixations", "far.csv"], 3, "outside"),
        ({"empty.csv": ""}, ["score", "{photo}", "--fixations", "empty.csv"], 3, "empty"),
        (
            {"pts.csv": "1,2\n"},
            ["score", "nomap.npy", "--fixations", "pts.csv"],
            3,
            "no such saliency map",
        ),
        (
            {"pts.csv": "1,2\n", "m.npy": b"junk"},
            ["score", "m.npy", "--fixations", "pts.csv"],
            3,
            ".npy",
        ),
        (
            {"pts.yaml": "1,2\n"},
            ["score", "{photo}", "--fixations", "pts.yaml"],
            3,
            "unknown fixation file type",
        ),
    ],
)
def test_score_bad_inputs(files, argv, code, message, photo, workdir, capsys):
    for name, content in files.items():
        target = workdir / name
        target.write_bytes(content) if isinstance(content, bytes) else target.write_text(content)
    argv = [a.replace("{photo}", str(photo)) for a in argv]
    before = _files(workdir)
    status, out, err = _run(argv, capsys)
    assert status == code, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines
    assert out == "" and _files(workdir) == before


def test_score_needs_fixations(photo, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["score", str(photo)])
    assert exit_info.value.code == 2
    assert "--fixations" in capsys.readouterr().err


def test_help_lists_the_new_commands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "static" in out and "score" in out

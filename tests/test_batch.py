"""``salmap batch`` / ``salmap.explain_dataset`` on the local engine: inputs, results equal
to one-by-one ``salmap.explain``, the manifest, resuming, bad inputs and outputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from batch_helpers import save_model, write_bad_files, write_photos
from PIL import Image

import salmap
from salmap.batch import discover, read_manifest, resize_image
from salmap.cli import main
from salmap.errors import InputError

SRC = str(Path(__file__).resolve().parents[1] / "src")


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    return save_model(tmp_path_factory.mktemp("models") / "small.keras")


@pytest.fixture(scope="module")
def adapter(model_file):
    return salmap.load_model(str(model_file), preprocess="none", batch_size=4)


def _model_args(model_file) -> list[str]:
    return ["--model", str(model_file), "--preprocess", "none", "--batch-size", "4"]


def _hidden(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*")]


# -- inputs ----------------------------------------------------------------------------------
def test_discover_folders_globs_manifests_and_videos(tmp_path):
    import cv2

    data = tmp_path / "data"
    a = write_photos(data / "a", 2, 0, names=["img00.png", "猫 café.png"])
    b = write_photos(data / "b" / "deep", 2, 1, names=["img00.png", "x.jpg"])
    (data / "README.md").write_text("not an input")
    (data / ".cache").mkdir()
    write_photos(data / ".cache", 1, 2)
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (48, 32))
    for value in range(12):
        writer.write(np.full((32, 48, 3), value * 20, np.uint8))
    writer.release()
    (tmp_path / "list.csv").write_text(
        f"path,target,target2\n{a[0]},3,\ndata/b/deep/x.jpg,cat,7\n", encoding="utf-8"
    )
    (tmp_path / "list.txt").write_text(f"# two files\n{a[1].name}\n\n", encoding="utf-8")
    (data / "a" / "list.txt").write_text("img00.png\n")

    found = discover([data])
    assert [Path(i.source) for i in found] == sorted([*a, *b])
    stems = {i.stem() for i in found}
    assert len(stems) == 4  # the two img00.png stay two
    assert any(stem.startswith("猫 café-") for stem in stems)
    globbed = discover([str(data / "**" / "img00.png")])
    assert [Path(i.source) for i in globbed] == sorted([a[0], b[0]])
    # Each input once, however it is named; a manifest's relative paths are its own.
    assert len(discover([data, str(data / "**" / "*.png"), a[0]])) == 4
    assert [Path(i.source) for i in discover([data / "a" / "list.txt"])] == [a[0]]
    listed = discover([tmp_path / "list.csv"])
    assert [(Path(i.source), i.targets) for i in listed] == [(a[0], (3,)), (b[1], ("cat", 7))]
    frames = discover([video], every=5)
    assert [i.frame for i in frames] == [0, 5, 10]
    assert len({i.stem() for i in frames}) == 3
    with pytest.raises(InputError, match="no such file"):
        discover([tmp_path / "missing.png"])
    with pytest.raises(InputError, match="no file matches"):
        discover([str(tmp_path / "*.webp")])


# -- the same numbers as salmap.explain ----------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batch_equals_one_by_one_explain(tmp_path, adapter, seed):
    """Mixed sizes, several methods (one seeded and random), top-1 and a fixed target."""
    paths = write_photos(tmp_path, 7, seed)
    methods = {"vanilla": {}, "grad-cam": {}, "smoothgrad": {"samples": 4, "seed": seed}}
    target = None if seed != 2 else 3
    for resolution in ("image", "model"):
        run = salmap.explain_dataset(
            paths,
            adapter,
            methods=list(methods),
            target=target,
            resolution=resolution,
            method_params=methods,
            batch_size=3,
        )
        items = list(run)
        assert len(items) == len(paths) * len(methods) and run.ok == len(items)
        for item in items:
            row = item.row
            path = row["source"]
            image = salmap.load_image(path)
            if resolution == "model":
                image = resize_image(image, adapter.input_size)
            single = salmap.explain(
                image, adapter, method=row["method"], target=target, **methods[row["method"]]
            )
            assert item.map.shape == single.map.shape == image.shape[:2]
            scale = float(np.abs(single.map).max())
            np.testing.assert_allclose(item.map, single.map, rtol=1e-4, atol=1e-5 * scale)
            assert (row["target"], row["label"]) == (single.target, single.label)
            assert row["score"] == pytest.approx(single.score, rel=1e-5)
            assert [p["index"] for p in row["top5"]] == [p[0] for p in single.predictions]
            # Resized ahead of the model or inside it: the model sees the same pixels.
            assert row["score"] == pytest.approx(
                salmap.explain(path, adapter, target=row["target"]).score, abs=1e-4
            )
            assert (row["height"], row["width"]) == salmap.load_image(path).shape[:2]


# -- the command: files, manifest, errors, resuming ---------------------------------------------
def test_cli_batch_writes_maps_manifest_and_error_rows(tmp_path, capsys, model_file):
    data = tmp_path / "ünïcode data"
    good = write_photos(data / "a", 3, 5, names=["img00.png", "Ünïcode ñame.png", "z.jpg"])
    good += write_photos(data / "b", 1, 6, names=["img00.png"])
    bad = write_bad_files(data / "bad")
    out = tmp_path / "out"
    argv = ["batch", str(data), "-o", str(out), "--methods", "vanilla,grad-cam",
            "--heatmap", "--overlay", "--quiet", *_model_args(model_file)]  # fmt: skip
    assert main(argv) == 1  # some inputs became error rows
    text = capsys.readouterr().out
    assert f"8 maps written, {2 * len(bad)} error rows, 0 already done" in text

    table = read_manifest(out).to_pylist()
    assert len(table) == (len(good) + len(bad)) * 2
    ok = [row for row in table if row["status"] == "ok"]
    assert sorted((row["source"], row["method"]) for row in ok) == sorted(
        (str(path), method) for path in good for method in ("vanilla", "grad-cam")
    )
    assert len({row["map"] for row in ok}) == len(ok)  # the two img00.png stay two
    for row in ok:
        saved = np.load(out / row["map"])
        assert saved.dtype == np.float16 and saved.shape == (32, 32)
        assert np.all(np.isfinite(saved)) and saved.max() > 0
        for kind in ("heatmap", "overlay"):
            with Image.open(out / row[kind]) as picture:
                assert picture.size == (32, 32) and picture.mode == "RGB"
        assert len(row["top5"]) == 5 and row["top5"][0]["index"] == row["target"]
        assert len(row["hash"]) == 64 and row["seconds"] >= 0
    for name, reason in bad.items():
        rows = [row for row in table if row["source"].endswith(name)]
        assert [row["status"] for row in rows] == ["error", "error"]
        assert reason in rows[0]["error"] and "\n" not in rows[0]["error"]
        assert rows[0]["map"] is None
    assert not _hidden(out)

    # Again: nothing to do, the error rows are kept (exit 1), the manifest unchanged.
    assert main([*argv, "--json"]) == 1
    summary = json.loads(capsys.readouterr().out)
    assert summary["skipped"] == len(good) + len(bad) and summary["ok"] == 0
    assert summary["earlier_errors"] == len(bad)
    assert read_manifest(out).num_rows == len(table)


def test_cli_batch_manifest_targets_and_exit_zero(tmp_path, capsys, model_file):
    paths = write_photos(tmp_path / "p", 3, 7)
    (tmp_path / "list.csv").write_text(
        "file,target\n" + "".join(f"p/{p.name},{i}\n" for i, p in enumerate(paths))
    )
    out = tmp_path / "out"
    code = main(["batch", str(tmp_path / "list.csv"), "-o", str(out), "--quiet", "--json",
                 "--dtype", "float32", *_model_args(model_file)])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    rows = sorted(read_manifest(out).to_pylist(), key=lambda row: row["source"])
    assert [row["target"] for row in rows] == [0, 1, 2]
    assert [row["target_request"] for row in rows] == ["0", "1", "2"]
    assert all(np.load(out / row["map"]).dtype == np.float32 for row in rows)


@pytest.mark.parametrize(
    ("arguments", "code", "message"),
    [
        (["--method", "telepathy"], 2, "unknown method"),
        (["--param", "steps=4"], 2, "no method here takes 'steps'"),
        (["--target", "zebra"], 2, "zebra"),
        (["{missing}"], 3, "no such file"),
        (["-o", "{file}"], 2, "it is a file"),
        (["-o", "{missing}/out"], 2, "does not exist"),
    ],
)
def test_cli_batch_usage_errors(tmp_path, capsys, model_file, arguments, code, message):
    write_photos(tmp_path / "in", 1, 0)
    (tmp_path / "taken").write_text("x")
    fill = {"missing": tmp_path / "nope", "file": tmp_path / "taken"}
    arguments = [a.format(**fill) for a in arguments]
    inputs = [] if "{missing}" in "".join(arguments) else [str(tmp_path / "in")]
    output = [] if "-o" in arguments else ["-o", str(tmp_path / "out")]
    status = main(["batch", *inputs, *arguments, *output, "--quiet", *_model_args(model_file)])
    err = capsys.readouterr().err
    assert status == code, err
    assert err.startswith("salmap: error:") and message in err
    assert len(err.strip().splitlines()) == 1


def test_video_frames_are_inputs(tmp_path, adapter):
    import cv2

    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (48, 32))
    for frame in write_photos(tmp_path / "frames", 12, 8, sizes=((32, 48),)):
        writer.write(cv2.imread(str(frame)))
    writer.release()
    items = list(salmap.explain_dataset(video, adapter, every=5, resolution="image"))
    assert [item.row["frame"] for item in items] == [0, 5, 10]
    frames = {f.index: f.image for f in salmap.io.iter_frames(video)}
    for item in items:
        single = salmap.explain(frames[item.row["frame"]], adapter)
        np.testing.assert_allclose(item.map, single.map, rtol=1e-4, atol=1e-6)
        assert item.row["target"] == single.target


# -- crashes, full and read-only folders, memory ---------------------------------------------
def _command(model_file, *arguments) -> list[str]:
    return [sys.executable, "-m", "salmap", "batch", *arguments, *_model_args(model_file)]


def _environment() -> dict:
    return {**os.environ, "PYTHONPATH": SRC, "TF_CPP_MIN_LOG_LEVEL": "3"}


def test_kill_9_then_run_again_does_everything_exactly_once(tmp_path, model_file):
    import signal
    import time

    good = write_photos(tmp_path / "in", 48, 11)
    bad = write_bad_files(tmp_path / "in" / "bad")
    out = tmp_path / "out"
    command = _command(model_file, str(tmp_path / "in"), "-o", str(out), "--quiet", "--json",
                       "--methods", "vanilla,smoothgrad", "--param", "samples=32",
                       "--commit-rows", "4")  # fmt: skip
    process = subprocess.Popen(command, env=_environment(), stdout=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if len(list((out / "manifest.parquet").glob("part-*.parquet"))) >= 2:
            break
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    done_before = read_manifest(out).num_rows
    assert 0 < done_before < (len(good) + len(bad)) * 2
    # What a kill during a write leaves: a temporary file never renamed.
    (out / "maps" / ".img000-0123456789.vanilla.npy.abc123.npy").write_bytes(b"\x93NUMPY")

    again = subprocess.run(command, env=_environment(), capture_output=True, text=True)
    assert again.returncode == 1, again.stderr  # the bad files are error rows
    summary = json.loads(again.stdout)
    assert summary["skipped"] > 0 and summary["ok"] > 0

    table = read_manifest(out).to_pylist()
    ok = [row for row in table if row["status"] == "ok"]
    assert sorted((row["source"], row["method"]) for row in ok) == sorted(
        (str(path), method) for path in good for method in ("vanilla", "smoothgrad")
    )
    errors = [row for row in table if row["status"] == "error"]
    assert sorted(Path(row["source"]).name for row in errors) == sorted(2 * list(bad))
    assert len({row["key"] for row in table}) == len(table)
    for row in ok:
        assert np.all(np.isfinite(np.load(out / row["map"])))
    assert not _hidden(out)
    assert len(list((out / "maps").iterdir())) == len(ok)


def test_one_run_at_a_time_per_output_folder(tmp_path, model_file):
    write_photos(tmp_path / "in", 1, 0)
    (tmp_path / "out").mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys, time; d = os.open(sys.argv[1], "
         "os.O_RDONLY); fcntl.flock(d, fcntl.LOCK_EX); print('locked', flush=True); "
         "time.sleep(60)", str(tmp_path / "out")], stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        result = subprocess.run(_command(model_file, str(tmp_path / "in"), "-o",
                                         str(tmp_path / "out"), "--quiet"),
                                env=_environment(), capture_output=True, text=True)  # fmt: skip
    finally:
        holder.kill()
        holder.wait()
    assert result.returncode == 2
    assert "another salmap batch is writing into" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def _mount_tmpfs(folder: Path, options: str) -> bool:
    folder.mkdir()
    if os.geteuid() != 0:
        return False
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                            capture_output=True)  # fmt: skip
    return result.returncode == 0


@pytest.mark.parametrize("kind", ["full", "read-only"])
def test_full_or_read_only_output_folder(tmp_path, model_file, kind):
    write_photos(tmp_path / "in", 24, 3)
    disk = tmp_path / "disk"
    options = "size=48k" if kind == "full" else "ro,size=1m"
    if not _mount_tmpfs(disk, options):
        if kind == "full":
            pytest.skip("needs root to mount a small tmpfs")
        disk.chmod(0o555)
    try:
        out = disk / "out" if kind == "full" else disk
        result = subprocess.run(
            _command(
                model_file,
                str(tmp_path / "in"),
                "-o",
                str(out),
                "--quiet",
                "--dtype",
                "float32",
                "--commit-rows",
                "2",
            ),  # fmt: skip
            env=_environment(),
            capture_output=True,
            text=True,
        )
        assert result.returncode == 2, result.stderr
        message = result.stderr.strip()
        assert message.startswith("salmap: error: cannot ") and "\n" not in message
        assert str(disk) in message
        reason = "No space left on device" if kind == "full" else ("Read-only", "Permission")
        assert any(r in message for r in ([reason] if isinstance(reason, str) else reason)), message
        if kind == "full":
            assert "run the same command again to resume" in message
            assert not _hidden(out)
            rows = read_manifest(out).to_pylist()
            for row in rows:  # whatever the manifest holds is complete
                assert np.load(out / row["map"]).shape == (32, 32)
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)


def test_a_short_write_on_a_full_disk_is_named_as_such(tmp_path):
    # NumPy reports a short write without an errno ("N requested and M written"); the
    # batch run still says the disk is full (this made the test above flaky).
    from salmap.batch.run import _writing
    from salmap.errors import UsageError

    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "size=16k"):
        pytest.skip("needs root to mount a small tmpfs")
    try:
        with pytest.raises(OSError, match="requested and") as raw:
            np.ones(1 << 16, np.float32).tofile(disk / "raw.bin")
        assert raw.value.errno is None
        with pytest.raises(UsageError, match="No space left on device") as error:
            _writing(lambda: np.ones(1 << 16, np.float32).tofile(disk / "map.bin"), disk)
        assert "the output folder is full" in str(error.value)
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)


def test_thousands_of_tiny_files_keep_memory_flat(tmp_path, model_file):
    """Peak RSS after 100 inputs, then after 2,000 more, in one process (one model)."""
    rng = np.random.default_rng(0)
    for count in (100, 2000):
        folder = tmp_path / f"tiny{count}"
        folder.mkdir()
        for index in range(count):
            pixels = (rng.random((12, 12, 3)) * 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{index:05d}.png")
    code = (
        "import resource, sys; from salmap.cli import main\n"
        "for count in (100, 2000):\n"
        "    arguments = [f'{sys.argv[1]}/tiny{count}', '-o', f'{sys.argv[1]}/out{count}']\n"
        "    assert main(['batch', *arguments, *sys.argv[2:]]) == 0\n"
        "    print('RSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)\n"
    )
    arguments = [str(tmp_path), "--quiet", *_model_args(model_file), "--batch-size", "32"]
    result = subprocess.run([sys.executable, "-c", code, *arguments], env=_environment(),
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 0, result.stderr
    small, large = (float(line[4:]) for line in result.stdout.splitlines() if line[:4] == "RSS ")
    print(f"peak RSS: {small:.0f} MB after 100 inputs, {large:.0f} MB after 2,000 more")
    assert read_manifest(tmp_path / "out2000").num_rows == 2000
    assert large < small + 40  # 20 times the inputs: a few MB of names and rows at most

"""Time and memory to the first map: ``salmap explain PHOTO`` against the tutorial's code.

Each run is a cold process (Python start, imports, model load, one map, the figure),
measured by ``/usr/bin/time -v`` (wall clock and peak resident memory). Commands run
alternately, ``--pairs`` times, so both see the same machine load; the table gives
medians with min–max and the ratios to the tutorial (``../shared/bench/seed_baseline.py``:
ResNet50, GradientTape, three panels — random weights here, ImageNet ones cannot be
downloaded offline). salmap runs its default path (EfficientNet-Lite0 on NumPy, no
framework import) and, for reference, the same model on Keras/TensorFlow and PyTorch.

Usage::

    python benchmarks/bench_first_map.py [--pairs 3] [--image PHOTO] [--skip-torch]
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

TUTORIAL = Path(__file__).resolve().parents[2] / "shared" / "bench" / "seed_baseline.py"


def measure(command: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of one cold run."""
    done = subprocess.run(
        ["/usr/bin/time", "-v", *command], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    wall = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", done.stderr)
    hours, minutes, seconds = (float(x) if x else 0.0 for x in wall.groups())
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    return hours * 3600 + minutes * 60 + seconds, int(rss.group(1)) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--image", help="a PNG photo (default: chelsea, written to a temp dir)")
    parser.add_argument("--skip-torch", action="store_true")
    args = parser.parse_args()
    if shutil.which("/usr/bin/time") is None:
        raise SystemExit("needs /usr/bin/time (Debian package 'time')")
    folder = Path(tempfile.mkdtemp())
    image = args.image
    if image is None:
        from PIL import Image

        import salmap

        image = str(folder / "chelsea.png")
        Image.fromarray((salmap.sample_image("chelsea") * 255).round().astype("uint8")).save(image)
    salmap_cli = [sys.executable, "-m", "salmap"]
    commands = {
        "tutorial (TF ResNet50)": [sys.executable, str(TUTORIAL), image, str(folder / "t.png")],
        "salmap explain (default)": [*salmap_cli, "explain", image, "-o", str(folder / "s.png")],
        "salmap --framework keras": [
            *salmap_cli,
            "explain",
            image,
            "--framework",
            "keras",
            "-o",
            str(folder / "k.png"),
        ],
    }
    if not args.skip_torch:
        commands["salmap --framework torch"] = [
            *salmap_cli,
            "explain",
            image,
            "--framework",
            "torch",
            "-o",
            str(folder / "p.png"),
        ]
    for command in commands.values():  # warm the file cache once
        measure(command)
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
    for _ in range(args.pairs):
        for name, command in commands.items():
            results[name].append(measure(command))
    base_wall = statistics.median(w for w, _ in results["tutorial (TF ResNet50)"])
    base_rss = statistics.median(m for _, m in results["tutorial (TF ResNet50)"])
    print(
        f"{'command':28} {'wall s (min-max)':>22} {'÷tutorial':>9} {'RSS MB':>8} {'÷tutorial':>9}"
    )
    for name, runs in results.items():
        walls, rss = [w for w, _ in runs], [m for _, m in runs]
        wall, memory = statistics.median(walls), statistics.median(rss)
        spread = f"{wall:.2f} ({min(walls):.2f}-{max(walls):.2f})"
        print(
            f"{name:28} {spread:>22} {wall / base_wall:9.2f} {memory:8.0f} {memory / base_rss:9.2f}"
        )


if __name__ == "__main__":
    main()

"""``salmap batch`` throughput ÷ the model's own forward+backward throughput.

Photos of mixed sizes (crops of scikit-image's photos, 160–640 px a side, JPEG) are
written to a temporary folder; then, side by side in this one run:

- the floor: the adapter's compiled forward+backward (``adapter.gradients`` for
  vanilla, ``adapter.layer_values_and_gradients`` for Grad-CAM) on ready 224×224
  tensors, at the best of several batch sizes;
- what ``salmap.explain`` itself asks of the model on ready tensors at that batch size:
  the forward pass for the top-5, then the method;
- ``salmap.explain_dataset`` over the folder (decode, hash, resize, explain, write
  float16 maps and the Parquet manifest), local engine, and with ``--ray`` the Ray
  engine on a local Ray with this machine's CPUs: steady rate (start-up measured
  apart) and wall-time rate.

Rounds alternate the measurements so load from other processes hits all alike;
medians of ``--repeats`` rounds.

Targets (issue 13): local ÷ floor >= 0.95; Ray ÷ local >= 0.85.

    python benchmarks/bench_batch.py [--images 500] [--methods vanilla,grad-cam] [--ray]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
from PIL import Image


def write_photos(folder: Path, count: int, seed: int = 0) -> None:
    import skimage.data

    rng = np.random.default_rng(seed)
    photos = [skimage.data.chelsea(), skimage.data.coffee(), skimage.data.astronaut()]
    photos = [np.asarray(Image.fromarray(p).resize((1024, 768))) for p in photos]
    for index in range(count):
        photo = photos[index % len(photos)]
        height, width = (int(v) for v in rng.integers(160, 641, 2))
        top, left = rng.integers(0, 768 - height + 1), rng.integers(0, 1024 - width + 1)
        crop = photo[top : top + height, left : left + width]
        Image.fromarray(crop).save(folder / f"photo{index:04d}.jpg", quality=90)


def floor_function(adapter, method: str, batch: int):
    """The bare forward+backward of one batch of ready 224×224 tensors."""
    height, width = adapter.input_size
    rng = np.random.default_rng(0)
    images = rng.random((batch, height, width, 3), dtype=np.float32)
    targets = rng.integers(0, adapter.num_classes, batch).astype(np.int32)
    if method == "grad-cam":
        return lambda: adapter.layer_values_and_gradients(images, targets)
    return lambda: adapter.gradients(images, targets)


def explain_function(adapter, method: str, batch: int):
    """salmap.explain on one batch of ready tensors: the forward pass for the top-5
    and the method, what the pipeline asks of the model per batch."""
    import salmap

    height, width = adapter.input_size
    images = list(np.random.default_rng(1).random((batch, height, width, 3), dtype=np.float32))
    return lambda: salmap.explain(images, model=adapter, method=method)


def best_batch(adapter, method: str, batch_sizes) -> int:
    """The batch size at which the bare forward+backward is fastest per image."""
    rates = {}
    for batch in batch_sizes:
        function = floor_function(adapter, method, batch)
        function()  # tracing
        start = time.perf_counter()
        function()
        function()
        rates[batch] = 2 * batch / (time.perf_counter() - start)
    print(f"  {method} forward+backward images/s by batch size: "
          + ", ".join(f"{b}: {r:.1f}" for b, r in rates.items()))  # fmt: skip
    return max(rates, key=rates.get)


def pipeline_seconds(inputs, out: Path, adapter, method: str, batch: int, **options):
    """Wall seconds of explain_dataset over ``inputs`` (maps and manifest written), and
    the seconds the model waited for decoded images (local engine)."""
    import salmap

    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    run = salmap.explain_dataset(
        inputs, adapter, methods=method, output=out, batch_size=batch, **options
    )
    for _ in run:
        pass
    seconds = time.perf_counter() - start
    assert run.ok == run.total, (run.ok, run.total)
    return seconds, run.waited


def measure(adapter, method, batch, photos, out, repeats, engines) -> dict:
    """Images/s, medians over ``repeats`` rounds run in alternation: the floor and
    explain on ready tensors (8 batches each), and each engine's steady rate:
    (N − n) / (T(N) − T(n)) with n = 2 batches, so start-up (Ray's actors loading the
    model) is measured apart from throughput."""
    floor = floor_function(adapter, method, batch)
    needed = explain_function(adapter, method, batch)
    floor(), needed()
    small = photos[: 2 * batch]
    rates: dict[str, list[float]] = {"floor": [], "explain": []}
    for _ in range(repeats):
        for name, function in (("floor", floor), ("explain", needed)):
            start = time.perf_counter()
            for _ in range(8):
                function()
            rates[name].append(8 * batch / (time.perf_counter() - start))
        for engine, options in engines.items():
            short, _ = pipeline_seconds(small, out, adapter, method, batch, **options)
            full, waited = pipeline_seconds(photos, out, adapter, method, batch, **options)
            rates.setdefault(engine, []).append((len(photos) - len(small)) / (full - short))
            rates.setdefault(f"{engine} wall", []).append(len(photos) / full)
            rates.setdefault(f"{engine} start-up s", []).append(
                short - len(small) / rates[engine][-1]
            )
            if engine == "local":
                rates.setdefault("local waited %", []).append(100 * waited / full)
    return {name: statistics.median(values) for name, values in rates.items()}


def decode_seconds(folder: Path, size) -> float:
    """Seconds per image to read, hash, decode and resize, on one thread."""
    from salmap.batch import discover
    from salmap.batch.decode import decode_many

    inputs = discover([folder])
    start = time.perf_counter()
    decode_many(inputs, size)
    return (time.perf_counter() - start) / len(inputs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--methods", default="vanilla,grad-cam")
    parser.add_argument("--batch-sizes", default="16,32,64")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ray", action="store_true", help="also run the Ray engine")
    args = parser.parse_args()

    import salmap

    adapter = salmap.load_model(batch_size=max(int(b) for b in args.batch_sizes.split(",")))
    folder = Path(tempfile.mkdtemp(prefix="salmap-bench-batch-"))
    engines = {"local": {}}
    if args.ray:
        import ray

        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
        engines["ray"] = {"engine": "ray", "model_options": {}}
    try:
        (folder / "photos").mkdir()
        write_photos(folder / "photos", args.images)
        photos = sorted(str(p) for p in (folder / "photos").iterdir())
        print(f"{args.images} JPEG photos 160-640 px, {adapter.name}, {os.cpu_count()} CPUs")
        decode = decode_seconds(folder / "photos", adapter.input_size)
        print(f"decode + hash + resize: {decode * 1000:.1f} ms per photo on one thread")
        for method in args.methods.split(","):
            batch = best_batch(adapter, method, [int(b) for b in args.batch_sizes.split(",")])
            engines_here = {
                name: {**options, **({"model_options": {"batch_size": batch}} if options else {})}
                for name, options in engines.items()
            }
            found = measure(
                adapter, method, batch, photos, folder / "out", args.repeats, engines_here
            )
            print(f"{method} (batch {batch}), images/s: "
                  + ", ".join(f"{k} {v:.2f}" for k, v in found.items()))  # fmt: skip
            print(
                f"  local ÷ floor = {found['local'] / found['floor']:.3f}   local ÷ explain on "
                f"ready tensors = {found['local'] / found['explain']:.3f}   explain ÷ floor = "
                f"{found['explain'] / found['floor']:.3f}"
            )
            if "ray" in found:
                print(
                    f"  ray ÷ local = {found['ray'] / found['local']:.3f} (steady), "
                    f"{found['ray wall'] / found['local wall']:.3f} (wall time, with start-up)"
                )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()

"""``salmap batch`` throughput ÷ the model's own forward+backward throughput.

Photos of mixed sizes (crops of scikit-image's photos, 160–640 px a side, JPEG) are
written to a temporary folder; then, side by side in this one run:

- the floor: the adapter's compiled forward+backward (``adapter.gradients`` for
  vanilla, ``adapter.layer_values_and_gradients`` for Grad-CAM) on ready 224×224
  tensors, at the best of several batch sizes (median of repeats);
- what ``salmap.explain`` itself needs on ready tensors at that batch size: the
  forward pass for the top-5 and the method (median of repeats);
- ``salmap.explain_dataset`` over the folder (decode, hash, resize, explain, write
  float16 maps and the Parquet manifest), local engine, and with ``--ray`` the Ray
  engine on a local Ray with this machine's CPUs (wall time including the actors'
  start, and the steady rate after the first results).

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


def median_seconds(function, repeats: int) -> float:
    function()  # warm-up: tracing
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def floor_rate(adapter, method: str, batch_sizes, repeats: int) -> tuple[int, float]:
    """Best images/s of the bare forward+backward on ready tensors, and its batch size."""
    height, width = adapter.input_size
    rng = np.random.default_rng(0)
    best = (0, 0.0)
    for batch in batch_sizes:
        images = rng.random((batch, height, width, 3), dtype=np.float32)
        targets = rng.integers(0, adapter.num_classes, batch).astype(np.int32)
        if method == "grad-cam":
            seconds = median_seconds(
                lambda x=images, t=targets: adapter.layer_values_and_gradients(x, t), repeats
            )
        else:
            seconds = median_seconds(lambda x=images, t=targets: adapter.gradients(x, t), repeats)
        rate = batch / seconds
        print(f"  floor {method:<9} batch {batch:>3}: {rate:7.1f} images/s")
        best = max(best, (batch, rate), key=lambda pair: pair[1])
    return best


def explain_rate(adapter, method: str, batch: int, repeats: int) -> float:
    """Images/s of salmap.explain on ready tensors (predict for the top-5 + method)."""
    import salmap

    height, width = adapter.input_size
    images = list(np.random.default_rng(1).random((batch, height, width, 3), dtype=np.float32))
    seconds = median_seconds(lambda: salmap.explain(images, model=adapter, method=method), repeats)
    return batch / seconds


def dataset_rate(folder: Path, out: Path, adapter, method: str, batch: int, **options):
    """(images/s over the whole run, images/s after the first batch of results)."""
    import salmap

    shutil.rmtree(out, ignore_errors=True)
    run = salmap.explain_dataset(
        folder, adapter, methods=method, output=out, batch_size=batch, **options
    )
    start = time.perf_counter()
    first = None
    count = 0
    for _ in run:
        count += 1
        if first is None:
            first = (time.perf_counter(), count)
    end = time.perf_counter()
    assert run.ok == run.total, (run.ok, run.total)
    steady = (count - first[1]) / (end - first[0]) if end > first[0] else float("nan")
    return run.total / (end - start), steady


def decode_seconds(folder: Path, size) -> float:
    """Seconds per image to read, hash, decode and resize, on one thread."""
    from salmap.batch import decode_many, discover

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
    try:
        (folder / "photos").mkdir()
        write_photos(folder / "photos", args.images)
        print(f"{args.images} JPEG photos 160-640 px, {adapter.name}, {os.cpu_count()} CPUs")
        decode = decode_seconds(folder / "photos", adapter.input_size)
        print(f"decode + hash + resize: {decode * 1000:.1f} ms per photo on one thread")
        for method in args.methods.split(","):
            batch, floor = floor_rate(
                adapter, method, [int(b) for b in args.batch_sizes.split(",")], args.repeats
            )
            needed = explain_rate(adapter, method, batch, args.repeats)
            local, local_steady = dataset_rate(
                folder / "photos", folder / "out", adapter, method, batch
            )
            print(
                f"{method}: floor {floor:.1f} images/s (batch {batch}); explain on ready "
                f"tensors {needed:.1f}; salmap batch {local:.1f} (steady {local_steady:.1f})"
            )
            print(
                f"  batch ÷ floor = {local / floor:.3f}   batch ÷ explain-on-tensors = "
                f"{local / needed:.3f}   explain-on-tensors ÷ floor = {needed / floor:.3f}"
            )
            if args.ray:
                import ray

                if not ray.is_initialized():
                    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
                rate, steady = dataset_rate(
                    folder / "photos", folder / "ray", adapter, method, batch, engine="ray",
                    model_options={"batch_size": batch},
                )  # fmt: skip
                print(
                    f"  ray engine {rate:.1f} images/s (steady {steady:.1f}): ray ÷ local = "
                    f"{rate / local:.3f} (steady {steady / local_steady:.3f})"
                )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()

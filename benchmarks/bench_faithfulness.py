"""Deletion + insertion time ÷ the time of the forward passes they need, in one run.

With ``--steps 224`` on a 224×224 image, deletion and insertion each score 225 images
(the unperturbed one and 224 steps of 224 pixels, as RISE), so the floor is 450
forward passes. The floor is a ``tf.function`` running the Keras model on already
preprocessed 224×224 batches of the same size as salmap's chunks — what a hand-written
loop with compilation would cost, with no image building at all. salmap's time is
:func:`salmap.metrics.deletion` plus :func:`salmap.metrics.insertion`: ranking the map,
building every perturbed image (blur reference included), the adapter's chunked
predict, softmax and area. Both are timed alternately after a warm-up; the median of
the repeats is reported. The number of ``predict`` calls and images is counted too.

Target (issue 6): ratio <= 1.2.

    python benchmarks/bench_faithfulness.py [--model efficientnet_lite0|resnet50]
        [--steps 224] [--batch-size 32] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np


class CountingAdapter:
    """Forwards to an adapter and counts predict calls and images."""

    def __init__(self, adapter):
        self.adapter = adapter
        self.calls = 0
        self.images = 0

    def __getattr__(self, name):
        return getattr(self.adapter, name)

    def predict(self, images):
        self.calls += 1
        self.images += len(images)
        return self.adapter.predict(images)

    def gradients(self, *args, **kwargs):
        return self.adapter.gradients(*args, **kwargs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--steps", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import cv2
    import tensorflow as tf

    import salmap
    from salmap.metrics import deletion, insertion, mufidelity, road

    weights = None if args.model == "efficientnet_lite0" else "random"
    adapter = salmap.load_model(args.model, weights=weights, batch_size=args.batch_size)
    height, width = adapter.input_size
    image = cv2.resize(
        salmap.sample_image("chelsea"), (width, height), interpolation=cv2.INTER_AREA
    )
    result = salmap.explain(image, adapter, method="gradient-x-input")
    counting = CountingAdapter(adapter)

    def ours():
        deletion(counting, image, result.map, result.target, steps=args.steps)
        insertion(counting, image, result.map, result.target, steps=args.steps)

    per_metric = args.steps + 1
    prepared = adapter._preprocess(tf.constant(np.repeat(image[None], args.batch_size, 0)))
    last = per_metric % args.batch_size
    prepared_last = prepared[:last] if last else None
    keras_model = adapter.model
    forward = tf.function(lambda x: keras_model(x, training=False))

    def floor():
        # The same chunks as salmap's: per metric, full batches and one remainder.
        for _ in range(2):
            for _ in range(per_metric // args.batch_size):
                forward(prepared).numpy()
            if prepared_last is not None:
                forward(prepared_last).numpy()

    ours()
    floor()  # warm-up: tracing, first allocations
    counting.calls = counting.images = 0
    ours()
    calls, images = counting.calls, counting.images
    ours_times, floor_times = [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        floor()
        floor_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        ours()
        ours_times.append(time.perf_counter() - start)
    floor_s, ours_s = statistics.median(floor_times), statistics.median(ours_times)

    print(
        f"model {adapter.name}, input {height}x{width}, batch {args.batch_size}, "
        f"TF {tf.__version__}, {os.cpu_count()} CPUs"
    )
    print(
        f"deletion + insertion, {args.steps} steps: {images} images in {calls} predict calls "
        f"(floor {2 * per_metric} forward passes)"
    )
    print(f"{'floor s':>9} {'salmap s':>9} {'ratio':>7}")
    print(f"{floor_s:>9.3f} {ours_s:>9.3f} {ours_s / floor_s:>7.3f}")

    start = time.perf_counter()
    road(adapter, image, result.map, result.target)
    road_s = time.perf_counter() - start
    start = time.perf_counter()
    mufidelity(adapter, image, result.map, result.target)
    mufidelity_s = time.perf_counter() - start
    print(
        f"for reference: ROAD (18 imputed images) {road_s:.2f} s, "
        f"MuFidelity (201 images) {mufidelity_s:.2f} s"
    )


if __name__ == "__main__":
    main()

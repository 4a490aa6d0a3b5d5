"""Vanilla-gradient saliency time ÷ the framework's own forward+backward time.

Both are measured in this one run, on the same model, input size and batch sizes
(1 and 32), after a warm-up call; the median of several repeats is reported.
The floor is a ``tf.function`` that runs the Keras model on already-preprocessed
224×224 inputs and takes the gradient of the target logits w.r.t. that input — what
a hand-written tutorial loop would cost with compilation. salmap's time is
``adapter.gradients`` on [0, 1] images: resizing and preprocessing inside the path,
NumPy in and out, chunking.

Target (issue 2): ratio <= 1.10 at batch 32.

    python benchmarks/bench_vanilla.py [--model resnet50|efficientnet_lite0] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
from timing import interleaved_medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", default="resnet50", help="resnet50 (random weights) or efficientnet_lite0"
    )
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batch-sizes", default="1,32")
    args = parser.parse_args()

    import tensorflow as tf

    import salmap

    weights = "random" if args.model != "efficientnet_lite0" else None
    adapter = salmap.load_model(args.model, weights=weights, batch_size=64)
    keras_model = adapter.model
    preprocess = adapter._preprocess  # the same normalisation, applied outside the timed floor
    height, width = adapter.input_size
    print(
        f"model {adapter.name}, input {height}x{width}, TF {tf.__version__}, {os.cpu_count()} CPUs"
    )
    print(f"{'batch':>5} {'floor s':>9} {'salmap s':>9} {'ratio':>7}")
    for batch in [int(b) for b in args.batch_sizes.split(",")]:
        rng = np.random.default_rng(0)
        images = rng.random((batch, height, width, 3), dtype=np.float32)
        targets = rng.integers(0, adapter.num_classes, batch).astype(np.int32)
        prepared = preprocess(tf.constant(images))
        target_tensor = tf.constant(targets)

        @tf.function
        def floor(x, t):
            with tf.GradientTape() as tape:
                tape.watch(x)
                logits = keras_model(x, training=False)
                chosen = tf.gather(logits, t, batch_dims=1)
            return tape.gradient(chosen, x)

        floor_s, ours_s = interleaved_medians(
            [
                lambda x=prepared, t=target_tensor: floor(x, t).numpy(),
                lambda x=images, t=targets: adapter.gradients(x, t),
            ],
            args.repeats,
        )
        print(f"{batch:>5} {floor_s:>9.4f} {ours_s:>9.4f} {ours_s / floor_s:>7.3f}")


if __name__ == "__main__":
    main()

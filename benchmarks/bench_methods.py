"""Seconds per image of salmap's methods ÷ the framework floor ÷ the peers, one run.

For each model (ResNet50 with random weights, and the embedded EfficientNet-Lite0),
on one 224×224 image (chelsea, resized), this prints the median seconds of:

- the **floor**: the framework's own compiled ``tf.function`` doing the same number
  of model evaluations on already-preprocessed inputs — forward+backward to the input
  (gradient methods), forward+backward to the CAM layer (Grad-CAM), or forward only
  (occlusion, RISE) — at the best batch size among ``--batch-sizes``;
- **salmap**, with the batch size the floor found best, timed alternately with the
  floor (the machine is shared: a busy spell then slows both);
- **PAIR saliency** (callback compiled with ``tf.function``, its batch sizes set to the
  same) and **tf-keras-vis**, where they are importable and have the method, each
  timed alternately with salmap (÷peer is salmap's time from those same rounds).

ResNet50's random weights are seeded, so every run explains the same model.

Run it with a Python that has the peers (a virtual environment made with
``--system-site-packages`` so that it sees salmap and TensorFlow):

    python -m venv --system-site-packages /tmp/peers-venv
    /tmp/peers-venv/bin/pip install tf-keras-vis saliency
    /tmp/peers-venv/bin/python benchmarks/bench_methods.py

Without the peers it still prints the salmap ÷ floor columns and says which peers
are missing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np


def median_seconds(function, repeats: int) -> float:
    function()  # warm-up: tracing and first-call allocation
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _peers():
    found = {}
    try:
        import saliency.core as pair

        found["pair"] = pair
    except ImportError:
        pass
    try:
        import tf_keras_vis  # noqa: F401

        found["tf-keras-vis"] = True
    except ImportError:
        pass
    return found


class Floors:
    """The raw framework cost of n evaluations, at the best batch size."""

    def __init__(self, adapter, image, target, batch_sizes, repeats):
        import keras
        import tensorflow as tf

        self.model = adapter.model
        self.prepared = adapter._preprocess(tf.constant(image[None]))
        self.target = target
        self.batch_sizes = batch_sizes
        self.repeats = repeats
        layer = adapter.cam_layer()
        inner = self.model
        for part in layer.split("/")[:-1]:
            inner = inner.get_layer(part)
        if inner is not self.model:
            raise SystemExit("the benchmark's Grad-CAM floor needs a top-level CAM layer")
        two_outputs = keras.Model(
            self.model.inputs, [inner.get_layer(layer.split("/")[-1]).output, self.model.output]
        )

        @tf.function(reduce_retracing=True)
        def gradient(x, t):
            with tf.GradientTape() as tape:
                tape.watch(x)
                chosen = tf.gather(self.model(x, training=False), t, batch_dims=1)
            return tape.gradient(chosen, x)

        @tf.function(reduce_retracing=True)
        def forward(x):
            return self.model(x, training=False)

        @tf.function(reduce_retracing=True)
        def layer_gradient(x, t):
            with tf.GradientTape() as tape:
                activations, logits = two_outputs(x, training=False)
                chosen = tf.gather(logits, t, batch_dims=1)
            return activations, tape.gradient(chosen, activations)

        self.kinds = {"gradient": gradient, "forward": forward, "layer": layer_gradient}
        self.cache = {}

    def runner(self, kind, evaluations, batch):
        """A function doing ``evaluations`` evaluations in batches of ``batch``."""
        import tensorflow as tf

        function = self.kinds[kind]
        inputs = {b: tf.repeat(self.prepared, b, axis=0) for b in {batch, evaluations % batch}}
        targets = {b: tf.fill([b], self.target) for b in inputs}

        def run():
            done = 0
            while done < evaluations:
                size = min(batch, evaluations - done)
                args = (inputs[size],) if kind == "forward" else (inputs[size], targets[size])
                result = function(*args)
                (result[0] if isinstance(result, tuple) else result).numpy()
                done += size

        return run

    def best_batch(self, kind, evaluations) -> int:
        """The batch size at which the framework does ``evaluations`` fastest."""
        key = (kind, evaluations)
        if key not in self.cache:
            sizes = [b for b in self.batch_sizes if b <= evaluations] or [1]
            if evaluations >= 10:
                sizes = [b for b in sizes if b > 1] or sizes
            timed = [(median_seconds(self.runner(kind, evaluations, b), 1), b) for b in sizes]
            self.cache[key] = min(timed)[1]
        return self.cache[key]


def paired_seconds(first, second, repeats: int) -> tuple[float, float]:
    """Medians of two functions timed alternately, so that a busy machine slows both."""
    first()
    second()
    times = ([], [])
    for _ in range(repeats):
        for function, bucket in ((first, times[0]), (second, times[1])):
            start = time.perf_counter()
            function()
            bucket.append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


def pair_callbacks(adapter, target):
    """PAIR's call_model_function, compiled, on the same [0, 1] images and preprocessing."""
    import keras
    import tensorflow as tf

    pair = _peers()["pair"]
    model = adapter.model
    layer = adapter.cam_layer()
    two_outputs = keras.Model(model.inputs, [model.get_layer(layer).output, model.output])

    @tf.function(reduce_retracing=True)
    def gradients(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            scores = model(adapter._preprocess(x), training=False)[:, target]
        return tape.gradient(scores, x), scores

    @tf.function(reduce_retracing=True)
    def convolution(x):
        with tf.GradientTape() as tape:
            activations, logits = two_outputs(adapter._preprocess(x), training=False)
            score = logits[:, target]
        return activations, tape.gradient(score, activations)

    def call_model_function(x_batch, call_model_args=None, expected_keys=None):
        x = tf.constant(np.asarray(x_batch, np.float32))
        if pair.CONVOLUTION_LAYER_VALUES in (expected_keys or []):
            values, grads = convolution(x)
            return {
                pair.CONVOLUTION_LAYER_VALUES: values.numpy(),
                pair.CONVOLUTION_OUTPUT_GRADIENTS: grads.numpy(),
            }
        grads, scores = gradients(x)
        return {
            pair.INPUT_OUTPUT_GRADIENTS: grads.numpy(),
            pair.OUTPUT_LAYER_VALUES: scores.numpy(),
        }

    return call_model_function


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet50,efficientnet_lite0")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--peer-repeats", type=int, default=1)
    parser.add_argument("--batch-sizes", default="1,10,25,50")
    parser.add_argument("--samples", type=int, default=50, help="SmoothGrad samples, IG steps")
    parser.add_argument("--rise-masks", type=int, default=500)
    parser.add_argument("--window", type=int, default=32, help="occlusion window (pixels)")
    parser.add_argument("--stride", type=int, default=16, help="occlusion stride (pixels)")
    args = parser.parse_args()

    import tensorflow as tf
    from skimage.transform import resize

    import salmap

    peers = _peers()
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    chelsea = resize(salmap.sample_image("chelsea"), (224, 224), anti_aliasing=True)
    image = chelsea.astype(np.float32)
    print(f"TF {tf.__version__}, {os.cpu_count()} CPUs; one 224x224 image (chelsea)")
    print(
        "peers: "
        + ", ".join(
            f"{name} {'found' if name in peers else 'NOT importable (not run)'}"
            for name in ("pair", "tf-keras-vis")
        )
    )
    windows = len(range(0, 224 - args.window + 1, args.stride)) ** 2
    for name in args.models.split(","):
        bench_model(name, args, peers, image, batch_sizes, windows)
    print(
        "\n— : the peer does not have the method with these parameters (PAIR: no RISE, "
        "occlusion at stride 1 only; tf-keras-vis: no IG, occlusion, RISE) or is not "
        "importable."
    )


def bench_model(name, args, peers, image, batch_sizes, windows) -> None:
    """Measure and print one model's table."""
    import salmap
    from salmap.methods import (
        grad_cam,
        integrated_gradients,
        occlusion,
        rise,
        smoothgrad,
        vanilla_gradients,
    )

    n = args.samples
    import keras

    weights = "random" if name != "efficientnet_lite0" else None
    keras.utils.set_random_seed(0)
    adapter = salmap.load_model(name, weights=weights, batch_size=64)
    target = int(np.argmax(adapter.predict(image[None])[0]))
    floors = Floors(adapter, image, target, batch_sizes, args.repeats)
    batch = image[None]
    targets = np.array([target], np.int32)
    rows = []

    def measure(label, kind, evaluations, ours, peer_runs, _rows=rows, _floors=floors):
        best = _floors.best_batch(kind, evaluations)
        floor, ours_s = paired_seconds(
            _floors.runner(kind, evaluations, best), lambda: ours(best), args.repeats
        )
        peer_s = {}
        for peer, run in peer_runs.items():
            if run is None:
                peer_s[peer] = None
                continue
            # Each peer is timed alternately with salmap too: (salmap s, peer s).
            peer_s[peer] = paired_seconds(lambda: ours(best), run, args.peer_repeats)
        _rows.append((label, evaluations, best, floor, ours_s, peer_s))
        print(f"  measured {label}", flush=True)

    pair = peers.get("pair")
    call = pair_callbacks(adapter, target) if pair else None
    vis = _tf_keras_vis(adapter, image, target, n) if "tf-keras-vis" in peers else {}

    def pair_run(make):
        return make if pair else None

    print(f"\nmodel {adapter.name} (target {target}), floors at batch sizes {batch_sizes}")
    measure(
        "vanilla",
        "gradient",
        1,
        lambda b: vanilla_gradients(adapter, batch, targets, batch_size=b),
        {
            "pair": pair_run(lambda: pair.GradientSaliency().GetMask(image, call)),
            "tf-keras-vis": vis.get("vanilla"),
        },
    )
    measure(
        f"smoothgrad-{n}",
        "gradient",
        n,
        lambda b: smoothgrad(adapter, batch, targets, samples=n, batch_size=b),
        {
            "pair": pair_run(
                lambda: pair.GradientSaliency().GetSmoothedMask(
                    image, call, stdev_spread=0.15, nsamples=n, magnitude=False
                )
            ),
            "tf-keras-vis": vis.get("smoothgrad"),
        },
    )
    measure(
        f"ig-{n} (trapezoid)",
        "gradient",
        n,
        lambda b: integrated_gradients(
            adapter, batch, targets, steps=n, rule="trapezoid", batch_size=b
        ),
        {
            "pair": pair_run(
                lambda: pair.IntegratedGradients().GetMask(
                    image,
                    call,
                    x_steps=n,
                    x_baseline=np.zeros_like(image),
                    batch_size=floors.best_batch("gradient", n),
                )
            ),
            "tf-keras-vis": None,
        },
    )
    measure(
        f"ig-{n} (adaptive, +17 fwd)",
        "gradient",
        n,
        lambda b: integrated_gradients(adapter, batch, targets, steps=n, batch_size=b),
        {},
    )
    measure(
        "grad-cam",
        "layer",
        1,
        lambda b: grad_cam(adapter, batch, targets, batch_size=b),
        {
            "pair": pair_run(lambda: pair.GradCam().GetMask(image, call, should_resize=True)),
            "tf-keras-vis": vis.get("grad-cam"),
        },
    )
    measure(
        f"occlusion ({windows} windows)",
        "forward",
        windows,
        lambda b: occlusion(
            adapter, batch, targets, window=args.window, stride=args.stride, batch_size=b
        ),
        {"pair": None, "tf-keras-vis": None},
    )
    measure(
        f"rise ({args.rise_masks} masks)",
        "forward",
        args.rise_masks,
        lambda b: rise(adapter, batch, targets, masks=args.rise_masks, batch_size=b),
        {"pair": None, "tf-keras-vis": None},
    )
    header = f"{'method':<28}{'evals':>6}{'batch':>6}{'floor s':>9}{'salmap s':>10}"
    header += f"{'÷floor':>8}{'PAIR s':>9}{'÷PAIR':>7}{'tkv s':>8}{'÷tkv':>7}"
    print(header)
    for label, evaluations, best, floor, ours_s, peer_s in rows:
        line = f"{label:<28}{evaluations:>6}{best:>6}{floor:>9.3f}{ours_s:>10.3f}"
        line += f"{ours_s / floor:>8.2f}"
        for peer in ("pair", "tf-keras-vis"):
            seconds = peer_s.get(peer)
            if seconds is None:
                line += f"{'—':>9}{'':>7}" if peer == "pair" else f"{'—':>8}{'':>7}"
            else:
                width = 9 if peer == "pair" else 8
                ours_paired, peer_seconds = seconds
                line += f"{peer_seconds:>{width}.3f}{ours_paired / peer_seconds:>7.2f}"
        print(line)


def _tf_keras_vis(adapter, image, target, samples) -> dict:
    """tf-keras-vis on the preprocessed image (it differentiates the model's own input)."""
    import tensorflow as tf
    from tf_keras_vis.gradcam import Gradcam
    from tf_keras_vis.saliency import Saliency
    from tf_keras_vis.utils.scores import CategoricalScore

    model = adapter.model
    prepared = adapter._preprocess(tf.constant(image[None])).numpy()
    score = CategoricalScore([target])
    saliency = Saliency(model, model_modifier=None, clone=False)
    gradcam = Gradcam(model, model_modifier=None, clone=False)
    layer = adapter.cam_layer()
    return {
        "vanilla": lambda: saliency(score, prepared),
        "smoothgrad": lambda: saliency(score, prepared, smooth_samples=samples, smooth_noise=0.15),
        "grad-cam": lambda: gradcam(score, prepared, penultimate_layer=layer),
    }


if __name__ == "__main__":
    main()

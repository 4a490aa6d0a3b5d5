"""Seconds per image of salmap's methods ÷ the framework floor ÷ the peers, one run.

For each model (ResNet50 with random weights, and the embedded EfficientNet-Lite0),
on one 224×224 image (chelsea, resized), this prints the median seconds of:

- the **floor**: the framework's own compiled ``tf.function`` doing the same number
  of model evaluations on ready TensorFlow tensors of the [0, 1] image, the model's
  preprocessing inside — forward+backward to the image (gradient methods),
  forward+backward to the CAM layer (Grad-CAM), or forward only (occlusion, RISE) —
  at the best batch size among ``--batch-sizes``; ÷floor is then everything a
  library adds: generating inputs, NumPy↔TensorFlow transfers, reducing outputs;
- **salmap**, with the batch size the floor found best, timed alternately with the
  floor (the machine is shared: a busy spell then slows both);
- the peers **Xplique**, **PAIR saliency** and **tf-keras-vis**, where they are
  importable and have the method, each timed alternately with salmap (÷peer is
  salmap's time from those same rounds). They run through ``benchmarks/peers.py``:
  on the same [0, 1] image with salmap's preprocessing inside the model, the same
  black baseline, the same absolute noise level, and the batch size salmap gets
  (where the library batches: Xplique everywhere, PAIR's IG; PAIR's and
  tf-keras-vis's SmoothGrad run one sample per model call by design). PAIR's
  callback is compiled with ``tf.function``; Xplique compiles itself.

ResNet50's random weights are seeded, so every run explains the same model.

Run it with a Python that has the peers (a virtual environment made with
``--system-site-packages`` so that it sees salmap and TensorFlow 2.21; Xplique 2.0.2
pins tensorflow<=2.20 and pulls the CUDA build, hence ``--no-deps`` and its
requirements by hand, without opencv-python: cv2 comes from the system)::

    python -m venv --system-site-packages /tmp/peers-venv
    /tmp/peers-venv/bin/pip install tf-keras-vis saliency
    /tmp/peers-venv/bin/pip install --no-deps xplique==2.0.2
    /tmp/peers-venv/bin/pip install einops "scikit-learn<=1.7.2" \\
        "tensorflow-probability==0.25.0"
    /tmp/peers-venv/bin/pip install --no-deps tf-keras==2.21.0
    /tmp/peers-venv/bin/python benchmarks/bench_methods.py

Without the peers it still prints the salmap ÷ floor columns and says which peers
are missing.

``--framework torch`` measures method suite II instead (LIME, KernelSHAP, Shapley
sampling, feature ablation, Sobol, HSIC, GradientSHAP, DeepLIFT, LRP, XGrad-CAM,
Eigen-Grad-CAM, Ablation-CAM) on a seeded ResNet18 beside Captum, lime, shap, zennit
and pytorch-grad-cam (see ``benchmarks/torch_peers.py``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import peers as peer_library  # noqa: E402 - benchmarks/peers.py, next to this file


def median_seconds(function, repeats: int) -> float:
    function()  # warm-up: tracing and first-call allocation
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


class Floors:
    """The raw framework cost of n evaluations, at the best batch size."""

    def __init__(self, adapter, image, target, batch_sizes, repeats):
        import keras
        import tensorflow as tf

        self.model = adapter.model
        # The model's own preprocessing is part of the function every library
        # differentiates (w.r.t. the [0, 1] image), so it is part of the floor too.
        preprocess = adapter._preprocess
        self.prepared = tf.constant(image[None])
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
                logits = self.model(preprocess(x), training=False)
                chosen = tf.gather(logits, t, batch_dims=1)
            return tape.gradient(chosen, x)

        @tf.function(reduce_retracing=True)
        def forward(x):
            return self.model(preprocess(x), training=False)

        @tf.function(reduce_retracing=True)
        def layer_gradient(x, t):
            with tf.GradientTape() as tape:
                activations, logits = two_outputs(preprocess(x), training=False)
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
    parser.add_argument("--framework", choices=("keras", "torch"), default="keras")
    torch_options = parser.add_argument_group("--framework torch (method suite II)")
    torch_options.add_argument("--size", type=int, default=96, help="image side (pixels)")
    torch_options.add_argument("--batch", type=int, default=32, help="images per model call")
    torch_options.add_argument("--features", type=int, default=32, help="SLIC superpixels")
    torch_options.add_argument("--permutations", type=int, default=2)
    torch_options.add_argument("--designs", type=int, default=4, help="Sobol designs")
    torch_options.add_argument("--gradient-samples", type=int, default=32)
    torch_options.add_argument(
        "--methods", default="", help="only the rows starting with these names (comma-separated)"
    )
    args = parser.parse_args()
    if args.framework == "torch":
        from torch_peers import bench_torch

        bench_torch(args)
        return

    import tensorflow as tf

    missing = peer_library.missing_peers()
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    image = peer_library.chelsea_224()
    print(f"TF {tf.__version__}, {os.cpu_count()} CPUs; one 224x224 image (chelsea)")
    print(
        "peers: "
        + ", ".join(
            f"{name} {'found' if name not in missing else 'NOT importable, not run (' + why + ')'}"
            for name, why in ((name, missing.get(name, "")) for name in peer_library.PEER_NAMES)
        )
    )
    windows = len(range(0, 224 - args.window + 1, args.stride)) ** 2
    for name in args.models.split(","):
        bench_model(name, args, image, batch_sizes, windows)
    print(
        "\n— : the peer does not have the method with these parameters (PAIR: no RISE, "
        "occlusion at stride 1 only; tf-keras-vis: no IG, occlusion, RISE) or is not "
        "importable. Xplique's occlusion sums the drops of covering windows (salmap "
        "averages them: the same model calls)."
    )


def bench_model(name, args, image, batch_sizes, windows) -> None:
    """Measure and print one model's table."""
    from salmap.methods import (
        grad_cam,
        integrated_gradients,
        occlusion,
        rise,
        smoothgrad,
        vanilla_gradients,
    )

    n = args.samples
    adapter = peer_library.load_benchmark_model(name, batch_size=64)
    target = int(np.argmax(adapter.predict(image[None])[0]))
    floors = Floors(adapter, image, target, batch_sizes, args.repeats)
    batch = image[None]
    targets = np.array([target], np.int32)
    sigma = 0.15 * float(image.max() - image.min())
    peers = peer_library.make_peers(adapter)
    rows = []

    def measure(label, kind, evaluations, ours, method, params, _rows=rows, _floors=floors):
        """Time salmap against the floor, then against each peer that has ``method``
        (called with ``params`` and salmap's batch size)."""
        best = _floors.best_batch(kind, evaluations)
        floor, ours_s = paired_seconds(
            _floors.runner(kind, evaluations, best), lambda: ours(best), args.repeats
        )
        peer_s = {}
        for peer_name, peer in peers.items():
            function = getattr(peer, method, None)
            if function is None:
                continue

            def run(_function=function, _best=best):
                return _function(image, target, batch_size=_best, **params)

            # Each peer is timed alternately with salmap too: (salmap s, peer s).
            peer_s[peer_name] = paired_seconds(lambda: ours(best), run, args.peer_repeats)
        _rows.append((label, evaluations, best, floor, ours_s, peer_s))
        print(f"  measured {label}", flush=True)

    print(f"\nmodel {adapter.name} (target {target}), floors at batch sizes {batch_sizes}")
    measure(
        "vanilla",
        "gradient",
        1,
        lambda b: vanilla_gradients(adapter, batch, targets, batch_size=b),
        "vanilla",
        {},
    )
    measure(
        f"smoothgrad-{n}",
        "gradient",
        n,
        lambda b: smoothgrad(adapter, batch, targets, samples=n, sigma=sigma, batch_size=b),
        "smoothgrad",
        {"samples": n, "sigma": sigma, "seed": 0},
    )
    measure(
        f"ig-{n} (trapezoid)",
        "gradient",
        n,
        lambda b: integrated_gradients(
            adapter, batch, targets, steps=n, rule="trapezoid", batch_size=b
        ),
        "ig",
        {"steps": n},
    )
    measure(
        f"ig-{n} (adaptive, +17 fwd)",
        "gradient",
        n,
        lambda b: integrated_gradients(adapter, batch, targets, steps=n, batch_size=b),
        "no peer has it",
        {},
    )
    measure(
        "grad-cam",
        "layer",
        1,
        lambda b: grad_cam(adapter, batch, targets, batch_size=b),
        "grad_cam",
        {},
    )
    measure(
        f"occlusion ({windows} windows)",
        "forward",
        windows,
        lambda b: occlusion(
            adapter, batch, targets, window=args.window, stride=args.stride, batch_size=b
        ),
        "occlusion",
        {"window": args.window, "stride": args.stride, "value": 0.5},
    )
    measure(
        f"rise ({args.rise_masks} masks)",
        "forward",
        args.rise_masks,
        lambda b: rise(adapter, batch, targets, masks=args.rise_masks, batch_size=b),
        "rise",
        {"masks": args.rise_masks, "seed": 0},
    )
    labels = {"xplique": "Xplique", "pair": "PAIR", "tf-keras-vis": "tkv"}
    header = f"{'method':<28}{'evals':>6}{'batch':>6}{'floor s':>9}{'salmap s':>10}{'÷floor':>8}"
    for peer in peer_library.PEER_NAMES:
        header += f"{labels[peer] + ' s':>10}{'÷' + labels[peer]:>9}"
    print(header)
    for label, evaluations, best, floor, ours_s, peer_s in rows:
        line = f"{label:<28}{evaluations:>6}{best:>6}{floor:>9.3f}{ours_s:>10.3f}"
        line += f"{ours_s / floor:>8.2f}"
        for peer in peer_library.PEER_NAMES:
            if peer not in peer_s:
                line += f"{'—':>10}{'':>9}"
                continue
            ours_paired, peer_seconds = peer_s[peer]
            line += f"{peer_seconds:>10.3f}{ours_paired / peer_seconds:>9.2f}"
        print(line)


if __name__ == "__main__":
    main()

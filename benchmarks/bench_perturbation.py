"""Forward-only methods (occlusion, RISE, Score-CAM) ÷ the framework floor, one run.

For each model (ResNet50 with seeded random weights, the embedded EfficientNet-Lite0),
on one 224×224 image (chelsea, resized), at one batch size (the adapter's, 64), this
prints the median seconds of:

- the **floor**: the framework's own compiled ``tf.function`` forward on already
  preprocessed inputs, as many evaluations as the method makes (occlusion: one per
  window; RISE: one per mask; Score-CAM: one forward+backward to the CAM layer, then
  one forward per channel) — ``Floors`` of ``bench_methods.py``;
- **predict**: ``adapter.predict`` on a ready NumPy batch of the same size (what
  the adapter itself adds: conversion, preprocessing inside the graph);
- **salmap**: the method, timed alternately with the floor (``paired_seconds``: a busy
  spell on the shared machine slows both).

    python benchmarks/bench_perturbation.py --models resnet50,efficientnet_lite0
    python benchmarks/bench_perturbation.py --methods score-cam --models efficientnet_lite0

Score-CAM makes one forward pass per channel of the CAM layer (ResNet50: 2048, about
three minutes a run on two cores), so it is not in the default ``--methods``.
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np
from bench_methods import Floors, paired_seconds

METHODS = ("occlusion", "rise", "score-cam")


def load(name: str, batch_size: int):
    """The adapter (ResNet50 with seeded random weights), one 224×224 image, its target."""
    import keras
    from skimage.transform import resize

    import salmap

    keras.utils.set_random_seed(0)
    weights = "random" if name != "efficientnet_lite0" else None
    adapter = salmap.load_model(name, weights=weights, batch_size=batch_size)
    chelsea = resize(salmap.sample_image("chelsea"), (224, 224), anti_aliasing=True)
    image = chelsea.astype(np.float32)
    target = int(np.argmax(adapter.predict(image[None])[0]))
    return adapter, image, target


def workloads(adapter, image, target, args) -> dict:
    """Per method: (evaluations as [(floor kind, count)], the method as ``run(batch)``)."""
    from salmap.methods import occlusion, rise, score_cam

    batch = image[None]
    targets = np.array([target], np.int32)
    windows = len(range(0, 224 - args.window + 1, args.stride)) ** 2
    channels = int(adapter.layer_values_and_gradients(batch, targets, None)[0].shape[-1])
    return {
        "occlusion": (
            f"occlusion ({windows} windows)",
            [("forward", windows)],
            lambda b: occlusion(
                adapter, batch, targets, window=args.window, stride=args.stride, batch_size=b
            ),
        ),
        "rise": (
            f"rise ({args.rise_masks} masks)",
            [("forward", args.rise_masks)],
            lambda b: rise(adapter, batch, targets, masks=args.rise_masks, batch_size=b),
        ),
        "score-cam": (
            f"score-cam ({channels} channels)",
            [("layer", 1), ("forward", channels)],
            lambda b: score_cam(adapter, batch, targets, batch_size=b),
        ),
    }


def floor_runner(floors: Floors, evaluations, batch: int):
    runners = [floors.runner(kind, count, batch) for kind, count in evaluations]

    def run():
        for runner in runners:
            runner()

    return run


def predict_runner(adapter, image, evaluations, batch: int):
    """``adapter.predict`` on ready inputs, the same number of forward evaluations."""
    total = sum(count for _, count in evaluations)
    inputs = np.repeat(image[None], min(batch, total), axis=0)

    def run():
        for start in range(0, total, batch):
            adapter.predict(inputs[: min(batch, total - start)])

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet50,efficientnet_lite0")
    parser.add_argument("--methods", default="occlusion,rise")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rise-masks", type=int, default=500)
    parser.add_argument("--window", type=int, default=32, help="occlusion window (pixels)")
    parser.add_argument("--stride", type=int, default=16, help="occlusion stride (pixels)")
    args = parser.parse_args()

    import tensorflow as tf

    print(f"TF {tf.__version__}, {os.cpu_count()} CPUs; one 224x224 image (chelsea)")
    header = f"{'method':<30}{'batch':>6}{'floor s':>9}{'predict s':>10}{'salmap s':>10}"
    header += f"{'÷floor':>8}{'predict÷floor':>15}"
    for name in args.models.split(","):
        adapter, image, target = load(name, args.batch_size)
        floors = Floors(adapter, image, target, [args.batch_size], args.repeats)
        print(f"\nmodel {adapter.name} (target {target}), batch {args.batch_size}")
        print(header)
        chosen = workloads(adapter, image, target, args)
        for method in args.methods.split(","):
            label, evaluations, run = chosen[method]
            b = args.batch_size
            floor = floor_runner(floors, evaluations, b)
            floor_s, ours_s = paired_seconds(floor, lambda run=run, b=b: run(b), args.repeats)
            predict_floor_s, predict_s = paired_seconds(
                floor, predict_runner(adapter, image, evaluations, b), args.repeats
            )
            line = f"{label:<30}{b:>6}{floor_s:>9.3f}{predict_s:>10.3f}{ours_s:>10.3f}"
            line += f"{ours_s / floor_s:>8.3f}{predict_s / predict_floor_s:>15.3f}"
            print(line, flush=True)


if __name__ == "__main__":
    main()

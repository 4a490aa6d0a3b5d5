"""Motion saliency frames/s at 640×480: DIS and Farnebäck, the raw flow, OpenCV's BinWang.

All measured in this one run on the same frames, held in memory (decoding is timed
separately), each repeat run in alternation so that load from other processes hits
every contender alike; the median over repeats is reported. Frames: OpenCV's
``vtest.avi`` resized to 640×480 when it is at hand, and always a synthetic
640×480 clip with a camera pan.

- ``flow DIS`` / ``flow Farnebäck``: :class:`salmap.motion.OpticalFlow` alone, as
  the saliency uses it: grey frames shrunk to the processing width (320), DIS
  preset ``fast`` by default, ``ultrafast`` as the faster option.
- ``motion DIS`` / ``motion Farnebäck``: :func:`salmap.motion_saliency` end to end on
  RGB frames (grey conversion, flow, RANSAC camera fit, residual, smoothing,
  results with float images), with the defaults (DIS ``fast``) and ``ultrafast``.
- ``BinWang``: ``cv2.saliency.MotionSaliencyBinWangApr2014`` on grey frames.
- ``CLI vtest``: ``salmap motion vtest.avi`` reading 768×576 frames, processing at
  640, writing the overlay MP4 (decode and encode included).

Then the quality table of the tests (IoU with the true moving-object masks on
synthetic 160×120 videos, static camera and pan, frames 100-149).

Target (issue 5): motion DIS >= 25 frames/s at 640×480 on the 2-core machine.

    python benchmarks/bench_motion.py [--frames 60] [--repeats 3] [--no-quality]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from salmap.motion import DEFAULT_MAX_WIDTH, OpticalFlow, motion_saliency, synthetic_video

VTEST = Path(os.environ.get("SALMAP_VTEST", "/work/shared/data/vtest.avi"))


def load_clips(n_frames: int) -> dict[str, list[np.ndarray]]:
    clips = {
        "synthetic pan": [
            f for f, _ in synthetic_video(n_frames, (640, 480), speed=8.0, pan=(6.0, 1.5))
        ]
    }
    if VTEST.exists():
        from salmap.io import iter_frames

        clips["vtest"] = [
            cv2.resize(frame.image, (640, 480), interpolation=cv2.INTER_AREA)
            for frame in iter_frames(VTEST, start=100, end=100 + n_frames, dtype="uint8")
        ]
    return clips


def contenders(frames: list[np.ndarray]) -> dict:
    greys = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    height = round(480 * DEFAULT_MAX_WIDTH / 640)

    def flow(method, preset="fast"):
        def run():
            # As the saliency computes it: shrunk to the processing width, then the flow.
            estimator = OpticalFlow(method, preset)
            previous = None
            for grey in greys:
                small = cv2.resize(grey, (DEFAULT_MAX_WIDTH, height), interpolation=cv2.INTER_AREA)
                if previous is not None:
                    estimator(small, previous)
                previous = small
            return len(greys) - 1

        return run

    def motion(method, preset="fast"):
        def run():
            return sum(1 for _ in motion_saliency(frames, flow=method, preset=preset))

        return run

    def binwang():
        model = cv2.saliency.MotionSaliencyBinWangApr2014_create()
        model.setImagesize(640, 480)
        model.init()
        for frame in frames:
            model.computeSaliency(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY))
        return len(frames)

    return {
        "flow DIS": flow("dis"),
        "flow DIS ultrafast": flow("dis", "ultrafast"),
        "flow Farnebäck": flow("farneback"),
        "motion DIS": motion("dis"),
        "motion DIS ultrafast": motion("dis", "ultrafast"),
        "motion Farnebäck": motion("farneback"),
        "BinWang": binwang,
    }


def interleaved_rates(functions: dict, repeats: int) -> dict[str, tuple[float, float]]:
    """Median frames/s of each function, run in alternation: per wall-clock second,
    and per CPU second of this process (all its threads; less sensitive to load from
    other processes, but counts both cores where OpenCV runs two threads)."""
    rates = {name: ([], []) for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            wall, cpu = time.perf_counter(), time.process_time()
            count = function()
            rates[name][0].append(count / (time.perf_counter() - wall))
            rates[name][1].append(count / max(1e-9, time.process_time() - cpu))
    return {name: (statistics.median(w), statistics.median(c)) for name, (w, c) in rates.items()}


def cli_rate(n_frames: int) -> float | None:
    if not VTEST.exists():
        return None
    from salmap.cli import main

    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        code = main(
            ["motion", str(VTEST), "--end", str(n_frames), "-o", f"{folder}/o.mp4", "--no-progress"]
        )
        seconds = time.perf_counter() - start
    assert code == 0
    return n_frames / seconds


def quality() -> None:
    def iou(a, b):
        union = np.logical_or(a, b).sum()
        return np.logical_and(a, b).sum() / union if union else 1.0

    print("\nIoU with the true moving-object masks (160×120, 150 frames, scored 100-149):")
    print(
        f"  {'video':<24}{'salmap DIS':>12}{'BinWang':>10}{'salmap bg FP':>14}{'BinWang bg FP':>15}"
    )
    for name, pan in (("static camera", (0.0, 0.0)), ("camera pan (2, 0.5)", (2.0, 0.5))):
        data = list(synthetic_video(150, (160, 120), pan=pan, seed=1))
        results = list(motion_saliency([f for f, _ in data]))
        peer = cv2.saliency.MotionSaliencyBinWangApr2014_create()
        peer.setImagesize(160, 120)
        peer.init()
        scores = []
        for index, (result, (frame, mask)) in enumerate(zip(results, data, strict=True)):
            theirs = peer.computeSaliency(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY))[1] > 0.5
            if index >= 100:
                ours = result.map > 1.0
                scores.append(
                    (iou(ours, mask), iou(theirs, mask), ours[~mask].mean(), theirs[~mask].mean())
                )
        s = np.mean(scores, axis=0)
        print(f"  {name:<24}{s[0]:>12.3f}{s[1]:>10.3f}{s[2]:>14.4f}{s[3]:>15.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=60, help="frames per clip")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-quality", action="store_true", help="skip the IoU table")
    args = parser.parse_args()
    print(f"OpenCV {cv2.__version__}, {cv2.getNumThreads()} threads, {os.cpu_count()} CPUs")
    for name, frames in load_clips(args.frames).items():
        both = interleaved_rates(contenders(frames), args.repeats)
        rates = {key: wall for key, (wall, _) in both.items()}
        print(f"\n{name}: {len(frames)} frames at 640×480, median of {args.repeats}")
        print(f"  {'':<22}{'frames/s':>10}{'frames/CPU-s':>14}")
        for contender, (wall, cpu) in both.items():
            print(f"  {contender:<22}{wall:10.1f}{cpu:14.1f}")
        print(
            f"  motion DIS / flow DIS time: {rates['flow DIS'] / rates['motion DIS']:.2f}×; "
            f"motion DIS vs BinWang speed: {rates['motion DIS'] / rates['BinWang']:.2f}×; "
            f"target >= 25 frames/s: {'met' if rates['motion DIS'] >= 25 else 'NOT met'}"
        )
    rate = cli_rate(args.frames * 2)
    if rate is not None:
        print(f"\nCLI vtest (768×576 decode, 320 processing, MP4 overlay out): {rate:.1f} frames/s")
    if not args.no_quality:
        quality()


if __name__ == "__main__":
    main()

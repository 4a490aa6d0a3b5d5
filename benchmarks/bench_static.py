"""Static saliency speed per 640×480 image, beside OpenCV contrib's spectral residual
and fine-grained saliency measured in the same run; and pop-out hit rates.

Every model runs on the same 640×480 photo (scikit-image's coffee, resized), after
one warm-up call, in alternation with the others so that load from other processes
on a shared machine hits all alike; the median of ``--repeats`` runs is reported,
with its ratio to OpenCV's spectral residual (SR) and fine-grained (FG) times.
OpenCV's inputs are 8-bit BGR arrays prepared outside the timing; salmap's are the
float RGB arrays ``salmap.load_image`` gives. OpenCV and NumPy are held to one
thread by default (``--threads``), so the numbers are per core.

``--popout N`` also prints, for every model, how often the maximum of its map falls
on the odd one out in N generated search arrays of each kind (random positions, set
sizes 4–30): a red bar among green (colour), a 45° bar among vertical (orientation),
and a red vertical among red horizontals and green verticals (conjunction, which
should *not* pop out).

    python benchmarks/bench_static.py [--repeats 7] [--threads 1] [--popout 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time


def _limit_threads(threads: int) -> None:
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[variable] = str(threads)


def interleaved_medians(functions, repeats: int) -> list[float]:
    for function in functions:
        function()  # warm-up: first-call allocations, OpenCV's lazy initialisation
    times = [[] for _ in functions]
    for _ in range(repeats):
        for function, bucket in zip(functions, times, strict=True):
            start = time.perf_counter()
            function()
            bucket.append(time.perf_counter() - start)
    return [statistics.median(bucket) for bucket in times]


def _variants():
    from salmap.static import STATIC_METHODS

    variants = [(name, method.function, {}) for name, method in STATIC_METHODS.items()]
    itti = STATIC_METHODS["itti"].function
    variants.insert(1, ("itti split colour", itti, {"colour_opponency": "split"}))
    variants.insert(2, ("itti iterative N", itti, {"normalization": "iterative"}))
    return variants


def speed(repeats: int) -> None:
    import cv2
    import numpy as np

    import salmap

    image = cv2.resize(salmap.load_image("coffee"), (640, 480), interpolation=cv2.INTER_AREA)
    bgr = np.round(image[..., ::-1] * 255).astype(np.uint8)
    spectral = cv2.saliency.StaticSaliencySpectralResidual_create()
    grained = cv2.saliency.StaticSaliencyFineGrained_create()
    rows = [("OpenCV spectral residual", lambda: spectral.computeSaliency(bgr))]
    rows.append(("OpenCV fine-grained", lambda: grained.computeSaliency(bgr)))
    for name, function, params in _variants():
        rows.append((f"salmap {name}", lambda f=function, p=params: f(image, **p)))
    medians = interleaved_medians([function for _, function in rows], repeats)
    sr, fg = medians[0], medians[1]
    print(
        f"640×480 photo, median of {repeats}, {cv2.getNumThreads()} OpenCV thread(s), "
        f"Python {sys.version.split()[0]}, OpenCV {cv2.__version__}"
    )
    print(f"{'model':<34}{'ms/image':>10}{'÷ OpenCV SR':>13}{'÷ OpenCV FG':>13}")
    for (name, _), seconds in zip(rows, medians, strict=True):
        print(f"{name:<34}{seconds * 1000:>10.1f}{seconds / sr:>13.1f}{seconds / fg:>13.2f}")


def popout(trials: int) -> None:
    import numpy as np

    from salmap.static import attended_item, search_array

    kinds = ("colour", "orientation", "conjunction")
    arrays = {
        kind: [
            search_array(kind, int(rng.integers(4, 31)), rng=rng)
            for rng in (np.random.default_rng([index, t]) for t in range(trials))
        ]
        for index, kind in enumerate(kinds)
    }
    chance = np.mean([1 / len(a.items) for a in arrays["conjunction"]])
    print()
    print(f"pop-out: share of {trials} arrays per kind whose map maximum is the odd one out")
    print(f"{'model':<24}" + "".join(f"{kind:>14}" for kind in kinds))
    for name, function, params in _variants():
        rates = []
        for kind in kinds:
            hits = 0
            for array in arrays[kind]:
                output = function(array.image, **params)
                saliency = getattr(output, "saliency", output)
                row, col = np.unravel_index(np.argmax(saliency), saliency.shape)
                hits += attended_item(array, (col, row)) == 0
            rates.append(hits / trials)
        print(f"{name:<24}" + "".join(f"{rate:>14.2f}" for rate in rates))
    print(f"(chance for the conjunction arrays: {chance:.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1, help="OpenCV/BLAS threads (1)")
    parser.add_argument("--popout", type=int, default=0, metavar="N", help="arrays per kind")
    args = parser.parse_args()
    _limit_threads(args.threads)
    import cv2

    cv2.setNumThreads(args.threads)
    speed(args.repeats)
    if args.popout:
        popout(args.popout)


if __name__ == "__main__":
    main()

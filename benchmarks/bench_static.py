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
on the odd one out in N random search arrays of each kind
(``salmap.static.random_search_array``: 480×480 and 640×400 images, 4×4 to 8×8
grids, set sizes 4–64, black, grey and white backgrounds, contrast 0.4–1, bar sizes
from the cell size, half the targets touching the image edge): a red bar among green
(colour), a 45° bar among vertical (orientation), and a red vertical among red
horizontals and green verticals (conjunction, which should *not* pop out: chance is
1/set size). For Itti–Koch also the first attended location, and for every model its
worst condition (background, image shape, target at the edge or inside). The tests
draw other seeds.

    python benchmarks/bench_static.py [--repeats 7] [--threads 1] [--popout 60 [--seed 2026]]
"""

from __future__ import annotations

import argparse
import os
import sys

from timing import interleaved_medians


def _limit_threads(threads: int) -> None:
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[variable] = str(threads)


def _variants():
    from salmap.static import STATIC_METHODS

    variants = [(name, method.function, {}) for name, method in STATIC_METHODS.items()]
    itti = STATIC_METHODS["itti"].function
    paper = {"colour_opponency": "paper", "orientation_opponency": "paper", "map_range": "map"}
    variants[1:1] = [
        ("itti paper's choices", itti, paper),
        ("itti colour paper", itti, {"colour_opponency": "paper"}),
        ("itti orientation paper", itti, {"orientation_opponency": "paper"}),
        ("itti map range map", itti, {"map_range": "map"}),
        ("itti iterative N", itti, {"normalization": "iterative"}),
    ]
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


def _near_border(array, point) -> bool:
    height, width = array.image.shape[:2]
    return min(point[0], point[1], width - point[0], height - point[1]) < array.bar_length


def _outcome(function, params, kind, array) -> dict:
    """Whether the map maximum (and the first attended location) is on the target,
    the array's condition, and for the border bias whether the winning bar and how
    many of all bars lie within one bar length of the image border."""
    import numpy as np

    from salmap.static import attended_item, on_target

    output = function(array.image, **params)
    saliency = getattr(output, "saliency", output)
    row, col = np.unravel_index(np.argmax(saliency), saliency.shape)
    path = getattr(output, "scan_path", None)
    return {
        "kind": kind,
        "condition": _condition(array),
        "hit": on_target(array, (col, row)),
        "first": on_target(array, path[0]) if path is not None and len(path) else None,
        "winner at border": _near_border(array, array.items[attended_item(array, (col, row))]),
        "bars at border": np.mean([_near_border(array, item) for item in array.items]),
    }


def _condition(array) -> str:
    height, width = array.image.shape[:2]
    shape = "square" if height == width else "wide"
    place = "edge" if _near_border(array, array.target) else "inner"
    background = {0.0: "black", 0.5: "grey", 1.0: "white"}[array.background]
    return f"{background} {shape} {place}"


def _summary(rows: list[dict]) -> str:
    import numpy as np

    from salmap.static import SEARCH_KINDS

    rates = [np.mean([r["hit"] for r in rows if r["kind"] == kind]) for kind in SEARCH_KINDS]
    singletons = [r for r in rows if r["kind"] != "conjunction"]
    firsts = [r["first"] for r in singletons if r["first"] is not None]
    conjunction = [r for r in rows if r["kind"] == "conjunction"]
    bias = np.mean([r["winner at border"] for r in conjunction]) / np.mean(
        [r["bars at border"] for r in conjunction]
    )
    by_condition: dict[str, list[bool]] = {}
    for r in singletons:
        by_condition.setdefault(r["condition"], []).append(r["hit"])
    worst = min(by_condition, key=lambda c: np.mean(by_condition[c]))
    fixation = f"{np.mean(firsts):.2f}" if firsts else "-"
    return (
        "".join(f"{rate:>13.2f}" for rate in rates)
        + f"{fixation:>14}{bias:>9.2f}   {worst}: {np.mean(by_condition[worst]):.2f}"
    )


def popout(trials: int, seed: int, only: str = "") -> None:
    import numpy as np

    from salmap.static import SEARCH_KINDS, random_search_array

    arrays = [
        (kind, random_search_array(kind, np.random.default_rng([seed, index, t])))
        for index, kind in enumerate(SEARCH_KINDS)
        for t in range(trials)
    ]
    chance = np.mean([1 / len(a.items) for kind, a in arrays if kind == "conjunction"])
    print()
    print(
        f"pop-out: share of {trials} random arrays per kind (seed {seed}: 480×480 and 640×400, "
        "4×4–8×8 grids, set sizes 4–64, black/grey/white, contrast 0.4–1, half with the "
        "target at the edge) whose map maximum is on the odd one out"
    )
    header = f"{'model':<26}" + "".join(f"{kind:>13}" for kind in SEARCH_KINDS)
    print(header + f"{'1st fixation':>14}{'border':>9}   worst condition (colour + orientation)")
    for name, function, params in _variants():
        if only in name:
            rows = [_outcome(function, params, kind, array) for kind, array in arrays]
            print(f"{name:<26}" + _summary(rows))
    print(
        f"(chance for the conjunction arrays: {chance:.2f}; 1st fixation: singletons only; "
        "border: share of conjunction winners within one bar length of the image border "
        "÷ share of bars there, 1 = no bias)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1, help="OpenCV/BLAS threads (1)")
    parser.add_argument("--popout", type=int, default=0, metavar="N", help="arrays per kind")
    parser.add_argument("--seed", type=int, default=2026, help="stimulus seed (tests use others)")
    parser.add_argument("--no-speed", action="store_true", help="skip the timing")
    parser.add_argument("--only", default="", help="pop-out: models whose name has this")
    args = parser.parse_args()
    _limit_threads(args.threads)
    import cv2

    cv2.setNumThreads(args.threads)
    if not args.no_speed:
        speed(args.repeats)
    if args.popout:
        popout(args.popout, args.seed, args.only)


if __name__ == "__main__":
    main()

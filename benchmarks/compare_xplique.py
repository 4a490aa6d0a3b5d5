"""salmap's Sobol and HSIC beside Xplique 2.0.2's, on the same masks, model and photos.

The model is salmap's embedded EfficientNet-Lite0 (ImageNet weights, from the zoo);
every library sees the same Keras model from [0, 1] RGB images to logits, salmap's
preprocessing inside (``peers.unit_model``), so Xplique's inpainting ``x m`` and
salmap's black baseline ``b + m (x - b)`` (b = 0) are the same perturbation, and
Xplique's score ``f(x)[y]`` (one-hot target) is salmap's ``score="logit"``. Photos:
scikit-image's chelsea, coffee, astronaut and rocket (``--images``), resized to
224×224; each is explained for the class the model predicts.

What Xplique 2.0.2 does (read from its source, ``attributions/global_sensitivity_analysis``):

- masks on an ``8 × 8`` grid (cell ``r * 8 + c``), drawn once when the explainer is
  built and upsampled to the image by nearest neighbour (the same cells as salmap's
  grid at 224 = 8 × 28), the explainer's heatmap then resized bicubically (salmap:
  bilinear);
- **Sobol**: ``tf.math.sobol_sample(2 d, nb_design)`` *unscrambled* (salmap:
  scrambled, seeded), split into ``A``, ``B`` and the ``C_i`` (``A`` with column
  ``i`` from ``B``), ``nb_design = 32``: 32 × 66 = 2112 model calls; the Jansen
  estimator divides by the unbiased variance of ``f(A)`` (salmap: the variance of
  ``f(A)`` and ``f(B)`` together) — one constant per image, so the maps correlate 1;
- **HSIC**: ``tf.math.sobol_sample(d, 500)`` rounded to 0/1 (salmap: a Latin
  hypercube thresholded at 0.5, 1500 masks — the paper's sampler and high budget),
  the kernel ``1 + (0.5 - (m - m')²)`` on each cell (``[m = m'] + 0.5``: after
  centring, salmap's ``[m = m']``), a Gaussian kernel on the scores and
  ``tr(K H L H) / n`` (salmap: ``/ (n - 1)²``, a constant). The Gaussian's width is
  the **median of the scores themselves** (``tfp.stats.percentile(Y, 50)``), where
  salmap takes the median distance between scores (Gretton et al.'s heuristic). A
  width set by where the scores lie, not by how far apart they are, changes the map
  when a constant is added to the score (to every logit, say: the softmax does not
  change), and collapses when the median score is near 0; this script measures that
  on the same scores (the "shift" lines).

Printed: per image, on the same masks, the Pearson correlation of salmap's map with
Xplique's (224×224), and of salmap's estimator with Xplique's own (the explainer's
``estimator``) on the same 8×8 scores, computed here once; for HSIC also salmap's
estimator at Xplique's width (``hsic_scores(..., bandwidth=|median score|)``).
Asserted >= 0.95: the Sobol maps and both estimators at the same width; the HSIC maps
are reported (below 0.95 only through the width, which the last column shows). Then
the maps with each library's own default masks (reported only); then the shift
check; then the
seconds per image of the forward floor (a compiled ``tf.function`` doing the same
number of model calls on ready tensors, same batch size), salmap and Xplique, timed
in turn in each round (the machine is shared: a busy spell slows all three), medians
after one warm-up, and the ratios.

Run it with the Python of a virtual environment that has Xplique (it must not go into
the environment salmap's tests use); salmap is imported from this checkout's ``src``::

    python -m venv --system-site-packages /work/venvs/xplique
    /work/venvs/xplique/bin/pip install --no-deps xplique==2.0.2 tf-keras==2.21.0 \\
        tensorflow-probability==0.25.0 einops deprecated dm-tree
    /work/venvs/xplique/bin/python benchmarks/compare_xplique.py

(``--no-deps``: Xplique 2.0.2 pins ``tensorflow<=2.20`` and pulls the CUDA build;
TensorFlow 2.21, NumPy, SciPy, scikit-image and cv2 come from the system site.)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
import peers  # noqa: E402 - benchmarks/peers.py: the [0, 1]-input Keras model

GRID = 8
THRESHOLD = 0.95


def photo(name: str, side: int) -> np.ndarray:
    """scikit-image's photo ``name`` resized to side × side, float32 RGB in [0, 1]."""
    from skimage.transform import resize

    import salmap

    image = salmap.sample_image(name)
    return resize(image, (side, side), anti_aliasing=True).astype(np.float32)


def pearson(first, second) -> float:
    return float(np.corrcoef(np.ravel(first), np.ravel(second))[0, 1])


def xplique_estimate(explainer, scores: np.ndarray) -> np.ndarray:
    """Xplique's estimator (the explainer's own) on given scores of its masks: 8×8 -> 64."""
    import tensorflow as tf

    values = tf.constant(scores, tf.float32)
    return explainer.estimator(explainer.masks, values, explainer.nb_design).numpy().ravel()


def design_of(explainer) -> np.ndarray:
    """An Xplique GSA explainer's masks as rows × cells (cell ``r * grid + c``)."""
    masks = explainer.masks.numpy()
    return masks.reshape(len(masks), -1)


class Side:
    """Everything both libraries need for one image: the model, image and target."""

    def __init__(self, adapter, model, image, batch_size):
        import tensorflow as tf

        self.adapter, self.model, self.image = adapter, model, image
        self.batch_size = batch_size
        self.target = int(np.argmax(adapter.predict(image[None])[0]))
        self.one_hot = tf.one_hot([self.target], adapter.num_classes)

    def xplique(self, explainer) -> np.ndarray:
        return explainer.explain(self.image[None], self.one_hot).numpy()[0, ..., 0]

    def salmap(self, function, **params) -> np.ndarray:
        return function(
            self.adapter,
            self.image[None],
            [self.target],
            grid=GRID,
            baseline="black",
            score="logit",
            batch_size=self.batch_size,
            **params,
        )[0]

    def scores(self, design: np.ndarray) -> np.ndarray:
        """The target's logit under each mask, computed here (nearest upsampling)."""
        import tensorflow as tf

        forward = _compiled_forward(self.model)
        side = self.image.shape[0]
        cells = np.repeat(
            np.repeat(design.reshape(-1, GRID, GRID), side // GRID, 1), side // GRID, 2
        )
        out = []
        for start in range(0, len(design), self.batch_size):
            masked = self.image[None] * cells[start : start + self.batch_size, ..., None]
            out.append(forward(tf.constant(masked, tf.float32)).numpy()[:, self.target])
        return np.concatenate(out).astype(np.float64)


_FORWARDS: dict = {}


def _compiled_forward(model):
    import tensorflow as tf

    if id(model) not in _FORWARDS:
        _FORWARDS[id(model)] = tf.function(lambda x: model(x, training=False))
    return _FORWARDS[id(model)]


def floor_runner(model, image, evaluations: int, batch_size: int):
    """The framework alone: ``evaluations`` forward passes of ready tensors."""
    import tensorflow as tf

    forward = _compiled_forward(model)
    sizes = {min(batch_size, evaluations), evaluations % batch_size or batch_size}
    batches = {size: tf.constant(np.repeat(image[None], size, 0)) for size in sizes}

    def run():
        done = 0
        while done < evaluations:
            size = min(batch_size, evaluations - done)
            forward(batches[size]).numpy()
            done += size

    return run


def alternated_seconds(functions: dict, repeats: int) -> dict:
    """Seconds of each function in every round (timed in turn), after one warm-up."""
    for function in functions.values():
        function()
    times = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - start)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default="chelsea,coffee,astronaut,rocket")
    parser.add_argument("--side", type=int, default=224, help="image side (pixels)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--sobol-designs", type=int, default=32, help="Xplique nb_design")
    parser.add_argument("--hsic-designs", type=int, default=500, help="Xplique nb_design")
    parser.add_argument(
        "--no-defaults", action="store_true", help="skip the own-default-masks comparison"
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds (0: no timing)")
    parser.add_argument(
        "--no-compare", action="store_true", help="only the timings (no correlations)"
    )
    args = parser.parse_args()

    try:
        import xplique
        from xplique.attributions import HsicAttributionMethod, SobolAttributionMethod
    except ImportError as error:
        raise SystemExit(f"Xplique is not importable here ({error}); see the docstring") from None
    import tensorflow as tf

    from salmap.methods import hsic, sobol
    from salmap.methods.variance import hsic_scores, jansen_total_indices

    adapter = peers.load_benchmark_model("efficientnet_lite0", batch_size=args.batch_size)
    model = peers.unit_model(adapter)
    batch = args.batch_size
    print(
        f"Xplique {xplique.__version__}, TF {tf.__version__}, {os.cpu_count()} CPUs; "
        f"{adapter.name} (ImageNet weights), {args.side}x{args.side}, grid {GRID}x{GRID}, "
        f"batch {batch}"
    )

    xplique_sobol = SobolAttributionMethod(
        model, grid_size=GRID, nb_design=args.sobol_designs, batch_size=batch
    )
    xplique_hsic = HsicAttributionMethod(
        model, grid_size=GRID, nb_design=args.hsic_designs, batch_size=batch
    )
    sobol_masks, hsic_masks = design_of(xplique_sobol), design_of(xplique_hsic)
    sides = {
        name: Side(adapter, model, photo(name, args.side), batch) for name in args.images.split(",")
    }

    failures, explained = [], []
    if not args.no_compare:
        print(
            f"\nsame masks (Xplique's): Sobol {len(sobol_masks)} masks ({args.sobol_designs} "
            f"designs), HSIC {len(hsic_masks)} masks. Pearson r of salmap's map with Xplique's "
            "(px, 224x224: salmap resizes bilinearly, Xplique bicubically) and of the two "
            "estimators on the same scores (8x8; HSIC also with Xplique's kernel width)"
        )
        print(
            f"{'image':<11}{'class':>6}{'sobol px':>10}{'sobol 8x8':>11}"
            f"{'hsic px':>9}{'hsic 8x8':>10}{'same width':>12}"
        )
        for name, side in sides.items():
            row = f"{name:<11}{side.target:>6}"
            for label, function, explainer, design in (
                ("sobol", sobol, xplique_sobol, sobol_masks),
                ("hsic", hsic, xplique_hsic, hsic_masks),
            ):
                maps = pearson(side.salmap(function, design=design), side.xplique(explainer))
                scores = side.scores(design)
                theirs = xplique_estimate(explainer, scores)
                if label == "sobol":
                    ours = jansen_total_indices(scores, GRID**2, args.sobol_designs)
                    row += f"{maps:>10.4f}{pearson(ours, theirs):>11.4f}"
                else:
                    ours = hsic_scores(design > 0.5, scores)
                    width = hsic_scores(design > 0.5, scores, bandwidth=abs(np.median(scores)))
                    row += f"{maps:>9.4f}{pearson(ours, theirs):>10.4f}"
                    row += f"{pearson(width, theirs):>12.4f}"
                    if pearson(width, theirs) < THRESHOLD:
                        failures.append(f"hsic estimators at Xplique's width on {name}")
                if maps < THRESHOLD:
                    (explained if label == "hsic" else failures).append(
                        f"{label} on {name}: r = {maps:.4f} < {THRESHOLD}"
                    )
            print(row, flush=True)
            last_scores = scores  # HSIC scores of the last image, for the shift check

        if not args.no_defaults:
            default_sobol = SobolAttributionMethod(model, batch_size=batch)
            default_hsic = HsicAttributionMethod(model, batch_size=batch)
            print(
                "\nown default masks (reported, not asserted): Xplique Sobol "
                f"{len(default_sobol.masks)} masks (unscrambled Sobol'), HSIC "
                f"{len(default_hsic.masks)} (binarised Sobol'); salmap Sobol 2112 (scrambled, "
                "seed 0), HSIC 1500 (Latin hypercube, seed 0)"
            )
            print(f"{'image':<11}{'sobol px':>10}{'hsic px':>9}")
            for name, side in sides.items():
                sobol_r = pearson(side.salmap(sobol), side.xplique(default_sobol))
                hsic_r = pearson(side.salmap(hsic), side.xplique(default_hsic))
                print(f"{name:<11}{sobol_r:>10.4f}{hsic_r:>9.4f}", flush=True)

        # The HSIC output kernel's width: the same scores, shifted by a constant.
        scores, name = last_scores, list(sides)[-1]
        median = float(np.median(scores))
        distance = float(
            np.median(np.abs(np.subtract.outer(scores, scores))[np.triu_indices(len(scores), 1)])
        )
        reference_x = xplique_estimate(xplique_hsic, scores)
        reference_s = hsic_scores(hsic_masks > 0.5, scores)
        print(
            f"\nHSIC on {name}'s {len(scores)} scores (median {median:.3f}, median distance "
            f"{distance:.3f}) plus a constant: r of each estimate with its unshifted one"
        )
        print(f"{'shift':>16}{'Xplique':>10}{'salmap':>10}")
        for label, shift in (("+5", 5.0), ("+20", 20.0), ("-median+0.05", 0.05 - median)):
            theirs = xplique_estimate(xplique_hsic, scores + shift)
            ours = hsic_scores(hsic_masks > 0.5, scores + shift)
            theirs_r, ours_r = pearson(theirs, reference_x), pearson(ours, reference_s)
            print(f"{label:>16}{theirs_r:>10.4f}{ours_r:>10.4f}")
        zero = xplique_estimate(xplique_hsic, scores - median)
        print(f"{'-median':>16}{'all NaN' if np.all(np.isnan(zero)) else 'finite':>10}")

    if args.repeats > 0:
        side = next(iter(sides.values()))
        image = side.image
        print(
            f"\nseconds per image on {next(iter(sides))} (median of {args.repeats} rounds, "
            f"after a warm-up; batch {batch}; same masks)"
        )
        print(
            f"{'method':<22}{'calls':>6}{'floor s':>9}{'salmap s':>10}{'Xplique s':>11}"
            f"{'salmap/floor':>14}{'Xplique/floor':>15}{'salmap/Xplique':>16}"
        )
        for label, function, explainer, design in (
            (f"sobol ({args.sobol_designs} designs)", sobol, xplique_sobol, sobol_masks),
            (f"hsic ({args.hsic_designs} masks)", hsic, xplique_hsic, hsic_masks),
        ):
            rounds = alternated_seconds(
                {
                    "floor": floor_runner(model, image, len(design), batch),
                    "salmap": lambda f=function, d=design: side.salmap(f, design=d),
                    "xplique": lambda e=explainer: side.xplique(e),
                },
                args.repeats,
            )
            floor, ours, theirs = (statistics.median(rounds[k]) for k in rounds)
            print(
                f"{label:<22}{len(design):>6}{floor:>9.2f}{ours:>10.2f}{theirs:>11.2f}"
                f"{ours / floor:>14.2f}{theirs / floor:>15.2f}{ours / theirs:>16.2f}",
                flush=True,
            )
            print(
                "    rounds (s): "
                + "; ".join(f"{k} " + " ".join(f"{v:.2f}" for v in rounds[k]) for k in rounds)
            )

    for line in explained:
        print(f"\nbelow {THRESHOLD}: {line} (Xplique's kernel width; see 'same width')")
    if failures:
        print("\nNOT MET: " + "; ".join(failures))
        return 1
    print(f"\nsame masks: Sobol maps and both estimators at the same width r >= {THRESHOLD}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

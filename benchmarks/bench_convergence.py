"""Model evaluations and seconds each library needs to reach the same quality, one run.

For each model (ResNet50 with seeded random weights, and the embedded
EfficientNet-Lite0), on chelsea resized to 224×224, this prints two tables:

**(a) Integrated Gradients, black baseline**: the fewest model evaluations whose
attribution has a completeness error below ``--tolerance`` (1 %),
``|sum(attribution) - (f(x) - f(0))| / |f(x) - f(0)|``, measured with
``salmap.methods.completeness_error`` on every library's own attribution.
Fixed-step rules (the peers', and salmap's ``adaptive``, ``gauss-legendre`` and
``trapezoid``) are scanned over a geometric ladder of steps; the first rung below
the tolerance counts only if the next rung is below it too (the error of a
quadrature rule is not monotone in the steps). salmap's ``tolerance=`` mode picks
its own steps and reports them in ``info``. Xplique's IG has one rule (trapezoid on
``linspace(0, 1, steps)``) and PAIR's one (the sum over ``linspace(0, 1, steps)``
divided by ``steps``).

**(b) SmoothGrad, sigma 0.15 × (image max − image min)** in [0, 1] units: a
reference map is salmap's plain Monte-Carlo SmoothGrad with ``--reference-samples``
samples (1000) from seeds used nowhere else, reduced by max |·| over channels; for
each library the fewest samples on a ladder whose map's Pearson correlation with the
reference is at least ``--correlation``, taking the median over three seeds at
each rung (a failing rung stops once two seeds fail: the median of three is then
decided). The reference is the mean of two halves with different seeds; the
correlation of the halves tells how far any map can agree with the reference at
all (Spearman–Brown), printed as the ceiling, with the plain Monte-Carlo samples
predicted for the target. The search starts at that prediction (then at salmap's
Monte-Carlo rung, since the peers draw the same noise) and walks down or up the
ladder, assuming the median correlation grows with the samples.

The target is r >= 0.85, not 0.99: at sigma 0.15 the gradients are so noisy that
no map can come close to 0.99 with a 1000-sample reference. On EfficientNet-Lite0,
32-sample maps of two seeds correlate about 0.34, no map can correlate with the
reference above about 0.965, and plain Monte Carlo reaches 0.89 at 512 samples; on
the random ResNet50 the reference's halves correlate 0.982 (ceiling 0.9955) and
0.99 is predicted at about 820 samples. ``--correlation 0.99`` restores the
stricter target (with a larger ``--reference-samples`` and a longer ladder, far
beyond this benchmark's time); ``--correlation 0.95 --models resnet50`` gives a
stricter table where it is reachable (about 96 samples).

Evaluations count every model pass as one, forward-only passes included (salmap's
adaptive rule probes the path with 17 forward passes; each costs about a third of a
gradient, so this count is conservative for salmap). IG seconds are the median of
``--repeats`` runs at the chosen rung, run after the scan has run it (the warm-up:
tracing); SmoothGrad seconds are the median of the three seed runs at the chosen
rung (the first may include tracing; the median discards it). Libraries are timed
one after the other, not alternately: on a busy machine, rerun and compare. The
peers run through ``benchmarks/peers.py`` on the same [0, 1] image, baseline and
absolute noise level; salmap, Xplique and PAIR's IG get the same batch size;
PAIR's and tf-keras-vis's SmoothGrad run one sample per model call (their design);
Xplique's noise is unseeded (see peers.py), so its three seeds are three
independent draws that a rerun does not repeat. tf-keras-vis draws exactly PAIR's
noise (NumPy's global generator, same seed, same order) and computes the same
gradients, so its map is PAIR's: it runs once at PAIR's rung, its correlation
printed beside PAIR's, and that run is its time (``--full-search`` searches it
too, about ten more minutes: one eager model call per sample).

Install the peers (a virtual environment that sees salmap and TensorFlow 2.21;
Xplique 2.0.2 pins tensorflow<=2.20, hence ``--no-deps`` and its needs by hand)::

    python -m venv --system-site-packages /tmp/peers-venv
    /tmp/peers-venv/bin/pip install tf-keras-vis saliency
    /tmp/peers-venv/bin/pip install --no-deps xplique==2.0.2
    /tmp/peers-venv/bin/pip install einops "scikit-learn<=1.7.2" \\
        "tensorflow-probability==0.25.0"
    /tmp/peers-venv/bin/pip install --no-deps tf-keras==2.21.0
    /tmp/peers-venv/bin/python benchmarks/bench_convergence.py

``--quick`` runs EfficientNet-Lite0 only, on short ladders, a 200-sample reference
and looser targets (IG 10 %, SmoothGrad r >= 0.55) that they reach, as a smoke test
of every code path (its numbers are not the benchmark's). Without the peers it prints
salmap's rows and says which peers are missing.
"""

from __future__ import annotations

import argparse
import inspect
import os
import statistics
import sys
import time
from dataclasses import dataclass, field

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import peers as peer_library  # noqa: E402 - benchmarks/peers.py, next to this file

IG_LADDER = (8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)
SG_LADDER = (4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)
QUICK_IG_LADDER = (8, 16, 32, 64, 128)
QUICK_SG_LADDER = (4, 8, 16, 32, 64)
#: seeds of the reference map's two halves, used by nothing else
REFERENCE_SEEDS = (90001, 90002)
SCAN_SEEDS = (1, 2, 3)


@dataclass
class Row:
    """One library/option: where it reached the target, its cost and its time."""

    library: str
    option: str
    gradients: int | None = None  # gradient evaluations (None: not reached)
    forwards: int = 0  # forward-only passes
    quality: float | None = None  # completeness error or median correlation there
    seconds: float | None = None
    note: str = ""
    trace: list = field(default_factory=list)  # (rung, quality) scanned

    @property
    def evaluations(self) -> int | None:
        return None if self.gradients is None else self.gradients + self.forwards


def median_seconds(function, repeats: int, warm_up: bool = True) -> float:
    """Median wall seconds of ``function()`` over ``repeats`` runs, after one warm-up
    run (tracing) unless the caller has just run it the same way."""
    if warm_up:
        function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# -- (a) Integrated Gradients ---------------------------------------------------------
def scan_ig(attribution_at, error_of, ladder, tolerance):
    """The first rung whose error is below ``tolerance`` and stays below at the next.

    Returns ``(rung or None, its error, note, trace)``; the top rung counts
    unconfirmed (said in the note)."""
    errors = {}

    def error(steps):
        if steps not in errors:
            errors[steps] = error_of(attribution_at(steps))
        return errors[steps]

    for i, steps in enumerate(ladder):
        if error(steps) >= tolerance:
            continue
        if i + 1 == len(ladder):
            return steps, errors[steps], "top rung, unconfirmed", sorted(errors.items())
        if error(ladder[i + 1]) < tolerance:
            return steps, errors[steps], "", sorted(errors.items())
    return None, None, f"not reached by {ladder[-1]}", sorted(errors.items())


def ig_rows(adapter, image, target, peers, args) -> list[Row]:
    from salmap.methods import completeness_error, integrated_gradients

    batch = image[None]
    targets = np.array([target], np.int32)
    size = args.batch_size
    rows = []

    def error_of(attribution):
        attribution = np.asarray(attribution, np.float32)
        return float(completeness_error(adapter, batch, targets, attribution[None])[0])

    accepts = inspect.signature(integrated_gradients).parameters
    if "tolerance" in accepts and "info" in accepts:
        info: dict = {}
        attribution = integrated_gradients(
            adapter, batch, targets, tolerance=args.tolerance, info=info, batch_size=size
        )
        seconds = median_seconds(  # the run above was the warm-up
            lambda: integrated_gradients(
                adapter, batch, targets, tolerance=args.tolerance, batch_size=size
            ),
            args.repeats,
            warm_up=False,
        )
        rows.append(
            Row(
                "salmap",
                f"tolerance={args.tolerance:g}",
                int(info["evaluations"][0]),
                int(info.get("forward_evaluations", [0])[0]),
                error_of(attribution[0]),
                seconds,
                f"own estimate {float(info['completeness_error'][0]):.2e}",
            )
        )
    else:
        rows.append(Row("salmap", "tolerance=", note="not in this checkout (no tolerance/info)"))

    def salmap_rule(rule):
        def attribution_at(steps):
            return integrated_gradients(
                adapter, batch, targets, steps=steps, rule=rule, batch_size=size
            )[0]

        return attribution_at

    runners = [
        ("salmap", f"{rule} steps=n", salmap_rule(rule), 17 if rule == "adaptive" else 0)
        for rule in ("adaptive", "gauss-legendre", "trapezoid")
    ]
    rules = {"xplique": "trapezoid (its only rule)", "pair": "linspace sum/n (its only rule)"}
    for name, peer in peers.items():
        if peer.ig is not None:

            def attribution_at(steps, _peer=peer):
                return _peer.ig(image, target, steps=steps, batch_size=size)

            runners.append((name, rules.get(name, "steps=n"), attribution_at, 0))
    for library, option, attribution_at, forwards in runners:
        steps, error, note, trace = scan_ig(
            attribution_at, error_of, args.ig_ladder, args.tolerance
        )
        row = Row(library, option, steps, forwards if steps else 0, error, note=note, trace=trace)
        if steps is not None:
            # The scan has just run these steps (and the next rung's): that was the warm-up.
            def rerun(_run=attribution_at, _steps=steps):
                return _run(_steps)

            row.seconds = median_seconds(rerun, args.repeats, warm_up=False)
        rows.append(row)
        print(f"  IG {library} {option}: {_trace(trace, '.1e')}", flush=True)
    return rows


# -- (b) SmoothGrad --------------------------------------------------------------------
def reference_map(adapter, image, target, sigma, samples, batch_size):
    """The reference SmoothGrad map and the correlation of its two halves."""
    from salmap.methods import smoothgrad

    halves = [
        smoothgrad(
            adapter,
            image[None],
            [target],
            samples=samples // 2,
            sigma=sigma,
            seed=seed,
            batch_size=batch_size,
        )[0]
        for seed in REFERENCE_SEEDS
    ]
    half_maps = [peer_library.max_abs(h) for h in halves]
    split = peer_library.correlation(*half_maps)
    return peer_library.max_abs((halves[0] + halves[1]) / 2), split


@dataclass
class RungResult:
    """Correlations of the seeds run at one rung, and their wall seconds."""

    values: list
    seconds: list

    def passed(self, threshold) -> bool:
        return len(self.values) == 3 and statistics.median(self.values) >= threshold

    def shown(self) -> tuple:
        """(rung value, prefix): the exact median, or ``<=`` an upper bound of it."""
        if len(self.values) == 3:
            return statistics.median(self.values), ""
        return max(self.values), "<="


def run_rung(map_at, reference, samples, threshold) -> RungResult:
    """The seeds at one rung, one at a time, stopping once two fail (the median of
    three is then below the threshold); a passing rung runs all three."""
    result = RungResult([], [])
    for seed in SCAN_SEEDS:
        start = time.perf_counter()
        smoothed = map_at(samples, seed)
        result.seconds.append(time.perf_counter() - start)
        result.values.append(peer_library.correlation(smoothed, reference))
        if sum(v < threshold for v in result.values) >= 2:
            break
    return result


def search_smoothgrad(map_at, reference, ladder, threshold, guess: int):
    """The smallest rung whose median correlation over three seeds reaches ``threshold``.

    Assumes the median correlation grows with the samples (it does on these maps:
    the seeds' spread is far smaller than the steps between rungs), so it starts at
    the rung ``guess`` (an index) and walks down while the rung below passes, or up
    until one passes. Returns ``(rung index or None, {index: RungResult})``."""
    results = {}

    def passes(index):
        if index not in results:
            results[index] = run_rung(map_at, reference, ladder[index], threshold)
        return results[index].passed(threshold)

    index = min(max(guess, 0), len(ladder) - 1)
    if passes(index):
        while index > 0 and passes(index - 1):
            index -= 1
        return index, results
    while index + 1 < len(ladder):
        index += 1
        if passes(index):
            return index, results
    return None, results


def predicted_samples(split: float, reference_samples: int, threshold: float) -> float:
    """Plain Monte-Carlo samples predicted to reach ``threshold`` against the reference.

    With maps = signal + noise / sqrt(n), two independent halves of ``m`` samples
    correlate ``1 / (1 + k / m)``, so ``k = m (1 / split - 1)``, and a map of ``n``
    samples correlates ``1 / sqrt((1 + k / n) (1 + k / reference))`` with the
    reference. Infinite when the threshold is above the ceiling."""
    if split <= 0:
        return float("inf")
    k = reference_samples / 2 * (1 / split - 1)
    room = 1 / (threshold**2 * (1 + k / reference_samples)) - 1
    return k / room if room > 0 else float("inf")


def smoothgrad_rows(adapter, image, target, peers, args) -> list[Row]:
    from salmap.methods import smoothgrad

    batch = image[None]
    targets = np.array([target], np.int32)
    size = args.batch_size
    sigma = 0.15 * float(image.max() - image.min())
    start = time.perf_counter()
    reference, split = reference_map(adapter, image, target, sigma, args.reference_samples, size)
    reliability = 2 * split / (1 + split)
    wanted = predicted_samples(split, args.reference_samples, args.correlation)
    at_99 = predicted_samples(split, args.reference_samples, 0.99)
    print(
        f"  SmoothGrad reference: {args.reference_samples} samples in "
        f"{time.perf_counter() - start:.0f} s; its halves correlate r = {split:.4f}, so no "
        f"map can correlate with it above about {np.sqrt(max(reliability, 0)):.4f}; plain "
        f"Monte Carlo is predicted to need {wanted:.0f} samples for r >= {args.correlation} "
        f"({at_99:.0f} for 0.99)",
        flush=True,
    )
    guess = int(np.searchsorted(args.sg_ladder, min(wanted, 1e9)))
    runners = []
    has_sampling = _wrapper_has_sampling()
    for sampling in ("mc", "antithetic", "qmc"):
        if sampling != "mc" and not has_sampling:
            runners.append(("salmap", f"sampling={sampling}", None))
            continue

        def map_at(samples, seed, _sampling=sampling):
            extra = {"sampling": _sampling} if has_sampling else {}
            return peer_library.max_abs(
                smoothgrad(
                    adapter,
                    batch,
                    targets,
                    samples=samples,
                    sigma=sigma,
                    seed=seed,
                    batch_size=size,
                    **extra,
                )[0]
            )

        runners.append(("salmap", f"sampling={sampling}", map_at))
    for name, peer in peers.items():

        def map_at(samples, seed, _peer=peer):
            return _peer.smoothgrad(
                image, target, samples=samples, sigma=sigma, seed=seed, batch_size=size
            )

        runners.append((name, "Monte Carlo (its only sampling)", map_at))
    rows = []
    found_by = {}
    for library, option, map_at in runners:
        if map_at is None:
            rows.append(Row(library, option, note="not in this checkout (no sampling=)"))
            continue
        if library == "tf-keras-vis" and not args.full_search and "pair" in found_by:
            rows.append(same_draws_as_pair(map_at, reference, found_by["pair"], args))
            continue
        index, results = search_smoothgrad(
            map_at, reference, args.sg_ladder, args.correlation, guess
        )
        trace = [(args.sg_ladder[i], *results[i].shown()) for i in sorted(results)]
        row = Row(library, option, trace=trace)
        if index is None:
            row.note = f"not reached by {args.sg_ladder[-1]}"
        else:
            found = results[index]
            row.gradients = args.sg_ladder[index]
            row.quality = statistics.median(found.values)
            # The three seed runs at the rung; the first may include tracing for a
            # new batch shape, which the median discards.
            row.seconds = statistics.median(found.seconds)
            if library == "salmap" and option == "sampling=mc":
                guess = index  # the peers draw the same noise: start them there
        found_by[library] = (index, results, row)
        rows.append(row)
        print(f"  SmoothGrad {library} {option}: {_trace(trace, '.4f')}", flush=True)
    return rows


def same_draws_as_pair(map_at, reference, pair_found, args) -> Row:
    """tf-keras-vis at PAIR's rung only, one seed, its map checked against PAIR's.

    Both draw their noise from NumPy's global generator in the same order
    (``np.random.normal`` over samples × pixels) from the same ``np.random.seed``, and
    their gradients equal salmap's to float precision, so their maps are the same
    map: PAIR's search is tf-keras-vis's. Running the search again would cost it
    about ten minutes (one eager model call per sample); ``--full-search`` does it.
    """
    index, results, pair_row = pair_found
    row = Row("tf-keras-vis", "Monte Carlo (its only sampling)")
    if index is None:
        row.note = f"not reached by {args.sg_ladder[-1]} (PAIR's draws; not run)"
        return row
    samples = args.sg_ladder[index]
    start = time.perf_counter()
    smoothed = map_at(samples, SCAN_SEEDS[0])
    seconds = time.perf_counter() - start
    ours = peer_library.correlation(smoothed, reference)
    theirs = results[index].values[0]
    row.gradients, row.quality, row.seconds = samples, pair_row.quality, seconds
    row.trace = [(samples, ours, "")]
    row.note = (
        f"PAIR's draws: seed {SCAN_SEEDS[0]} r {ours:.5f} vs PAIR's {theirs:.5f}; one timed run"
    )
    print(f"  SmoothGrad tf-keras-vis: {row.note}", flush=True)
    return row


def _wrapper_has_sampling() -> bool:
    from salmap.methods.noise import noise_wrapper

    return "sampling" in inspect.signature(noise_wrapper).parameters


# -- printing -------------------------------------------------------------------------
def _trace(trace, spec) -> str:
    return ", ".join(
        f"{item[0]}:{item[2] if len(item) > 2 else ''}{item[1]:{spec}}" for item in trace
    )


def print_table(title, rows, quality_label, quality_spec) -> None:
    print(f"\n{title}")
    header = f"{'library':<14}{'option':<34}{'grad':>6}{'fwd':>5}{'evals':>7}"
    header += f"{quality_label:>12}{'seconds':>9}  note"
    print(header)
    for row in rows:
        if row.gradients is None:
            line = f"{row.library:<14}{row.option:<34}{'—':>6}{'':>5}{'—':>7}{'':>12}{'—':>9}"
        else:
            quality = f"{row.quality:{quality_spec}}" if row.quality is not None else "—"
            seconds = f"{row.seconds:.3f}" if row.seconds is not None else "—"
            line = f"{row.library:<14}{row.option:<34}{row.gradients:>6}{row.forwards:>5}"
            line += f"{row.evaluations:>7}{quality:>12}{seconds:>9}"
        print(f"{line}  {row.note}".rstrip())
    print_ratios(rows)


def print_ratios(rows) -> None:
    ours = [r for r in rows if r.library == "salmap" and r.gradients is not None]
    theirs = [r for r in rows if r.library != "salmap" and r.gradients is not None]
    missing = sorted(
        {r.library for r in rows if r.library != "salmap"} - {r.library for r in theirs}
    )
    if not ours:
        print("ratio: salmap did not reach the target")
        return
    if not theirs:
        print(
            "ratio: no peer reached the target on this ladder"
            + (f" ({', '.join(missing)})" if missing else "")
        )
        return
    for label, key in (("evaluations", "evaluations"), ("seconds", "seconds")):
        best_ours = min(ours, key=lambda r, k=key: getattr(r, k))
        best_theirs = min(theirs, key=lambda r, k=key: getattr(r, k))
        ratio = getattr(best_ours, key) / getattr(best_theirs, key)
        print(
            f"salmap-best ÷ best peer, {label}: {ratio:.3f} "
            f"(salmap {best_ours.option}: {getattr(best_ours, key):.4g}; "
            f"{best_theirs.library} {best_theirs.option}: {getattr(best_theirs, key):.4g})"
        )
    if missing:
        print(f"(peers that did not reach it on the ladder: {', '.join(missing)})")


def bench_model(name, args) -> None:
    adapter = peer_library.load_benchmark_model(name, batch_size=args.batch_size)
    image = peer_library.chelsea_224()
    target = int(np.argmax(adapter.predict(image[None])[0]))
    peers = peer_library.make_peers(adapter, default_batch=args.batch_size)
    print(f"\nmodel {adapter.name} (target {target}), batch size {args.batch_size}", flush=True)
    start = time.perf_counter()
    if "ig" in args.parts:
        rows = ig_rows(adapter, image, target, peers, args)
        print_table(
            f"{adapter.name} — IG to completeness error < {args.tolerance:.0%} "
            f"(ladder {args.ig_ladder[0]}..{args.ig_ladder[-1]}; a rung counts if the next "
            "rung is below too)",
            rows,
            "error",
            ".2e",
        )
    if "smoothgrad" in args.parts:
        rows = smoothgrad_rows(adapter, image, target, peers, args)
        print_table(
            f"{adapter.name} — SmoothGrad to median r >= {args.correlation} with the "
            f"{args.reference_samples}-sample reference (ladder {args.sg_ladder[0]}.."
            f"{args.sg_ladder[-1]}, 3 seeds)",
            rows,
            "median r",
            ".4f",
        )
    print(f"({adapter.name}: {time.perf_counter() - start:.0f} s)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet50,efficientnet_lite0")
    parser.add_argument("--parts", default="ig,smoothgrad")
    parser.add_argument("--quick", action="store_true", help="smoke test: one model, short ladders")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs after the warm-up")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--tolerance", type=float, help="IG completeness error (0.01)")
    parser.add_argument("--correlation", type=float, help="SmoothGrad target r (0.85)")
    parser.add_argument("--reference-samples", type=int, default=1000)
    parser.add_argument(
        "--full-search",
        action="store_true",
        help="search tf-keras-vis's SmoothGrad rung too (it draws PAIR's noise; slow)",
    )
    parser.add_argument("--ig-top", type=int, default=None, help="cut the IG ladder above this")
    parser.add_argument("--sg-top", type=int, default=None, help="cut the SmoothGrad ladder")
    args = parser.parse_args()
    args.ig_ladder, args.sg_ladder = IG_LADDER, SG_LADDER
    if args.quick:
        args.models = "efficientnet_lite0"
        args.ig_ladder, args.sg_ladder = QUICK_IG_LADDER, QUICK_SG_LADDER
        args.reference_samples = min(args.reference_samples, 200)
        args.repeats = 1
        # Targets the short ladders reach, so the smoke test runs every code path.
        args.tolerance = 0.1 if args.tolerance is None else args.tolerance
        args.correlation = 0.55 if args.correlation is None else args.correlation
    args.tolerance = 0.01 if args.tolerance is None else args.tolerance
    args.correlation = 0.85 if args.correlation is None else args.correlation
    if args.ig_top:
        args.ig_ladder = tuple(n for n in args.ig_ladder if n <= args.ig_top)
    if args.sg_top:
        args.sg_ladder = tuple(n for n in args.sg_ladder if n <= args.sg_top)
    args.parts = args.parts.split(",")

    import warnings

    import tensorflow as tf

    # Xplique retraces its helpers per step count (its design; the timed runs come
    # after a warm-up), and Keras warns about tf-keras-vis's list input: not ours.
    tf.get_logger().setLevel("ERROR")
    warnings.filterwarnings("ignore", message="The structure of `inputs`")
    missing = peer_library.missing_peers()
    print(f"TF {tf.__version__}, {os.cpu_count()} CPUs; chelsea 224x224; repeats {args.repeats}")
    print(
        "peers: "
        + ", ".join(
            f"{name} {'found' if name not in missing else 'NOT importable (' + missing[name] + ')'}"
            for name in peer_library.PEER_NAMES
        )
    )
    start = time.perf_counter()
    for name in args.models.split(","):
        bench_model(name, args)
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()

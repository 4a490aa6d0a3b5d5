"""``salmap eval``: how faithful are saliency methods? Metrics and an HTML report."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from salmap.cli.common import (
    add_model_options,
    add_progress_options,
    method_names,
    method_params,
    model_options,
    parse_params,
    positive,
    prepare_framework,
    print_json,
)
from salmap.errors import UsageError

DEFAULT_IMAGE = "chelsea"
DEFAULT_METHODS = "vanilla,gradient-x-input,integrated-gradients,grad-cam"
DEFAULT_OUTPUT = "salmap_report"


def register(subparsers) -> None:
    from salmap.report.evaluate import METRICS

    parser = subparsers.add_parser(
        "eval",
        help="is the map faithful? deletion/insertion, ROAD, MuFidelity, pointing game, "
        "sanity checks, as an HTML report",
        description=(
            "Explain each image with each method and measure how faithful each map is to "
            "the model, beside a random and a centre-bias baseline map: deletion and "
            "insertion (RISE), ROAD, MuFidelity, the pointing game on composites, and "
            "the cascading randomisation sanity check. Writes a self-contained HTML "
            "report with the numbers as JSON and CSV."
        ),
        epilog=(
            "examples:\n"
            "  salmap eval                                  the bundled cat, default methods\n"
            "  salmap eval a.jpg b.jpg --methods vanilla,integrated-gradients -o report/\n"
            "  salmap eval chelsea coffee --metrics deletion,insertion --steps 112\n"
            "  salmap eval photo.jpg --methods all --metrics sanity --cascade 5\n\n"
            f"metrics: {', '.join(METRICS)} (default: all)"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "images",
        nargs="*",
        metavar="IMAGE",
        help=f"image files, folders, globs, .txt/.csv lists or bundled photo names "
        f"(default: {DEFAULT_IMAGE})",
    )
    add_model_options(parser)
    _add_what_options(parser.add_argument_group("what to evaluate"))
    _add_metric_settings(parser.add_argument_group("metric settings"))
    _add_output_options(parser)
    parser.set_defaults(handler=run)


def _add_what_options(what) -> None:
    what.add_argument(
        "--methods",
        default=DEFAULT_METHODS,
        metavar="A,B,C|all",
        help=f"saliency methods (default: {DEFAULT_METHODS})",
    )
    what.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a method parameter, given to every method that takes it (repeat)",
    )
    what.add_argument(
        "--metrics",
        default="all",
        metavar="A,B|all",
        help="which metrics (default: all)",
    )
    what.add_argument(
        "--no-baselines",
        action="store_true",
        help="leave out the random and centre baseline maps",
    )
    what.add_argument(
        "--target", metavar="CLASS", help="class index or name (default: each image's top-1)"
    )


def _add_metric_settings(settings) -> None:
    settings.add_argument(
        "--steps", type=positive, default=224, help="deletion/insertion steps (224)"
    )
    settings.add_argument(
        "--samples", type=_at_least_two, default=200, help="MuFidelity random subsets (200)"
    )
    settings.add_argument(
        "--cascade",
        type=positive,
        metavar="N",
        help="cut points of the randomisation cascade (default: up to 10)",
    )
    settings.add_argument(
        "--pointing-background",
        choices=("neutral", "cluttered"),
        default="neutral",
        help="canvas of the pointing-game composites (neutral gray)",
    )
    settings.add_argument(
        "--resolution",
        choices=("model", "image"),
        default="model",
        help="perturb at the model's input size (default, faster) or the image's own",
    )
    settings.add_argument("--seed", type=int, default=0, help="seed of every random choice (0)")


def _add_output_options(parser) -> None:
    out = parser.add_argument_group("output")
    out.add_argument(
        "-o",
        "--output",
        metavar="FOLDER",
        default=DEFAULT_OUTPUT,
        help=f"report folder: index.html, results.json, results.csv (default: {DEFAULT_OUTPUT})",
    )
    out.add_argument(
        "--json", action="store_true", help="print the summary as JSON on stdout instead of text"
    )
    add_progress_options(parser, out)


def _at_least_two(text: str) -> int:
    value = positive(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"expected a number >= 2, got {value}")
    return value


def _metric_names(text: str) -> list[str]:
    from salmap.report.evaluate import METRICS

    if text.strip().lower() == "all":
        return list(METRICS)
    names = [name.strip().lower() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in METRICS]
    if unknown or not names:
        raise UsageError(
            f"unknown metric {', '.join(map(repr, unknown)) or repr(text)}; "
            f"choose from {', '.join(METRICS)} or all"
        )
    return names


def _dataset(images: list[str]) -> list[str]:
    """Files and bundled photos as given; folders, globs and manifests expanded as
    ``salmap batch`` expands them."""
    from salmap.batch import discover
    from salmap.batch.inputs import MANIFEST_EXTENSIONS

    found = []
    for image in images:
        path = Path(image)
        expand = path.is_dir() or path.suffix.lower() in MANIFEST_EXTENSIONS
        if expand or (not path.exists() and any(c in image for c in "*?[")):
            found += [item.source for item in discover([image]) if item.frame is None]
        else:
            found.append(image)
    return found


def _check_folder(path: Path) -> None:
    if path.exists() and not path.is_dir():
        raise UsageError(f"cannot write the report into {path}: it is a file")
    if not path.exists() and not path.parent.is_dir():
        raise UsageError(f"cannot create {path}: folder {path.parent} does not exist")


def _reporter(progress):
    """``evaluate``'s ``progress(done, total, text)`` drawn on a :func:`progress_bar`."""

    def report(done: int, total: int, text: str) -> None:
        progress.set_total(total)
        progress.advance(done - progress.done, text)

    return report


def run(args) -> int:
    import salmap
    from salmap.progress import progress_bar, show_progress
    from salmap.report import evaluate, write_report
    from salmap.report.evaluate import BASELINES

    images = _dataset(args.images or [DEFAULT_IMAGE])
    output = Path(args.output)
    _check_folder(output)
    methods = method_names(args.methods)
    metrics = _metric_names(args.metrics)
    params = parse_params(args.param)
    method_parameters = {name: method_params(name, params) for name in methods}
    loaded = [salmap.load_image(image) for image in images]  # bad files fail before the model
    options = model_options(args)
    prepare_framework(options, args.debug)
    model = salmap.load_model(**options)
    target = args.target
    if target is not None and target.strip().isdigit():
        target = int(target)
    shown = show_progress(args.progress, args.json)
    with progress_bar(None, "eval", enabled=shown, unit="maps") as progress:
        evaluation = evaluate(
            loaded,
            model,
            names=images,
            methods=methods,
            metrics=metrics,
            baselines=() if args.no_baselines else BASELINES,
            target=target,
            method_params=method_parameters,
            steps=args.steps,
            mufidelity_samples=args.samples,
            pointing_background=args.pointing_background,
            cascade_layers=args.cascade,
            resolution=args.resolution,
            seed=args.seed,
            progress=_reporter(progress),
        )
    written = write_report(evaluation, output)
    if args.json:
        print_json(
            {
                "model": evaluation.model,
                "summary": evaluation.to_dict()["summary"],
                "files": {kind: str(path) for kind, path in written.items()},
            }
        )
    else:
        _print_summary(evaluation, written)
    return 0


def _print_summary(evaluation, written) -> None:
    columns = evaluation.columns
    width = max(len(m) for m in evaluation.methods) + 11
    head = f"{'method':<{width}}" + "".join(f"{c.key[:12]:>13}" for c in columns) + "    s/image"
    print(f"{evaluation.model} on {len(evaluation.images)} image(s)")
    print(head)
    for entry in evaluation.summary():
        name = entry["method"] + (" (baseline)" if entry["baseline"] else "")
        cells = "".join(
            f"{entry[c.key]:>13.3f}" if math.isfinite(entry[c.key]) else f"{'-':>13}"
            for c in columns
        )
        print(f"{name:<{width}}{cells}{entry['seconds']:>11.3f}")
    arrows = ", ".join(f"{c.key} {'↑' if c.higher_is_better else '↓'}" for c in columns)
    print(f"({arrows})")
    for path in written.values():
        print(f"wrote {path}")

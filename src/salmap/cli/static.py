"""``salmap static``: bottom-up saliency (Itti–Koch and successors) of an image."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from salmap.cli.common import add_figure_options, check_output_path, parse_params, print_json
from salmap.errors import UsageError

DEFAULT_IMAGE = "chelsea"


def register(subparsers) -> None:
    from salmap.static import STATIC_METHODS

    names = ", ".join(STATIC_METHODS)
    parser = subparsers.add_parser(
        "static",
        help="what catches the eye in an image, no model needed (Itti-Koch and successors)",
        description=(
            "Static (bottom-up) saliency of an image with a model from the literature: "
            f"{names}. Draws the map, the input and the overlay; for itti also the "
            "intensity, colour and orientation conspicuity maps and the numbered scan "
            "path of the first attended locations. --methods all draws every model side "
            "by side."
        ),
        epilog=(
            "examples:\n"
            "  salmap static                                  Itti-Koch on chelsea the cat\n"
            "  salmap static photo.jpg --method gbvs -o photo_gbvs.png\n"
            "  salmap static photo.jpg --methods all -o compare.png\n"
            "  salmap static photo.jpg --scanpath 8 --param normalization=iterative\n"
            "  salmap static photo.jpg --method spectral-residual --param flavour=opencv --json"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "image",
        nargs="?",
        default=DEFAULT_IMAGE,
        metavar="IMAGE",
        help=f"image file or a bundled photo name (default: {DEFAULT_IMAGE})",
    )
    group = parser.add_argument_group("model")
    choice = group.add_mutually_exclusive_group()
    choice.add_argument("--method", default=None, help=f"one model: {names} (default: itti)")
    choice.add_argument(
        "--methods",
        metavar="all|M1,M2",
        help="several models side by side in one grid ('all' for every model)",
    )
    group.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a model parameter, e.g. normalization=iterative or sigma=3 (repeatable)",
    )
    group.add_argument(
        "--scanpath",
        type=_non_negative,
        default=5,
        metavar="N",
        help="itti: number of attended locations to compute and number (default: 5)",
    )
    add_figure_options(parser)
    parser.set_defaults(handler=run)


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {value}")
    return value


def _methods(args) -> list[str]:
    from salmap.static import STATIC_METHODS

    if args.methods is None:
        return [args.method or "itti"]
    if args.methods.strip().lower() == "all":
        return list(STATIC_METHODS)
    chosen = [name.strip() for name in args.methods.split(",") if name.strip()]
    if not chosen:
        raise UsageError("--methods needs 'all' or a comma-separated list of models")
    return chosen


def run(args) -> int:
    import salmap
    from salmap.io.atomic import save_npy
    from salmap.static import STATIC_METHODS, static_saliency
    from salmap.viz import plot_grid, plot_maps, save_heatmap
    from salmap.viz.scanpath import plot_itti_koch

    methods = _methods(args)
    unknown = [m for m in methods if m not in STATIC_METHODS and m not in ("itti-koch",)]
    if unknown:
        raise UsageError(
            f"unknown static saliency method {unknown[0]!r}; use one of {', '.join(STATIC_METHODS)}"
        )
    params = parse_params(args.param)
    several = len(methods) > 1
    if several and params:
        raise UsageError("--param applies to one model; use --method with it")
    if several and (args.heatmap or args.npy):
        raise UsageError("--heatmap and --npy take one model; use --method with them")
    stem = Path(str(args.image)).stem
    suffix = "_static.png" if several else f"_{methods[0]}.png"
    figure = Path(args.output) if args.output else Path(stem + suffix)
    for path in (figure, args.heatmap, args.npy):
        check_output_path(path)

    image = salmap.load_image(args.image)  # a bad file fails before any work
    results = []
    for method in methods:
        extra = dict(params)
        if method in ("itti", "itti-koch"):
            extra.setdefault("fixations", args.scanpath)
        results.append(static_saliency(image, method=method, **extra))

    if several:
        plot_grid(
            image,
            results,
            figure,
            cmap=args.cmap,
            normalize=args.normalize,
            title=f"static saliency · {args.image}",
        )
    elif results[0].method == "itti":
        plot_itti_koch(results[0], figure, cmap=args.cmap, normalize=args.normalize)
    else:
        plot_maps(results[0], figure, cmap=args.cmap, normalize=args.normalize)
    entries = []
    for result in results:
        entry = {"image": str(args.image), **result.to_dict()}
        if "scan_path" in result.extras:
            entry["scan_path"] = [
                [round(float(x), 2), round(float(y), 2)] for x, y in result.extras["scan_path"]
            ]
            entry["foa_radius"] = round(float(result.extras["foa_radius"]), 2)
        entries.append(entry)
    written = {"figure": str(figure)}
    if args.heatmap:
        save_heatmap(args.heatmap, results[0].map, args.cmap, args.normalize)
        written["heatmap"] = str(args.heatmap)
    if args.npy:
        save_npy(args.npy, results[0].map)
        written["npy"] = str(args.npy)
    if args.json:
        payload = {**written, "results": entries} if several else {**entries[0], **written}
        print_json(payload)
        return 0
    out = sys.stdout
    for entry in entries:
        line = f"{args.image}: {entry['method']} in {entry['seconds']:.3f} s"
        if "scan_path" in entry:
            shown = ", ".join(f"({x:.0f}, {y:.0f})" for x, y in entry["scan_path"])
            line += f"; scan path {shown or '(none)'}"
        print(line, file=out)
    for path in written.values():
        print(f"wrote {path}", file=out)
    return 0

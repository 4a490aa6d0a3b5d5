"""``salmap explain``: model saliency for images."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from salmap.cli.common import (
    add_figure_options,
    check_output_path,
    default_output,
    print_json,
    quiet_import_tensorflow,
)
from salmap.errors import UsageError
from salmap.maps import REDUCTIONS

DEFAULT_IMAGE = "chelsea"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "explain",
        help="which pixels made a model choose a class (model saliency)",
        description=(
            "Explain an image classifier's decision: the gradient of the class score with "
            "respect to every pixel, drawn as map, input and overlay. Without IMAGE the "
            "bundled photo of chelsea the cat is explained with the embedded, offline "
            "EfficientNet-Lite0."
        ),
        epilog=(
            "examples:\n"
            "  salmap explain\n"
            "  salmap explain photo.jpg -o photo_saliency.png\n"
            "  salmap explain photo.jpg --model resnet50 --weights resnet50.h5 "
            '--target "Egyptian cat" --score probability --cmap ocean\n'
            "  salmap explain a.jpg b.jpg --json\n"
            "  salmap explain photo.jpg --model my_model.keras --preprocess torch --input-size 224"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "images",
        nargs="*",
        metavar="IMAGE",
        help=f"image files (PNG, JPEG, BMP, TIFF, WebP, GIF) or a bundled photo name "
        f"(default: {DEFAULT_IMAGE})",
    )
    model = parser.add_argument_group("model")
    model.add_argument(
        "--model",
        default=None,
        help="a named model (see `salmap models`) or a .keras/.h5 file "
        "(default: efficientnet_lite0)",
    )
    model.add_argument(
        "--weights",
        metavar="PATH",
        help="local ImageNet weights (.h5) for a keras.applications model, or 'random'",
    )
    model.add_argument(
        "--input-size", type=_size, metavar="N|HxW", help="model input size for a model file"
    )
    model.add_argument(
        "--preprocess",
        help="input preprocessing for a model file: torch, caffe, tf, none, 0-255",
    )
    model.add_argument(
        "--classes", metavar="FILE", help="class names for a model file, one per line"
    )
    model.add_argument(
        "--batch-size", type=_positive, default=32, help="largest batch sent to the model (32)"
    )
    method = parser.add_argument_group("method")
    method.add_argument("--method", default="vanilla", help="saliency method (default: vanilla)")
    method.add_argument(
        "--target",
        action="append",
        metavar="CLASS",
        help="class index or name to explain (default: top-1); repeat for several",
    )
    method.add_argument(
        "--score",
        choices=("logit", "probability"),
        default="logit",
        help="differentiate the pre-softmax logit (default) or the probability (the tutorial)",
    )
    method.add_argument(
        "--reduction",
        choices=REDUCTIONS,
        default="max-abs",
        help="how colour channels become one map: max-abs (default), sum-abs, or the "
        "tutorial's signed sum",
    )
    method.add_argument("--top-k", type=_positive, default=5, help="predictions to list (5)")
    add_figure_options(parser)
    parser.add_argument(
        "--diverging", action="store_true", help="draw a signed map around zero (red +, blue -)"
    )
    parser.set_defaults(handler=run, normalize="percentile")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


def _size(text: str) -> tuple[int, int]:
    parts = text.lower().replace("×", "x").split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or HxW, got {text!r}") from None
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected N or HxW, got {text!r}")
    return values[0], values[1]


def _outputs(args, images: list[str]) -> list[dict]:
    if args.output and len(images) > 1:
        raise UsageError("-o names one file; with several images, outputs are IMAGE_saliency.png")
    if (args.heatmap or args.npy) and len(images) > 1:
        raise UsageError("--heatmap and --npy take one image at a time")
    outputs = [
        {
            "figure": Path(args.output) if args.output else default_output(image),
            "heatmap": args.heatmap,
            "npy": args.npy,
        }
        for image in images
    ]
    for output in outputs:
        for path in output.values():
            check_output_path(path)
    return outputs


def run(args) -> int:
    import salmap
    from salmap.io.atomic import save_npy
    from salmap.viz import plot_maps, save_heatmap

    images = args.images or [DEFAULT_IMAGE]
    outputs = _outputs(args, images)
    loaded = [salmap.load_image(image) for image in images]  # bad files fail before the model
    quiet_import_tensorflow(args.debug)
    model = salmap.load_model(
        args.model,
        weights=args.weights,
        input_size=args.input_size,
        preprocess=args.preprocess,
        class_names=args.classes,
        batch_size=args.batch_size,
    )
    targets = args.target or [None]
    results = []
    for target in targets:
        target = _maybe_int(target)
        found = salmap.explain(
            loaded,
            model=model,
            method=args.method,
            target=[target] * len(loaded) if target is not None else None,
            score=args.score,
            reduction=args.reduction,
            top_k=args.top_k,
        )
        results.extend(zip(images, outputs, found, strict=True))
    written = []
    several_targets = len(targets) > 1
    for source, output, result in results:
        figure = output["figure"]
        if several_targets:
            figure = figure.with_name(f"{figure.stem}_{result.target}{figure.suffix}")
        plot_maps(
            result,
            figure,
            cmap=args.cmap,
            normalize=args.normalize,
            diverging=args.diverging,
        )
        entry = {"image": str(source), "figure": str(figure), **result.to_dict()}
        if output["heatmap"]:
            save_heatmap(
                output["heatmap"], result.map, args.cmap, args.normalize, diverging=args.diverging
            )
            entry["heatmap"] = str(output["heatmap"])
        if output["npy"]:
            save_npy(output["npy"], result.map)
            entry["npy"] = str(output["npy"])
        written.append(entry)
        if not args.json:
            _print_result(source, result, entry)
    if args.json:
        print_json(written[0] if len(written) == 1 else written)
    return 0


def _maybe_int(target):
    if target is None:
        return None
    text = str(target).strip()
    return int(text) if text.isdigit() else text


def _print_result(source, result, entry) -> None:
    out = sys.stdout
    print(f"{source}: {result.model} top-{len(result.predictions)}", file=out)
    for index, label, probability in result.predictions:
        print(f"  {index:>5}  {label:<32} {probability:7.2%}", file=out)
    print(
        f"explained class {result.target} ({result.label}, p={result.score:.3f}) with "
        f"{result.method} in {result.seconds:.2f} s",
        file=out,
    )
    for key in ("figure", "heatmap", "npy"):
        if key in entry:
            print(f"wrote {entry[key]}", file=out)

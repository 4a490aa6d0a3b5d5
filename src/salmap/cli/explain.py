"""``salmap explain``: model saliency for images."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from salmap.cli.common import (
    add_figure_options,
    add_model_options,
    add_progress_options,
    check_output_path,
    class_or_name,
    default_output,
    fraction,
    method_names,
    method_params,
    model_options,
    parse_params,
    positive,
    prepare_framework,
    print_json,
)
from salmap.cli.explain_video import add_video_options, run_video, wants_video
from salmap.errors import UsageError
from salmap.maps import CHANNEL_REDUCTIONS

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
            "  salmap explain photo.jpg --model net.keras --preprocess torch --input-size 224\n"
            "  salmap explain photo.jpg --methods vanilla,smoothgrad,grad-cam,rise\n"
            "  salmap explain clip.mp4 --fix-target --smooth 0.5 -o clip_saliency.mp4"
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
    add_model_options(parser)
    _add_method_options(parser.add_argument_group("method"))
    _add_target_options(parser.add_argument_group("targets beyond classification"))
    add_figure_options(parser)
    add_video_options(parser)
    parser.add_argument(
        "--diverging", action="store_true", help="draw a signed map around zero (red +, blue -)"
    )
    add_progress_options(parser)
    parser.set_defaults(handler=run, normalize="percentile")


def _add_method_options(method) -> None:
    method.add_argument(
        "--method",
        default="vanilla",
        help="saliency method (default: vanilla; see `salmap methods`)",
    )
    method.add_argument(
        "--methods",
        metavar="A,B,C|all",
        help="several methods (or all) drawn side by side in one comparison grid",
    )
    method.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a method parameter, e.g. --param samples=25 --param baseline=black,white "
        "(repeat; see `salmap methods` for each method's parameters)",
    )
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
        choices=CHANNEL_REDUCTIONS,
        default="max-abs",
        help="how colour channels become one map: max-abs (default), sum-abs, or the "
        "tutorial's signed sum",
    )
    method.add_argument(
        "--tolerance",
        type=fraction,
        metavar="TOL",
        help="converge, then stop: integrated gradients adds path points until the "
        "completeness error is below TOL (0.01 = 1 %%); smoothgrad, squaregrad, vargrad and "
        "rise add noisy copies or masks until the map correlates >= 1 - TOL with its "
        "half-sample map; what was used is reported",
    )
    method.add_argument(
        "--sampling",
        choices=("mc", "antithetic", "qmc"),
        help="noise of smoothgrad/squaregrad/vargrad: Monte-Carlo (default), antithetic "
        "pairs, or stratified (quasi-random) antithetic pairs",
    )
    method.add_argument("--top-k", type=positive, default=5, help="predictions to list (5)")


def _add_target_options(method) -> None:
    method.add_argument(
        "--target-class",
        type=int,
        metavar="C",
        help="segmentation or detection models: the class of --target-mask or --target-box",
    )
    method.add_argument(
        "--target-mask",
        metavar="MASK.png|predicted",
        help="segmentation models: explain class C's output summed over this region (white "
        "pixels of an image), or over the model's own predicted region of C",
    )
    method.add_argument(
        "--target-box",
        metavar="X0,Y0,X1,Y1[:LABEL]",
        help="detection models (torchvision-style outputs): the detection matching this box "
        "(IoU >= 0.5, of LABEL if given)",
    )


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


#: Methods the default model runs on NumPy alone for a few photos (one or two
#: evaluations each, the standard backward rule): importing a framework would take
#: longer than the whole job.
_NUMPY_METHODS = frozenset(
    {"vanilla", "gradient-x-input", "grad-cam", "grad-cam++", "layer-cam", "hires-cam"}
)
_NUMPY_MAX_IMAGES = 4


def _fast_path(args, options: dict) -> dict:
    """The NumPy EfficientNet-Lite0 when the command is the default model, untouched,
    with a cheap method on a few photos; the options as they are otherwise."""
    from salmap.methods import ALIASES

    chosen = {key: options.get(key) for key in ("model", "weights", "input_size", "preprocess")}
    default_model = options.get("model") in (None, "efficientnet_lite0")
    untouched = default_model and not any(chosen[key] for key in chosen if key != "model")
    cheap = ALIASES.get(args.method, args.method) in _NUMPY_METHODS and not args.methods
    few = len(args.images or [None]) <= _NUMPY_MAX_IMAGES
    if untouched and cheap and few and "framework" not in options and not options["class_names"]:
        return {**options, "framework": "numpy"}
    return options


def run(args) -> int:
    import salmap

    images = args.images or [DEFAULT_IMAGE]
    options = model_options(args)
    if wants_video(args, images):
        prepare_framework(options, args.debug)
        return run_video(args, images[0], options, parse_params(args.param))
    outputs = _outputs(args, images)
    params = _method_params(args)  # bad values fail before the model loads
    loaded = [salmap.load_image(image) for image in images]  # so do bad files
    options = _fast_path(args, options)
    prepare_framework(options, args.debug)
    model = salmap.load_model(**options)
    if args.methods:
        return _run_grid(args, images, loaded, model, params)
    targets = _target_objects(args) or [class_or_name(target) for target in args.target or [None]]
    per_image = list(zip(images, outputs, loaded, strict=True))
    written = []
    with _progress(args, len(targets) * len(images), "explain") as progress:
        for target in targets:
            # Batched through the model a --batch-size of images at a time.
            for start in range(0, len(per_image), args.batch_size):
                chunk = per_image[start : start + args.batch_size]
                pictures = [picture for _, _, picture in chunk]
                found = _explain(args, model, pictures, target, args.method, params)
                for (source, output, _), result in zip(chunk, found, strict=True):
                    entry = _write_result(args, source, output, result, len(targets) > 1)
                    written.append(entry)
                    if not args.json:
                        _print_result(source, result, entry)
                    progress.advance(1, f"{source} · {result.target}")
    if args.json:
        print_json(written[0] if len(written) == 1 else written)
    return 0


def _method_params(args) -> dict:
    """``--param`` values with --tolerance and --sampling, checked for the method(s)."""
    params = parse_params(args.param)
    for key in ("tolerance", "sampling"):
        if getattr(args, key) is not None:
            params[key] = getattr(args, key)
    names = method_names(args.methods or args.method)
    if not args.methods and len(names) != 1:
        raise UsageError("--method takes one method; use --methods for several")
    checked = [method_params(name, params) for name in names]
    # One method: unknown names go on to explain(), which says what the method takes.
    return params if args.methods else {**params, **checked[0]}


def _progress(args, total: int, label: str):
    """The rich bar on stderr for several maps (a single map needs none)."""
    from salmap.progress import progress_bar, show_progress

    shown = total > 1 and show_progress(args.progress, args.json)
    return progress_bar(total, label, enabled=shown, unit="maps")


def _target_objects(args) -> list:
    """--target-mask / --target-box as :mod:`salmap.targets` objects (empty without)."""
    from salmap.targets import Segmentation

    if args.target_mask and args.target_box:
        raise UsageError("give --target-mask or --target-box, not both")
    if args.target_mask:
        if args.target_class is None:
            raise UsageError("--target-mask needs --target-class C: the class to explain")
        if args.target_mask == "predicted":
            return [Segmentation(args.target_class)]
        import salmap

        mask = salmap.load_image(args.target_mask, min_side=1).mean(axis=-1) > 0.5
        if not mask.any():
            raise UsageError(f"{args.target_mask}: the mask is empty (no white pixels)")
        return [Segmentation(args.target_class, mask)]
    if args.target_box:
        return [_box(args.target_box, args.target_class)]
    if args.target_class is not None:
        raise UsageError("--target-class goes with --target-mask or --target-box")
    return []


def _box(text: str, label: int | None):
    from salmap.targets import Box

    corners, _, named = text.partition(":")
    try:
        values = [float(v) for v in corners.split(",")]
        label = int(named) if named else label
    except ValueError:
        values = []
    if len(values) != 4:
        raise UsageError(f"--target-box takes x0,y0,x1,y1[:label] in pixels, got {text!r}")
    return Box(tuple(values), label)


def _explain(args, model, images: list, target, method: str, params: dict) -> list:
    """One method on several images (batched), for one target or each image's top-1."""
    import salmap

    return salmap.explain(
        images,
        model=model,
        method=method,
        target=[target] * len(images) if target is not None else None,
        score=args.score,
        reduction=args.reduction,
        top_k=args.top_k,
        **params,
    )


def _write_result(args, source, output: dict, result, several_targets: bool) -> dict:
    """Write the figure (and --heatmap, --npy) of one result; returns its JSON entry."""
    from salmap.io.atomic import save_npy
    from salmap.viz import plot_maps, save_heatmap

    figure = output["figure"]
    if several_targets:
        figure = figure.with_name(f"{figure.stem}_{result.target}{figure.suffix}")
    plot_maps(result, figure, cmap=args.cmap, normalize=args.normalize, diverging=args.diverging)
    entry = {"image": str(source), "figure": str(figure), **result.to_dict()}
    if output["heatmap"]:
        save_heatmap(
            output["heatmap"], result.map, args.cmap, args.normalize, diverging=args.diverging
        )
        entry["heatmap"] = str(output["heatmap"])
    if output["npy"]:
        save_npy(output["npy"], result.map)
        entry["npy"] = str(output["npy"])
    return entry


def _diagnostics(extras: dict) -> str:
    """`` (65 evaluations, completeness error 0.42 %)`` where the method reported them."""
    parts = []
    if "evaluations" in extras and extras["evaluations"] is not None:
        parts.append(f"{extras['evaluations']} evaluations")
    for used in ("samples", "masks"):
        if extras.get(used) is not None:
            parts.append(f"{extras[used]} {used}")
    if "completeness_error" in extras:
        parts.append(f"completeness error {extras['completeness_error']:.2%}")
    if extras.get("convergence") is not None and np.isfinite(extras["convergence"]):
        parts.append(f"correlation with the half-sample map {extras['convergence']:.4f}")
    return f" ({', '.join(parts)})" if parts else ""


def _print_result(source, result, entry) -> None:
    out = sys.stdout
    print(f"{source}: {result.model} top-{len(result.predictions)}", file=out)
    for index, label, probability in result.predictions:
        print(f"  {index:>5}  {label:<32} {probability:7.2%}", file=out)
    print(
        f"explained class {result.target} ({result.label}, p={result.score:.3f}) with "
        f"{result.method} in {result.seconds:.2f} s{_diagnostics(result.extras)}",
        file=out,
    )
    for key in ("figure", "heatmap", "npy"):
        if key in entry:
            print(f"wrote {entry[key]}", file=out)


def _run_grid(args, images, loaded, model, params) -> int:
    """One comparison grid per image and target: the photo, then one overlay per method."""
    names = method_names(args.methods)
    targets = _target_objects(args) or [class_or_name(target) for target in args.target or [None]]
    if args.output and (len(images) > 1 or len(targets) > 1):
        raise UsageError("-o names one grid; with several images or targets, names are automatic")
    written = []
    with _progress(args, len(targets) * len(names) * len(images), "methods") as progress:
        for target in targets:
            per_image = [[] for _ in loaded]
            for name in names:
                found = _explain(args, model, loaded, target, name, method_params(name, params))
                for row, result in zip(per_image, found, strict=True):
                    signed = result.extras.get("signed")
                    result.extras["diverging"] = bool(args.diverging and signed)
                    row.append(result)
                progress.advance(len(loaded), name)
            for source, results in zip(images, per_image, strict=True):
                written.append(_write_grid(args, source, results, len(targets) > 1))
    if args.json:
        print_json(written[0] if len(written) == 1 else written)
    return 0


def _write_grid(args, source, results, several_targets: bool) -> dict:
    from salmap.viz import plot_grid

    first = results[0]
    figure = Path(args.output) if args.output else default_output(source, "_methods.png")
    if several_targets:
        figure = figure.with_name(f"{figure.stem}_{first.target}{figure.suffix}")
    check_output_path(figure)
    title = f"{first.model} · {first.label} ({first.target})"
    plot_grid(first.image, results, figure, cmap=args.cmap, normalize=args.normalize, title=title)
    if not args.json:
        print(f"{source}: explained class {first.target} ({first.label})")
        for result in results:
            print(f"  {result.method:<22} {result.seconds:8.2f} s")
        print(f"wrote {figure}")
    return {
        "image": str(source),
        "figure": str(figure),
        "target": first.target,
        "label": first.label,
        "methods": [{"method": r.method, "seconds": round(float(r.seconds), 4)} for r in results],
    }

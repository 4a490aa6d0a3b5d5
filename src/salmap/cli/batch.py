"""``salmap batch``: explain a dataset, resumably, here or on Ray."""

from __future__ import annotations

import argparse
import sys

from salmap.cli.common import (
    add_model_options,
    class_or_name,
    fraction,
    method_names,
    model_options,
    parse_params,
    positive,
    prepare_framework,
    print_json,
)
from salmap.maps import CHANNEL_REDUCTIONS


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "batch",
        help="explain a dataset: folders, globs, manifests, videos -> maps + Parquet manifest",
        description=(
            "Explain every image of a dataset with one or more methods. Decoding runs ahead "
            "of the model on a thread pool, the model gets full batches, memory stays flat. "
            "Writes OUT/maps/*.npy (and optional PNGs) and OUT/manifest.parquet, all "
            "atomically: run the same command again after a crash and only what is missing "
            "is done. A bad input becomes an error row, never a stop."
        ),
        epilog=(
            "examples:\n"
            "  salmap batch photos/ -o out\n"
            "  salmap batch 'val/**/*.JPEG' --methods vanilla,grad-cam -o out --overlay\n"
            "  salmap batch list.csv -o out          (columns: path, target)\n"
            "  salmap batch clip.mp4 --every 10 -o out\n"
            "  salmap batch photos/ -o out --engine ray --concurrency 4\n\n"
            "exit codes: 0 every input ok, 1 some inputs became error rows, 2 usage error "
            "(or an unwritable output folder), 3 no input found, 4 model problem"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="image files, folders (recursive), globs, .txt/.csv manifests, videos",
    )
    parser.add_argument("-o", "--output", required=True, metavar="OUT", help="output folder")
    add_model_options(parser)
    _add_method_options(parser)
    _add_output_options(parser)
    _add_engine_options(parser)
    parser.set_defaults(handler=run)


def _add_method_options(parser) -> None:
    method = parser.add_argument_group("method")
    method.add_argument("--method", default=None, help="saliency method (default: vanilla)")
    method.add_argument("--methods", metavar="A,B,C|all", help="several methods")
    method.add_argument(
        "--param", action="append", default=[], metavar="KEY=VALUE", help="a method parameter"
    )
    method.add_argument(
        "--target",
        action="append",
        metavar="CLASS",
        help="class index or name (default: top-1, or the manifest's target column); repeat",
    )
    method.add_argument("--score", choices=("logit", "probability"), default="logit")
    method.add_argument("--reduction", choices=CHANNEL_REDUCTIONS, default="max-abs")
    method.add_argument("--tolerance", type=fraction, metavar="TOL", help="IG completeness")
    method.add_argument("--sampling", choices=("mc", "antithetic", "qmc"), help="noise sampling")
    method.add_argument("--top-k", type=positive, default=5, help="predictions per row (5)")


def _add_output_options(parser) -> None:
    out = parser.add_argument_group("inputs and outputs")
    out.add_argument("--every", type=positive, default=1, help="one video frame in N (1)")
    out.add_argument(
        "--resolution",
        choices=("model", "image"),
        default="model",
        help="resize while decoding to the model's input (default; full batches) or keep "
        "each image's size (maps at the photo's resolution)",
    )
    out.add_argument("--dtype", choices=("float16", "float32"), default="float16")
    out.add_argument("--heatmap", action="store_true", help="also write coloured maps (PNG)")
    out.add_argument("--overlay", action="store_true", help="also write overlays (PNG)")
    out.add_argument("--cmap", default="inferno", help="colormap of the PNGs (inferno)")
    out.add_argument(
        "--retry-errors", action="store_true", help="try earlier error rows' inputs again"
    )
    out.add_argument(
        "--commit-rows",
        type=positive,
        default=256,
        metavar="N",
        help="rows per manifest part, committed at once (256; also every 10 s)",
    )
    out.add_argument("--json", action="store_true", help="print the summary as JSON")
    out.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_engine_options(parser) -> None:
    engine = parser.add_argument_group("engine")
    engine.add_argument("--engine", choices=("local", "ray"), default="local")
    engine.add_argument("--workers", type=positive, help="decoding threads (local engine)")
    engine.add_argument("--prefetch", type=positive, help="decoded images that may wait")
    engine.add_argument("--address", help="Ray cluster to join (default: start a local one)")
    engine.add_argument("--concurrency", type=positive, help="Ray model actors (default 1)")
    engine.add_argument("--num-gpus", type=float, help="GPUs per Ray actor (default: 1 if any)")


def _method_list(args) -> list[str]:
    return method_names(args.methods or args.method or "vanilla")


def run(args) -> int:
    import salmap
    from salmap.batch import Manifest
    from salmap.progress import progress_bar, show_progress

    Manifest(args.output).open()  # an unwritable folder fails before the model loads
    params = parse_params(args.param)
    for key in ("tolerance", "sampling"):
        if getattr(args, key) is not None:
            params[key] = getattr(args, key)
    methods = _method_list(args)
    options = model_options(args)
    prepare_framework(options, args.debug)
    model = salmap.load_model(**options)
    targets = [class_or_name(t) for t in args.target] if args.target else None
    batch = salmap.explain_dataset(
        args.inputs,
        model,
        methods=methods,
        target=targets,
        output=args.output,
        engine=args.engine,
        resolution=args.resolution,
        every=args.every,
        workers=args.workers,
        prefetch=args.prefetch,
        score=args.score,
        reduction=args.reduction,
        top_k=args.top_k,
        map_dtype=args.dtype,
        heatmap=args.heatmap,
        overlay=args.overlay,
        cmap=args.cmap,
        retry_errors=args.retry_errors,
        commit_rows=args.commit_rows,
        address=args.address,
        concurrency=args.concurrency,
        num_gpus=args.num_gpus,
        model_options=options,
        **params,
    )
    enabled = show_progress(None if not args.quiet else False, args.json)
    with progress_bar(batch.total, "explaining", enabled=enabled, unit="images") as progress:
        batch.options["progress"] = progress
        for _ in batch:
            pass
    _summary(batch, args)
    return 1 if batch.errors or batch.earlier_errors else 0


def _summary(batch, args) -> None:
    summary = {
        "inputs": batch.total,
        "skipped": batch.skipped,
        "ok": batch.ok,
        "errors": batch.errors,
        "earlier_errors": batch.earlier_errors,
        "seconds": round(batch.seconds, 3),
        "waited_for_decoding": round(batch.waited, 3),
        "images_per_second": round((batch.total - batch.skipped) / batch.seconds, 3)
        if batch.seconds
        else None,
        "manifest": str(batch.manifest.dataset),
    }
    if args.json:
        print_json(summary)
        return
    print(
        f"{batch.total} inputs: {batch.ok} maps written, {batch.errors} error rows, "
        f"{batch.skipped} already done ({batch.seconds:.1f} s)",
        file=sys.stdout,
    )
    if batch.earlier_errors:
        print(
            f"{batch.earlier_errors} of the inputs already done have error rows "
            "(--retry-errors tries them again)",
            file=sys.stdout,
        )
    print(f"manifest: {summary['manifest']}", file=sys.stdout)

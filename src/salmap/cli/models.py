"""``salmap models``: which models exist and which work offline."""

from __future__ import annotations

from salmap.cli.common import print_json


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "models",
        help="list the named models and whether each works offline",
        description="List the named models, their input size and preprocessing, and whether "
        "their weights are at hand offline (embedded or in Keras' cache).",
    )
    parser.add_argument(
        "--classes",
        nargs="?",
        const="",
        metavar="FILTER",
        help="list the ImageNet class names (those containing FILTER) with their indices",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(handler=run)


def run(args) -> int:
    from salmap.models import available_models, imagenet_classes

    if args.classes is not None:
        wanted = args.classes.lower()
        rows = [
            {"index": i, "label": name}
            for i, name in enumerate(imagenet_classes())
            if wanted in name.lower()
        ]
        if args.json:
            print_json(rows)
        else:
            for row in rows:
                print(f"{row['index']:>5}  {row['label']}")
        return 0
    rows = available_models()
    if args.json:
        print_json(rows)
        return 0
    print(
        f"{'model':<20} {'framework':<10} {'input':<9} {'preprocess':<10} {'weights':<22} "
        "description"
    )
    for row in rows:
        size = "x".join(str(v) for v in row["input_size"])
        print(
            f"{row['name']:<20} {row['framework']:<10} {size:<9} {row['preprocess']:<10} "
            f"{row['weights']:<22} {row['description']}"
        )
    print(
        "\nAny Keras model file works too: --model FILE.keras --preprocess MODE --input-size N "
        "(modes: torch, caffe, tf, none, 0-255)."
    )
    if any(row["framework"] == "torch" for row in rows):
        print(
            "With --framework torch: any torchvision or timm architecture by name with "
            "--weights FILE|random, a TorchScript .pt file, or a .pth state dict with --arch."
        )
    return 0

"""Options and output shared by the sub-commands."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from salmap.errors import UsageError
from salmap.models.keras_adapter import quiet_import_tensorflow

__all__ = [
    "add_figure_options",
    "add_model_options",
    "model_options",
    "positive",
    "fraction",
    "size",
    "print_json",
    "default_output",
    "check_output_path",
    "parse_params",
    "class_or_name",
    "quiet_import_tensorflow",
    "prepare_framework",
    "method_names",
    "method_params",
    "add_progress_options",
]


def positive(text: str) -> int:
    """argparse type: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


def fraction(text: str) -> float:
    """argparse type: a number strictly between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number such as 0.01, got {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {value}")
    return value


def size(text: str) -> tuple[int, int]:
    """argparse type: ``N`` or ``HxW`` pixels."""
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


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """--model, --framework, --weights, --arch, --input-size, --preprocess, --classes,
    --batch-size, --device, --output-key."""
    model = parser.add_argument_group("model")
    model.add_argument(
        "--model",
        default=None,
        help="a named model (see `salmap models`), a .keras/.h5 file, or with --framework "
        "torch a torchvision/timm name, a TorchScript .pt file or a .pth state dict "
        "(default: efficientnet_lite0)",
    )
    model.add_argument(
        "--framework",
        choices=("keras", "torch", "numpy"),
        help="run a named model in Keras (default), PyTorch, or NumPy (efficientnet_lite0 "
        "only; `salmap explain` picks it for one cheap method on the default model)",
    )
    model.add_argument(
        "--weights",
        metavar="PATH",
        help="local weights for a named model (Keras .h5, PyTorch state dict), or 'random'",
    )
    model.add_argument(
        "--arch", metavar="NAME", help="PyTorch: the architecture of a .pth state dict"
    )
    model.add_argument(
        "--input-size", type=size, metavar="N|HxW", help="model input size for a model file"
    )
    model.add_argument(
        "--preprocess",
        help="input preprocessing for a model file: torch, caffe, tf, none, 0-255",
    )
    model.add_argument(
        "--classes", metavar="FILE", help="class names for a model file, one per line"
    )
    model.add_argument(
        "--batch-size", type=positive, default=32, help="largest batch sent to the model (32)"
    )
    model.add_argument("--device", help="PyTorch: cuda, cpu... (default: CUDA when present)")
    model.add_argument(
        "--output-key",
        metavar="KEY",
        help="PyTorch: the part of a tuple/dict output to explain (an index or a key)",
    )


def model_options(args) -> dict:
    """The keyword arguments of :func:`salmap.load_model` from :func:`add_model_options`."""
    options = {
        "model": args.model,
        "weights": args.weights,
        "input_size": args.input_size,
        "preprocess": args.preprocess,
        "class_names": args.classes,
        "batch_size": args.batch_size,
    }
    torch_options = {
        "framework": args.framework,
        "device": args.device,
        "arch": args.arch,
        "output": int(args.output_key) if (args.output_key or "").isdigit() else args.output_key,
    }
    options.update({key: value for key, value in torch_options.items() if value is not None})
    return options


def add_figure_options(parser: argparse.ArgumentParser) -> None:
    """-o, --cmap, --normalize, --heatmap, --npy, --json: the same for every command."""
    group = parser.add_argument_group("output")
    group.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="figure to write (.png, .jpg, .pdf, .svg); default: IMAGE_saliency.png",
    )
    group.add_argument(
        "--cmap",
        default="inferno",
        help="matplotlib colormap for the map (default: inferno; the tutorial used ocean)",
    )
    group.add_argument(
        "--normalize",
        choices=("minmax", "percentile"),
        default="minmax",
        help="scale the map by min-max, or clip at the 99th percentile of |map|",
    )
    group.add_argument("--heatmap", metavar="FILE", help="also write the coloured map alone (PNG)")
    group.add_argument("--npy", metavar="FILE", help="also write the raw map as a .npy array")
    group.add_argument(
        "--json",
        action="store_true",
        help="print a machine-readable result on stdout instead of text",
    )


def add_progress_options(parser: argparse.ArgumentParser, group=None) -> None:
    """--progress / --no-progress: the bar on stderr (default: on a terminal, not with
    --json); values for :func:`salmap.progress.show_progress`."""
    choice = (group or parser).add_mutually_exclusive_group()
    choice.add_argument(
        "--progress",
        dest="progress",
        action="store_const",
        const=True,
        help="show the progress bar even when stderr is not a terminal",
    )
    choice.add_argument(
        "--no-progress",
        "--quiet",
        dest="progress",
        action="store_const",
        const=False,
        help="never show it",
    )
    parser.set_defaults(progress=None)


def default_output(source: str, suffix: str = "_saliency.png") -> Path:
    """``photo.jpg`` -> ``photo_saliency.png`` in the current folder."""
    return Path(Path(str(source)).stem + suffix)


def check_output_path(path: str | Path | None) -> None:
    """Fail early (before any work) if an output cannot be written."""
    if path is None:
        return
    folder = Path(path).parent
    if str(folder) and not folder.is_dir():
        raise UsageError(f"cannot write {path}: folder {folder} does not exist")
    if Path(path).is_dir():
        raise UsageError(f"cannot write {path}: it is a folder")


def print_json(payload) -> None:
    json.dump(payload, sys.stdout, indent=2)
    sys.stdout.write("\n")


def prepare_framework(options: dict, debug: bool = False) -> None:
    """Import the framework the model options name before the model loads: TensorFlow
    quietly (its C++ start-up chatter kept off the terminal) for Keras models, nothing
    for NumPy or PyTorch ones. (Importing TensorFlow first and torchvision after
    crashes inside Triton's LLVM, so a PyTorch run never imports TensorFlow.)"""
    from salmap.models.zoo import framework_of

    if framework_of(options.get("model"), options.get("arch"), options.get("framework")) == "keras":
        quiet_import_tensorflow(debug)


def class_or_name(target):
    """A ``--target`` value: a class index when it is all digits, else a class name."""
    if target is None:
        return None
    text = str(target).strip()
    return int(text) if text.isdigit() else text


def parse_params(items: list[str] | None) -> dict:
    """``["samples=25", "baseline=black,white"]`` -> ``{"samples": 25, "baseline":
    ("black", "white")}``: the ``--param KEY=VALUE`` options of every command."""
    params = {}
    for item in items or []:
        key, sep, text = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key.isidentifier():
            raise UsageError(f"--param expects KEY=VALUE, got {item!r}")
        params[key] = _param_value(text)
    return params


def _param_value(text: str):
    """bool, None, int, float, a comma-separated tuple of those, or text."""
    lowered = text.strip().lower()
    if lowered in ("true", "yes", "on"):
        return True
    if lowered in ("false", "no", "off"):
        return False
    if lowered in ("none", "null"):
        return None
    if "," in text:
        return tuple(_param_value(part) for part in text.split(",") if part.strip())
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text.strip()


def method_names(text: str) -> list[str]:
    """``"vanilla,ig"`` or ``"all"`` -> canonical method names (``--methods``)."""
    from salmap.methods import ALIASES, METHODS

    if text.strip().lower() == "all":
        return list(METHODS)
    names = [ALIASES.get(n.strip(), n.strip()) for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in METHODS]
    if unknown or not names:
        raise UsageError(
            f"unknown method {', '.join(map(repr, unknown)) or repr(text)}; "
            "see `salmap methods` for the list"
        )
    return names


def method_params(name: str, params: dict) -> dict:
    """The ``--param`` values method ``name`` takes, checked (a grid or an evaluation
    shares one ``--param`` list between methods); fails before any model loads."""
    from salmap.methods import parameter_defaults
    from salmap.methods.parameters import check_parameters

    defaults = parameter_defaults(name, params)
    taken = {key: value for key, value in params.items() if key in defaults}
    return check_parameters(name, taken, defaults)

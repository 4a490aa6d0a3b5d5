"""``salmap score``: fixation metrics of a saliency map (MIT benchmark definitions)."""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path

import numpy as np

from salmap.cli.common import print_json
from salmap.errors import InputError, UsageError

_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif"}
_TEXT_SUFFIXES = {".csv", ".txt", ".tsv", ".dat", ""}

#: Metric, its label, and whether higher is better.
_METRICS = (
    ("auc_judd", "AUC-Judd", True),
    ("auc_borji", "AUC-Borji", True),
    ("auc_shuffled", "shuffled AUC", True),
    ("nss", "NSS", True),
    ("cc", "CC", True),
    ("sim", "SIM", True),
    ("kl", "KL divergence", False),
    ("information_gain", "information gain (bits)", True),
)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "score",
        help="how well a saliency map predicts fixations (AUC, NSS, CC, SIM, KL, IG)",
        description=(
            "Score a saliency map against human fixations with the MIT saliency "
            "benchmark's metrics, beside a centre-bias baseline. MAP_OR_IMAGE is a .npy "
            "saliency map, a greyscale map image (with --map), or an image whose static "
            "saliency is computed first (--method)."
        ),
        epilog=(
            "fixation files: .npy (N×2 x,y points or an H×W fixation map), .csv/.txt "
            "(one 'x,y' or 'x y' per line, a header line is skipped), .json ([[x, y], ...] "
            'or {"x": [...], "y": [...]}), or an image whose non-black pixels are '
            "fixated. Points are in pixels of the map (x right, y down).\n\n"
            "examples:\n"
            "  salmap score photo.jpg --fixations photo_fixations.csv\n"
            "  salmap score saliency.npy --fixations fixmap.png --json\n"
            "  salmap score prediction.png --map --fixations fix.npy "
            "--other-fixations others.npy"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("source", metavar="MAP_OR_IMAGE", help="saliency map (.npy) or image")
    parser.add_argument(
        "--fixations", required=True, metavar="FILE", help="where people looked (see below)"
    )
    parser.add_argument(
        "--method",
        default="itti",
        help="static model for an image input (default: itti; see `salmap static -h`)",
    )
    parser.add_argument(
        "--map",
        action="store_true",
        help="MAP_OR_IMAGE is a saliency map stored as a greyscale image, not a photo",
    )
    parser.add_argument(
        "--other-fixations",
        metavar="FILE",
        help="fixations from other images, for the shuffled AUC",
    )
    parser.add_argument(
        "--baseline",
        metavar="FILE",
        help="baseline map (.npy or image) for the information gain (default: centre bias)",
    )
    parser.add_argument(
        "--sigma",
        type=float,
        metavar="PX",
        help="blur of the fixation density for CC, SIM, KL (default: 1/30 of the longer side)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random splits (0)")
    parser.add_argument("--json", action="store_true", help="print the scores as JSON")
    parser.set_defaults(handler=run)


def _existing(path: str, what: str) -> Path:
    file = Path(path)
    if not file.exists():
        raise InputError(f"{path}: no such {what} file")
    if file.is_dir():
        raise InputError(f"{path}: is a folder, not a {what} file")
    if file.stat().st_size == 0:
        raise InputError(f"{path}: {what} file is empty")
    return file


def _load_npy(file: Path, what: str) -> np.ndarray:
    try:
        array = np.load(file, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        detail = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise InputError(f"{file}: not a readable .npy array ({detail})") from None
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "biuf":
        raise InputError(f"{file}: {what} must be a numeric array, got {array.dtype}")
    return array


def _read_map(path: str, what: str) -> np.ndarray:
    """A 2-D map from .npy or a (greyscale) image file."""
    from salmap.io import load_image

    file = Path(path)
    if file.suffix.lower() == ".npy":
        array = _load_npy(_existing(path, what), what)
        array = np.squeeze(array)
        if array.ndim != 2:
            raise InputError(f"{path}: {what} must be 2-D (H×W), got shape {array.shape}")
        if not np.all(np.isfinite(array)):
            raise InputError(f"{path}: {what} contains NaN or infinite values")
        return array.astype(np.float64)
    return load_image(path).mean(axis=2).astype(np.float64)


def _read_points_text(file: Path) -> np.ndarray:
    rows = []
    with open(file, newline="", encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            text = line.split("#", 1)[0].strip()
            if not text:
                continue
            parts = next(csv.reader([text.replace("\t", ",").replace(";", ",")]))
            if len(parts) == 1:
                parts = text.split()
            try:
                values = [float(part) for part in parts if part.strip()]
            except ValueError:
                if not rows:  # a header line
                    continue
                raise InputError(f"{file}:{number}: expected 'x,y', got {text!r}") from None
            if len(values) < 2:
                raise InputError(f"{file}:{number}: expected 'x,y', got {text!r}")
            rows.append(values[:2])
    if not rows:
        raise InputError(f"{file}: no fixations found (expected one 'x,y' per line)")
    return np.asarray(rows, dtype=np.float64)


def _read_points_json(file: Path) -> np.ndarray:
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise InputError(f"{file}: not valid JSON ({error})") from None
    if isinstance(data, dict):
        if "fixations" in data:
            data = data["fixations"]
        elif "x" in data and "y" in data:
            data = list(zip(data["x"], data["y"], strict=False))
    try:
        points = np.asarray(data, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{file}: expected [[x, y], ...] or {{'x': [...], 'y': [...]}}") from None
    if points.ndim != 2 or points.shape[1] < 2 or len(points) == 0:
        raise InputError(f"{file}: expected a non-empty list of [x, y] pairs")
    return points[:, :2]


def _read_fixations(path: str) -> np.ndarray:
    """N×2 (x, y) points or an H×W fixation map from any supported file."""
    from salmap.io import load_image

    file = _existing(path, "fixation")
    suffix = file.suffix.lower()
    if suffix == ".npy":
        array = _load_npy(file, "fixations")
        if array.ndim != 2:
            raise InputError(
                f"{path}: fixations must be N×2 points or an H×W map, got shape {array.shape}"
            )
        return array.astype(np.float64)
    if suffix == ".json":
        return _read_points_json(file)
    if suffix in _IMAGE_SUFFIXES:
        return (load_image(file).max(axis=2) > 0.5).astype(np.float64)
    if suffix in _TEXT_SUFFIXES:
        return _read_points_text(file)
    raise InputError(f"{path}: unknown fixation file type; use .npy, .csv, .txt, .json or an image")


def _clean(value: float):
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def run(args) -> int:
    from salmap.metrics import center_bias, fixation_map, fixation_metrics
    from salmap.static import static_saliency

    fixations = _read_fixations(args.fixations)
    other = _read_fixations(args.other_fixations) if args.other_fixations else None
    source = Path(str(args.source))
    method = None
    if source.suffix.lower() == ".npy" or args.map:
        saliency = _read_map(args.source, "saliency map")
    else:
        result = static_saliency(args.source, method=args.method)
        saliency, method = result.map.astype(np.float64), result.method
    is_points = fixations.shape[1] == 2 and fixations.shape != saliency.shape
    shape = saliency.shape if is_points else fixations.shape
    count = int(fixation_map(fixations, shape).sum())
    if count == 0:
        raise InputError(f"{args.fixations}: no fixated pixels")
    baseline = _read_map(args.baseline, "baseline map") if args.baseline else None
    if args.sigma is not None and args.sigma < 0:
        raise UsageError(f"--sigma must be >= 0, got {args.sigma}")
    scores = fixation_metrics(
        saliency,
        fixations,
        other_fixations=other,
        baseline=baseline,
        sigma=args.sigma,
        rng=args.seed,
    )
    centre = center_bias(shape)
    reference = fixation_metrics(
        centre,
        fixations,
        other_fixations=other,
        baseline=baseline,
        sigma=args.sigma,
        rng=args.seed,
    )
    if args.json:
        print_json(
            {
                "map": str(args.source),
                "method": method,
                "fixations": str(args.fixations),
                "fixated_pixels": count,
                "shape": list(shape),
                "metrics": {key: _clean(value) for key, value in scores.items()},
                "center_bias": {key: _clean(value) for key, value in reference.items()},
            }
        )
        return 0
    out = sys.stdout
    what = f"{args.source}" + (f" ({method})" if method else "")
    print(f"{what} against {count} fixated pixels of {args.fixations}", file=out)
    print(f"  {'metric':<26}{'map':>9}{'centre bias':>13}", file=out)
    for key, label, higher in _METRICS:
        if key not in scores:
            continue
        arrow = "↑" if higher else "↓"
        print(f"  {label + ' ' + arrow:<26}{scores[key]:>9.4f}{reference[key]:>13.4f}", file=out)
    return 0

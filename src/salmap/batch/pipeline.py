"""The per-batch work both engines run: decoded samples -> explained rows and map files.

:class:`Settings` says what to compute for every input; :func:`explain_batch` runs
each method on a whole batch through :func:`salmap.explain` (one model call per
chunk, never per image) and :func:`write_outputs` writes each map atomically. The
local engine and every Ray actor call exactly these functions, so their results
cannot drift apart.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from salmap.batch.decode import Sample
from salmap.batch.inputs import Input
from salmap.errors import InputError, UsageError
from salmap.io.atomic import atomic_path

__all__ = ["Settings", "Explained", "explain_batch", "write_outputs", "RESOLUTIONS", "MAPS"]

#: ``model``: resize while decoding to the model's input size (full batches, maps at
#: that size); ``image``: each image at its own size (maps at the photo's resolution,
#: exactly what ``salmap explain`` computes; batches of equal-sized images only).
RESOLUTIONS = ("model", "image")
#: The folder of ``OUT`` holding the maps.
MAPS = "maps"


@dataclass(frozen=True)
class Settings:
    """What to compute for every input.

    ``targets`` applies to inputs whose manifest names none (``None``: top-1 class);
    ``params`` holds each method's own parameters.
    """

    methods: tuple[str, ...] = ("vanilla",)
    targets: tuple = (None,)
    params: dict = field(default_factory=dict)
    score: str = "logit"
    reduction: str = "max-abs"
    top_k: int = 5
    resolution: str = "model"
    model: str = ""
    map_dtype: str = "float16"
    heatmap: bool = False
    overlay: bool = False
    cmap: str = "inferno"

    def jobs(self, item: Input, digest: str) -> list[tuple[str, object, str]]:
        """``(method, target, key)`` for every map this input needs."""
        return [
            (method, target, self.key(item, digest, method, target))
            for method in self.methods
            for target in item.targets or self.targets
        ]

    def key(self, item: Input, digest: str, method: str, target) -> str:
        """Identifies one map: the input (path and content), method, target, and every
        setting that changes the map. A manifest row with this key is that map, done."""
        what = [
            item.identity,
            digest,
            method,
            target,
            self.params.get(method, {}),
            self.score,
            self.reduction,
            self.resolution,
            self.model,
        ]
        text = json.dumps(what, sort_keys=True, default=repr)
        return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:32]


@dataclass
class Explained:
    """One manifest row, and the map it describes (None for an error row)."""

    row: dict
    map: np.ndarray | None = None
    image: np.ndarray | None = field(default=None, repr=False)


def _base_row(sample: Sample, method: str, target, key: str) -> dict:
    return {
        "source": sample.input.source,
        "frame": sample.input.frame,
        "status": "error",
        "error": sample.error,
        "method": method,
        "target_request": None if target is None else str(target),
        "target": None,
        "label": None,
        "score": None,
        "top5": None,
        "seconds": None,
        "map": None,
        "heatmap": None,
        "overlay": None,
        "hash": sample.digest or None,
        "key": key,
        "height": None if sample.original_size is None else int(sample.original_size[0]),
        "width": None if sample.original_size is None else int(sample.original_size[1]),
    }


def explain_batch(
    adapter, samples: Sequence[Sample], settings: Settings, done: Collection[str] = ()
) -> list[Explained]:
    """Explain every pending (input, method, target) of a batch; bad inputs and bad
    targets become error rows. Keys in ``done`` are left out."""
    found: list[Explained] = []
    good = [s for s in samples if not s.skipped and s.error is None]
    for sample in samples:
        if sample.error is not None:
            jobs = settings.jobs(sample.input, sample.digest)
            found += [Explained(_base_row(sample, *job)) for job in jobs]
    for method in settings.methods:
        jobs = [
            (sample, target, key)
            for sample in good
            for name, target, key in settings.jobs(sample.input, sample.digest)
            if name == method and key not in done
        ]
        found += _explain_jobs(adapter, method, jobs, settings)
    return found


def _explain_jobs(adapter, method, jobs, settings) -> list[Explained]:
    if not jobs:
        return []
    try:
        results = _explain(adapter, method, jobs, settings)
    except (InputError, UsageError):
        if len(jobs) == 1:
            raise
        # One bad target (a manifest's unknown class name) must not sink the batch.
        return [item for job in jobs for item in _explain_one(adapter, method, job, settings)]
    return [_row(job, method, result) for job, result in zip(jobs, results, strict=True)]


def _explain_one(adapter, method, job, settings) -> list[Explained]:
    try:
        return _explain_jobs(adapter, method, [job], settings)
    except (InputError, UsageError) as error:
        row = _base_row(*job[:1], method, *job[1:])
        row["error"] = str(error).splitlines()[0]
        return [Explained(row)]


def _explain(adapter, method, jobs, settings) -> list:
    from salmap.api import explain

    return explain(
        [sample.image for sample, _, _ in jobs],
        model=adapter,
        method=method,
        target=[target for _, target, _ in jobs],
        score=settings.score,
        reduction=settings.reduction,
        top_k=settings.top_k,
        **settings.params.get(method, {}),
    )


def _row(job, method, result) -> Explained:
    sample, target, key = job
    row = _base_row(sample, method, target, key)
    row.update(
        status="ok",
        error=None,
        target=int(result.target),
        label=result.label,
        score=float(result.score),
        top5=[
            {"index": int(i), "label": str(name), "probability": float(p)}
            for i, name, p in result.predictions
        ],
        seconds=float(result.seconds),
    )
    return Explained(row, result.map, sample.image)


def write_outputs(item: Explained, folder: Path, settings: Settings) -> None:
    """Write an ok row's map (``.npy``) and pictures under ``folder/maps`` atomically,
    and record their paths (relative to ``folder``) in the row."""
    row = item.row
    if row["status"] != "ok" or row["map"] is not None:
        return  # an error row, or written already (by a Ray actor)
    source = Input(row["source"], row["frame"])
    target = "" if row["target_request"] is None else f".{_safe(row['target_request'])}"
    base = f"{MAPS}/{source.stem()}.{row['method']}{target}"
    row["map"] = f"{base}.npy"
    with atomic_path(folder / row["map"], suffix=".npy") as tmp:
        np.save(tmp, item.map.astype(settings.map_dtype))
    if settings.heatmap or settings.overlay:
        from salmap.viz import colorize, overlay

        pictures = {
            "heatmap": lambda: colorize(item.map, settings.cmap, "percentile"),
            "overlay": lambda: overlay(item.image, item.map, settings.cmap, 0.5, "percentile"),
        }
        for kind, draw in pictures.items():
            if getattr(settings, kind):
                row[kind] = f"{base}.{kind}.png"
                _save_png(folder / row[kind], draw())


def _save_png(path: Path, picture: np.ndarray) -> None:
    pixels = (np.clip(picture, 0, 1) * 255 + 0.5).astype(np.uint8)
    with atomic_path(path, suffix=".png") as tmp:
        Image.fromarray(pixels).save(tmp, format="PNG")


def _safe(text: str) -> str:
    """A target as a file-name part; a short hash keeps two cleaned-alike names apart."""
    cleaned = "".join(c if c.isalnum() or c in "-_" else "_" for c in text)[:40]
    if cleaned == text:
        return cleaned
    return f"{cleaned}-{hashlib.sha1(text.encode('utf-8')).hexdigest()[:6]}"

"""salmap — saliency maps: which pixels matter to a model, to the eye, in a video.

>>> import salmap
>>> model = salmap.load_model()                      # EfficientNet-Lite0, offline
>>> result = salmap.explain("chelsea", model=model)  # bundled photo of a cat
>>> salmap.plot_maps(result, "figure.png")           # map, input, overlay
>>> run = salmap.explain_dataset("photos/", model=model, output="out")  # a dataset

Names are imported on first use (PEP 562), so ``import salmap`` costs little and a
command imports only what it uses: no framework, no plotting, no report until asked.
"""

from __future__ import annotations

import importlib

from salmap.errors import InputError, ModelError, SalmapError, UsageError

#: public name -> module that defines it
_LAZY = {
    "explain": "salmap.api",
    "explain_video": "salmap.api",
    "explain_dataset": "salmap.batch",
    "load_model": "salmap.models.zoo",
    "available_models": "salmap.models.zoo",
    "static_saliency": "salmap.static",
    "motion_saliency": "salmap.motion",
    "evaluate": "salmap.report",
    "write_report": "salmap.report",
    "SaliencyMap": "salmap.maps",
    "SaliencyMaps": "salmap.maps",
    "normalize_map": "salmap.maps",
    "reduce_channels": "salmap.maps",
    "resize_map": "salmap.maps",
    "load_image": "salmap.io",
    "sample_image": "salmap.io",
    "overlay": "salmap.viz",
    "plot_maps": "salmap.viz",
    "plot_grid": "salmap.viz",
    "save_heatmap": "salmap.viz",
}

#: sub-packages reachable as attributes (``salmap.targets.Class``, ``salmap.metrics``)
_SUBMODULES = ("targets", "methods", "metrics", "models", "static", "motion", "viz", "io")

__all__ = [
    "explain",
    "explain_video",
    "explain_dataset",
    "load_model",
    "available_models",
    "targets",
    "static_saliency",
    "motion_saliency",
    "evaluate",
    "write_report",
    "SalmapError",
    "UsageError",
    "InputError",
    "ModelError",
    "SaliencyMap",
    "SaliencyMaps",
    "load_image",
    "sample_image",
    "normalize_map",
    "reduce_channels",
    "resize_map",
    "overlay",
    "plot_maps",
    "plot_grid",
    "save_heatmap",
]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"salmap.{name}")
    else:
        raise AttributeError(f"module 'salmap' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__, *_SUBMODULES})

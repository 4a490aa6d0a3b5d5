"""Model saliency methods: each a short function over the model adapter.

A method takes ``(adapter, images N×H×W×3 in [0, 1], targets N, **params)`` and returns
either a signed per-channel attribution (N×H×W×3, reduced to a map by the channel
reduction) or maps (N×H×W). :data:`METHODS` lists them for the API and the CLI.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from salmap.methods.gradients import vanilla_gradients

__all__ = ["Method", "METHODS", "vanilla_gradients"]


@dataclass(frozen=True)
class Method:
    name: str
    function: Callable
    summary: str
    #: "attribution" (N×H×W×3, reduced over channels) or "map" (N×H×W)
    output: str = "attribution"
    #: whether maps carry a meaningful sign (drawn diverging on request)
    signed: bool = True
    defaults: dict = field(default_factory=dict)


METHODS: dict[str, Method] = {
    method.name: method
    for method in (
        Method(
            "vanilla",
            vanilla_gradients,
            "gradient of the class score w.r.t. the pixels (Simonyan et al. 2014)",
            defaults={"score": "logit"},
        ),
    )
}

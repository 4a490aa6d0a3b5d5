"""Model saliency methods: each a short function over the model adapter.

A method takes ``(adapter, images N×H×W×3 in [0, 1], targets N, *, score, **params)``
and returns either a signed per-channel attribution (N×H×W×3, reduced to a map by
the channel reduction) or maps (N×H×W). Batching, chunking and seeding live in
:mod:`salmap.methods.engine`. Each method is declared once, beside its code, with
:func:`salmap.methods.registry.method`; :data:`METHODS` lists them for the API and
the CLI, and this package exports every method function under its own name.
"""

from __future__ import annotations

from salmap.methods import (
    attention,
    cam,
    gradients,
    noise,
    path,
    perturbation,
    rules,
    surrogate,
    variance,
    xrai,
)
from salmap.methods.path import completeness_error
from salmap.methods.registry import (
    ALIASES,
    METHODS,
    Method,
    method_defaults,
    method_parameters,
    order_by_family,
    parameter_defaults,
)

# Importing a family module registers its methods; the listing follows FAMILIES.
_FAMILY_MODULES = (
    gradients, noise, path, xrai, cam, perturbation, surrogate, variance, rules, attention
)  # fmt: skip
order_by_family()

globals().update({spec.function.__name__: spec.function for spec in METHODS.values()})

__all__ = [
    "Method",
    "METHODS",
    "ALIASES",
    "method_defaults",
    "method_parameters",
    "parameter_defaults",
    "completeness_error",
    *(spec.function.__name__ for spec in METHODS.values()),
]

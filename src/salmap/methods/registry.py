"""The method registry: each method is declared once, next to its code.

A method module decorates its public function with :func:`method`; that fills
:data:`METHODS` (name -> :class:`Method`) and :data:`ALIASES`. Defaults are read from
the function's signature, so they cannot drift from the code. Registration order is
import order (:mod:`salmap.methods` imports the family modules in listing order).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field

from salmap.errors import UsageError

__all__ = [
    "Method",
    "METHODS",
    "ALIASES",
    "FAMILIES",
    "method",
    "method_defaults",
    "method_parameters",
    "parameter_defaults",
    "order_by_family",
    "resolve",
]

#: The families, in the order ``salmap methods`` lists them.
FAMILIES = (
    "gradients",
    "noise",
    "path",
    "regions",
    "cam",
    "perturbation",
    "surrogate",
    "variance",
    "rules",
    "transformers",
)


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
    #: for gradient methods that are a fixed sum of gradients: ``plan(**params)``
    #: returns the engine's points and backward rule (the noise wrappers use it)
    plan: Callable | None = None
    family: str = "gradients"
    #: whether the function fills an ``info`` dict with per-image diagnostics
    #: (evaluations, completeness error, convergence), copied into the result's extras
    reports: bool = False


#: Every model saliency method, by name, in listing order.
METHODS: dict[str, Method] = {}
#: Short names accepted wherever a method name is.
ALIASES: dict[str, str] = {}


def method_defaults(function: Callable, exclude: tuple[str, ...] = ()) -> dict:
    """A function's keyword-only parameters and their defaults, read from its signature
    (``info``, an output, and the names in ``exclude`` left out)."""
    defaults = {}
    for name, parameter in inspect.signature(function).parameters.items():
        if name == "info" or name in exclude:
            continue
        if parameter.kind is parameter.KEYWORD_ONLY and parameter.default is not parameter.empty:
            defaults[name] = parameter.default
    return defaults


def method(
    name: str,
    summary: str,
    *,
    family: str,
    output: str = "attribution",
    signed: bool = True,
    plan: Callable | None = None,
    aliases: tuple[str, ...] = (),
    reports: bool = False,
    defaults: dict | None = None,
) -> Callable[[Callable], Callable]:
    """Register the decorated function as method ``name`` (see :class:`Method`).

    ``defaults`` is for wrappers whose signature is ``**params`` (the noise wrappers);
    every other method's defaults come from its own signature.
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown method family {family!r}")

    def register(function: Callable) -> Callable:
        if name in METHODS or name in ALIASES:
            raise ValueError(f"method {name!r} is declared twice")
        found = method_defaults(function) if defaults is None else dict(defaults)
        METHODS[name] = Method(
            name, function, summary, output, signed, found, plan, family, reports
        )
        for alias in aliases:
            if alias in ALIASES or alias in METHODS:
                raise ValueError(f"alias {alias!r} is declared twice")
            ALIASES[alias] = name
        return function

    return register


def order_by_family() -> None:
    """Reorder :data:`METHODS` by :data:`FAMILIES` (stable within a family), whatever
    order the modules were imported in (a module may import another family's)."""
    ordered = sorted(METHODS.values(), key=lambda spec: FAMILIES.index(spec.family))
    METHODS.clear()
    METHODS.update((spec.name, spec) for spec in ordered)


def resolve(name: str) -> Method:
    """The method called ``name`` (or an alias of it); a usage error otherwise."""
    canonical = ALIASES.get(name, name)
    if canonical not in METHODS:
        raise UsageError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    return METHODS[canonical]


def parameter_defaults(name: str, params: dict) -> dict:
    """The parameters method ``name`` takes with ``params``, with their defaults (a noise
    wrapper also takes its base method's)."""
    spec = resolve(name)
    defaults = dict(spec.defaults)
    if spec.family == "noise":
        base = str(params.get("base", "vanilla"))
        base = ALIASES.get(base, base)
        defaults = {**(METHODS[base].defaults if base in METHODS else {}), **defaults}
    return defaults


def method_parameters(name: str, params: dict) -> set[str]:
    """The parameter names method ``name`` takes with ``params`` (a noise wrapper also
    takes its base method's)."""
    return set(parameter_defaults(name, params))

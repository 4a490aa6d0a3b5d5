"""Checking method parameters before any work: one rule per kind of parameter.

A parameter's kind follows from its default in the method's signature (an ``int``
default is a count, a ``float`` a non-negative real, a ``bool`` a switch), or from
:data:`NAMED_KINDS` for the names whose default may be ``None`` ("chosen for you"). A value of
the wrong kind — ``steps=nan``, ``samples=-3``, ``sigma=inf``, ``masks=abc`` — is a
:class:`~salmap.errors.UsageError` that names the method, the parameter and the value.
"""

from __future__ import annotations

import math
import numbers

from salmap.errors import UsageError

__all__ = ["check_parameters", "NAMED_KINDS"]

#: Kinds fixed by name, whatever the default (``None`` in some methods). Others with a
#: ``None`` default (a layer, a custom attribution) are the method's to check.
NAMED_KINDS = {"steps": "count", "batch_size": "count", "tolerance": "positive"}

#: Whole-number parameters that may be zero.
_MAY_BE_ZERO = frozenset({"seed"})

_EXPECTED = {
    "count": "a whole number >= 1",
    "whole": "a whole number >= 0",
    "real": "a finite number >= 0",
    "positive": "a finite number > 0",
}


def check_parameters(method: str, params: dict, defaults: dict) -> dict:
    """Check ``params`` of ``method`` against the kinds their ``defaults`` imply.

    Parameters
    ----------
    method : str
        The method's name, for the message.
    params : dict
        The values given (from ``--param KEY=VALUE`` or keyword arguments).
    defaults : dict
        The method's defaults (for a noise wrapper, with its base method's).

    Returns
    -------
    dict
        ``params`` with whole-valued floats of counts made ``int`` (``masks=1e3``).

    Raises
    ------
    UsageError
        A value of the wrong kind, not finite, or out of its kind's range.
    """
    return {
        name: _checked(method, name, value, _kind(name, defaults.get(name)))
        for name, value in params.items()
    }


def _kind(name: str, default) -> str | None:
    if name in NAMED_KINDS or default is None:
        return NAMED_KINDS.get(name)
    if isinstance(default, bool):
        return "bool"
    if isinstance(default, numbers.Integral):
        return "whole" if name in _MAY_BE_ZERO else "count"
    if isinstance(default, numbers.Real):
        return "real"
    return None


def _checked(method: str, name: str, value, kind: str | None):
    if kind is None or value is None:
        return value  # None keeps the method's own choice
    if kind == "bool":
        if not isinstance(value, bool):
            raise UsageError(f"{method}: {name} must be true or false, not {value!r}")
        return value
    number = value if isinstance(value, numbers.Real) and not isinstance(value, bool) else None
    valid = number is not None and math.isfinite(number)
    if valid and kind in ("count", "whole"):
        valid = float(number).is_integer() and number >= (0 if kind == "whole" else 1)
        number = int(number) if valid else number
    elif valid:
        valid = number > 0 if kind == "positive" else number >= 0
    if not valid:
        raise UsageError(f"{method}: {name} must be {_EXPECTED[kind]}, not {value!r}")
    return number
